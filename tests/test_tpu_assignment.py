"""TPU placement without a TPU: mtf's logical-to-physical order (against mtf's own results),
the 1-core-per-chip topologies mtf does not handle, the DeviceAssignment for TPUStrategy
and the group assignments built from it."""
import itertools
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.lowering.replica import tpu_group_assignment
from namedmesh.mesh.tpu_topology import (auto_logical_to_physical, core_coordinates, make_topology,
                                         neighbour_hops, physical_number, physical_shape_3d,
                                         processor_map_for_device_assignment, ring_2d,
                                         tpu_device_assignment)

MTF = json.loads((pathlib.Path(__file__).parent / "data" / "tpu" /
                  "mtf_logical_to_physical.json").read_text())


@pytest.mark.parametrize("case", MTF["cases"], ids=lambda c: "%s-%s" % (
    "x".join(map(str, c["physical_shape"])), "x".join(map(str, c["logical_shape"]))))
def test_equals_mtf_auto_logical_to_physical_tpu(case):
    assert auto_logical_to_physical(case["logical_shape"], case["physical_shape"]) == \
        case["logical_to_physical"]


def test_shapes_mtf_does_not_handle():
    for case in MTF["not_handled"]:
        got = auto_logical_to_physical(case["logical_shape"], case["physical_shape"])
        n = int(np.prod(case["physical_shape"]))
        assert sorted(got) == list(range(n))
        if "logical_to_physical" in case:  # mtf's fallback: lexicographic
            assert got == case["logical_to_physical"]
        else:  # one core per chip: mtf returns a function object, not a permutation
            assert case["mtf_returns"] == "function"


def _is_ring(cells):
    steps = zip(cells, cells[1:] + cells[:1])
    return all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in steps)


@pytest.mark.parametrize("rows,cols", [(2, 2), (2, 4), (4, 4), (8, 4), (4, 8), (8, 8)])
def test_ring_2d_visits_every_chip_through_neighbours(rows, cols):
    ring = ring_2d(rows, cols)
    assert sorted(ring) == [(i, j) for i in range(rows) for j in range(cols)]
    assert _is_ring(ring)


@pytest.mark.parametrize("topology", [[2, 2, 1, 2], [4, 4, 1, 2], [2, 2, 4, 1], [4, 4, 4, 1],
                                      [4, 2, 2, 1], [8, 8, 1, 1]])
def test_core_numbers_and_coordinates_are_inverse_and_rows_are_neighbours(topology):
    n = int(np.prod(topology))
    coords = [core_coordinates(p, topology) for p in range(n)]
    assert sorted(coords) == sorted(itertools.product(*[range(s) for s in topology]))
    assert [physical_number(c, topology) for c in coords] == list(range(n))
    rows, cols, cores = physical_shape_3d(topology)
    for row in range(rows - 1):  # consecutive rows of the grid are neighbouring chips
        a = core_coordinates(row * cols * cores, topology)
        b = core_coordinates((row + 1) * cols * cores, topology)
        assert neighbour_hops(a, b, topology) == 1


ONE_CORE_PER_CHIP = [([2, 2, 1, 1], [2, 2]), ([2, 2, 1, 1], [4]), ([2, 2, 2, 1], [2, 4]),
                     ([4, 4, 1, 1], [4, 4]), ([4, 4, 1, 1], [2, 8]), ([2, 2, 4, 1], [4, 4]),
                     ([4, 4, 4, 1], [4, 16]), ([4, 4, 4, 1], [8, 8]), ([4, 4, 4, 1], [4, 4, 4]),
                     ([4, 4, 8, 1], [8, 2, 8]), ([4, 4, 1, 2], [2, 16]), ([8, 8, 1, 2], [4, 4, 8])]


@pytest.mark.parametrize("topology,mesh", ONE_CORE_PER_CHIP)
def test_groups_of_the_last_mesh_dim_are_neighbouring_chips(topology, mesh):
    """Along the last mesh dim, each group is a ring of neighbouring chips (or the
    cores of one chip) that fills a compact box of the slice."""
    order = auto_logical_to_physical(mesh, topology)
    n = int(np.prod(topology))
    assert sorted(order) == list(range(n))
    names = ";".join("m%d:%d" % (i, s) for i, s in enumerate(mesh))
    geometry = nm.Mesh(names, "", devices=[""] * n)
    last = "m%d" % (len(mesh) - 1)
    for group in geometry.groups([last]):
        cores = [core_coordinates(order[p], topology) for p in group]
        hops = [neighbour_hops(a, b, topology) for a, b in zip(cores, cores[1:])]
        assert max(hops) <= 1, (group, cores)
        chips = {c[:3] for c in cores}
        extent = [max(c[a] for c in chips) - min(c[a] for c in chips) + 1 for a in range(3)]
        assert int(np.prod(extent)) == len(chips), (group, cores)


