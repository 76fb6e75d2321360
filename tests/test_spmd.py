"""The single-trace SPMD program of the tf.distribute executor (namedmesh.lowering.spmd) and
the program identity of nested function graphs in the collective keys."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy
from namedmesh.lowering import collective_keys as keys
from workers.scenarios import probe, probe_input, probe_layout


def _grad_program(mesh, traces):
    """A program with every kind of collective forward and backward: the probe's
    all-to-alls, all-reduces and all-gathers, a shift (permute), and the gradient of all
    of it w.r.t. the input."""
    a, b = mesh.shape.sizes

    def program(x):
        traces.append(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            moved, total, top, other = probe(mesh, x)
            t = nm.import_tf_tensor(mesh, x, "eu:%d;g:%d;fu:%d;h:%d;d:2" % (b, b, a, a))
            shifted = nm.export_to_tf_tensor(nm.shift(t, 1, "g", wrap=True))
            objective = tf.reduce_sum(moved * moved) + tf.reduce_sum(total) + \
                tf.reduce_sum(top) + tf.reduce_sum(other) + tf.reduce_sum(shifted * shifted)
        return (moved, total, top, other, shifted, tape.gradient(objective, x))

    return program


def _placement_results(mesh_shape):
    mesh = nm.Mesh(mesh_shape, probe_layout(mesh_shape))
    return [v.numpy() for v in _grad_program(mesh, [])(tf.constant(probe_input(mesh_shape)))]


@pytest.mark.parametrize("mesh_shape", ["a:1;b:2", "a:2;b:2", "a:2;b:4"])
def test_one_trace_whatever_the_number_of_processors(mesh_shape):
    """mesh.run traces the program once for 2, 4 or 8 replicas (counted, not timed), and
    its results and input gradient equal the placement executor's."""
    n = nm.convert_to_shape(mesh_shape).size
    mesh = nm.Mesh(mesh_shape, probe_layout(mesh_shape), strategy=strategy(n))
    traces = []
    program = _grad_program(mesh, traces)
    got = mesh.run(program, tf.constant(probe_input(mesh_shape)), reduce="sum")
    assert len(traces) == 1 and mesh.spmd_fallback is None
    want = _placement_results(mesh_shape)
    for g, w in zip(got[:-1], want[:-1]):    # values: the same on every replica, summed
        np.testing.assert_array_equal(g.numpy(), n * w)
    np.testing.assert_allclose(got[-1].numpy(), want[-1], rtol=1e-6)  # gradients sum to it



def test_every_replica_calls_one_function_body():
    """The step's graph holds one call per replica to the same SPMD function, kept as a
    function (``_noinline``) rather than N inlined copies."""
    mesh = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=strategy(4))
    program = _grad_program(mesh, [])
    graph = mesh.function(program).get_concrete_function(
        tf.constant(probe_input("a:2;b:2"))).graph
    calls = [op for op in graph.get_operations()
             if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
    names = {op.get_attr("f").name for op in calls}
    assert len(calls) == 4 and len(names) == 1
    body = graph._functions[names.pop()].cached_definition
    assert body.attr["_noinline"].b
    assert sorted(op.device.split(":")[-1] for op in calls) == ["0", "1", "2", "3"]

def test_per_replica_traces_when_asked():
    mesh = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=strategy(4), spmd=False)
    traces = []
    got = mesh.run(_grad_program(mesh, traces), tf.constant(probe_input("a:2;b:2")))
    assert len(traces) == 4
    np.testing.assert_array_equal(got[0].numpy(), _placement_results("a:2;b:2")[0])


def test_groups_with_different_rank_orders():
    """logical_to_physical [0, 1, 3, 2]: along b the group [0, 1] ranks in mesh order and
    [2, 3] reversed, so the rank order is looked up from the replica-id tensor; the results
    equal those of per-replica traces bitwise."""
    x = tf.constant(probe_input("a:2;b:2"))
    results = []
    for spmd in (True, False):
        mesh = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=strategy(4),
                       logical_to_physical=[0, 1, 3, 2], spmd=spmd)
        traces = []
        results.append([v.numpy() for v in mesh.run(_grad_program(mesh, traces), x,
                                                     reduce="sum")])
        assert len(traces) == (1 if spmd else 4)
    assert mesh.impl.group_table((mesh.mesh_axis("b"),)).uniform_order is None
    want = _placement_results("a:2;b:2")
    for got, per_replica, w in zip(results[0], results[1], want):
        np.testing.assert_array_equal(got, per_replica)
    for got, w in zip(results[0][:-1], want[:-1]):
        np.testing.assert_array_equal(got, 4 * w)
    np.testing.assert_allclose(results[0][-1], want[-1], rtol=1e-6)


