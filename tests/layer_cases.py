"""Golden cases of mtf 0.1.21's layers (tests/data/layers, made by tools/oracle/run_mtf_layers.py)
and the namedmesh call that computes each one."""
import glob
import json
import os

import numpy as np
import tensorflow as tf

import namedmesh as nm
from helpers import strategy

DATA = os.path.join(os.path.dirname(__file__), "data", "layers")
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DATA, "*.npz")))
ATOL = 2e-5
L = nm.layers
D = nm.Dimension


class LayerCase:
    def __init__(self, name):
        with np.load(os.path.join(DATA, name + ".npz")) as d:
            self.data = {k: d[k] for k in d.files}
        self.name = name
        self.base = name.split("@")[0]
        self.meta = json.loads(str(self.data["meta"]))
        self.dims = self.meta["dims"]

    def shape(self, key) -> nm.Shape:
        return nm.Shape([D(n, s) for n, s in zip(self.dims[key], self.data[key].shape)])

    def arrays(self, prefix):
        return {k[len(prefix):]: v for k, v in self.data.items() if k.startswith(prefix)}

    @property
    def inputs(self):
        return self.arrays("in/")

    @property
    def variables(self):
        return self.arrays("var/")

    @property
    def num_outputs(self):
        return len(self.arrays("out/"))


# -- the namedmesh side of each case: fn(inputs {name: Tensor}, mesh) -> output Tensor(s) --------
def _self_attention(i, m):
    pos = nm.range(m, D("length", 4), tf.int32)
    return L.multihead_attention(i["x"], None, L.attention_mask_autoregressive(pos), D("d_kv", 3),
                                 D("heads", 2), is_training=False)


def _batch_norm_train(i, m):
    y, updates = L.batch_norm(i["x"], True, 0.9, epsilon=1e-6, dims_idx_start=0, dims_idx_end=2)
    return [y] + [u.value for u in updates]


RUNNERS = {
    "dense_basic": lambda i, m: L.dense(i["x"], "hidden:8", reduced_dims=["d_model:6"],
                                        activation=nm.relu, name="dense"),
    "dense_multi_dims": lambda i, m: L.dense(i["x"], ["d_model:5", "out2:2"],
                                             reduced_dims=["heads:4", "d_kv:3"],
                                             expert_dims=["experts:2"], name="wo"),
    "dense_same_name": lambda i, m: L.dense(i["x"], "d_model:4", reduced_dims=["d_model:4"],
                                            use_bias=False),
    "dense_default_reduced": lambda i, m: L.dense(i["x"], "hidden:5"),
    "dense_product_glu": lambda i, m: L.dense_product(i["x"], ["d_model:4"], ["d_ff:6"],
                                                      ["linear", "gelu"], use_bias=False),
    "dense_relu_dense": lambda i, m: L.dense_relu_dense(i["x"], "hidden:6", is_training=False),
    "layer_norm": lambda i, m: L.layer_norm(i["x"], "d_model:6"),
    "rms_norm_t5": lambda i, m: L.rms_norm(i["x"], "d_model:6"),
    "batch_norm_train": _batch_norm_train,
    "batch_norm_eval": lambda i, m: L.batch_norm(i["x"], False, 0.9, dims_idx_start=0,
                                                 dims_idx_end=2)[0],
    "softmax_xent_hard_zloss": lambda i, m: L.softmax_cross_entropy_with_logits(
        i["logits"], i["targets"], "vocab:8", z_loss=1e-2),
    "softmax_xent_soft": lambda i, m: L.softmax_cross_entropy_with_logits(
        i["logits"], i["targets"], "vocab:5"),
    "sigmoid_xent": lambda i, m: L.sigmoid_cross_entropy_with_logits(i["logits"] * 3.0,
                                                                     i["targets"]),
    "weights_nonzero": lambda i, m: L.weights_nonzero(i["targets"]),
    "corr": lambda i, m: L.corr(i["x"], "channels:3"),
    "masks": lambda i, m: [L.attention_mask_ignore_padding(i["ids"]),
                           L.attention_mask_autoregressive(i["pos"]),
                           L.attention_mask_same_segment(i["seg"])],
    "local_block_biases": lambda i, m: L.attention_bias_local_block(m, "block_length:3",
                                                                    "memory_length:5"),
    "conv1d": lambda i, m: L.conv1d(i["x"], "out:3", filter_size=3),
    "conv1d_valid_stride": lambda i, m: L.conv1d(i["x"], "out:2", filter_size=3, stride=2,
                                                 padding="VALID"),
    "conv2d": lambda i, m: L.conv2d(i["x"], "out:4"),
    "conv2d_transpose": lambda i, m: L.conv2d_transpose(i["x"], "out:2"),
    "conv3d": lambda i, m: L.conv3d(i["x"], "out:3", strides=(1, 2, 1)),
    "conv3d_transpose": lambda i, m: L.conv3d_transpose(i["x"], "out:2"),
    "pooling": lambda i, m: [L.max_pool2d(i["x"], (2, 3)), L.avg_pool2d(i["x"], (2, 3)),
                             L.max_pool3d(i["x"], (3, 2, 3)), L.avg_pool3d(i["x"], (3, 2, 3))],
    "reversible_half_residual": lambda i, m: _revnet(i),
    "clip_activation_gradient": lambda i, m: L.clip_activation_gradient(
        i["x"] * 5.0, clip_rms_norm=0.1) * 2.0,
    "recompute_grad": lambda i, m: nm.recompute_grad(
        lambda x: nm.tanh(L.dense(x, "hidden:5", reduced_dims=["d_model:4"], name="inner")),
        [i["x"]]),
}