def test_identity_order_would_not_be_neighbouring():
    """What the default (identity) placement gives on a 4x4x4 v4 slice: groups of the last
    dim of an 8x8 mesh span two rows of x and z-layers apart; the auto order does not."""
    topology, mesh = [4, 4, 4, 1], [8, 8]
    geometry = nm.Mesh("m0:8;m1:8", "", devices=[""] * 64)

    def worst_hop(order):
        worst = 0
        for group in geometry.groups(["m1"]):
            cores = [core_coordinates(order[p], topology) for p in group]
            worst = max([worst] + [neighbour_hops(a, b, topology)
                                   for a, b in zip(cores, cores[1:])])
        return worst

    assert worst_hop(auto_logical_to_physical(mesh, topology)) == 1
    assert worst_hop(list(range(64))) > 1


def test_device_assignment_for_tpu_strategy_places_processor_p_as_replica_p():
    """v3-32 (4x4 chips, 2 cores each), mesh b0:4;b1:8: replica p runs on the core mtf's
    order gives processor p, and the group assignments are the mesh groups."""
    topology = make_topology([4, 4, 1, 2])
    assignment = tpu_device_assignment(topology, "b0:4;b1:8")
    assert isinstance(assignment, tf.tpu.experimental.DeviceAssignment)
    assert assignment.num_replicas == 32 and assignment.num_cores_per_replica == 1
    mtf = next(c["logical_to_physical"] for c in MTF["cases"]
               if c["physical_shape"] == [4, 4, 1, 2] and c["logical_shape"] == [4, 8])
    for p, pnum in enumerate(mtf):  # mtf numbers cores (y, x, core) lexicographically
        y, rest = divmod(pnum, 4 * 2)
        x, core = divmod(rest, 2)
        assert assignment.coordinates(p, 0) == (x, y, 0, core)
    mesh = nm.Mesh("b0:4;b1:8", "", devices=[""] * 32)
    pmap = processor_map_for_device_assignment(mesh.shape, assignment)
    assert pmap.is_identity
    assert pmap.replica_groups(mesh.groups(["b1"])) == mesh.groups(["b1"])
    assert len({assignment.host_device(p) for p in range(32)}) == 4  # four hosts


def test_group_assignments_from_tensorflows_own_device_assignment():
    """With TensorFlow's default DeviceAssignment and logical_to_physical="auto", each
    processor is the replica on its core, and group assignments use those replica ids."""
    topology = make_topology([2, 2, 4, 1], chips_per_task=(2, 2, 1))
    assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=16)
    mesh = nm.Mesh("b0:4;b1:4", "", devices=[""] * 16)
    pmap = processor_map_for_device_assignment(mesh.shape, assignment, "auto")
    order = auto_logical_to_physical([4, 4], [2, 2, 4, 1])
    for p in range(16):
        replica = pmap.replica_of_processor[p]
        assert assignment.coordinates(replica, 0) == core_coordinates(order[p], [2, 2, 4, 1])
    groups = pmap.replica_groups(mesh.groups(["b1"]))
    assert sorted(r for g in groups for r in g) == list(range(16))
    assert groups[0] == [pmap.replica_of_processor[p] for p in (0, 1, 2, 3)]
    assert "core (x,y,z,c)" in pmap.describe()


def test_tpu_group_assignment_of_a_mesh_uses_its_processor_map():
    mesh = nm.Mesh("x:2;y:2", "", devices=[""] * 4, logical_to_physical=[3, 2, 1, 0])
    # the placement map is the identity over the permuted devices
    assert tpu_group_assignment(mesh, [1]) == [[0, 1], [2, 3]]
    topology = make_topology([2, 1, 1, 2], chips_per_task=(2, 1, 1))
    assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=4)
    pmap = processor_map_for_device_assignment(mesh.shape, assignment, [3, 2, 1, 0])
    assert pmap.replica_groups(mesh.groups([1])) == [
        [pmap.replica_of_processor[0], pmap.replica_of_processor[1]],
        [pmap.replica_of_processor[2], pmap.replica_of_processor[3]]]
    assert sorted(pmap.replica_of_processor) == [0, 1, 2, 3] and not pmap.is_identity


def test_tpu_errors_name_both_sides():
    topology = make_topology([4, 4, 1, 2])
    with pytest.raises(nm.MeshError, match=r"mesh \[4, 4\] has 16 processors but the TPU "
                                           r"topology \[4, 4, 1, 2\] has 32 cores"):
        tpu_device_assignment(topology, "b0:4;b1:4")
    with pytest.raises(nm.MeshError, match="must be 'auto', None or a permutation, got 'ring'"):
        tpu_device_assignment(topology, "b0:4;b1:8", "ring")
    with pytest.raises(nm.MeshError, match=r"32 cores \[8, 4\]|cannot fill"):
        auto_logical_to_physical([3, 8], [4, 4, 1, 2])
    with pytest.raises(nm.MeshError, match=r"\[x, y, z, cores_per_chip\].*\[4, 4\]"):
        make_topology([4, 4])
