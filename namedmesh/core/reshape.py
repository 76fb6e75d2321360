"""Reshape, rename, replace and transpose dims: same elements, new names, grouping or order.

``reshape(x, new_shape)`` reinterprets the row-major element order of ``x``
under ``new_shape`` (same total size).  On a mesh it can move which dim is
split: see ``namedmesh.lowering.reshape_plan`` for the collectives that costs.
``transpose`` keeps every element where it is by name and only changes the
axis order (local work, never communication).
"""

from namedmesh.core.dims import Dimension, Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError


@named_op("reshape")
def reshape(x: Tensor, new_shape, name=None) -> Tensor:
    """``x`` with dims ``new_shape`` (row-major order kept; the total size stays the same)."""
    check_tensor(x, "reshape")
    new_shape = convert_to_shape(new_shape)
    if new_shape is None:
        raise ShapeError("reshape: new_shape is None")
    if new_shape.size != x.shape.size:
        raise ShapeError("reshape: cannot reshape %s (%d elements) to %s (%d elements); the "
                         "total size must stay the same" % (x.shape, x.shape.size, new_shape,
                                                            new_shape.size))
    if new_shape == x.shape:
        return x
    from namedmesh.lowering.relayout import lower_reshape
    return lower_reshape(x, new_shape)


@named_op("transpose")
def transpose(x: Tensor, new_shape, name=None) -> Tensor:
    """``x`` with its dims in the order of ``new_shape`` (the same dims, any order)."""
    check_tensor(x, "transpose")
    new_shape = convert_to_shape(new_shape)
    if set(new_shape.dims) != set(x.shape.dims) or len(new_shape) != len(x.shape):
        raise ShapeError("transpose: new shape %s must have exactly the dims of x %s"
                         % (new_shape, x.shape))
    if new_shape == x.shape:
        return x
    from namedmesh.core.contraction import einsum
    return einsum([x], output_shape=new_shape)


@named_op("rename_dimension")
def rename_dimension(x: Tensor, old_name: str, new_name: str, name=None) -> Tensor:
    """``x`` with dim ``old_name`` called ``new_name`` (same size and position)."""
    check_tensor(x, "rename_dimension")
    if old_name not in x.shape:
        raise ShapeError("rename_dimension: %r is not a dim of %s" % (old_name, x.shape))
    return reshape(x, x.shape.rename_dimension(old_name, new_name))


def _dim_list(x, what: str) -> list:
    items = [x] if isinstance(x, (Dimension, str)) else x
    if not isinstance(items, (list, tuple, Shape)) or not len(items):
        raise ShapeError("replace_dimensions: %s must be a Dimension or a non-empty list of "
                         "Dimensions, got %r" % (what, x))
    return list(items)


def replace_dimensions(tensor_or_shape, old_dim_or_dims, new_dim_or_dims):
    """Replace ``old_dim_or_dims`` (one dim or a list that occurs consecutively, in that
    order) by ``new_dim_or_dims`` in a Tensor (a reshape) or a Shape (mtf's rule)."""
    if isinstance(tensor_or_shape, Tensor):
        return reshape(tensor_or_shape, replace_dimensions(tensor_or_shape.shape,
                                                           old_dim_or_dims, new_dim_or_dims))
    if not isinstance(tensor_or_shape, (Shape, str, list, tuple)):
        raise WrongTypeError("replace_dimensions: expected a Tensor or a Shape, got %r"
                             % (tensor_or_shape,))
    shape = convert_to_shape(tensor_or_shape)
    old = _dim_list(old_dim_or_dims, "old_dim_or_dims")
    new = [convert_to_dimension(d) for d in _dim_list(new_dim_or_dims, "new_dim_or_dims")]
    positions = []
    for d in old:
        key = d if isinstance(d, (Dimension, str)) and (
            isinstance(d, Dimension) or ":" not in d) else convert_to_dimension(d)
        name = key.name if isinstance(key, Dimension) else key
        if name not in shape or (isinstance(key, Dimension) and shape[name].size != key.size):
            raise ShapeError("replace_dimensions: %s is not a dim of %s" % (key, shape))
        positions.append(shape.index(name))
    first = positions[0]
    if positions != list(range(first, first + len(positions))):
        raise ShapeError("replace_dimensions: the old dims %s must occur consecutively and in "
                         "that order in %s" % ([str(shape.dims[i]) for i in positions], shape))
    dims = shape.dims
    return Shape(dims[:first] + new + dims[first + len(positions):])
