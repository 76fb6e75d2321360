"""Mixed precision against mtf 0.1.21: bfloat16 activations with the router in float32, and
mtf's TPU all-to-all (float32 sent as bfloat16) as the Mesh option ``alltoall_in_bfloat16``.
The goldens are in tests/data/precision (README there)."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy

DATA = os.path.join(os.path.dirname(__file__), "data", "precision")
BF16_ULP = 2.0 ** -8   # bfloat16's spacing just below 1.0 is 2^-8 (8 significant bits)


def _load(name):
    d = np.load(os.path.join(DATA, name + ".npz"))
    data = {k: d[k] for k in d.files}
    call = json.loads(str(data["mtf_call"]))
    return data, call, json.loads(str(data["hparams"])), json.loads(str(data["precision"]))


def _run(name, dispatch="auto", executor="placement", bf16_alltoall=None):
    """(y, loss, {grad name: array}, trace) of ``reduce_sum(to_float(y) * r) + loss``."""
    data, call, hparams, precision = _load(name)
    cls = nm.moe.MoE2D if call["function"].endswith("v2") else nm.moe.MoE1D
    layer = cls(**dict(cls.config_cls.from_hparams(hparams).to_kwargs(), dispatch=dispatch))
    layer.load_mtf_variables({k[4:]: v for k, v in data.items() if k.startswith("var/")})
    if bf16_alltoall is None:
        bf16_alltoall = precision["alltoall_dtype"] == "bfloat16"
    n = nm.convert_to_shape(call["mesh_shape"]).size
    mesh = nm.Mesh(call["mesh_shape"], call["layout"], alltoall_in_bfloat16=bf16_alltoall,
                   strategy=strategy(n) if executor == "strategy" else None)
    shape = nm.convert_to_shape(call["input_shape"])
    layer.build(shape, mesh)
    variables = layer.mtf_variables()
    names = list(variables)
    traces = []

    def program(x, r):
        with tf.GradientTape() as tape:
            tape.watch(x)
            t = nm.import_tf_tensor(mesh, x, shape)
            if precision["activation_dtype"] == "bfloat16":
                t = nm.cast(t, tf.bfloat16)
            with nm.trace_collectives() as trace:
                y, loss = layer(t, train=call["train"])
            traces.append(trace)
            y = nm.export_to_tf_tensor(nm.to_float(y))
            loss = nm.export_to_tf_tensor(nm.to_float(loss))
            objective = tf.reduce_sum(y * r) + loss
        grads = tape.gradient(objective, [x] + [variables[k] for k in names])
        return y, loss, dict(zip(["x"] + names, grads))

    def replica(x, r):  # exports are copies on every replica, gradients add up
        y, loss, grads = program(x, r)
        return y / n, loss / n, grads

    x, r = tf.constant(data["x"]), tf.constant(data["r"])
    if executor == "placement":
        y, loss, grads = program(x, r)
    else:
        y, loss, grads = mesh.run(replica, x, r, reduce="sum")
    return y.numpy(), float(loss.numpy()), {k: v.numpy() for k, v in grads.items()}, traces[0]


def test_there_are_precision_goldens():
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DATA, "*.npz")))
    assert names == ["v1_alltoall_bf16", "v1_bf16_activations", "v2_alltoall_bf16",
                     "v2_bf16_activations"]


@pytest.mark.parametrize("name", ["v1_bf16_activations", "v2_bf16_activations"])
def test_bfloat16_activations_match_mtf(name):
    data = _load(name)[0]
    results = {d: _run(name, dispatch=d) for d in ("einsum", "index")}
    for dispatch, (y, loss, grads, _) in results.items():
        assert loss == pytest.approx(float(data["loss"]), abs=0)
        # the outputs and the gradients of the experts and of the input: to one bfloat16
        # step at the tensor's scale (on the machine that made the goldens: bit for bit)
        for key, value, want in [("y", y, data["y"])] + [
                (k, g, data["grad/" + k]) for k, g in grads.items() if "gating" not in k]:
            np.testing.assert_allclose(value, want, rtol=0,
                                       atol=BF16_ULP * np.abs(want).max(), err_msg=key)
        # the router kernels' gradients are rounded to bfloat16 from float32 sums that are
        # added in another order (differences ~1e-6 before rounding): one bfloat16 step
        for key, g in grads.items():
            if "gating" in key:
                want = data["grad/" + key]
                np.testing.assert_allclose(g, want, rtol=0,
                                           atol=2 * BF16_ULP * np.abs(want).max(), err_msg=key)
    np.testing.assert_array_equal(results["index"][0], results["einsum"][0])


def test_router_runs_in_float32_with_bfloat16_activations():
    layer = nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=8, group_size=8,
                         dispatch="index")
    mesh = nm.Mesh()
    shape = nm.convert_to_shape("outer_batch:2;batch:2;length:8;d_model:4")
    layer.build(shape, mesh)

    def forward(x):
        y, loss = layer(nm.cast(nm.import_tf_tensor(mesh, x, shape), tf.bfloat16))
        return nm.export_to_tf_tensor(y), nm.export_to_tf_tensor(loss)

    graph = tf.function(forward, autograph=False).get_concrete_function(
        tf.TensorSpec(shape.sizes, tf.float32)).graph
    einsums = [op.get_attr("T") for op in graph.get_operations() if op.type == "Einsum"]
    # the outer and the inner router in float32, the experts' wi and wo in bfloat16
    assert einsums == [tf.float32, tf.float32, tf.bfloat16, tf.bfloat16]
    softmax_exps = [op.get_attr("T") for op in graph.get_operations() if op.type == "Exp"]
    assert softmax_exps and set(softmax_exps) == {tf.float32}
    y, loss = forward(tf.random.normal(shape.sizes))
    assert y.dtype == tf.bfloat16 and loss.dtype == tf.bfloat16


@pytest.mark.parametrize("name,executor", [("v2_alltoall_bf16", "placement"),
                                           ("v1_alltoall_bf16", "placement"),
                                           ("v1_alltoall_bf16", "strategy")])
def test_alltoall_in_bfloat16_matches_mtf_on_tpu(name, executor):
    data = _load(name)[0]
    y, loss, grads, trace = _run(name, executor=executor)
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(loss, data["loss"], rtol=0, atol=2e-5)
    for key, g in grads.items():
        np.testing.assert_allclose(g, data["grad/" + key], rtol=0, atol=2e-5, err_msg=key)
    moves = trace.select("all_to_all")
    assert moves and all(r.dtype == "bfloat16" for r in moves)


def test_alltoall_in_bfloat16_is_off_by_default_and_changes_the_numbers():
    assert nm.Mesh("b0:2", "batch:b0").alltoall_in_bfloat16 is False
    data = _load("v2_alltoall_bf16")[0]
    y, _, _, trace = _run("v2_alltoall_bf16", bf16_alltoall=False)
    assert all(r.dtype == "float32" for r in trace.select("all_to_all"))
    assert np.abs(y - data["y"]).max() > 1e-4       # mtf's TPU rounding is visible
    rounded = _run("v2_alltoall_bf16")[3].select("all_to_all")
    assert [r.bytes_per_processor * 2 for r in rounded] == [
        r.bytes_per_processor for r in trace.select("all_to_all")]
