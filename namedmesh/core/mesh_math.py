"""mtf's processor arithmetic: numbers <-> coordinates, groups, and how a layout splits a dim.

Pure functions of shapes and layout rules (mtf's names and semantics): processors
are numbered row-major over the mesh dims, the last dim fastest.
"""

import functools
import numbers
import operator

from namedmesh.core.dims import Shape, convert_to_dimension, convert_to_shape
from namedmesh.errors import LayoutError, ShapeError


def list_product(l) -> int:  # noqa: E741 - mtf's parameter name
    """The product of a list (1 for an empty list)."""
    if isinstance(l, (str, bytes)) or not all(isinstance(n, numbers.Number) for n in l):
        raise ShapeError("list_product: expected a list of numbers, got %r" % (l,))
    return functools.reduce(operator.mul, l, 1)


def _check_pnum(sizes, pnum, fn: str) -> int:
    total = list_product(sizes)
    if isinstance(pnum, bool) or not isinstance(pnum, numbers.Integral) or \
            not 0 <= pnum < total:
        raise ShapeError("%s: processor number %r is not an integer in [0, %d) of mesh %s"
                         % (fn, pnum, total, sizes))
    return int(pnum)


def _check_axes(sizes, group_dims, fn: str) -> list:
    if isinstance(group_dims, (str, bytes)) or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) and 0 <= a < len(sizes)
            for a in group_dims):
        raise ShapeError("%s: group_dims must be mesh axes (integers in [0, %d)), got %r"
                         % (fn, len(sizes), group_dims))
    return list(group_dims)


def _sizes(mesh_shape, fn: str) -> list:
    if isinstance(mesh_shape, Shape):
        return list(mesh_shape.sizes)
    if isinstance(mesh_shape, list) and all(isinstance(n, int) for n in mesh_shape):
        return mesh_shape
    raise ShapeError("%s: mesh_shape must be a Shape or a list of integers, got %r"
                     % (fn, mesh_shape))


def pnum_to_processor_coordinates(mesh_shape, pnum: int) -> list:
    """Coordinates of processor ``pnum`` (row-major, last mesh dim fastest)."""
    sizes = _sizes(mesh_shape, "pnum_to_processor_coordinates")
    pnum = _check_pnum(sizes, pnum, "pnum_to_processor_coordinates")
    out = []
    for n in reversed(sizes):
        out.append(pnum % n)
        pnum //= n
    return out[::-1]


def processor_coordinates_to_pnum(mesh_shape, coord) -> int:
    """The processor number at ``coord`` (inverse of ``pnum_to_processor_coordinates``)."""
    sizes = _sizes(mesh_shape, "processor_coordinates_to_pnum")
    coord = list(coord)
    if len(coord) != len(sizes) or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < n
            for c, n in zip(coord, sizes)):
        raise ShapeError("processor_coordinates_to_pnum: coordinates %r do not fit mesh %s "
                         "(one integer per mesh dim, each within its size)" % (coord, sizes))
    pnum = 0
    for c, n in zip(coord, sizes):
        pnum = pnum * n + c
    return pnum


def pnum_to_group(mesh_shape, group_dims, pnum: int) -> int:
    """Which group along mesh axes ``group_dims`` processor ``pnum`` is in (groups are
    numbered row-major over the other mesh axes)."""
    mesh_shape = convert_to_shape(mesh_shape)
    group_dims = _check_axes(mesh_shape.sizes, group_dims, "pnum_to_group")
    coord = pnum_to_processor_coordinates(mesh_shape, pnum)
    rest = Shape([d for i, d in enumerate(mesh_shape.dims) if i not in group_dims])
    return processor_coordinates_to_pnum(rest, [c for i, c in enumerate(coord)
                                                if i not in group_dims])


def processor_groups(mesh_shape, group_dims) -> list:
    """The groups of processors that differ only along mesh axes ``group_dims``,
    in group order, members in increasing processor number."""
    mesh_shape = convert_to_shape(mesh_shape)
    group_dims = _check_axes(mesh_shape.sizes, group_dims, "processor_groups")
    groups = []
    for pnum in range(mesh_shape.size):
        g = pnum_to_group(mesh_shape, group_dims, pnum)
        while len(groups) <= g:
            groups.append([])
        groups[g].append(pnum)
    return groups


def pnum_to_processor_coordinates_nd(mesh_shape, pnum: int, device_assignment) -> list:
    """The physical coordinates of replica ``pnum`` in a TPU ``DeviceAssignment``."""
    del mesh_shape  # as in mtf: the device assignment alone decides
    return list(device_assignment.coordinates(pnum, 0))


def processor_coordinates_to_pnum_map_nd(mesh_shape, logical_to_physical, device_assignment):
    """For each logical processor, the replica whose TPU core sits at its physical
    coordinates ``logical_to_physical[p]`` (mtf's map for n-d TPU meshes)."""
    hw = [int(n) for n in device_assignment.topology.mesh_shape]
    replica_at = [-1] * device_assignment.num_replicas
    for replica in range(device_assignment.num_replicas):
        x, y, z = list(device_assignment.coordinates(replica, 0))[:3]
        replica_at[x + y * hw[0] + z * hw[0] * hw[1]] = replica
    return [replica_at[c[0] + c[1] * mesh_shape[0]] for c in logical_to_physical]


def tensor_dim_to_mesh_dim_size(layout, mesh_shape, tensor_dim) -> int:
    """How many ways ``layout`` splits ``tensor_dim`` on a mesh of ``mesh_shape`` (1 if not)."""
    from namedmesh.mesh.layout_rules import convert_to_layout_rules
    rules = convert_to_layout_rules(layout)
    mesh_shape = convert_to_shape(mesh_shape)
    mesh_name = rules.mesh_dim_name(convert_to_dimension(tensor_dim).name)
    if mesh_name is None or mesh_name not in mesh_shape:
        return 1
    return mesh_shape[mesh_name].size


def tensor_dim_to_size_per_split(layout, mesh_shape, tensor_dim) -> int:
    """The size of each processor's piece of ``tensor_dim`` under ``layout``."""
    tensor_dim = convert_to_dimension(tensor_dim)
    n = tensor_dim_to_mesh_dim_size(layout, mesh_shape, tensor_dim)
    if tensor_dim.size % n:
        raise LayoutError("tensor dim %s is split %d ways by layout %r on mesh %r, which does "
                          "not divide it" % (tensor_dim, n, str(layout), str(mesh_shape)))
    return tensor_dim.size // n
