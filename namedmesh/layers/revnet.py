"""mtf's ``reversible_half_residual_and_swap``: the building block of a reversible network."""

from typing import Callable, Optional

from namedmesh.core.control import recompute_grad
from namedmesh.core.creation import zeros_like
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.tensor import Tensor


def reversible_half_residual_and_swap(x1: Tensor, x1_backwards: Optional[Tensor], x2: Tensor,
                                      x2_backwards: Optional[Tensor], f: Callable,
                                      recompute_grads: bool = True):
    """``(y2, y2_backwards, y1, y1_backwards) = (x2, x2_backwards, x1 + f(x2), x1_backwards)``.

    All Tensors have the same dims.  Chain blocks by passing each block's
    outputs to the next (``None`` for the first block's ``*_backwards``).

    With ``recompute_grads``, ``f`` is run again on the backward pass instead of
    keeping its activations (see ``recompute_grad``); the gradients are
    exactly those of the plain computation.  mtf additionally reconstructs each
    block's inputs from its outputs and passes them back through the
    ``*_backwards`` gradients; namedmesh keeps the block inputs instead, so the
    ``*_backwards`` tensors are carried unchanged and get plain gradients.
    """
    for t in (x1, x2):
        check_tensor(t, "reversible_half_residual_and_swap")
    if recompute_grads:
        if x1_backwards is None:
            x1_backwards = zeros_like(x1)
        if x2_backwards is None:
            x2_backwards = zeros_like(x2)
        y1 = x1 + recompute_grad(f, [x2])
    else:
        y1 = x1 + f(x2)
    return x2, x2_backwards, y1, x1_backwards
