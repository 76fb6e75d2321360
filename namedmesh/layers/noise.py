"""Random layers of mtf's layers.py: dropout as layers call it, multiplicative jitter."""

from namedmesh.core.dims import convert_to_shape
from namedmesh.core.nn import dropout
from namedmesh.core.tensor import Tensor


def layer_dropout(x: Tensor, is_training: bool, rate: float, broadcast_dims=None,
                  seed=None) -> Tensor:
    """mtf layers' ``dropout(x, is_training, 1 - rate, noise_shape=x.shape - broadcast_dims)``:
    the identity unless training with ``rate > 0``; the mask is constant along
    ``broadcast_dims``."""
    if not is_training or not rate:
        return x
    noise_shape = x.shape - convert_to_shape(list(broadcast_dims or []))
    return dropout(x, rate, seed, noise_shape=noise_shape)
