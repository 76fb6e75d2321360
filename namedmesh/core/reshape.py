"""Reshape, rename and replace dims: same elements, new names or grouping.

``reshape(x, new_shape)`` reinterprets the row-major element order of ``x``
under ``new_shape`` (same total size).  On a mesh it can move which dim is
split: see ``namedmesh.lowering.reshape_plan`` for the collectives that costs.
"""

from namedmesh.core.dims import Dimension, Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError


def reshape(x: Tensor, new_shape) -> Tensor:
    """``x`` with dims ``new_shape`` (row-major order kept; sizes must multiply to the same total)."""
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


def rename_dimension(x: Tensor, old_name: str, new_name: str) -> Tensor:
    """``x`` with dim ``old_name`` called ``new_name`` (same size and position)."""
    check_tensor(x, "rename_dimension")
    if old_name not in x.shape:
        raise ShapeError("rename_dimension: %r is not a dim of %s" % (old_name, x.shape))
    return reshape(x, x.shape.rename_dimension(old_name, new_name))


def replace_dimensions(tensor_or_shape, old_dims, new_dims):
    """Replace ``old_dims`` (one dim or a list, adjacent) by ``new_dims`` in a Tensor or Shape.

    For a Tensor this is a reshape; the new dims take the place of the first old dim.
    """
    shape = tensor_or_shape.shape if isinstance(tensor_or_shape, Tensor) else convert_to_shape(
        tensor_or_shape)
    old = [old_dims] if isinstance(old_dims, (Dimension, str)) else list(old_dims)
    new = [new_dims] if isinstance(new_dims, (Dimension, str)) else list(new_dims)
    old_names = [d.name if isinstance(d, Dimension) else str(d).split(":")[0] for d in old]
    for n in old_names:
        if n not in shape:
            raise ShapeError("replace_dimensions: %r is not a dim of %s" % (n, shape))
    positions = [shape.index(n) for n in old_names]
    first = min(positions)
    dims = [d for d in shape.dims if d.name not in old_names]
    dims[first:first] = [convert_to_dimension(d) for d in new]
    result = Shape(dims)
    if isinstance(tensor_or_shape, Tensor):
        return reshape(tensor_or_shape, result)
    return result