# mtf names a dense layer's variables dense/kernel and dense_1/bias when no name is given (its
# variable scopes uniquify the default name); namedmesh uses the default name as it is.
VARIABLE_RENAMES = {"dense_default_reduced": {"dense_1/bias": "dense/bias"}}


def _revnet(i):
    a, ab, b, bb = i["x1"], None, i["x2"], None
    for k in range(2):
        def f(x, k=k):
            return nm.tanh(L.dense(x, "d_model:4", reduced_dims=["d_model:4"], name="f_%d" % k))
        a, ab, b, bb = L.reversible_half_residual_and_swap(a, ab, b, bb, f)
    return (a + b) * 0.5


# -- running a case -----------------------------------------------------------------------------
def _outputs(result):
    return list(result) if isinstance(result, (list, tuple)) else [result]


def forward_and_grads(case, mesh, store, inputs):
    """(outputs, {grad name: value}) of the case's objective on ``mesh`` (tf values)."""
    run = RUNNERS[case.base]
    float_names = [n for n, v in case.inputs.items() if v.dtype == np.float32]
    renames = VARIABLE_RENAMES.get(case.base, {})
    with tf.GradientTape() as tape:
        for n in float_names:
            tape.watch(inputs[n])
        named = {n: nm.import_tf_tensor(mesh, inputs[n], case.shape("in/" + n))
                 for n in case.inputs}
        with store.as_default():
            outs = _outputs(run(named, mesh))
        exported = [nm.export_to_tf_tensor(o) for o in outs]
        objective = tf.constant(0.0)
        for k, o in enumerate(exported):
            if "r/%d" % k in case.data:
                objective += tf.reduce_sum(o * case.data["r/%d" % k])
    variables = {mtf: store.variables()[renames.get(mtf, mtf)] for mtf in case.variables}
    trainable = {k: v for k, v in variables.items() if v.trainable}
    sources = ["in/" + n for n in float_names] + ["var/" + n for n in trainable]
    grads = tape.gradient(objective, [inputs[s[3:]] for s in sources[:len(float_names)]] +
                          list(trainable.values()),
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return outs, exported, dict(zip(sources, grads))


def make_store(case):
    renames = VARIABLE_RENAMES.get(case.base, {})
    return nm.VariableStore(values={renames.get(k, k): v for k, v in case.variables.items()})


def run_case(case, mesh_shape=None, layout=None, executor="placement"):
    """(output dim names, outputs, grads) as numpy, on the case's mesh or the one given."""
    mesh_shape = case.meta["mesh_shape"] if mesh_shape is None else mesh_shape
    layout = case.meta["layout"] if layout is None else layout
    store = make_store(case)
    inputs = {n: tf.constant(v) for n, v in case.inputs.items()}
    if executor == "placement":
        mesh = nm.Mesh(mesh_shape, layout)
        outs, exported, grads = forward_and_grads(case, mesh, store, inputs)
        assert store.unused_values() == [], store.unused_values()
        return ([o.shape.names for o in outs], [e.numpy() for e in exported],
                {k: v.numpy() for k, v in grads.items()})
    forward_and_grads(case, nm.Mesh(), store, inputs)  # creates the variables
    n = nm.convert_to_shape(mesh_shape).size
    mesh = nm.Mesh(mesh_shape, layout, strategy=strategy(n))
    names = []

    def replica(inputs):
        outs, exported, grads = forward_and_grads(case, mesh, store, inputs)
        names[:] = [o.shape.names for o in outs]
        return [e / n for e in exported], grads

    exported, grads = mesh.run(replica, inputs, reduce="sum")
    return names, [e.numpy() for e in exported], {k: v.numpy() for k, v in grads.items()}


def assert_matches(case, names, outs, grads, atol=ATOL):
    assert len(outs) == case.num_outputs
    for k, (got_names, out) in enumerate(zip(names, outs)):
        assert list(got_names) == case.dims["out/%d" % k], (k, got_names)
        np.testing.assert_allclose(out, case.data["out/%d" % k], atol=atol, rtol=0,
                                   err_msg="%s out/%d" % (case.name, k))
    expected = case.arrays("grad/")
    missing = sorted(set(expected) - set(grads))
    assert not missing, "no gradient for %s" % missing
    for k, g in grads.items():
        if k not in expected:  # mtf: None, the objective does not depend on it
            assert not np.any(g), "%s: gradient %s should be zero" % (case.name, k)
            continue
        np.testing.assert_allclose(g, expected[k], atol=atol, rtol=0,
                                   err_msg="%s grad/%s" % (case.name, k))
