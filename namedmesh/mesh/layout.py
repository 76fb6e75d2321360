"""Tensor layouts: for one tensor shape on one mesh, which dim is split where.

The layout of a tensor is a function of its shape alone (rules are keyed by
dimension *name*), so two tensors that share a dim name always split it the
same way.  That is what lets the lowering pick collectives from names.
"""

from typing import Optional, Tuple

from namedmesh.core.dims import Shape
from namedmesh.errors import LayoutError


class TensorLayout:
    """``mesh_axes[i]`` is the mesh axis tensor dim ``i`` is split over, or None.

    ``slice_sizes[i]`` is the size each processor holds of tensor dim ``i``.
    """

    __slots__ = ("shape", "mesh_shape", "mesh_axes")

    def __init__(self, shape: Shape, mesh_shape: Shape, mesh_axes: Tuple[Optional[int], ...]):
        self.shape = shape
        self.mesh_shape = mesh_shape
        self.mesh_axes = tuple(mesh_axes)

    @property
    def slice_sizes(self) -> Tuple[int, ...]:
        out = []
        for d, axis in zip(self.shape.dims, self.mesh_axes):
            out.append(d.size if axis is None else d.size // self.mesh_shape.dims[axis].size)
        return tuple(out)

    def mesh_axis_of(self, name: str) -> Optional[int]:
        """The mesh axis the dim called ``name`` is split over, or None."""
        return self.mesh_axes[self.shape.index(name)]

    def tensor_axis_of_mesh_axis(self, mesh_axis: int) -> Optional[int]:
        """The tensor axis split over ``mesh_axis``, or None (replicated there)."""
        for i, a in enumerate(self.mesh_axes):
            if a == mesh_axis:
                return i
        return None

    @property
    def split_mesh_axes(self) -> Tuple[int, ...]:
        return tuple(a for a in self.mesh_axes if a is not None)

    def describe(self) -> str:
        parts = []
        for d, axis in zip(self.shape.dims, self.mesh_axes):
            if axis is None:
                parts.append(str(d))
            else:
                parts.append("%s(split on %s)" % (d, self.mesh_shape.dims[axis].name))
        return "[%s]" % ", ".join(parts)

    def __eq__(self, other):
        return (isinstance(other, TensorLayout) and self.shape == other.shape
                and self.mesh_axes == other.mesh_axes)

    def __hash__(self):
        return hash((self.shape, self.mesh_axes))

    def __repr__(self):
        return "TensorLayout(%s)" % self.describe()


def compute_tensor_layout(shape: Shape, mesh_shape: Shape, rules) -> TensorLayout:
    """The layout of ``shape`` on a mesh under layout ``rules``.

    Raises LayoutError (naming both sides) when a split dim's size is not
    divisible by its mesh dim, or when two dims of the tensor map to one mesh dim.
    Rules naming a mesh dim the mesh lacks are ignored here (the Mesh reports
    them once, when it is built).
    """
    mesh_index = {d.name: i for i, d in enumerate(mesh_shape.dims)}
    axes = []
    owner = {}
    for d in shape.dims:
        mesh_name = rules.mesh_dim_name(d.name)
        axis = mesh_index.get(mesh_name) if mesh_name is not None else None
        if axis is not None:
            mesh_dim = mesh_shape.dims[axis]
            if d.size % mesh_dim.size:
                raise LayoutError(
                    "tensor dim %s is split over mesh dim %s (rule %s:%s) but %d is not "
                    "divisible by %d; tensor shape %s"
                    % (d, mesh_dim, d.name, mesh_name, d.size, mesh_dim.size, shape))
            if axis in owner:
                raise LayoutError(
                    "tensor dims %r and %r of shape %s both map to mesh dim %r; a mesh dim can "
                    "split at most one dim of a tensor (rename one dim or change the layout)"
                    % (owner[axis], d.name, shape, mesh_name))
            owner[axis] = d.name
        axes.append(axis)
    return TensorLayout(shape, mesh_shape, tuple(axes))
