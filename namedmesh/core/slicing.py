"""Slice, pad, concat, split, stack and unstack along one named dim (mtf's ops).

Each names the dim it works along; every other dim passes through.  On a
mesh, these are local along an unsplit dim; along a split dim (which mtf
0.1.21 refuses) the dim is gathered once (one all-gather within its mesh dim's
groups) and each processor keeps its piece of the result.
"""


from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import check_tensor, same_mesh
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError
from namedmesh.lowering import along


def axis_of(x: Tensor, dim, op: str) -> int:
    """Position of ``dim`` (a name or a Dimension, whose size must match) in ``x``."""
    if isinstance(dim, str) and ":" not in dim:
        name, size = dim, None
    else:
        d = convert_to_dimension(dim)
        name, size = d.name, d.size
    if name not in x.shape:
        raise ShapeError("%s: %r is not a dim of the tensor %s" % (op, name, x.shape))
    if size is not None and x.shape[name].size != size:
        raise ShapeError("%s: dim %s has size %d in the tensor %s"
                         % (op, Dimension(name, size), x.shape[name].size, x.shape))
    return x.shape.index(name)


def _int(value, what: str, op: str, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ShapeError("%s: %s must be an integer >= %d, got %r" % (op, what, minimum, value))
    return int(value)


def _resized(shape: Shape, axis: int, size: int) -> Shape:
    dims = shape.dims
    dims[axis] = Dimension(dims[axis].name, size)
    return Shape(dims)


@named_op("slice")
def mtf_slice(x: Tensor, begin: int, size: int, slice_dim_name: str, name=None) -> Tensor:
    """Elements ``[begin, begin + size)`` of dim ``slice_dim_name``; that dim's size becomes
    ``size`` (same name, same position).  mtf's ``slice``."""
    check_tensor(x, "slice")
    axis = axis_of(x, slice_dim_name, "slice")
    dim = x.shape.dims[axis]
    begin = _int(begin, "begin", "slice", 0)
    size = _int(size, "size", "slice", 1)
    if begin + size > dim.size:
        raise ShapeError("slice: [%d, %d) is outside dim %s of %s" % (begin, begin + size, dim,
                                                                       x.shape))
    out_shape = _resized(x.shape, axis, size)
    if out_shape == x.shape:
        return x
    return along.lower_slice(x, axis, begin, out_shape)


@named_op("pad")
def pad(x: Tensor, paddings, dim_name: str, name=None) -> Tensor:
    """Zeros added before and after dim ``dim_name``: ``paddings = [before, after]``;
    that dim's size grows by ``before + after``."""
    check_tensor(x, "pad")
    axis = axis_of(x, dim_name, "pad")
    if not isinstance(paddings, (list, tuple)) or len(paddings) != 2:
        raise ShapeError("pad: paddings must be [before, after], got %r" % (paddings,))
    paddings = [_int(p, "a padding", "pad", 0) for p in paddings]
    if paddings == [0, 0]:
        return x
    out_shape = _resized(x.shape, axis, x.shape.dims[axis].size + sum(paddings))
    return along.lower_pad(x, axis, paddings, out_shape)


def _aligned_to(x: Tensor, shape: Shape, axis: int, op: str) -> Tensor:
    """``x`` transposed to the dim order of ``shape``, whose dims it must have (by name and
    size) except for the size of the dim at ``axis``."""
    concat_name = shape.dims[axis].name
    expect = {d.name: d.size for d in shape.dims if d.name != concat_name}
    mine = {d.name: d.size for d in x.shape.dims if d.name != concat_name}
    if concat_name not in x.shape or expect != mine:
        raise ShapeError("%s: the tensors must have the same dims except for the size of %r; "
                         "got %s and %s" % (op, concat_name, shape, x.shape))
    order = Shape([x.shape[d.name] for d in shape.dims])
    if order == x.shape:
        return x
    from namedmesh.core.reshape import transpose
    return transpose(x, order)


@named_op("concat")
def concat(xs, concat_dim_name: str, name=None) -> Tensor:
    """Concatenate ``xs`` along dim ``concat_dim_name``: every other dim must be the same
    (any order; the result has ``xs[0]``'s order).  A split concat dim costs one all-gather."""
    xs = list(xs)
    if not xs:
        raise ShapeError("concat needs at least one tensor")
    for x in xs:
        check_tensor(x, "concat")
    same_mesh(xs, "concat")
    if any(x.dtype != xs[0].dtype for x in xs):
        raise WrongTypeError("concat: the tensors have dtypes %s; they must be equal"
                             % [x.dtype.name for x in xs])
    axis = axis_of(xs[0], concat_dim_name, "concat")
    xs = [xs[0]] + [_aligned_to(x, xs[0].shape, axis, "concat") for x in xs[1:]]
    if len(xs) == 1:
        return xs[0]
    out_shape = _resized(xs[0].shape, axis, sum(x.shape.dims[axis].size for x in xs))
    return along.lower_concat(xs, axis, out_shape)


@named_op("split")
def split(x: Tensor, split_dim, num_or_size_splits, name=None) -> list:
    """Split ``x`` along ``split_dim`` into ``num_or_size_splits`` equal parts, or parts of
    the sizes listed; each part keeps the dim's name.  Returns a list of Tensors."""
    check_tensor(x, "split")
    axis = axis_of(x, split_dim, "split")
    dim = x.shape.dims[axis]
    if isinstance(num_or_size_splits, (list, tuple)):
        sizes = [_int(s, "a split size", "split", 1) for s in num_or_size_splits]
        if sum(sizes) != dim.size:
            raise ShapeError("split: sizes %s do not add up to dim %s" % (sizes, dim))
    else:
        n = _int(num_or_size_splits, "the number of splits", "split", 1)
        if dim.size % n:
            raise ShapeError("split: %d does not divide dim %s" % (n, dim))
        sizes = [dim.size // n] * n
    out_shapes = [_resized(x.shape, axis, s) for s in sizes]
    return along.lower_split(x, axis, sizes, out_shapes)


@named_op("stack")
def stack(xs, dim_name: str, axis: int = 0, name=None) -> Tensor:
    """Stack tensors of one shape along a new dim ``dim_name`` of size ``len(xs)``, placed at
    position ``axis`` of the output (negative counts from the end)."""
    xs = list(xs)
    if not xs:
        raise ShapeError("stack needs at least one tensor")
    for x in xs:
        check_tensor(x, "stack")
    same_mesh(xs, "stack")
    shape = xs[0].shape
    for x in xs[1:]:
        if x.shape != shape:
            raise ShapeError("stack: the tensors must have the same shape, got %s and %s"
                             % (shape, x.shape))
        if x.dtype != xs[0].dtype:
            raise WrongTypeError("stack: the tensors have dtypes %s and %s"
                                 % (xs[0].dtype.name, x.dtype.name))
    if dim_name in shape:
        raise ShapeError("stack: the new dim %r is already a dim of %s" % (dim_name, shape))
    if axis < 0:
        axis = shape.ndims + 1 + axis
    if not 0 <= axis <= shape.ndims:
        raise ShapeError("stack: axis %d is outside [0, %d] for %s" % (axis, shape.ndims, shape))
    dims = shape.dims
    out_shape = Shape(dims[:axis] + [Dimension(dim_name, len(xs))] + dims[axis:])
    return along.lower_stack(xs, axis, out_shape)


@named_op("unstack")
def unstack(x: Tensor, dim, name=None) -> list:
    """The ``dim.size`` tensors of ``x`` along ``dim``, each with dims ``x.shape - dim``."""
    check_tensor(x, "unstack")
    axis = axis_of(x, dim, "unstack")
    return along.lower_unstack(x, axis, x.shape - x.shape.dims[axis])
