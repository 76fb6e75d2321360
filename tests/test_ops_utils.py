"""mtf's helper functions of ops.py: processor arithmetic and dim utilities against mtf's own
results (tests/data/mtf_ops, "pure"), slicewise / cwise with mtf's grad_function, binary-op
helpers, printing, dependencies, summaries, size reports, per-device calls, imports."""
import io
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from ops_reference import arrays, check_against_tf

DATA = pathlib.Path(__file__).resolve().parent / "data" / "mtf_ops"
PURE = json.loads((DATA / "cases.json").read_text())["pure"]


def device_assignment(spec):
    """The TPU DeviceAssignment the oracle built (no TPU needed): one task, a topology of
    mesh shape ``spec["topology"]``, replica r on chip ``spec["replicas"][r]`` (x fastest)."""
    shape = spec["topology"]
    coords = [[x, y, z, c] for z in range(shape[2]) for y in range(shape[1])
              for x in range(shape[0]) for c in range(shape[3])]
    topology = tf.tpu.experimental.Topology(mesh_shape=shape,
                                            device_coordinates=np.array([coords], np.int32))
    chips = [[x, y, z, 0] for z in range(shape[2]) for y in range(shape[1])
             for x in range(shape[0])]
    cores = np.array([[chips[r]] for r in spec["replicas"]], np.int32)
    return tf.tpu.experimental.DeviceAssignment(topology, cores)


def plain(value):
    if isinstance(value, dict):
        if "dim" in value:
            return nm.convert_to_dimension(value["dim"])
        if "shape" in value:
            return nm.convert_to_shape(value["shape"])
        if "device_assignment" in value:
            return device_assignment(value["device_assignment"])
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def jsonable(value):
    if isinstance(value, nm.Shape):
        return {"shape": value.to_string()}
    if isinstance(value, nm.Dimension):
        return {"dim": str(value)}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


@pytest.mark.parametrize("case", PURE, ids=lambda c: c["id"])
def test_pure_functions_give_mtfs_results(case):
    got = getattr(nm, case["op"])(*[plain(a) for a in case["args"]])
    assert jsonable(got) == case["mtf_result"]


def test_processor_groups_agree_with_the_mesh():
    mesh = nm.Mesh("x:2;y:3;z:2", devices=[""] * 12)
    for axes in ([0], [1], [2], [0, 2], [1, 2]):
        assert nm.processor_groups(mesh.shape, axes) == sorted(mesh.groups(axes))


def test_slicewise_gathers_dims_it_may_not_split():
    x, = arrays(0, [4, 6])
    mesh = nm.Mesh("m:2", "b:m")
    t = nm.import_tf_tensor(mesh, x, "a:4;b:6")
    with nm.trace_collectives() as trace:
        # a softmax over b is not elementwise along b: b must be whole
        out = nm.slicewise(lambda v: tf.nn.softmax(v, axis=1), [t], splittable_dims=["a"])
    assert trace.count("all_gather") == 1
    np.testing.assert_allclose(nm.export_to_tf_tensor(out).numpy(),
                               tf.nn.softmax(x, axis=1).numpy(), rtol=1e-6)
    assert out.slices[0].shape.as_list() == [4, 3]  # cut back to the layout


def test_slicewise_several_outputs_and_cwise():
    x, = arrays(1, [4, 6])
    mesh = nm.Mesh()
    t = nm.import_tf_tensor(mesh, x, "a:4;b:6")
    hi, lo = nm.slicewise(lambda v: (tf.reduce_max(v, 1), tf.reduce_min(v, 1)), [t],
                          output_shape=["a:4", "a:4"], output_dtype=[tf.float32, tf.float32],
                          splittable_dims=["a"])
    np.testing.assert_allclose(nm.export_to_tf_tensor(hi).numpy(), x.max(1))
    np.testing.assert_allclose(nm.export_to_tf_tensor(lo).numpy(), x.min(1))
    check_against_tf(mesh, lambda v: nm.cwise(tf.sin, [v]), tf.sin, [(x, "a:4;b:6")])


@pytest.mark.parametrize("mesh_shape,layout", [("", ""), ("m:2;n:2", "a:m;b:n")])
def test_slicewise_with_mtf_grad_function(mesh_shape, layout):
    """mtf's grad_function(op, dy) on named Tensors replaces TensorFlow's gradient."""
    x, = arrays(2, [4, 6])
    mesh = nm.Mesh(mesh_shape, layout)

    def square(v):
        return nm.cwise(tf.square, [v], grad_function=lambda op, dy: [dy * op.inputs[0] * 3.0])

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = square(nm.import_tf_tensor(mesh, xt, "a:4;b:6"))
        loss = tf.reduce_sum(nm.export_to_tf_tensor(y))
    np.testing.assert_allclose(nm.export_to_tf_tensor(y).numpy(), x * x, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), 3 * x, rtol=1e-6)  # not 2x
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = nm.cwise(tf.square, [nm.import_tf_tensor(mesh, xt, "a:4;b:6")], grad_function=0)
        loss = tf.reduce_sum(nm.export_to_tf_tensor(y))
    assert tape.gradient(loss, xt) is None


