"""The processor map, TensorFlow's collective rank order, collective keys, several
strategies in one process, and ``namedmesh check`` (one process, logical CPUs)."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy
from namedmesh.cli.main import main
from namedmesh.lowering import collective_keys as keys
from namedmesh.lowering.replica import ordering_tokens
from namedmesh.mesh.processor_map import (_worker_tasks, collective_rank_order, parse_device,
                                          processor_map_for_devices)
from workers.scenarios import (LINE_LAYOUT, line_input, line_program, probe, probe_input,
                               probe_layout)

W = "/job:worker/replica:0/task:%d/device:CPU:%d"


def _strategy(devices):
    return tf.distribute.MirroredStrategy(list(devices))


def _placement_probe(mesh_shape):
    mesh = nm.Mesh(mesh_shape, probe_layout(mesh_shape))
    return [v.numpy() for v in probe(mesh, tf.constant(probe_input(mesh_shape)))]


def _strategy_probe(mesh):
    shape = mesh.shape.to_string()
    return [v.numpy() for v in mesh.run(lambda x: probe(mesh, x), tf.constant(probe_input(shape)))]


def _assert_bitwise(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# -- TensorFlow's rank rule -----------------------------------------------------------------
def test_rank_order_puts_tasks_in_string_order():
    devices = [W % (t, 0) for t in range(12)]
    order = collective_rank_order(devices)
    assert order == [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]


def test_rank_order_sorts_devices_of_a_task_numerically_and_chief_first():
    devices = [W % (0, 10), W % (0, 2), "/job:chief/replica:0/task:0/device:CPU:0"]
    assert collective_rank_order(devices) == [2, 1, 0]
    assert collective_rank_order(["/cpu:3", "/cpu:2", "/cpu:1", "/cpu:0"]) == [3, 2, 1, 0]


def test_rank_order_matches_the_runtime_for_shuffled_devices():
    """Ask TensorFlow itself: gather each replica's id within groups of shuffled devices."""
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    s = _strategy(["/cpu:%d" % i for i in order])
    tokens = ordering_tokens([str(parse_device("/cpu:%d" % i)) for i in order])
    groups = [[0, 1, 2, 3], [4, 5, 6, 7], [0, 2, 4, 6]]

    def replica():
        rid = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
        token = tokens[str(parse_device("/cpu:%d" % order[rid]))]
        out = []
        for key, g in enumerate(groups):
            if rid in g:
                out.append(tf.raw_ops.CollectiveGatherV2(
                    input=tf.constant([rid], tf.int32), group_size=len(g), group_key=900 + key,
                    instance_key=1, ordering_token=[token.handle], timeout_seconds=60.0))
            else:
                out.append(tf.constant([-1] * len(g), tf.int32))
        return out

    results = tf.function(lambda: s.run(replica))()
    for key, g in enumerate(groups):
        got = s.experimental_local_results(results[key])[g[0]].numpy().tolist()
        predicted = [g[i] for i in collective_rank_order(["/cpu:%d" % order[r] for r in g])]
        assert got == predicted, (g, got, predicted)


def test_parse_device_errors_name_the_device():
    with pytest.raises(nm.MeshError, match="'/job:worker/task:1'.*does not name one device"):
        parse_device("/job:worker/task:1")
    with pytest.raises(nm.MeshError, match="lists one device twice"):
        collective_rank_order(["/cpu:0", "/job:localhost/replica:0/task:0/device:CPU:0"])


def test_worker_tasks_in_numeric_order_chief_first():
    workers = {i: "h:%d" % (10 + i) for i in range(11)}  # task indices, sorted as numbers
    spec = tf.train.ClusterSpec({"chief": ["h:1"], "worker": workers})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, "worker", 3)
    assert _worker_tasks(resolver) == [("chief", 0)] + [("worker", i) for i in range(11)]


# -- any device order gives the single-process result, bitwise ----------------------------
@pytest.mark.parametrize("mesh_shape,devices", [
    ("b0:2;b1:2", [3, 2, 1, 0]),
    ("a:2;b:4", [6, 1, 7, 3, 0, 5, 2, 4]),
])
def test_any_device_order_gives_single_process_results_bitwise(mesh_shape, devices):
    mesh = nm.Mesh(mesh_shape, probe_layout(mesh_shape),
                   strategy=_strategy("/cpu:%d" % d for d in devices))
    _assert_bitwise(_strategy_probe(mesh), _placement_probe(mesh_shape))


