"""Spatially partitioned convolutions (mtf's ``*_with_blocks``).

The image is ``[batch, h_blocks, w_blocks, h, w, in]`` (3-D: ``[batch, d_blocks,
h_blocks, d, h, w, in]``): a grid of blocks, whose block dims may be split on the
mesh.  Each block is extended by the margins of its neighbours (a halo exchange:
neighbour exchanges along the mesh where the blocks are split; zero padding
where there are no blocks) and convolved with VALID padding, which is a SAME
convolution of the whole image.  Only ``padding="SAME"`` is supported, as in
mtf; the plain convolution runs when no block dim is given.
"""

from typing import Optional

from namedmesh.core.dims import convert_to_dimension
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.shift import halo_exchange
from namedmesh.core.slicing import pad
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.conv import conv2d, conv2d_transpose, conv3d, conv3d_transpose
from namedmesh.layers.variables import VariableStore


def _check(op: str, padding: str, filter_size, parity: int):
    if padding != "SAME":
        raise ShapeError("%s requires padding='SAME', got %r" % (op, padding))
    if any(f % 2 != parity for f in filter_size):
        raise ShapeError("%s: filter sizes must be %s, got %s"
                         % (op, "odd" if parity else "even", tuple(filter_size)))


def _with_halos(x: Tensor, blocked, halos) -> Tensor:
    """Extend each (blocks_dim or None, block_size_dim) by its halo on both sides."""
    for (blocks_dim, size_dim), halo in zip(blocked, halos):
        if halo <= 0:
            continue
        size_dim = x.shape[size_dim.name]
        if blocks_dim is not None:
            x = halo_exchange(x, convert_to_dimension(blocks_dim), size_dim, halo)
        else:
            x = pad(x, [halo, halo], size_dim.name)
    return x


def conv2d_with_blocks(x: Tensor, output_dim, filter_size=(3, 3), strides=(1, 1),
                       padding: str = "SAME", h_blocks_dim=None, w_blocks_dim=None,
                       filter_initializer=None, variable_dtype=None, name: str = None,
                       store: Optional[VariableStore] = None) -> Tensor:
    """SAME 2-D convolution of ``[batch, h_blocks, w_blocks, h, w, in]`` (odd filters);
    returns ``[batch, h_blocks, w_blocks, h, w, output_dim]``.  Kernel as ``conv2d``."""
    check_tensor(x, "conv2d_with_blocks")
    if h_blocks_dim is None and w_blocks_dim is None:
        return conv2d(x, output_dim, filter_size, strides, padding, filter_initializer,
                      variable_dtype, name, store=store)
    _check("conv2d_with_blocks", padding, filter_size, 1)
    h_dim, w_dim = x.shape.dims[-3:-1]
    x = _with_halos(x, [(h_blocks_dim, h_dim), (w_blocks_dim, w_dim)],
                    [filter_size[0] // 2, filter_size[1] // 2])
    return conv2d(x, output_dim, filter_size, strides, "VALID", filter_initializer,
                  variable_dtype, name, store=store)


def conv2d_transpose_with_blocks(x: Tensor, output_dim, filter_size=(2, 2), strides=(2, 2),
                                 padding: str = "SAME", h_blocks_dim=None, w_blocks_dim=None,
                                 filter_initializer=None, variable_dtype=None, name: str = None,
                                 store: Optional[VariableStore] = None) -> Tensor:
    """Transposed 2-D convolution of blocks (even filters; halo ``f // 2 - 1``)."""
    check_tensor(x, "conv2d_transpose_with_blocks")
    if h_blocks_dim is None and w_blocks_dim is None:
        return conv2d_transpose(x, output_dim, filter_size, strides, padding,
                                filter_initializer, variable_dtype, name, store=store)
    _check("conv2d_transpose_with_blocks", padding, filter_size, 0)
    h_dim, w_dim = x.shape.dims[-3:-1]
    x = _with_halos(x, [(h_blocks_dim, h_dim), (w_blocks_dim, w_dim)],
                    [filter_size[0] // 2 - 1, filter_size[1] // 2 - 1])
    return conv2d_transpose(x, output_dim, filter_size, strides, "VALID", filter_initializer,
                            variable_dtype, name, store=store)


def conv3d_with_blocks(x: Tensor, output_dim, filter_size=(3, 3, 3), strides=(1, 1, 1),
                       padding: str = "SAME", d_blocks_dim=None, h_blocks_dim=None,
                       filter_initializer=None, variable_dtype=None, name: str = None,
                       store: Optional[VariableStore] = None) -> Tensor:
    """SAME 3-D convolution of ``[batch, d_blocks, h_blocks, d, h, w, in]`` (odd filters);
    the width is zero-padded (it has no blocks)."""
    check_tensor(x, "conv3d_with_blocks")
    if d_blocks_dim is None and h_blocks_dim is None:
        return conv3d(x, output_dim, filter_size, strides, padding, filter_initializer,
                      variable_dtype, name, store=store)
    _check("conv3d_with_blocks", padding, filter_size, 1)
    d_dim, h_dim, w_dim = x.shape.dims[-4:-1]
    x = _with_halos(x, [(d_blocks_dim, d_dim), (h_blocks_dim, h_dim), (None, w_dim)],
                    [filter_size[0] // 2, filter_size[1] // 2, filter_size[2] // 2])
    return conv3d(x, output_dim, filter_size, strides, "VALID", filter_initializer,
                  variable_dtype, name, store=store)


def conv3d_transpose_with_blocks(x: Tensor, output_dim, filter_size=(2, 2, 2),
                                 strides=(2, 2, 2), padding: str = "SAME", d_blocks_dim=None,
                                 h_blocks_dim=None, filter_initializer=None, variable_dtype=None,
                                 name: str = None,
                                 store: Optional[VariableStore] = None) -> Tensor:
    """Transposed 3-D convolution of blocks (even filters; halo ``f // 2 - 1``)."""
    check_tensor(x, "conv3d_transpose_with_blocks")
    if d_blocks_dim is None and h_blocks_dim is None:
        return conv3d_transpose(x, output_dim, filter_size, strides, padding,
                                filter_initializer, variable_dtype, name, store=store)
    _check("conv3d_transpose_with_blocks", padding, filter_size, 0)
    d_dim, h_dim, w_dim = x.shape.dims[-4:-1]
    x = _with_halos(x, [(d_blocks_dim, d_dim), (h_blocks_dim, h_dim), (None, w_dim)],
                    [filter_size[0] // 2 - 1, filter_size[1] // 2 - 1, filter_size[2] // 2 - 1])
    return conv3d_transpose(x, output_dim, filter_size, strides, "VALID", filter_initializer,
                            variable_dtype, name, store=store)
