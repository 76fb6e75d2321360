"""namedmesh.keras layers: plain tensors named once, replica shards, contexts, saving, errors."""
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
import namedmesh.keras as nmk
from helpers import strategy as mirrored
from namedmesh.keras.example import LAYOUT, MESH_SHAPE, ToyTask, build_model
from namedmesh.lowering.shards import check_replica_shards, import_replica_shard
from namedmesh.plain import PlainAxes

TASK = ToyTask()
DIMS = ("batch", "length", "d_model")


def strategy_mesh(layout=LAYOUT, shape=MESH_SHAPE):
    return nm.Mesh(shape, layout, strategy=mirrored(4), collective_timeout=None)


# -- axes named once ------------------------------------------------------------------------
def test_plain_axes_name_a_plain_tensor():
    axes = PlainAxes((("outer_batch:2", "batch"), "length", "d_model:8"))
    assert axes.batch_dims == 2 and axes.names == ("outer_batch", "batch", "length", "d_model")
    shape = axes.shape_of([16, 4, 8])
    assert shape == nm.convert_to_shape("outer_batch:2;batch:8;length:4;d_model:8")
    assert axes.plain_sizes(shape) == [16, 4, 8]


@pytest.mark.parametrize("dims, sizes, message", [
    (("batch", "length"), [4, 2, 2], "input has 3 axes .* names 2"),
    ((("outer_batch:3", "batch"), "d"), [8, 2], "axis 0 has size 8, which input_dims cannot"),
    (("batch", "d_model:8"), [4, 6], "axis 1 has size 6"),
    (("batch", "length"), [None, 2], "no static size .* drop_remainder=True"),
])
def test_plain_axes_errors_name_the_axis(dims, sizes, message):
    with pytest.raises(nm.ShapeError, match=message):
        PlainAxes(dims).shape_of(sizes)


@pytest.mark.parametrize("dims, message", [
    ("batch", "non-empty tuple of axis names"),
    (("batch", ("a:2", "b")), "only the first .* axis 1"),
    ((("a", "b"), "c"), "at most one"),
    (("batch", "batch"), "appears twice"),
    (("batch", 3), "'name' or 'name:size', got 3"),
])
def test_plain_axes_refuse_bad_names(dims, message):
    with pytest.raises(nm.ShapeError, match=message):
        PlainAxes(dims)


# -- replica shards -------------------------------------------------------------------------
def test_a_replicas_shard_is_its_processors_slice():
    """Replica r's shard of a distributed batch, imported with no communication, is the
    slice its processor holds: gathering the named tensor gives back the global batch."""
    mesh = strategy_mesh()
    strategy = mesh.strategy
    shape = nm.convert_to_shape("outer_batch:2;batch:4;length:3")
    rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(8)

    @tf.function(autograph=False)
    def gather(shard):
        def replica(v):
            with nm.trace_collectives() as imported:
                t = import_replica_shard(mesh, v, shape, batch_dims=2)
            assert len(imported) == 0
            return nm.export_to_tf_tensor(t)
        return strategy.experimental_local_results(strategy.run(replica, args=(shard,)))

    for shard in strategy.experimental_distribute_dataset(dataset):
        for got in gather(shard):
            np.testing.assert_array_equal(got.numpy().reshape(8, 3), rows)


@pytest.mark.parametrize("layout, message", [
    ("batch:b1", r"replica 0 \(processor 0\) holds rows \[0, 2\) \+ \[4, 6\) .* gives "
                 r"replica 0 rows \[0, 2\)"),
    ("outer_batch:b1;batch:b0", r"replica 1 \(processor 1\) holds rows \[4, 6\)"),
    ("outer_batch:b0;length:b1", r"dims \['length'\] are split"),
])
def test_a_layout_that_does_not_split_the_batch_by_replica_is_named(layout, message):
    mesh = strategy_mesh(layout)
    with pytest.raises(nm.LayoutError, match=message):
        check_replica_shards(mesh, "outer_batch:2;batch:4;length:4", 2)


