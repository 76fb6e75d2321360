"""mtf's ``separable_conv1d``: a per-channel (depthwise) 1-D convolution, then a pointwise dense."""

from typing import Optional

from namedmesh.core.elementwise import check_tensor
from namedmesh.core.shift import shift
from namedmesh.core.tensor import Tensor
from namedmesh.layers.dense import dense
from namedmesh.layers.initializers import VarianceScalingInitializer
from namedmesh.layers.variables import VariableStore, current_store


def _depthwise_conv1d(x: Tensor, depth_dim, length_dim, min_relative_pos: int,
                      max_relative_pos: int, use_bias: bool, initializer_scale: float,
                      kernel_depth_weights, store: VariableStore) -> Tensor:
    """``sum_i x shifted by -(min + i) along length * w_i[depth]`` (mtf's depthwise "hack")."""
    kernel_size = max_relative_pos - min_relative_pos + 1
    out = None
    with store.scope("depthwise_conv_hack"):
        for i in range(kernel_size):
            shifted = shift(x, -(min_relative_pos + i), length_dim, wrap=False)
            term = dense(shifted, new_dims=[], reduced_dims=[], expert_dims=[depth_dim],
                         kernel_weights=kernel_depth_weights[i] if kernel_depth_weights else None,
                         name="depthwise_dense_%d" % i, use_bias=use_bias and i == 0,
                         kernel_initializer=VarianceScalingInitializer(
                             scale=initializer_scale / kernel_size), store=store)
            out = term if out is None else out + term
    return out


def separable_conv1d(x: Tensor, output_dim, min_relative_pos: int = -1,
                     max_relative_pos: int = 1, depthwise_filter_initializer_scale: float = 1.0,
                     pointwise_filter_initializer_scale: float = 1.0, name: str = None,
                     use_bias: bool = True, kernel_depth_weights=None,
                     store: Optional[VariableStore] = None) -> Tensor:
    """1-D convolution with separable filters over ``[*batch, length, depth]``.

    Output position p mixes input positions ``p + min_relative_pos .. p +
    max_relative_pos`` with one weight per (offset, depth) (zeros beyond the
    ends), then ``dense`` to ``output_dim``.  Variables under
    ``<name or separable_conv1d>/``: ``depthwise_conv_hack/depthwise_dense_<i>/kernel``
    ``[depth]`` (and ``_0/bias``), ``pointwise_dense/kernel`` ``[depth, out]`` and
    ``bias``.  ``kernel_depth_weights``: one ``[depth]`` Tensor per offset instead
    of the variables.  Returns ``[*batch, length, output_dim]``.
    """
    check_tensor(x, "separable_conv1d")
    depth_dim, length_dim = x.shape.dims[-1], x.shape.dims[-2]
    store = current_store(store, "separable_conv1d")
    with store.scope(name or "separable_conv1d"):
        depthwise = _depthwise_conv1d(x, depth_dim, length_dim, min_relative_pos,
                                      max_relative_pos, use_bias,
                                      depthwise_filter_initializer_scale, kernel_depth_weights,
                                      store)
        return dense(depthwise, new_dims=[output_dim], reduced_dims=[depth_dim],
                     name="pointwise_dense", use_bias=use_bias,
                     kernel_initializer=VarianceScalingInitializer(
                         scale=pointwise_filter_initializer_scale), store=store)