def test_binary_helpers():
    mesh = nm.Mesh()
    t = nm.import_tf_tensor(mesh, np.arange(3, dtype=np.float32), "a:3")
    a, b = nm.binary_arguments_to_tensors(t, 2)
    assert b.shape == nm.Shape([]) and b.dtype == tf.float32
    out = nm.binary_op_with_broadcasting(tf.math.squared_difference, 1.0, t)
    np.testing.assert_allclose(nm.export_to_tf_tensor(out).numpy(), [1, 0, 1])
    flags = nm.binary_op_with_broadcasting(tf.less, t, 1.0, output_dtype=tf.bool)
    assert flags.dtype == tf.bool


def test_parallel_runs_on_each_device():
    devices = ["/CPU:0", "/CPU:1"]
    out = nm.parallel(devices, lambda a, b=0: tf.identity(tf.constant(a) + b), [1, 2], b=[10, 20])
    assert [int(o.numpy()) for o in out] == [11, 22]
    assert [o.device.endswith(d[1:]) for o, d in zip(out, devices)] == [True, True]


def test_print_and_depend_return_x(capfd):
    mesh = nm.Mesh()
    t = nm.import_tf_tensor(mesh, np.array([1.0, 2.0], np.float32), "a:2")
    out = nm.Print(t, [t * 2.0], "the values:", output_stream="file://" + "/dev/stderr")
    np.testing.assert_array_equal(nm.export_to_tf_tensor(out).numpy(), [1, 2])
    assert "the values: [2 4]" in capfd.readouterr().err

    @tf.function
    def f(v):
        x = nm.import_tf_tensor(mesh, v, "a:2")
        y = nm.depend(x, [x * 3.0])
        return nm.export_to_tf_tensor(y)

    np.testing.assert_array_equal(f(tf.constant([1.0, 2.0])).numpy(), [1, 2])
    with pytest.raises(TypeError, match="dependencies"):
        nm.depend(t, ["not an op"])


def test_scalar_summary_writes(tmp_path):
    mesh = nm.Mesh()
    loss = nm.import_tf_tensor(mesh, tf.constant(0.25), None)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=3):
        out = nm.scalar_summary("loss", loss)
    writer.flush()
    assert float(nm.export_to_tf_tensor(out)) == 0.25
    written = [(e.step, v.tag, float(tf.make_ndarray(v.tensor)))
               for path in tmp_path.glob("events.*")
               for e in tf.compat.v1.train.summary_iterator(str(path)) for v in e.summary.value]
    assert written == [(3, "loss", 0.25)]
    with pytest.raises(ValueError, match="0-d"):
        nm.scalar_summary("x", nm.ones(mesh, "a:2"))


def test_log_variable_sizes():
    store = nm.VariableStore()
    store.create("dense/kernel", "d_model:8;d_ff:16")
    store.create("dense/bias", "d_ff:16")
    mesh = nm.Mesh("model:4", "d_ff:model", devices=[""] * 4)
    f = io.StringIO()
    lines = nm.log_variable_sizes(store, "Trainable Variables", mesh_to_impl=mesh, log_file=f)
    assert "dense/kernel" in lines[1] and " 128 " in lines[1] and " 32 " in lines[1]
    assert "Total size: 144" in lines[-1] and "Total slice_size: 36" in lines[-1]
    assert f.getvalue().splitlines() == lines


def test_imports_laid_out_and_fully_replicated():
    mesh = nm.Mesh("m:2", "a:m")
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    t = nm.import_laid_out_tensor(mesh, [x[:2], x[2:]], "a:4;b:2")
    np.testing.assert_array_equal(nm.export_to_tf_tensor(t).numpy(), x)
    with pytest.raises(ValueError, match="slice 1 has shape"):
        nm.import_laid_out_tensor(mesh, [x[:2], x], "a:4;b:2")
    r = nm.import_fully_replicated(mesh, x, "a:4;b:2")
    np.testing.assert_array_equal(nm.export_to_tf_tensor(r).numpy(), x)
    anon = nm.anonymize(r)
    assert anon.shape.names == ("_anonymous_0", "_anonymous_1")
    nm.verify_no_new_dims([r.shape], "b:2")
    with pytest.raises(ValueError, match="no new dims"):
        nm.verify_no_new_dims([r.shape], "c:2")


def test_function_tables():
    a, b = tf.constant([1.0, 5.0]), tf.constant([3.0, 2.0])
    assert nm.binary_reduction_fn("MAX")(a, b).numpy().tolist() == [3, 5]
    assert float(nm.reduction_fn("MIN")(a)) == 1
    x = tf.reshape(tf.range(2 * 4 * 4 * 3, dtype=tf.float32), [2, 4, 4, 3])
    pooled = nm.pool_fn("MAX_2D")(tf.expand_dims(x, 0), [2, 2], [2, 2], "VALID")
    np.testing.assert_array_equal(pooled.numpy()[0], tf.nn.max_pool2d(x, 2, 2, "VALID").numpy())
