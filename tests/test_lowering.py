"""Lowering to collectives: reshape plans, collective counts from the trace, both executors."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy  # noqa: F401  (shared MirroredStrategy cache)
from namedmesh.lowering.replica import tpu_group_assignment
from namedmesh.lowering.reshape_plan import plan_reshape



def meshes(shape, layout):
    """The same mesh on both executors."""
    n = nm.convert_to_shape(shape).size
    return [nm.Mesh(shape, layout), nm.Mesh(shape, layout, strategy=strategy(n))]


def run_traced(mesh, fn, *args):
    """Run ``fn`` (taking and returning TF values) on ``mesh``; (result, forward trace)."""
    with nm.trace_collectives() as trace:
        out = mesh.run(fn, *args)
    return out, trace


def plan(old, new, mesh, layout):
    mesh_shape = nm.convert_to_shape(mesh)
    rules = nm.convert_to_layout_rules(layout)
    from namedmesh.mesh.layout import compute_tensor_layout
    old, new = nm.convert_to_shape(old), nm.convert_to_shape(new)
    return plan_reshape(old, new, mesh_shape,
                        compute_tensor_layout(old, mesh_shape, rules).mesh_axes,
                        compute_tensor_layout(new, mesh_shape, rules).mesh_axes)


# -- the reshape plan: mtf's verified table (../shared/mtf_notes.md) ----------------------------
@pytest.mark.parametrize("old,new,layout,expected", [
    ("a:4;b:6", "a:4;c:6", "b:m;c:m", []),
    ("a:4;b:6", "a:4;c:6", "b:m", [("allconcat", 0, None, 1)]),
    ("a:4;b:6", "a:4;c:6", "c:m", [("allsplit", 0, 1, None)]),
    ("a:4;b:6", "d:24", "b:m;d:m", [("alltoall", 0, 0, 1)]),
])
def test_plan_matches_mtf_table(old, new, layout, expected):
    p = plan(old, new, "m:2", layout)
    assert [tuple(s) for s in p.before] == expected and not p.after


def test_plan_allsplit_after_reshape_when_no_old_axis_fits():
    p = plan("d:24", "a:4;b:6", "m:2", "b:m")
    assert not p.before and [tuple(s) for s in p.after] == [("allsplit", 0, 1, None)]


def test_plan_case_mtf_cannot_lower_becomes_allconcat_then_allsplit():
    # mtf: NotImplementedError ("Try first reshaping to insert a new tf dimension")
    p = plan("d:24", "a:4;b:6", "m:2", "d:m;b:m")
    assert [s.kind for s in p.before] == ["allconcat"] and [s.kind for s in p.after] == ["allsplit"]


def test_plan_mtf_divisibility_bug_is_handled():
    # mtf splits old axis a (size 2) four ways and fails inside TensorFlow; we split c after
    p = plan("a:2;b:6", "c:4;d:3", "m:4", "c:m")
    assert not p.before and [tuple(s) for s in p.after] == [("allsplit", 0, 0, None)]


def test_plan_two_dim_mesh():
    # y moves b -> f (all-to-all splitting a), but a is split on x until x is gathered
    p = plan("a:4;b:6", "f:24", "x:2;y:2", "a:x;b:y;f:y")
    assert [tuple(s) for s in p.steps] == [("allconcat", 0, None, 0), ("alltoall", 1, 0, 1)]
    # x keeps its offset (a and f start at 1), y is gathered
    p = plan("a:4;b:6", "f:24", "x:2;y:2", "a:x;b:y;f:x")
    assert [tuple(s) for s in p.steps] == [("allconcat", 1, None, 1)]


def test_plan_moe_reshape_is_one_alltoall():
    old = "experts_unsplit:4;outer_batch:2;groups:4;capacity:3;d_model:8"
    new = "experts:4;outer_batch:2;groups_unsplit:4;capacity:3;d_model:8"
    p = plan(old, new, "b0:2;b1:2", "outer_batch:b0;groups:b1;experts:b1")
    assert [tuple(s) for s in p.steps] == [("alltoall", 1, 0, 2)]


def test_swap_of_splits_is_correct():
    # x moves a->d while y moves b->c: each old axis is split by one mesh axis at a time
    p = plan("a:4;b:4", "c:4;d:4", "x:2;y:2", "a:x;b:y;c:y;d:x")
    assert p.count("alltoall") == 1 and p.count("allconcat") == 1 and p.count("allsplit") == 1
    mesh = nm.Mesh("x:2;y:2", "a:x;b:y;c:y;d:x")
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = nm.reshape(nm.import_tf_tensor(mesh, x, "a:4;b:4"), "c:4;d:4")
    np.testing.assert_array_equal(nm.export_to_tf_tensor(out).numpy(), x)


# -- collective counts from the trace, on both executors -------------------------------------
def _executors():
    return ["placement", "strategy"]


@pytest.mark.parametrize("executor", _executors())
def test_moved_split_is_one_alltoall(executor):
    mesh = meshes("b0:2;b1:2", "outer_batch:b0;groups:b1;experts:b1")[_executors().index(executor)]
    old = nm.convert_to_shape("experts_unsplit:4;outer_batch:2;groups:4;capacity:3;d_model:8")
    new = nm.convert_to_shape("experts:4;outer_batch:2;groups_unsplit:4;capacity:3;d_model:8")
    x = tf.constant(np.random.RandomState(0).randn(*old.sizes).astype(np.float32))

    def traced_part(x):
        t = nm.import_tf_tensor(mesh, x, old)
        with nm.trace_collectives() as tr:
            y = nm.reshape(t, new)
        traces.append(tr)
        return nm.export_to_tf_tensor(y)

    traces = []
    out = mesh.run(traced_part, x)
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    tr = traces[0]  # replica 0 records (the others run the same program)
    assert tr.count("all_to_all") == 1 and tr.count("all_gather") == 0 and len(tr) == 1
    (rec,) = tr.records
    assert rec.mesh_dims == ("b1",) and rec.group_size == 2 and rec.num_groups == 2
    assert rec.bytes_per_processor == 4 * (4 * 1 * 2 * 3 * 8)  # float32 slice [4, 1, 2, 3, 8]


@pytest.mark.parametrize("executor", _executors())
def test_reduce_over_split_dim_is_one_allreduce_in_its_groups(executor):
    mesh = meshes("x:2;y:4", "a:x;b:y")[_executors().index(executor)]
    traces = []

    def fn(x):
        t = nm.import_tf_tensor(mesh, x, "a:4;b:8;c:3")
        with nm.trace_collectives() as tr:
            s = nm.reduce_sum(t, reduced_dim="b")
        traces.append(tr)
        return nm.export_to_tf_tensor(s)

    x = np.random.RandomState(1).randn(4, 8, 3).astype(np.float32)
    np.testing.assert_allclose(mesh.run(fn, tf.constant(x)).numpy(), x.sum(1), rtol=1e-5)
    (rec,) = traces[0].records
    assert rec.kind == "all_reduce" and rec.mesh_dims == ("y",) and rec.reduction == "SUM"
    assert rec.group_size == 4 and rec.num_groups == 2  # groups of y only, not all 8 processors


@pytest.mark.parametrize("executor", _executors())
def test_reshape_keeping_every_split_is_free(executor):
    mesh = meshes("x:2;y:2", "a:x;c:y;n:y")[_executors().index(executor)]
    traces = []

    def fn(x):
        t = nm.import_tf_tensor(mesh, x, "a:4;b:3;c:4")
        with nm.trace_collectives() as tr:
            y = nm.reshape(t, "a:4;b:3;n:2;k:2")  # c splits into n (still on y) and k
            y = nm.rename_dimension(y, "b", "bee")
        traces.append(tr)
        return nm.export_to_tf_tensor(y)

    x = np.arange(48, dtype=np.float32).reshape(4, 3, 4)
    np.testing.assert_array_equal(mesh.run(fn, tf.constant(x)).numpy(), x.reshape(4, 3, 2, 2))
    assert len(traces[0]) == 0


@pytest.mark.parametrize("executor", _executors())
def test_unsplit_is_allgather_and_split_is_free(executor):
    mesh = meshes("x:2", "a:x;c:x")[_executors().index(executor)]
    traces = []

    def fn(x):
        t = nm.import_tf_tensor(mesh, x, "a:4;b:6")
        with nm.trace_collectives() as tr:
            gathered = nm.rename_dimension(t, "a", "aa")   # a split -> aa unsplit
            resplit = nm.rename_dimension(gathered, "b", "c")  # c starts being split: local
        traces.append(tr)
        return nm.export_to_tf_tensor(resplit)

    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(mesh.run(fn, tf.constant(x)).numpy(), x)
    assert [r.kind for r in traces[0].records] == ["all_gather"]


def test_einsum_with_two_dims_on_one_mesh_dim_is_correct():
    # output b split on x and summed c split on x (in other operands): local blocks would
    # pair wrongly, so c is gathered before the local product
    mesh = nm.Mesh("x:2", "b:x;c:x")
    rng = np.random.RandomState(2)
    a, b, c = (rng.randn(4, 6).astype(np.float32), rng.randn(6, 6).astype(np.float32),
               rng.randn(6).astype(np.float32))
    ta = nm.import_tf_tensor(mesh, a, "b:4;j:6")
    tb = nm.import_tf_tensor(mesh, b, "j:6;c:6")
    tc = nm.import_tf_tensor(mesh, c, "c:6")
    with nm.trace_collectives() as tr:
        out = nm.einsum([ta, tb, tc], "b:4")
    np.testing.assert_allclose(nm.export_to_tf_tensor(out).numpy(), a @ b @ c, rtol=1e-4)
    assert [r.kind for r in tr.records] == ["all_gather", "all_gather"]


# -- eager, tf.function, no retracing ---------------------------------------------------------
def test_placement_runs_eagerly_and_in_tf_function_without_retracing():
    mesh = nm.Mesh("x:2;y:2", "a:x;m:y;b:y")
    traces = []

    @tf.function
    def step(x):
        traces.append(1)
        t = nm.import_tf_tensor(mesh, x, "a:4;b:6")
        return nm.export_to_tf_tensor(nm.reduce_sum(nm.reshape(t, "m:24"), reduced_dim="m"))

    x = np.random.RandomState(0).randn(4, 6).astype(np.float32)
    eager = nm.export_to_tf_tensor(nm.reduce_sum(nm.reshape(
        nm.import_tf_tensor(mesh, x, "a:4;b:6"), "m:24"), reduced_dim="m"))
    for i in range(3):
        np.testing.assert_allclose(step(tf.constant(x + i)).numpy(), (x + i).sum(), rtol=1e-5)
    np.testing.assert_allclose(eager.numpy(), x.sum(), rtol=1e-5)
    assert len(traces) == 1


def test_strategy_run_does_not_retrace():
    mesh = nm.Mesh("x:4", "a:x", strategy=strategy(4))
    traces = []

    def fn(x):
        traces.append(1)
        t = nm.import_tf_tensor(mesh, x, "a:4;b:6")
        return nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="a"))

    for i in range(3):
        x = np.full((4, 6), float(i), np.float32)
        np.testing.assert_allclose(mesh.run(fn, tf.constant(x)).numpy(), x.sum(0))
    assert len(traces) == 1  # one trace: one SPMD program for the four replicas


def test_strategy_collectives_outside_tf_function_are_refused():
    mesh = nm.Mesh("x:2", "a:x", strategy=strategy(2))

    def fn(x):
        return nm.export_to_tf_tensor(nm.reduce_sum(nm.import_tf_tensor(mesh, x, "a:2")))

    with pytest.raises(nm.MeshError, match="tf.function"):
        strategy(2).run(fn, args=(tf.ones([2]),))


def test_strategy_tensors_outside_strategy_run_are_refused():
    mesh = nm.Mesh("x:2", "a:x", strategy=strategy(2))
    with pytest.raises(nm.MeshError, match="strategy.run"):
        nm.import_tf_tensor(mesh, tf.ones([2]), "a:2")


# -- errors -----------------------------------------------------------------------------------
def test_mesh_size_must_match_replicas():
    with pytest.raises(nm.MeshError, match=r"x:2;y:4.*8 processors.*4 replicas"):
        nm.Mesh("x:2;y:4", "", strategy=strategy(4))


def test_mesh_size_must_match_devices():
    with pytest.raises(nm.MeshError, match=r"x:2 has 2 processors but 3 devices"):
        nm.Mesh("x:2", "", devices=["/cpu:0", "/cpu:1", "/cpu:2"])


def test_indivisible_dim_names_both_sides():
    mesh = nm.Mesh("b1:4", "experts:b1")
    with pytest.raises(nm.LayoutError, match=r"experts:6.*b1:4.*6 is not divisible by 4"):
        nm.zeros(mesh, "experts:6;d_model:2")


def test_two_dims_on_one_mesh_dim_names_both():
    mesh = nm.Mesh("b1:2", "experts:b1;batch:b1")
    with pytest.raises(nm.LayoutError, match=r"'experts' and 'batch'.*'b1'"):
        nm.zeros(mesh, "experts:2;batch:2")


def test_rule_naming_missing_mesh_dim_is_reported_with_existing_dims():
    with pytest.warns(nm.LayoutWarning, match=r"experts:model.*'model'.*\['b0', 'b1'\]"):
        mesh = nm.Mesh("b0:2;b1:2", "batch:b0;experts:model")
    assert mesh.ignored_rules == (("experts", "model"),)


def test_default_devices_error_when_tensorflow_started_with_fewer():
    code = textwrap.dedent("""
        import tensorflow as tf
        tf.constant(1.0) + 1  # starts the runtime with one CPU device
        import namedmesh as nm
        try:
            nm.Mesh("x:4")
        except nm.MeshError as e:
            print("ERR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert "ERR the mesh needs 4 devices but TensorFlow was already initialised with 1" in out.stdout


def test_default_devices_configured_on_first_use():
    code = textwrap.dedent("""
        import namedmesh as nm
        mesh = nm.Mesh("x:2;y:2", "a:x")
        print("DEV", mesh.impl.devices[3])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert "DEV /job:localhost/replica:0/task:0/device:CPU:3" in out.stdout


# -- TPU group assignments (the TPU path itself needs a Cloud TPU) ------------------------------
def test_tpu_group_assignment_from_mesh_groups():
    mesh = nm.Mesh("x:2;y:3", "", devices=[""] * 6)
    assert tpu_group_assignment(mesh, [0]) == [[0, 3], [1, 4], [2, 5]]
    assert tpu_group_assignment(mesh, [1]) == [[0, 1, 2], [3, 4, 5]]
    assert tpu_group_assignment(mesh, [0, 1]) == [[0, 1, 2, 3, 4, 5]]
