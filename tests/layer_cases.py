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


def _unit_scaling(i, m):
    with L.use_unit_scaling_convention(True):
        return L.us_einsum([i["x"], i["y"]], "batch:3;hidden:5")


def _batch_norm_train(i, m):
    y, updates = L.batch_norm(i["x"], True, 0.9, epsilon=1e-6, dims_idx_start=0, dims_idx_end=2)
    return [y] + [u.value for u in updates]


def _separate_params(i, m):
    x = i["x"]
    store = nm.layers.current_store(None, "test")
    with store.scope("attn"):
        wq, wk, wv, wo = L.multihead_attention_params(m, "heads:2", "d_model:4", "d_kv:3",
                                                      combine=False)
    mem = L.rename_length_to_memory_length(x)
    q = nm.einsum([x, wq], "batch:2;heads:2;length:3;d_kv:3")
    k = nm.einsum([mem, wk], "batch:2;heads:2;memory_length:3;d_kv:3")
    v = nm.einsum([mem, wv], "batch:2;heads:2;memory_length:3;d_kv:3")
    return nm.einsum([L.dot_product_attention(q, k, v, None, is_training=False), wo], x.shape)


def _self_attention_incremental(i, m):
    keep = nm.cast(nm.less(nm.range(m, D("memory_length", 4), tf.int32), 2), tf.float32)
    return L.multihead_self_attention_incremental(i["x"], i["prev_k"] * keep,
                                                  i["prev_v"] * keep, 2)


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
    "us_einsum_unit_scaling": _unit_scaling,
    "masks": lambda i, m: [L.attention_mask_ignore_padding(i["ids"]),
                           L.attention_mask_autoregressive(i["pos"]),
                           L.attention_mask_same_segment(i["seg"])],
    "local_block_biases": lambda i, m: L.attention_bias_local_block(m, "block_length:3",
                                                                    "memory_length:5"),
    "dot_product_attention": lambda i, m: L.dot_product_attention(i["q"], i["k"], i["v"],
                                                                  i["mask"], is_training=False),
    "multihead_self_attention": _self_attention,
    "multihead_encdec_attention": lambda i, m: L.multihead_attention(
        i["x"], i["memory"], L.attention_mask_ignore_padding(i["ids"]), "d_kv:2", "heads:2",
        is_training=False, name="encdec"),
    "multihead_attention_params_separate": _separate_params,
    "self_attention_incremental": _self_attention_incremental,
    "encdec_attention_incremental": lambda i, m: L.multihead_encdec_attention_incremental(
        i["x"], i["wq"], i["wo"], i["k"], i["v"], i["mask"]),
    "memory_compressed_attention": lambda i, m: L.multihead_self_attention_memory_compressed(
        i["x"], True, 2, "d_kv:3", "heads:2", is_training=False),
    "compress_mean": lambda i, m: L.compress_mean(i["x"], "length:6", 3),
    "masked_local_attention_1d": lambda i, m: L.masked_local_attention_1d(
        i["x"], "d_kv:3", "heads:2", is_training=False, window_size=3),
    "masked_local_attention_1d_split": lambda i, m: L.masked_local_attention_1d(
        i["x"], "d_kv:3", "heads:2", is_training=False, window_size=3, length_per_split=4),
    "masked_local_attention_1d_incremental": lambda i, m: L.masked_local_attention_1d_incremental(
        i["x"], i["prev_k"], i["prev_v"], 4),
    "local_attention_1d": lambda i, m: L.local_attention_1d(
        i["q"], i["k"], i["v"], "length:8", "d_k:3", "d_v:2", fully_autoregressive=True,
        radius=2, length_dim_num_splits=2),
    "local_attention_1d_bidirectional": lambda i, m: L.local_attention_1d(
        i["q"], i["k"], None, "length:8", "d_k:3", "d_k:3", fully_autoregressive=False,
        radius=2, sequence_id=i["sequence_id"]),
    "local_self_attention_spatial_blocks": lambda i, m: L.local_self_attention_spatial_blocks(
        i["x"], "d_kv:2", "heads:2", False, mask_right=True),
    "local_2d_self_attention_spatial_blocks":
        lambda i, m: L.local_2d_self_attention_spatial_blocks(i["x"], "d_kv:2", "heads:2", False),
    "embedding": lambda i, m: L.embedding(i["ids"], "vocab:10", "d_model:6"),
    "conv2d_with_blocks": lambda i, m: L.conv2d_with_blocks(
        i["x"], "out:3", filter_size=(3, 3), h_blocks_dim="h_blocks:2", w_blocks_dim="w_blocks:2"),
    "conv2d_transpose_with_blocks": lambda i, m: L.conv2d_transpose_with_blocks(
        i["x"], "out:3", h_blocks_dim="h_blocks:2", w_blocks_dim="w_blocks:2"),
    "conv3d_with_blocks": lambda i, m: L.conv3d_with_blocks(
        i["x"], "out:2", d_blocks_dim="d_blocks:2", h_blocks_dim="h_blocks:2"),
    "conv3d_transpose_with_blocks": lambda i, m: L.conv3d_transpose_with_blocks(
        i["x"], "out:2", d_blocks_dim="d_blocks:2", h_blocks_dim="h_blocks:1"),
    "separable_conv1d": lambda i, m: L.separable_conv1d(i["x"], "out:4", min_relative_pos=-1,
                                                        max_relative_pos=2),
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
    grads = [tf.convert_to_tensor(g) for g in grads]  # a gather's gradient is IndexedSlices
    return outs, exported, dict(zip(sources, grads))


def forward_collectives(case):
    """{kind: count} of the collectives namedmesh runs for the case's forward pass on its mesh."""
    mesh = nm.Mesh(case.meta["mesh_shape"], case.meta["layout"])
    store = make_store(case)
    named = {n: nm.import_tf_tensor(mesh, v, case.shape("in/" + n)) for n, v in case.inputs.items()}
    with store.as_default(), nm.trace_collectives() as trace:
        for o in _outputs(RUNNERS[case.base](named, mesh)):
            nm.export_to_tf_tensor(o)
    counts = {k: 0 for k in case.meta["mtf_collectives"]}
    for r in trace.records:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    return counts


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
