"""TPU placement: which core runs which mesh processor.

On a TPU pod slice, a collective along one mesh dim is fast only if the
processors of each group sit on neighbouring chips.  mesh-tensorflow's
``SimdMeshImpl`` takes a ``logical_to_physical`` permutation for that, and
``auto_logical_to_physical_tpu`` computes one from the slice's shape.  This
module does the same for TPUStrategy:

* ``auto_logical_to_physical(logical_shape, physical_shape)``: mtf's algorithm.
  The *physical* order numbers the cores of a 3-D grid ``[rows, cols, cores]``
  of chips lexicographically (``pnum = (row * cols + col) * cores + core``).
  The first mesh dim picks a rectangular tile of chips (tiles follow a ring
  over the grid), the other dims place processors inside the tile, the last
  dim fastest and on the cores of one chip first.
* ``physical_shape_3d(topology_shape)``: a TPU topology ``[x, y, z, cores]``
  as that grid, ``[y * z, x, cores]`` (mtf's folding of a 4-D topology).
* ``core_coordinates(pnum, topology_shape)``: a physical number as the core's
  ``(x, y, z, core)`` in the topology.
* ``tpu_device_assignment(topology, mesh_shape)``: the
  ``tf.tpu.experimental.DeviceAssignment`` for ``TPUStrategy`` that runs
  processor ``p`` as replica ``p`` on core ``logical_to_physical[p]``; group
  assignments are then the mesh groups themselves.
* ``make_topology(topology_shape)``: a ``tf.tpu.experimental.Topology`` of a
  full slice built without a TPU (to plan and test device assignments).

Where namedmesh differs from mtf 0.1.21 (it does what mtf means):

* one core per chip (TPU v4 and later; topology ``[x, y, z, 1]``): mtf only
  handles 2 cores per chip and otherwise returns its inner function instead of
  a permutation; here every ``cores`` value works, with the same tiling.
* ``z > 1``: the rows of the grid walk the ``(y, z)`` plane as a snake
  (``y`` forwards on even ``z``, backwards on odd ``z``) so that consecutive
  rows are neighbouring chips; for ``z == 1`` this is mtf's ``row = y``.
* a mesh whose trailing dims hold fewer processors than a chip has cores (mtf
  divides by zero): the leading dims are merged first.
* shapes mtf does not tile (rows or cols not powers of 2) keep mtf's fallback,
  the lexicographic order.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from namedmesh.errors import MeshError


def _product(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def ring_2d(rows: int, cols: int) -> List[Tuple[int, int]]:
    """The chips of a ``rows x cols`` grid in ring order (mtf's ``_ring_2d``).

    For even ``rows``: along row 0, back along row 1 (skipping column 0), ...,
    then up column 0, so that every step, and the last back to the first, moves
    to a neighbour.  One row or column: in order.  Odd ``rows``: column-major.
    """
    if rows == 1:
        return [(0, j) for j in range(cols)]
    if cols == 1:
        return [(i, 0) for i in range(rows)]
    if rows % 2:
        return [(k % rows, k // rows) for k in range(rows * cols)]
    ring = [(0, 0)]
    for pair in range(rows // 2):
        ring.extend((2 * pair, j) for j in range(1, cols))
        ring.extend((2 * pair + 1, j) for j in range(cols - 1, 0, -1))
    ring.extend((i, 0) for i in range(rows - 1, 0, -1))
    return ring


def physical_shape_3d(topology_shape: Sequence[int]) -> List[int]:
    """``[x, y, z, cores]`` -> ``[y * z, x, cores]``: rows, columns, cores per chip."""
    shape = [int(s) for s in topology_shape]
    if len(shape) == 3:
        return shape
    if len(shape) != 4 or min(shape) < 1:
        raise MeshError("a TPU topology shape is [x, y, z, cores_per_chip] (or a physical grid "
                        "[rows, cols, cores_per_chip]); got %s" % (list(topology_shape),))
    x, y, z, cores = shape
    return [y * z, x, cores]


def _tile_coordinates(logical: List[int], rows: int, cols: int,
                      cores: int) -> List[Tuple[int, int, int]]:
    """(row, col, core) of every logical processor (row-major) on a rows x cols x cores grid."""
    n = _product(logical)
    if not logical:
        return [(0, 0, 0)]
    if len(logical) == 1:
        ring = ring_2d(rows, cols)
        return [ring[p // cores] + (p % cores,) for p in range(n)]
    num_tiles = logical[0]
    tile_chips = n // num_tiles // cores
    if tile_chips < 1:  # the trailing dims fill less than a chip: merge the leading two
        return _tile_coordinates([logical[0] * logical[1]] + logical[2:], rows, cols, cores)
    if len(logical) == 2 and tile_chips == rows:
        tile_rows, tile_cols = tile_chips, 1
    elif len(logical) == 2 and tile_chips == cols:
        tile_rows, tile_cols = 1, tile_chips
    else:  # as square as fits: 2**(log2(chips) // 2) rows, at least chips / cols
        tile_rows = 2 ** ((tile_chips.bit_length() - 1) // 2)
        tile_rows = max(min(tile_rows, rows), tile_chips // cols)
        tile_cols = tile_chips // tile_rows
    inside = _tile_coordinates(logical[1:], tile_rows, tile_cols, cores)
    tiles = ring_2d(rows // tile_rows, cols // tile_cols)
    per_tile = tile_rows * tile_cols * cores
    out = []
    for p in range(n):
        tile_row, tile_col = tiles[p // per_tile]
        row, col, core = inside[p % per_tile]
        out.append((tile_row * tile_rows + row, tile_col * tile_cols + col, core))
    return out


def auto_logical_to_physical(logical_shape: Sequence[int],
                             physical_shape: Sequence[int]) -> List[int]:
    """mtf's ``auto_logical_to_physical_tpu``: ``out[p]`` is the physical core
    number of mesh processor ``p``.

    logical_shape: the mesh sizes, e.g. ``[4, 8]``.
    physical_shape: ``[rows, cols, cores]`` or a topology ``[x, y, z, cores]``.
    """
    for what, sizes in (("logical_shape", logical_shape), ("physical_shape", physical_shape)):
        if isinstance(sizes, (str, bytes)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                for s in sizes):
            raise MeshError("auto_logical_to_physical: %s must be a list of positive integers, "
                            "got %r" % (what, sizes))
    physical = physical_shape_3d(physical_shape)
    logical = [int(s) for s in logical_shape]
    if _product(logical) != _product(physical):
        raise MeshError("a mesh of %d processors %s cannot fill a TPU slice of %d cores %s; the "
                        "mesh size must equal the number of cores"
                        % (_product(logical), logical, _product(physical), list(physical_shape)))
    rows, cols, cores = physical
    if not (_is_power_of_two(rows) and _is_power_of_two(cols)):
        return list(range(_product(physical)))  # mtf's fallback: lexicographic
    coords = _tile_coordinates([s for s in logical if s != 1], rows, cols, cores)
    return [(row * cols + col) * cores + core for row, col, core in coords]


def core_coordinates(pnum: int, topology_shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """``(x, y, z, core)`` of physical core ``pnum`` (see ``physical_shape_3d``)."""
    x_size, y_size, z_size, cores = [int(s) for s in topology_shape]
    cols = x_size
    core = pnum % cores
    chip = pnum // cores
    row, col = divmod(chip, cols)
    z, y = divmod(row, y_size)
    if z % 2:  # snake through the (y, z) plane: rows r and r + 1 are neighbours
        y = y_size - 1 - y
    if not 0 <= z < z_size:
        raise MeshError("physical core %d is outside a topology of shape %s"
                        % (pnum, list(topology_shape)))
    return (col, y, z, core)


def physical_number(coordinates: Sequence[int], topology_shape: Sequence[int]) -> int:
    """Inverse of ``core_coordinates``."""
    x, y, z, core = [int(c) for c in coordinates]
    x_size, y_size, _, cores = [int(s) for s in topology_shape]
    if z % 2:
        y = y_size - 1 - y
    row = z * y_size + y
    return (row * x_size + x) * cores + core


# -- topologies and device assignments -----------------------------------------------------
def make_topology(topology_shape: Sequence[int], chips_per_task: Sequence[int] = (2, 2, 1)):
    """A ``tf.tpu.experimental.Topology`` of a full slice, built without a TPU.

    topology_shape: ``[x, y, z, cores_per_chip]``, e.g. ``[4, 4, 1, 2]`` (v3-32).
    chips_per_task: the block of chips one host drives (2x2x1 on v2/v3/v4 hosts).
    Tasks are numbered over the blocks x fastest; a task's devices are its
    chips (x fastest) and their cores.
    """
    shape = [int(s) for s in topology_shape]
    if len(shape) != 4 or min(shape) < 1:
        raise MeshError("a TPU topology shape is [x, y, z, cores_per_chip]; got %s"
                        % (list(topology_shape),))
    block = [min(int(b), s) for b, s in zip(chips_per_task, shape[:3])]
    if any(s % b for s, b in zip(shape[:3], block)):
        raise MeshError("chips_per_task %s does not tile the topology %s"
                        % (list(chips_per_task), shape))
    tasks = []
    for bz in range(0, shape[2], block[2]):
        for by in range(0, shape[1], block[1]):
            for bx in range(0, shape[0], block[0]):
                devices = []
                for z in range(bz, bz + block[2]):
                    for y in range(by, by + block[1]):
                        for x in range(bx, bx + block[0]):
                            devices.extend([x, y, z, c] for c in range(shape[3]))
                tasks.append(devices)
    return tf.tpu.experimental.Topology(mesh_shape=shape,
                                        device_coordinates=np.array(tasks, dtype=np.int32))


def _mesh_sizes(mesh_shape) -> List[int]:
    if isinstance(mesh_shape, (list, tuple)) and all(isinstance(s, int) for s in mesh_shape):
        return list(mesh_shape)
    from namedmesh.core.dims import convert_to_shape
    return list(convert_to_shape(mesh_shape).sizes)


def resolve_logical_to_physical(mesh_shape, topology_shape, logical_to_physical) -> List[int]:
    """``"auto"`` -> mtf's algorithm; None -> lexicographic; a list -> checked."""
    sizes = _mesh_sizes(mesh_shape)
    n = _product(sizes)
    cores = _product(topology_shape)
    if n != cores:
        raise MeshError("mesh %s has %d processors but the TPU topology %s has %d cores; "
                        "namedmesh runs one processor per core"
                        % (sizes, n, [int(s) for s in topology_shape], cores))
    if logical_to_physical is None:
        return list(range(n))
    if isinstance(logical_to_physical, str):
        if logical_to_physical != "auto":
            raise MeshError("logical_to_physical must be 'auto', None or a permutation, got %r"
                            % (logical_to_physical,))
        return auto_logical_to_physical(sizes, topology_shape)
    from namedmesh.mesh.processor_map import check_permutation
    return list(check_permutation(logical_to_physical, n, "physical core number"))


def _topology_shape(topology) -> List[int]:
    if not hasattr(topology, "mesh_shape") or not hasattr(topology, "missing_devices"):
        raise MeshError("expected a TPU Topology (what tf.tpu.experimental.initialize_tpu_system "
                        "returns, or namedmesh.mesh.tpu_topology.make_topology), got %r (%s)"
                        % (topology, type(topology).__name__))
    return [int(s) for s in topology.mesh_shape]


def tpu_device_assignment(topology, mesh_shape, logical_to_physical="auto"):
    """The ``DeviceAssignment`` that runs mesh processor ``p`` as replica ``p`` on
    physical core ``logical_to_physical[p]``; pass it to
    ``TPUStrategy(resolver, experimental_device_assignment=...)``.

    topology: what ``tf.tpu.experimental.initialize_tpu_system`` returns (or
      ``make_topology``); must be a full slice.
    mesh_shape: ``"b0:4;b1:8"``, a Shape or a list of sizes.
    logical_to_physical: ``"auto"`` (mtf's tiling), None (lexicographic) or a permutation.
    """
    shape = _topology_shape(topology)
    if np.asarray(topology.missing_devices).size:
        raise MeshError("the TPU topology %s has missing devices %s; namedmesh needs a full "
                        "slice" % (shape, np.asarray(topology.missing_devices).tolist()))
    order = resolve_logical_to_physical(mesh_shape, shape, logical_to_physical)
    cores = [[list(core_coordinates(pnum, shape))] for pnum in order]
    return tf.tpu.experimental.DeviceAssignment(topology, np.array(cores, dtype=np.int32))


def processor_map_for_device_assignment(mesh_shape, device_assignment, logical_to_physical=None,
                                        executor: str = "TPUStrategy", job: Optional[str] = None):
    """The processor map of a mesh on a TPU device assignment.

    With ``logical_to_physical=None`` processor ``p`` is replica ``p`` (a device
    assignment from ``tpu_device_assignment`` already places it).  Otherwise
    processor ``p`` is the replica on core ``logical_to_physical[p]``.
    """
    from namedmesh.mesh.processor_map import DeviceName, ProcessorMap, parse_device
    da = device_assignment
    if da.num_cores_per_replica != 1:
        raise MeshError("the TPU device assignment gives each replica %d cores; a namedmesh "
                        "processor is one core (num_cores_per_replica must be 1)"
                        % da.num_cores_per_replica)
    dims = tuple((d.name, d.size) for d in mesh_shape.dims)
    n = mesh_shape.size
    if da.num_replicas != n:
        raise MeshError("mesh %s has %d processors but the TPU device assignment has %d replicas"
                        % (mesh_shape.to_string(), n, da.num_replicas))
    shape = _topology_shape(da.topology)
    coords = [tuple(int(c) for c in da.coordinates(r, 0)) for r in range(n)]
    if logical_to_physical is None:
        order = list(range(n))
    else:
        physical = resolve_logical_to_physical(mesh_shape, shape, logical_to_physical)
        replica_at = {c: r for r, c in enumerate(coords)}
        order = []
        for p, pnum in enumerate(physical):
            core = core_coordinates(pnum, shape)
            if core not in replica_at:
                raise MeshError("processor %d belongs on TPU core %s, where the device "
                                "assignment runs no replica" % (p, core))
            order.append(replica_at[core])
    devices = []
    for r in range(n):
        try:
            devices.append(parse_device(da.tpu_device(r, job=job)))
        except MeshError:
            devices.append(DeviceName(job or "worker", 0, 0, "TPU", r))
    return ProcessorMap(dims, tuple(order), tuple(devices), executor, tpu_cores=tuple(coords))


def processor_map_for_tpu_strategy(mesh_shape, strategy, logical_to_physical=None):
    """The processor map on a TPUStrategy: from its device assignment if it has one."""
    from namedmesh.mesh.processor_map import ProcessorMap, parse_device
    # TPUStrategy keeps the assignment it was given (no public accessor in TF 2.21)
    da = getattr(strategy.extended, "_device_assignment", None)
    name = type(strategy).__name__
    if da is not None:
        job = parse_device(strategy.extended.worker_devices[0]).job
        return processor_map_for_device_assignment(mesh_shape, da, logical_to_physical, name,
                                                   job=job)
    if logical_to_physical is not None:
        raise MeshError(
            "logical_to_physical needs the TPUStrategy to be built with a device assignment: "
            "TPUStrategy(resolver, experimental_device_assignment="
            "namedmesh.tpu_device_assignment(topology, %r))" % mesh_shape.to_string())
    dims = tuple((d.name, d.size) for d in mesh_shape.dims)
    devices = tuple(parse_device(d) for d in strategy.extended.worker_devices)
    return ProcessorMap(dims, tuple(range(mesh_shape.size)), devices, name)


def neighbour_hops(a: Sequence[int], b: Sequence[int], topology_shape: Sequence[int],
                   wraparound: bool = False) -> int:
    """Chip-to-chip hops between cores at ``a`` and ``b`` (``(x, y, z, core)``):
    the Manhattan distance of their chips, with torus links if ``wraparound``."""
    hops = 0
    for axis in range(3):
        d = abs(int(a[axis]) - int(b[axis]))
        if wraparound:
            d = min(d, int(topology_shape[axis]) - d)
        hops += d
    return hops


__all__ = ["auto_logical_to_physical", "core_coordinates", "make_topology", "neighbour_hops",
           "physical_number", "physical_shape_3d", "ring_2d", "tpu_device_assignment",
           "processor_map_for_device_assignment", "resolve_logical_to_physical"]