def test_keras_moe2d_forward_under_strategy_moves_slices_only():
    """Inside strategy.run the layer gathers nothing: MoE2D's five all-to-alls and the
    all-reduces of its router statistics, no all-gather."""
    mesh = strategy_mesh()
    with mesh.strategy.scope():
        layer = nmk.MoE2D(DIMS, mesh=mesh, expert_x=2, expert_y=2, hidden_size=8, group_size=8)
        layer.build((None, TASK.length, TASK.d_model))
    x, _ = TASK.data(1)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(TASK.batch)

    @tf.function(autograph=False)
    def forward(shard):
        return mesh.strategy.run(lambda v: layer(v), args=(shard,))

    shard = next(iter(mesh.strategy.experimental_distribute_dataset(dataset)))
    with nm.trace_collectives() as trace:
        out = forward(shard)
    kinds = [r.kind for r in trace.records]
    assert kinds.count("all_to_all") == 5 and set(kinds) == {"all_to_all", "all_reduce"}, kinds
    assert [o.shape.as_list() for o in mesh.strategy.experimental_local_results(out)] == \
        [[4, TASK.length, TASK.d_model]] * 4


def test_collectives_without_timeout_hold_no_threads():
    """TensorFlow keeps one sleeping thread per collective execution for the whole timeout;
    with collective_timeout=None (what long training needs) the thread count stays flat."""
    mesh = nm.Mesh("x:4", "e:x;g:x", strategy=mirrored(4), collective_timeout=None)

    def moved(v):
        t = nm.import_tf_tensor(mesh, v, "eu:4;g:4")
        return nm.export_to_tf_tensor(nm.reshape(t, "e:4;gu:4"))   # all-to-all + all-gather

    x = tf.constant(np.arange(16, dtype=np.float32).reshape(4, 4))
    mesh.run(moved, x)
    before = len(os.listdir("/proc/self/task"))
    for _ in range(50):   # 50 x 2 collectives x 4 replicas
        mesh.run(moved, x)
    assert len(os.listdir("/proc/self/task")) - before < 40


# -- contexts ---------------------------------------------------------------------------------
def test_fit_on_a_placement_mesh_equals_one_device():
    """Outside any strategy the layers also run on a mesh of devices (the whole batch)."""
    placement = nm.Mesh("b1:2", "batch:b1;expert_x:b1")
    on_devices, one = build_model(TASK, placement), build_model(TASK)
    assert not on_devices.get_layer("moe").supports_jit and one.get_layer("moe").supports_jit
    a = on_devices.fit(TASK.dataset(5), verbose=0, shuffle=False).history["loss"]
    b = one.fit(TASK.dataset(5), verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_saved_model_export_gives_identical_outputs(tmp_path):
    model = build_model(TASK)
    model.fit(TASK.dataset(3), verbose=0, shuffle=False)
    x, _ = TASK.data(1, seed=2)
    spec = tf.TensorSpec([TASK.batch, TASK.length, TASK.d_model], tf.float32)
    model.export(str(tmp_path / "model"), format="tf_saved_model", verbose=False,
                 input_signature=[spec])
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.serve(tf.constant(x)).numpy(), model(x).numpy())


# -- errors ---------------------------------------------------------------------------------
def test_errors_name_the_value():
    with pytest.raises(nm.ConfigError, match="mesh must be a namedmesh.Mesh"):
        nmk.MoE2D(DIMS, mesh="b0:2")
    with pytest.raises(nm.ConfigError, match="unknown keyword 'experts_x'"):
        nmk.MoE2D(DIMS, experts_x=2)
    with pytest.raises(nm.ConfigError, match="outer_batch must be a positive integer"):
        nmk.MoE1D(DIMS, outer_batch=0)
    with pytest.raises(nm.ConfigError, match="the batch dim 'batch' cannot be reduced"):
        nmk.Dense("h:4", DIMS, reduced_dims=["batch", "d_model"])
    layer = nmk.MoE1D(DIMS, num_experts=2, hidden_size=4, group_size=4)
    with pytest.raises(nm.ShapeError, match="input has 2 axes"):
        layer(np.zeros([4, 8], np.float32))
    with pytest.raises(nm.ShapeError, match="has no static size"):
        tf.function(lambda v: layer(v), autograph=False).get_concrete_function(
            tf.TensorSpec([None, 4, 8], tf.float32))
    placement = nm.Mesh("b:2", "batch:b")
    dense = nmk.Dense("h:4", DIMS, mesh=placement)
    dense.build((None, 4, 8))
    strategy = mirrored(2)
    with pytest.raises(nm.MeshError, match="placement mesh of 2 processors .* inside strategy"):
        tf.function(lambda v: strategy.run(dense, args=(v,)),
                    autograph=False).get_concrete_function(
            tf.TensorSpec([2, 4, 8], tf.float32))