def test_moe2d_on_reversed_devices_matches_placement():
    from moe_cases import Case, forward_and_grads, run_case
    case = Case("v2_small")
    y, loss, grads, _ = run_case(case, executor="placement")
    mesh = nm.Mesh(case.call["mesh_shape"], case.call["layout"],
                   strategy=_strategy(["/cpu:%d" % d for d in (3, 2, 1, 0)]))
    layer = case.make_layer()
    layer.build(case.shape, mesh)

    def replica(x, r):
        out = forward_and_grads(case, layer, mesh, x, r)
        return out[0] / 4, out[1] / 4, out[2]

    got_y, got_loss, got_grads = mesh.run(replica, tf.constant(case.data["x"]),
                                          tf.constant(case.data["r"]), reduce="sum")
    np.testing.assert_allclose(got_y.numpy(), y, atol=1e-6, rtol=0)
    assert abs(float(got_loss) - loss) <= 1e-6
    for name, g in grads.items():
        np.testing.assert_allclose(got_grads[name].numpy(), g, atol=1e-6, rtol=0, err_msg=name)


def test_logical_to_physical_permutation_on_mirrored():
    l2p = [2, 0, 3, 1]
    mesh = nm.Mesh("b0:2;b1:2", probe_layout("b0:2;b1:2"), strategy=strategy(4),
                   logical_to_physical=l2p)
    assert mesh.processor_map.replica_of_processor == tuple(l2p)
    assert str(mesh.processor_map.device_of_processor(0)).endswith("CPU:2")
    assert "placed by logical_to_physical" in mesh.describe_processors()
    _assert_bitwise(_strategy_probe(mesh), _placement_probe("b0:2;b1:2"))


# -- several meshes and strategies in one process ----------------------------------------------
def test_two_meshes_on_two_strategies_in_one_process():
    first = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=_strategy(["/cpu:0", "/cpu:1",
                                                                              "/cpu:2", "/cpu:3"]))
    second = nm.Mesh("c:2;d:2", probe_layout("c:2;d:2"), strategy=_strategy(["/cpu:7", "/cpu:6",
                                                                               "/cpu:5", "/cpu:4"]))
    for _ in range(2):  # alternate: keys of one do not disturb the other
        _assert_bitwise(_strategy_probe(second), _placement_probe("c:2;d:2"))
        _assert_bitwise(_strategy_probe(first), _placement_probe("a:2;b:2"))


def test_two_meshes_on_one_strategy_in_one_program():
    s = strategy(4)
    grid = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=s)
    line = nm.Mesh("x:4", LINE_LAYOUT, strategy=s)
    x, y = tf.constant(probe_input("a:2;b:2")), tf.constant(line_input(4))

    def both(x, y):
        return probe(grid, x) + line_program(line, y)

    got = [v.numpy() for v in grid.run(both, x, y)]
    single_line = nm.Mesh("x:4", LINE_LAYOUT)
    want = _placement_probe("a:2;b:2") + [v.numpy() for v in line_program(single_line, y)]
    _assert_bitwise(got, want)


def test_one_program_traced_for_two_shapes():
    """A retrace with other shapes gets other instance keys (a reused key with another
    shape would make TensorFlow abort every collective of the process)."""
    mesh = nm.Mesh("x:4", LINE_LAYOUT, strategy=strategy(4))

    def program(x):
        return line_program(mesh, x)

    for n in (4, 8, 4):
        x = np.arange(n * n, dtype=np.float32).reshape(n, n)
        _, total, moved = mesh.run(program, tf.constant(x))
        np.testing.assert_array_equal(total.numpy(), x.sum(1))
        np.testing.assert_array_equal(moved.numpy(), x)


# -- keys ------------------------------------------------------------------------------------
def test_keys_are_stable_values_of_what_the_collective_is():
    devices = [W % (0, 0), W % (1, 0)]
    signature = ("all_to_all", "float32", "[2, 4]", "")
    k = keys.collective_keys(devices, ["b1"], "step", 3, signature)
    # pinned: any process, any build order, any PYTHONHASHSEED derives these numbers
    assert (k.group_key, k.instance_key) == (275441674, 860805001)
    assert k.op_name == "namedmesh_g275441674_i860805001"
    other = keys.collective_keys(devices, ["b0"], "step", 3, signature)
    assert other.group_key != k.group_key
    later = keys.collective_keys(devices, ["b1"], "step", 4, signature)
    assert later.group_key == k.group_key and later.instance_key != k.instance_key
    assert keys.GROUP_KEY_MIN <= k.group_key < keys.KEY_LIMIT


