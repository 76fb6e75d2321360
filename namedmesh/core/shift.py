"""Shifts along a named dim: ``shift`` (static offset), ``dynamic_shift`` (a Tensor of
offsets) and the halo exchanges built from them (mtf's ops)."""

from namedmesh.core.contraction import einsum
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension
from namedmesh.core.elementwise import cast, check_tensor, equal, mod
from namedmesh.core.naming import named_op
from namedmesh.core.reshape import replace_dimensions
from namedmesh.core.slicing import axis_of, concat, mtf_slice
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError
from namedmesh.lowering.shift import lower_shift


@named_op("shift")
def shift(x: Tensor, offset: int, dim, wrap: bool, name=None) -> Tensor:
    """``x`` moved by ``offset`` positions along ``dim`` (right if positive, left if
    negative): ``out[i] = x[i - offset]``; positions that come from outside the dim are
    zeros, or with ``wrap`` come round from the other end.  Output dims = x's dims.

    Along a split dim this is mtf's neighbour exchange: one ``permute`` collective
    when ``offset`` is a multiple of the per-processor block, else two.
    """
    check_tensor(x, "shift")
    axis = axis_of(x, dim, "shift")
    if isinstance(offset, bool) or int(offset) != offset:
        raise ShapeError("shift: offset must be an integer, got %r" % (offset,))
    return lower_shift(x, axis, int(offset), bool(wrap))


@named_op("dynamic_shift")
def dynamic_shift(x: Tensor, offset: Tensor, dim, wrap: bool, name=None) -> Tensor:
    """``shift`` by a Tensor of integer offsets whose dims are a subset of
    ``x.shape - dim`` (one offset per row).  Computed as mtf does: an einsum with the
    0/1 matrix ``[dim, tmp] == (tmp + offset)`` (mod ``dim.size`` with ``wrap``)."""
    check_tensor(x, "dynamic_shift")
    check_tensor(offset, "dynamic_shift")
    dim = x.shape.dims[axis_of(x, dim, "dynamic_shift")]
    if dim.name in offset.shape:
        raise ShapeError("dynamic_shift: dim %s may not appear in the offsets %s"
                         % (dim, offset.shape))
    for d in offset.shape.dims:
        if d not in x.shape:
            raise ShapeError("dynamic_shift: offset dims %s must be a subset of x's dims %s"
                             % (offset.shape, x.shape))
    if not offset.dtype.is_integer:
        raise WrongTypeError("dynamic_shift: offsets must be integers, got %s" % offset.dtype.name)
    tmp = Dimension("dynamic_shift_tmp", dim.size)
    x_tmp = replace_dimensions(x, dim, tmp)
    source = mtf_range(x.mesh, tmp, dtype=offset.dtype) + offset
    if wrap:
        source = mod(source, dim.size)
    perm = cast(equal(mtf_range(x.mesh, dim, dtype=offset.dtype), source), x.dtype)
    return einsum([x_tmp, perm], output_shape=x.shape)


def _halo_parts(x, blocks_dim, block_size_dim, halo_size, wrap, both_sides):
    check_tensor(x, "halo_exchange")
    blocks_dim = x.shape.dims[axis_of(x, blocks_dim, "halo_exchange")]
    block_size_dim = x.shape.dims[axis_of(x, block_size_dim, "halo_exchange")]
    if isinstance(halo_size, bool) or int(halo_size) != halo_size or halo_size < 0:
        raise ShapeError("halo_exchange: halo_size must be an integer >= 0, got %r" % (halo_size,))
    block = block_size_dim.size
    whole, partial = halo_size // block, halo_size % block
    parts = [x]
    for i in range(1, whole + 1):
        parts = [shift(x, i, blocks_dim, wrap)] + parts
        if both_sides:
            parts = parts + [shift(x, -i, blocks_dim, wrap)]
    if partial:
        right_margin = mtf_slice(x, block - partial, partial, block_size_dim.name)
        parts = [shift(right_margin, whole + 1, blocks_dim, wrap)] + parts
        if both_sides:
            left_margin = mtf_slice(x, 0, partial, block_size_dim.name)
            parts = parts + [shift(left_margin, -(whole + 1), blocks_dim, wrap)]
    return concat(parts, block_size_dim.name)


@named_op("halo_exchange")
def halo_exchange(x: Tensor, blocks_dim, block_size_dim, halo_size: int, wrap: bool = False,
                  name=None) -> Tensor:
    """Each block (along ``blocks_dim``) gets ``halo_size`` positions of its neighbours on
    both sides, concatenated along ``block_size_dim`` (whose size grows by
    ``2 * halo_size``); blocks at the ends get zeros unless ``wrap``."""
    if halo_size == 0:
        return x
    return _halo_parts(x, blocks_dim, block_size_dim, halo_size, wrap, True)


@named_op("left_halo_exchange")
def left_halo_exchange(x: Tensor, blocks_dim, block_size_dim, halo_size: int, wrap: bool = False,
                       name=None) -> Tensor:
    """``halo_exchange`` from the left neighbours only (``block_size_dim`` grows by
    ``halo_size``)."""
    if halo_size == 0:
        return x
    return _halo_parts(x, blocks_dim, block_size_dim, halo_size, wrap, False)
