"""mtf's ``layers.dense`` with named dims: ``reduced_dims`` in, ``new_dims`` out, per expert."""

from typing import Optional, Sequence

from namedmesh.core.contraction import einsum
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor
from namedmesh.core.reshape import rename_dimension
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.variables import VariableStore, variance_scaling_initializer, zeros_initializer


def _dims(x) -> list:
    if x is None:
        return []
    if isinstance(x, (Dimension, str)):
        return [convert_to_dimension(x)]
    if isinstance(x, Shape):
        return list(x.dims)
    return [convert_to_dimension(d) for d in x]


def dense(x: Tensor, new_dims, reduced_dims=None, expert_dims=None, use_bias: bool = True,
          activation=None, name: str = "dense", store: Optional[VariableStore] = None,
          kernel_initializer=None, variable_dtype=None) -> Tensor:
    """``x[..., reduced] @ kernel[expert, reduced, new] (+ bias[expert, new])``.

    Args:
      x: input with dims ``[..., *reduced_dims]`` (and ``expert_dims`` if any).
      new_dims: output dims replacing ``reduced_dims``.
      reduced_dims: dims of ``x`` summed over; default: the last dim of ``x``.
      expert_dims: dims of ``x`` along which each slice gets its own weights.
      store: where the variables live (``name/kernel`` and ``name/bias``), with
        the kernel's dims in mtf's order ``expert_dims + reduced_dims + new_dims``.
      variable_dtype: the dtype the variables are read in before they are cast to x's
        dtype (mtf's ``VariableDType.activation_dtype``); default: x's dtype.
    Returns:
      dims ``[x dims without reduced_dims] + new_dims``.
    """
    check_tensor(x, "dense")
    if store is None:
        raise ShapeError("dense(%r): pass store=VariableStore() to hold its variables" % name)
    new_dims = _dims(new_dims)
    reduced_dims = _dims(reduced_dims) if reduced_dims is not None else [x.shape.dims[-1]]
    expert_dims = _dims(expert_dims)
    for d in reduced_dims + expert_dims:
        if d not in x.shape:
            raise ShapeError("dense(%r): dim %s is not a dim of the input %s" % (name, d, x.shape))
    # mtf: a reduced dim with the name of a new dim is renamed in the input first
    for i, d in enumerate(list(reduced_dims)):
        if any(n.name == d.name for n in new_dims):
            tmp = Dimension("_" + d.name, d.size)
            x = rename_dimension(x, d.name, tmp.name)
            reduced_dims[i] = tmp
    kernel_shape = Shape(expert_dims + reduced_dims + new_dims)
    output_shape = Shape([d for d in x.shape.dims if d not in reduced_dims] + new_dims)
    with store.scope(name):
        kernel = store.get_variable(
            x.mesh, "kernel", kernel_shape,
            initializer=kernel_initializer or variance_scaling_initializer(reduced_dims))
        if variable_dtype is not None and kernel.dtype != variable_dtype:
            kernel = cast(kernel, variable_dtype)
        if kernel.dtype != x.dtype:
            kernel = cast(kernel, x.dtype)
        y = einsum([x, kernel], output_shape)
        if use_bias:
            bias = store.get_variable(x.mesh, "bias", Shape(expert_dims + new_dims),
                                      initializer=zeros_initializer)
            y = y + (cast(bias, x.dtype) if bias.dtype != x.dtype else bias)
    if activation is not None:
        y = activation(y)
    return y