def test_program_names_drop_tensorflow_counters():
    class G:
        name = "__inference_step_68"
    assert keys.program_name(G()) == "step"
    G.name = "train_function_3_12"
    assert keys.program_name(G()) == "train_function"


def test_group_key_collision_is_reported_with_both_groups():
    seen = {}
    for i in itertools.count():
        devices = ("/job:collide/replica:0/task:%d/device:CPU:0" % i,)
        key = keys._stable_hash("group|%s|%s" % (devices[0], "z"), keys.GROUP_KEY_MIN,
                                keys.KEY_LIMIT)
        if key in seen:
            first = seen[key]
            break
        seen[key] = devices
    keys.collective_keys(first, ["z"], "p", 0, ("k",))
    with pytest.raises(nm.CollectiveError, match=r"group key %d .*%s.*%s" % (
            key, first[0].replace("/", ".")[:12], "rename a mesh dim")):
        keys.collective_keys(devices, ["z"], "p", 0, ("k",))


# -- Mesh options --------------------------------------------------------------------------------
def test_mesh_options_are_checked():
    with pytest.raises(nm.MeshError, match="collective_timeout must be a positive number.*-1"):
        nm.Mesh("x:2", "", strategy=strategy(2), collective_timeout=-1)
    with pytest.raises(nm.MeshError, match=r"permutation of 0..3.*\[0, 0, 1, 2\]"):
        nm.Mesh("x:4", "", strategy=strategy(4), logical_to_physical=[0, 0, 1, 2])
    with pytest.raises(nm.MeshError, match="'auto' needs a TPU topology"):
        nm.Mesh("x:4", "", strategy=strategy(4), logical_to_physical="auto")
    with pytest.raises(nm.MeshError, match=r"x:8 has 8 processors but the strategy "
                                           r"MirroredStrategy has 4 replicas"):
        nm.Mesh("x:8", "", strategy=strategy(4))
    with pytest.raises(nm.MeshError, match=r"device\(s\) .*CPU:1.* more than one processor"):
        processor_map_for_devices(nm.convert_to_shape("x:2"), ["/cpu:1", "/job:localhost/cpu:1"])


def test_placement_map_and_describe():
    mesh = nm.Mesh("x:2;y:2", "", devices=["/cpu:3", "/cpu:2", "/cpu:1", "/cpu:0"])
    text = mesh.describe_processors()
    assert "mesh x:2;y:2 on placement" in text and "  replica  " not in text
    assert str(mesh.processor_map.device_of_processor(0)).endswith("CPU:3")


# -- namedmesh check ------------------------------------------------------------------------------
def test_check_command_on_reversed_devices(capsys):
    assert main(["check", "--mesh", "b0:2;b1:2", "--devices", "/cpu:3,/cpu:2,/cpu:1,/cpu:0"]) == 0
    out = capsys.readouterr().out
    assert "mesh b0:2;b1:2 on MirroredStrategy" in out
    assert "along b1: [0, 1] ranks [1, 0]; [2, 3] ranks [3, 2]" in out
    assert out.count(" ok ") == 6 and "all collectives agree" in out


def test_check_collectives_reports_a_mismatch():
    """A processor map that lies about TensorFlow's ranks is caught by the check."""
    mesh = nm.Mesh("x:4", "", strategy=_strategy(["/cpu:3", "/cpu:2", "/cpu:1", "/cpu:0"]))
    pmap = mesh.impl.processor_map

    class MeshOrderRanks(type(pmap)):
        def rank_order(self, group):  # what namedmesh assumed before it knew TF's rule
            return tuple(range(len(group)))

    mesh.impl.processor_map = MeshOrderRanks(pmap.mesh_dims, pmap.replica_of_processor,
                                             pmap.devices, pmap.executor,
                                             local_replicas=pmap.local_replicas)
    report = nm.check_collectives(mesh)
    assert not report.ok and "MISMATCH" in report.render()
    assert {r.kind for r in report.results if not r.ok} == {"all_gather", "all_to_all"}


def test_check_command_bad_options_one_line(capsys):
    assert main(["check", "--mesh", "b0:2;b1:2", "--devices", "/cpu:0,/cpu:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 processors but 2 devices" in err[0]