def test_each_replica_reads_and_writes_its_own_variable_component():
    """A mirrored variable whose components were made to differ: in the one trace each
    replica still reads (and differentiates, and assigns) its own component."""
    s = strategy(4)
    mesh = nm.Mesh("x:4", "", strategy=s)
    with s.scope():
        v = tf.Variable(tf.zeros([3]))
        counter = tf.Variable(0.0, synchronization=tf.VariableSynchronization.ON_READ,
                              aggregation=tf.VariableAggregation.SUM)
    for r, component in enumerate(v.values):
        component.assign(tf.fill([3], float(r + 1)))
    shared = tf.Variable(1.0)   # read (not written) by every replica: stays one program
    traces = []

    def program(x):
        traces.append(1)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(v * x) * shared
        counter.assign_add(tf.reduce_sum(v))
        total = nm.export_to_tf_tensor(nm.reduce_sum(
            nm.import_tf_tensor(mesh, tf.reshape(tf.reduce_sum(v), [1]) * tf.ones([4]),
                                "s:4"), reduced_dim="s"))
        return y, tape.gradient(y, v), total

    x = tf.constant([1.0, 2.0, 3.0])
    y, grad, total = mesh.run(program, x, reduce="sum")
    assert len(traces) == 1 and mesh.spmd_fallback is None
    assert float(y) == sum(6.0 * (r + 1) for r in range(4))      # sum_r (r+1) * (1+2+3)
    np.testing.assert_array_equal(grad.numpy(), 4 * x.numpy())
    # the split dim s: processor p holds element p of its own component's sum, 3 * (p + 1)
    assert float(total) == 4 * sum(3.0 * (p + 1) for p in range(4))
    assert [float(c.numpy()) for c in counter.values] == [3.0 * (r + 1) for r in range(4)]


def test_programs_that_synchronise_through_tf_distribute_run_per_replica():
    """A mirrored variable updated in replica context synchronises with merge_call, which
    needs per-replica traces: the single trace is abandoned and the program runs that way."""
    s = strategy(4)
    mesh = nm.Mesh("x:4", "s:x", strategy=s)
    with s.scope():
        v = tf.Variable(0.0, aggregation=tf.VariableAggregation.SUM)
    traces = []

    def program(x):
        traces.append(1)
        total = nm.export_to_tf_tensor(nm.reduce_sum(nm.import_tf_tensor(mesh, x, "s:4"),
                                                     reduced_dim="s"))
        v.assign_add(total)
        return total

    with nm.trace_collectives() as recorded:
        assert float(mesh.run(program, tf.constant([1.0, 2.0, 3.0, 4.0]))) == 10.0
    assert len(traces) == 5          # the abandoned single trace, then one per replica
    assert "merge_call" in mesh.spmd_fallback
    assert [c.numpy() for c in v.values] == [40.0] * 4
    assert recorded.count("all_reduce") == 1    # the abandoned trace's records are dropped


def test_a_shared_variable_written_by_the_program_runs_per_replica():
    """One function called by every replica that writes a variable they share would be
    serialised by TensorFlow's automatic control dependencies (and its collectives wait
    for each other forever): such a program is traced per replica."""
    mesh = nm.Mesh("x:2", "s:x", strategy=strategy(2))
    shared = tf.Variable(0.0)
    traces = []

    def program(x):
        traces.append(1)
        shared.assign_add(1.0)
        t = nm.import_tf_tensor(mesh, x, "s:2")
        return nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="s"))

    assert float(mesh.run(program, tf.constant([1.0, 2.0]))) == 3.0
    assert "writes resource" in mesh.spmd_fallback and len(traces) == 3
    assert float(shared.numpy()) == 2.0


def test_the_collective_trace_is_recorded_once():
    x = tf.constant(probe_input("a:2;b:2"))
    traces = []
    for spmd in (True, False):
        mesh = nm.Mesh("a:2;b:2", probe_layout("a:2;b:2"), strategy=strategy(4), spmd=spmd)
        with nm.trace_collectives() as recorded:
            mesh.run(lambda v: probe(mesh, v), x)
        traces.append([r.describe() for r in recorded])
    assert traces[0] == traces[1] and len(traces[0]) == 10


# -- program identity of nested function graphs --------------------------------------------
def test_nested_graphs_named_alike_are_different_programs():
    """A tf.function traced twice inside one program (a Python argument differs) makes two
    nested graphs both named ``helper``: their collectives get different programs (the
    nesting path), so different instance keys; the outer graph's positions go on."""
    seen = []

    @tf.function(autograph=False)
    def helper(x, scale):
        seen.append(keys.next_position(0))
        return x * scale

    @tf.function(autograph=False)
    def step(x):
        seen.append(keys.next_position(0))
        a = helper(x, 1.0)
        b = helper(x, 10.0)
        c = tf.cond(x > 0, lambda: helper(x, 2.0), lambda: x)   # nested two levels
        seen.append(keys.next_position(0))
        return a + b + c

    step.get_concrete_function(tf.constant(1.0))
    (outer, p0), (first, f0), (second, s0), (deep, d0), (_, p1) = seen
    assert outer == "step" and (p0, p1) == (0, 1)
    assert (first, second) == ("step/helper@0", "step/helper@1") and f0 == s0 == d0 == 0
    assert deep == "step/cond_true@2/helper@0"
    signature = ("all_reduce", "float32", "[]", "Add")
    assert keys.instance_key(first, f0, signature) != keys.instance_key(second, s0, signature)


def test_collectives_in_nested_graphs_named_alike_run_correctly():
    """End to end: the same collective (kind, shape, dtype) in two traces of one nested
    tf.function of an SPMD program; with shared keys the two calls would meet each other."""
    mesh = nm.Mesh("x:2", "s:x", strategy=strategy(2), collective_timeout=60)

    @tf.function(autograph=False)
    def summed(x, scale):
        t = nm.import_tf_tensor(mesh, x * scale, "s:2")
        return nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="s"))

    def program(x):
        return summed(x, 1.0), summed(x, 10.0)

    a, b = mesh.run(program, tf.constant([1.0, 2.0]))
    assert (float(a), float(b)) == (3.0, 30.0) and mesh.spmd_fallback is None
