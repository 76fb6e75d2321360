"""Run mesh-tensorflow 0.1.21's layers (layers.py, and the T5 pieces models use) as an oracle.

Each case builds one mtf layer call on fixed inputs, lowers it on a PlacementMeshImpl with the
case's mesh and layout, sets every variable to fixed values, and saves to ``--out/<case>.npz``:

* ``in/<name>``: the inputs, ``var/<mtf variable name>``: the variables (mtf's axis order),
* ``out/<i>``: the outputs, ``r/<i>``: fixed cotangents of the float outputs,
* ``grad/in/<name>`` and ``grad/var/<mtf name>``: gradients of
  ``sum_i reduce_sum(out_i * r_i)`` (mtf.gradients),
* ``meta``: JSON with each array's dim names, the mtf call, mesh shape and layout, and
  ``mtf_collectives``: how many collectives mtf's lowering of the forward pass (alone, without
  the gradient) asks the mesh for, by namedmesh's names for them (allreduce -> all_reduce,
  allconcat -> all_gather, alltoall -> all_to_all, receive (shift) -> permute; a receive
  from oneself moves nothing and is not counted).

Inputs, cotangents and variable perturbations come from a RandomState seeded by the case's
base name, so a case and its mesh variants (``name@mesh``) share all values.

    /tmp/mtf-oracle/bin/python tools/oracle/run_mtf_layers.py --out tests/data/layers
    /tmp/mtf-oracle/bin/python tools/oracle/run_mtf_layers.py --out /tmp/x --cases dense_basic
"""
import argparse
import hashlib
import json
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtf_shim  # noqa: E402,F401  (before mesh_tensorflow)
import gin  # noqa: E402
import mesh_tensorflow as mtf  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from mesh_tensorflow.transformer import attention as mtf_attention  # noqa: E402
from mesh_tensorflow.transformer import transformer as mtf_transformer  # noqa: E402

tf.disable_v2_behavior()
L = mtf.layers
D = mtf.Dimension


class Ctx:
    """What a case builder uses: named inputs (saved) and a description of the call."""

    def __init__(self, mesh, rng):
        self.mesh = mesh
        self.rng = rng
        self.inputs = {}        # name -> (np array, mtf tensor)
        self.call = ""

    def input(self, name, dims, kind="normal", low=0, high=None, values=None):
        shape = mtf.convert_to_shape(dims)
        sizes = [d.size for d in shape.dims]
        if values is not None:
            arr = np.asarray(values)
        elif kind == "normal":
            arr = self.rng.randn(*sizes).astype(np.float32)
        elif kind == "uniform":
            arr = self.rng.rand(*sizes).astype(np.float32)
        elif kind == "int":
            arr = self.rng.randint(low, high, size=sizes).astype(np.int32)
        else:
            raise ValueError(kind)
        t = mtf.import_tf_tensor(self.mesh, tf.constant(arr), shape)
        self.inputs[name] = (arr, t)
        return t


CASES = {}


def case(name, mesh_shape="", layout="", variants=()):
    """Register a builder as case ``name`` (one device) and ``name@<tag>`` per mesh variant."""
    def register(fn):
        CASES[name] = (fn, mesh_shape, layout)
        for tag, ms, lay in variants:
            CASES["%s@%s" % (name, tag)] = (fn, ms, lay)
        return fn
    return register


MESH_2x2 = "b0:2;b1:2"


# -- dense ------------------------------------------------------------------------------------
@case("dense_basic", variants=[("mesh", MESH_2x2, "batch:b0;hidden:b1")])
def _(c):
    x = c.input("x", "batch:4;length:3;d_model:6")
    c.call = "dense(x, new_dims=[hidden:8], reduced_dims=[d_model], activation=relu, name='dense')"
    return L.dense(x, new_dims=[D("hidden", 8)], reduced_dims=[D("d_model", 6)],
                   activation=mtf.relu, name="dense")


@case("dense_multi_dims", variants=[("mesh", MESH_2x2, "experts:b0;heads:b1")])
def _(c):
    x = c.input("x", "experts:2;batch:3;heads:4;d_kv:3")
    c.call = ("dense(x, new_dims=[d_model:5, out2:2], reduced_dims=[heads, d_kv], "
              "expert_dims=[experts], name='wo')")
    return L.dense(x, new_dims=[D("d_model", 5), D("out2", 2)],
                   reduced_dims=[D("heads", 4), D("d_kv", 3)], expert_dims=[D("experts", 2)],
                   name="wo")


@case("dense_same_name")
def _(c):
    x = c.input("x", "batch:3;d_model:4")
    c.call = "dense(x, new_dims=[d_model:4], reduced_dims=[d_model:4], use_bias=False)"
    return L.dense(x, new_dims=[D("d_model", 4)], reduced_dims=[D("d_model", 4)], use_bias=False)


@case("dense_default_reduced")
def _(c):
    x = c.input("x", "batch:3;d_model:4")
    c.call = ("dense(x, new_dims=hidden:5)  # reduced_dims omitted: the last dim; name=None: "
              "mtf makes dense/kernel and dense_1/bias")
    return L.dense(x, D("hidden", 5))


@case("dense_product_glu", variants=[("mesh", MESH_2x2, "batch:b0;d_ff:b1")])
def _(c):
    x = c.input("x", "batch:2;length:3;d_model:4")
    c.call = ("dense_product(x, reduced_dims=[d_model], new_dims=[d_ff:6], "
              "activation_functions=['linear', 'gelu'], use_bias=False)")
    return L.dense_product(x, reduced_dims=[D("d_model", 4)], new_dims=[D("d_ff", 6)],
                           activation_functions=["linear", "gelu"], use_bias=False)


@case("dense_relu_dense", variants=[("mesh", MESH_2x2, "batch:b0;hidden:b1")])
def _(c):
    x = c.input("x", "batch:4;length:3;d_model:4")
    c.call = "dense_relu_dense(x, hidden_channels=hidden:6, is_training=False)"
    return L.dense_relu_dense(x, D("hidden", 6), is_training=False)


@case("us_einsum_unit_scaling")
def _(c):
    x = c.input("x", "batch:3;d_model:4")
    y = c.input("y", "d_model:4;hidden:5")
    c.call = "with unit_scaling_convention(True): us_einsum([x, y], output_shape=[batch, hidden])"
    gin.bind_parameter("unit_scaling_convention.value", True)
    try:
        return L.us_einsum([x, y], mtf.Shape([D("batch", 3), D("hidden", 5)]))
    finally:
        gin.clear_config()


# -- norms ------------------------------------------------------------------------------------
@case("layer_norm", variants=[("mesh", "b0:2", "d_model:b0")])
def _(c):
    x = c.input("x", "batch:2;length:3;d_model:6")
    c.call = "layer_norm(x, dim=d_model)"
    return L.layer_norm(x, D("d_model", 6))


@case("rms_norm_t5", variants=[("mesh", MESH_2x2, "batch:b0;d_model:b1")])
def _(c):
    x = c.input("x", "batch:2;length:3;d_model:6")
    c.call = "transformer.sublayer_rms_norm(x, None, context)  # scope rms_norm, var scale"
    model = types.SimpleNamespace(model_dim=D("d_model", 6), ensemble_dims=[])
    context = types.SimpleNamespace(model=model, mesh=c.mesh,
                                    variable_dtype=mtf.VariableDType(tf.float32))
    return mtf_transformer.sublayer_rms_norm(x, None, context)


@case("batch_norm_train", variants=[("mesh", "b0:2", "batch:b0")])
def _(c):
    x = c.input("x", "batch:4;length:3;d_model:2")
    c.call = ("batch_norm(x, is_training=True, momentum=0.9, epsilon=1e-6, dims_idx_start=0, "
              "dims_idx_end=2)  # outputs: y, new moving mean, new moving variance")
    y, updates = L.batch_norm(x, True, 0.9, epsilon=1e-6, dims_idx_start=0, dims_idx_end=2)
    means = [u.inputs[0] for u in updates]   # the values assigned (mtf.assign's operand)
    return [y] + means


@case("batch_norm_eval")
def _(c):
    x = c.input("x", "batch:4;length:3;d_model:2")
    c.call = "batch_norm(x, is_training=False, momentum=0.9, dims_idx_start=0, dims_idx_end=2)"
    y, _ = L.batch_norm(x, False, 0.9, dims_idx_start=0, dims_idx_end=2)
    return y


# -- losses -----------------------------------------------------------------------------------
@case("softmax_xent_hard_zloss", variants=[("mesh", MESH_2x2, "batch:b0;vocab:b1")])
def _(c):
    logits = c.input("logits", "batch:4;length:3;vocab:8")
    targets = c.input("targets", "batch:4;length:3", kind="int", high=8)
    c.call = "softmax_cross_entropy_with_logits(logits, targets, vocab, z_loss=1e-2)"
    return L.softmax_cross_entropy_with_logits(logits, targets, D("vocab", 8), z_loss=1e-2)


@case("softmax_xent_soft")
def _(c):
    logits = c.input("logits", "batch:3;vocab:5")
    raw = c.rng.rand(3, 5).astype(np.float32)
    targets = c.input("targets", "batch:3;vocab:5", values=raw / raw.sum(1, keepdims=True))
    c.call = "softmax_cross_entropy_with_logits(logits, soft targets, vocab)"
    return L.softmax_cross_entropy_with_logits(logits, targets, D("vocab", 5))


@case("sigmoid_xent")
def _(c):
    logits = c.input("logits", "batch:3;classes:4")
    targets = c.input("targets", "batch:3;classes:4", kind="uniform")
    c.call = "sigmoid_cross_entropy_with_logits(logits, targets)"
    return L.sigmoid_cross_entropy_with_logits(logits * 3.0, targets)


@case("weights_nonzero")
def _(c):
    t = c.input("targets", "batch:2;length:5", kind="int", high=3)
    c.call = "weights_nonzero(targets)"
    return L.weights_nonzero(t)


@case("corr", variants=[("mesh", "b0:2", "batch:b0")])
def _(c):
    x = c.input("x", "batch:4;seq:5;channels:3")
    c.call = "corr(x, dim=channels)"
    return L.corr(x, D("channels", 3))


# -- masks ------------------------------------------------------------------------------------
@case("masks")
def _(c):
    ids = c.input("ids", "batch:2;length:5", values=np.array([[3, 4, 1, 0, 0], [2, 0, 5, 1, 0]],
                                                              np.int32))
    pos = c.input("pos", "length:5", values=np.arange(5, dtype=np.int32))
    seg = c.input("seg", "batch:2;length:5", values=np.array([[1, 1, 2, 2, 0], [1, 2, 2, 2, 3]],
                                                              np.int32))
    c.call = ("attention_mask_ignore_padding(ids), attention_mask_autoregressive(pos), "
              "attention_mask_same_segment(seg)")
    return [L.attention_mask_ignore_padding(ids), L.attention_mask_autoregressive(pos),
            L.attention_mask_same_segment(seg)]


@case("local_block_biases")
def _(c):
    c.input("unused", "one:1")
    # attention_bias_local_2d_block is not here: mtf 0.1.21's raises "shapes are not
    # compatible" for any distinct query and memory dim names (it concatenates [w, memory_w]
    # with [memory_h, memory_w]).
    c.call = "attention_bias_local_block(mesh, block_length:3, memory_length:5)"
    return L.attention_bias_local_block(c.mesh, D("block_length", 3), D("memory_length", 5))


# -- attention --------------------------------------------------------------------------------
@case("dot_product_attention", variants=[("mesh", MESH_2x2, "batch:b0;heads:b1")])
def _(c):
    q = c.input("q", "batch:2;heads:2;length_q:3;depth_k:4")
    k = c.input("k", "batch:2;heads:2;length_kv:5;depth_k:4")
    v = c.input("v", "batch:2;heads:2;length_kv:5;depth_v:3")
    mask = c.input("mask", "batch:2;length_q:3;length_kv:5",
                   values=np.where(c.rng.rand(2, 3, 5) < 0.3, -1e9, 0.0).astype(np.float32))
    c.call = "dot_product_attention(q, k, v, mask, is_training=False)"
    return L.dot_product_attention(q, k, v, mask, is_training=False)


@case("multihead_self_attention", variants=[("mesh", MESH_2x2, "batch:b0;heads:b1"),
                                            ("dmodel", MESH_2x2, "batch:b0;d_model:b1")])
def _(c):
    x = c.input("x", "batch:2;length:4;d_model:6")
    pos = mtf.range(c.mesh, D("length", 4), tf.int32)
    c.call = ("multihead_attention(x, None, attention_mask_autoregressive(range(length)), "
              "kv_channels=d_kv:3, heads=heads:2, is_training=False)")
    mask = L.attention_mask_autoregressive(pos)
    return L.multihead_attention(x, None, mask, D("d_kv", 3), D("heads", 2), is_training=False)


@case("multihead_encdec_attention", variants=[("mesh", MESH_2x2, "batch:b0;heads:b1")])
def _(c):
    x = c.input("x", "batch:2;length:3;d_model:4")
    mem = c.input("memory", "batch:2;memory_length:5;d_model:4")
    ids = c.input("ids", "batch:2;length:5", values=np.array([[3, 4, 1, 0, 0], [2, 7, 5, 1, 6]],
                                                              np.int32))
    c.call = ("multihead_attention(x, memory, attention_mask_ignore_padding(ids), "
              "kv_channels=d_kv:2, heads=heads:2, is_training=False, name='encdec')")
    mask = L.attention_mask_ignore_padding(ids)
    return L.multihead_attention(x, mem, mask, D("d_kv", 2), D("heads", 2), is_training=False,
                                 name="encdec")


@case("multihead_attention_params_separate")
def _(c):
    x = c.input("x", "batch:2;length:3;d_model:4")
    c.call = ("q, k, v, o = multihead_attention_params(mesh, heads:2, d_model:4, d_kv:3, "
              "VariableDType(), combine=False); attention by hand")
    with tf.variable_scope("attn"):
        wq, wk, wv, wo = L.multihead_attention_params(
            c.mesh, D("heads", 2), D("d_model", 4), D("d_kv", 3), mtf.VariableDType(tf.float32),
            combine=False)
    mem = L.rename_length_to_memory_length(x)
    q = mtf.einsum([x, wq], mtf.Shape([D("batch", 2), D("heads", 2), D("length", 3),
                                        D("d_kv", 3)]))
    k = mtf.einsum([mem, wk], mtf.Shape([D("batch", 2), D("heads", 2), D("memory_length", 3),
                                          D("d_kv", 3)]))
    v = mtf.einsum([mem, wv], mtf.Shape([D("batch", 2), D("heads", 2), D("memory_length", 3),
                                          D("d_kv", 3)]))
    o = L.dot_product_attention(q, k, v, None, is_training=False)
    return mtf.einsum([o, wo], x.shape)


@case("self_attention_incremental", variants=[("mesh", MESH_2x2, "batch:b0;heads:b1")])
def _(c):
    x = c.input("x", "batch:2;d_model:4")
    prev_k = c.input("prev_k", "batch:2;heads:2;memory_length:4;d_kv:3")
    prev_v = c.input("prev_v", "batch:2;heads:2;memory_length:4;d_kv:3")
    step = mtf.constant(c.mesh, 2, mtf.Shape([]), dtype=tf.int32)
    c.call = ("multihead_self_attention_incremental(x, prev_k, prev_v, step_num=2, "
              "tf.float32, tf.float32)  # prev_k/v are zero at positions >= 2")
    keep = mtf.cast(mtf.less(mtf.range(c.mesh, D("memory_length", 4), tf.int32), 2), tf.float32)
    return list(L.multihead_self_attention_incremental(
        x, prev_k * keep, prev_v * keep, step, tf.float32, tf.float32))


@case("encdec_attention_incremental")
def _(c):
    x = c.input("x", "batch:2;d_model:4")
    wq = c.input("wq", "heads:2;d_model:4;d_kv:3")
    wo = c.input("wo", "heads:2;d_model:4;d_kv:3")
    k = c.input("k", "batch:2;heads:2;memory_length:5;d_kv:3")
    v = c.input("v", "batch:2;heads:2;memory_length:5;d_kv:3")
    mask = c.input("mask", "batch:2;memory_length:5",
                   values=np.array([[0, 0, 0, -1e9, -1e9], [0, 0, 0, 0, 0]], np.float32))
    c.call = "multihead_encdec_attention_incremental(x, wq, wo, k, v, mask)"
    return L.multihead_encdec_attention_incremental(x, wq, wo, k, v, mask)


@case("memory_compressed_attention", variants=[("mesh", MESH_2x2, "batch:b0;heads:b1")])
def _(c):
    x = c.input("x", "batch:2;length:8;d_model:4")
    c.call = ("multihead_self_attention_memory_compressed(x, mask_right=True, "
              "compression_factor=2, kv_channels=d_kv:3, heads=heads:2, is_training=False)")
    return L.multihead_self_attention_memory_compressed(
        x, True, 2, D("d_kv", 3), D("heads", 2), is_training=False)


@case("compress_mean")
def _(c):
    x = c.input("x", "batch:2;length:6;d_model:3")
    c.call = "compress_mean(x, length, 3)"
    return L.compress_mean(x, D("length", 6), 3)


@case("masked_local_attention_1d")
def _(c):
    x = c.input("x", "batch:2;length:8;d_model:4")
    c.call = ("masked_local_attention_1d(x, kv_channels=d_kv:3, heads=heads:2, "
              "is_training=False, window_size=3)")
    return L.masked_local_attention_1d(x, D("d_kv", 3), D("heads", 2), is_training=False,
                                       window_size=3)


@case("masked_local_attention_1d_split", variants=[("mesh", "b0:2", "length:b0")])
def _(c):
    x = c.input("x", "batch:2;length:8;d_model:4")
    c.call = ("masked_local_attention_1d(x, kv_channels=d_kv:3, heads=heads:2, "
              "is_training=False, window_size=3, length_per_split=4)")
    return L.masked_local_attention_1d(x, D("d_kv", 3), D("heads", 2), is_training=False,
                                       window_size=3, length_per_split=4)


@case("masked_local_attention_1d_incremental")
def _(c):
    x = c.input("x", "batch:2;d_model:4")
    prev_k = c.input("prev_k", "batch:2;heads:2;window_length:3;d_kv:3")
    prev_v = c.input("prev_v", "batch:2;heads:2;window_length:3;d_kv:3")
    step = mtf.constant(c.mesh, 4, mtf.Shape([]), dtype=tf.int32)
    c.call = "masked_local_attention_1d_incremental(x, prev_k, prev_v, step_num=4)"
    return list(L.masked_local_attention_1d_incremental(x, prev_k, prev_v, step))


def _attention_context():
    """The fields of transformer.Context that attention() reads (eval mode, no 2-D resharding)."""
    model = types.SimpleNamespace(layout=None, mesh_shape=None)
    return types.SimpleNamespace(train=False, model=model)


@case("local_attention_1d", variants=[("mesh", "b0:2", "length:b0")])
def _(c):
    q = c.input("q", "batch:2;heads:2;length:8;d_k:3")
    k = c.input("k", "batch:2;heads:2;length:8;d_k:3")
    v = c.input("v", "batch:2;heads:2;length:8;d_v:2")
    c.call = ("transformer.attention.local_attention_1d(q, k, v, length, d_k, d_v, "
              "fully_autoregressive=True, radius=2, length_dim_num_splits=2, "
              "attention_kwargs={'context': (train=False)})")
    ctx = _attention_context()
    return mtf_attention.local_attention_1d(
        q, k, v, D("length", 8), D("d_k", 3), D("d_v", 2), fully_autoregressive=True, radius=2,
        length_dim_num_splits=2, attention_kwargs={"context": ctx})


@case("local_attention_1d_bidirectional")
def _(c):
    q = c.input("q", "batch:2;length:8;d_k:3")
    k = c.input("k", "batch:2;length:8;d_k:3")
    seq = c.input("sequence_id", "batch:2;length:8",
                  values=np.array([[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 3, 3, 0]], np.int32))
    c.call = ("transformer.attention.local_attention_1d(q, k, None, length, d_k, d_k, "
              "fully_autoregressive=False, radius=2, sequence_id=sequence_id, "
              "attention_kwargs={'context': (train=False)})")
    ctx = _attention_context()
    return mtf_attention.local_attention_1d(
        q, k, None, D("length", 8), D("d_k", 3), D("d_k", 3), fully_autoregressive=False,
        radius=2, sequence_id=seq, attention_kwargs={"context": ctx})


@case("local_self_attention_spatial_blocks",
      variants=[("mesh", "b0:2", "num_w_blocks:b0")])
def _(c):
    x = c.input("x", "batch:2;num_w_blocks:2;w:3;d_model:4")
    c.call = ("local_self_attention_spatial_blocks(x, kv_channels=d_kv:2, heads=heads:2, "
              "is_training=False, mask_right=True)")
    return L.local_self_attention_spatial_blocks(x, D("d_kv", 2), D("heads", 2), False,
                                                 mask_right=True)


@case("local_2d_self_attention_spatial_blocks")
def _(c):
    x = c.input("x", "batch:1;num_h_blocks:2;num_w_blocks:2;h:2;w:2;d_model:4")
    c.call = ("local_2d_self_attention_spatial_blocks(x, kv_channels=d_kv:2, heads=heads:2, "
              "is_training=False, mask_right=False)")
    return L.local_2d_self_attention_spatial_blocks(x, D("d_kv", 2), D("heads", 2), False)


# -- embedding --------------------------------------------------------------------------------
@case("embedding", variants=[("mesh", MESH_2x2, "vocab:b0;d_model:b1")])
def _(c):
    ids = c.input("ids", "batch:2;length:5", kind="int", high=10)
    c.call = "embedding(ids, vocab:10, d_model:6, VariableDType(tf.float32))"
    return L.embedding(ids, D("vocab", 10), D("d_model", 6), mtf.VariableDType(tf.float32))


# -- convolutions and pooling -----------------------------------------------------------------
@case("conv1d", variants=[("mesh", MESH_2x2, "batch:b0;d_model:b1")])
def _(c):
    x = c.input("x", "batch:2;length:6;d_model:4")
    c.call = "conv1d(x, output_dim=out:3, filter_size=3)"
    return L.conv1d(x, D("out", 3), filter_size=3,
                    filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv1d_valid_stride")
def _(c):
    x = c.input("x", "outer:2;batch:2;length:8;d_model:3")
    c.call = "conv1d(x, output_dim=out:2, filter_size=3, stride=2, padding='VALID')"
    return L.conv1d(x, D("out", 2), filter_size=3, stride=2, padding="VALID",
                    filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv2d", variants=[("mesh", MESH_2x2, "batch:b0;out:b1"), ("cmesh", "b0:2", "c:b0")])
def _(c):
    x = c.input("x", "batch:2;h:5;w:4;c:4")
    c.call = "conv2d(x, out:4, filter_size=(3, 3), strides=(1, 1), padding='SAME')"
    return L.conv2d(x, D("out", 4), filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv2d_with_blocks", variants=[("mesh", MESH_2x2, "h_blocks:b0;w_blocks:b1")])
def _(c):
    x = c.input("x", "batch:2;h_blocks:2;w_blocks:2;h:3;w:2;c:2")
    c.call = ("conv2d_with_blocks(x, out:3, filter_size=(3, 3), h_blocks_dim=h_blocks, "
              "w_blocks_dim=w_blocks)")
    return L.conv2d_with_blocks(x, D("out", 3), filter_size=(3, 3),
                                h_blocks_dim=D("h_blocks", 2), w_blocks_dim=D("w_blocks", 2),
                                filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv2d_transpose_with_blocks", variants=[("mesh", MESH_2x2, "h_blocks:b0;w_blocks:b1")])
def _(c):
    x = c.input("x", "batch:2;h_blocks:2;w_blocks:2;h:2;w:3;c:2")
    c.call = ("conv2d_transpose_with_blocks(x, out:3, filter_size=(2, 2), strides=(2, 2), "
              "h_blocks_dim=h_blocks, w_blocks_dim=w_blocks)")
    return L.conv2d_transpose_with_blocks(
        x, D("out", 3), h_blocks_dim=D("h_blocks", 2), w_blocks_dim=D("w_blocks", 2),
        filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv3d_with_blocks", variants=[("mesh", MESH_2x2, "d_blocks:b0;h_blocks:b1")])
def _(c):
    x = c.input("x", "batch:1;d_blocks:2;h_blocks:2;d:2;h:2;w:3;c:2")
    c.call = ("conv3d_with_blocks(x, out:2, filter_size=(3, 3, 3), d_blocks_dim=d_blocks, "
              "h_blocks_dim=h_blocks)")
    return L.conv3d_with_blocks(x, D("out", 2), d_blocks_dim=D("d_blocks", 2),
                                h_blocks_dim=D("h_blocks", 2),
                                filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv3d_transpose_with_blocks")
def _(c):
    x = c.input("x", "batch:1;d_blocks:2;h_blocks:1;d:2;h:2;w:2;c:2")
    c.call = ("conv3d_transpose_with_blocks(x, out:2, filter_size=(2, 2, 2), "
              "d_blocks_dim=d_blocks, h_blocks_dim=h_blocks)")
    return L.conv3d_transpose_with_blocks(
        x, D("out", 2), d_blocks_dim=D("d_blocks", 2), h_blocks_dim=D("h_blocks", 1),
        filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv2d_transpose")
def _(c):
    x = c.input("x", "batch:2;h:3;w:2;c:3")
    c.call = "conv2d_transpose(x, out:2, filter_size=(2, 2), strides=(2, 2))"
    return L.conv2d_transpose(x, D("out", 2),
                              filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv3d")
def _(c):
    x = c.input("x", "batch:2;d:3;h:4;w:3;c:2")
    c.call = "conv3d(x, out:3, filter_size=(3, 3, 3), strides=(1, 2, 1), padding='SAME')"
    return L.conv3d(x, D("out", 3), strides=(1, 2, 1),
                    filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("conv3d_transpose")
def _(c):
    x = c.input("x", "batch:1;d:2;h:2;w:3;c:2")
    c.call = "conv3d_transpose(x, out:2, filter_size=(2, 2, 2), strides=(2, 2, 2))"
    return L.conv3d_transpose(x, D("out", 2),
                              filter_initializer=tf.random_normal_initializer(stddev=0.3))


@case("separable_conv1d", variants=[("mesh", "b0:2", "length:b0")])
def _(c):
    x = c.input("x", "batch:2;length:6;depth:3")
    c.call = "separable_conv1d(x, out:4, min_relative_pos=-1, max_relative_pos=2)"
    return L.separable_conv1d(x, D("out", 4), min_relative_pos=-1, max_relative_pos=2)


@case("pooling", variants=[("mesh", MESH_2x2, "batch:b0;channels:b1"),
                           ("spatial", "b0:2", "height:b0")])
def _(c):
    x = c.input("x", "batch:2;depth:3;height:4;width:6;channels:2")
    c.call = ("max_pool2d(x, (2, 3)), avg_pool2d(x, (2, 3)), max_pool3d(x, (3, 2, 3)), "
              "avg_pool3d(x, (3, 2, 3))")
    return [L.max_pool2d(x, (2, 3)), L.avg_pool2d(x, (2, 3)), L.max_pool3d(x, (3, 2, 3)),
            L.avg_pool3d(x, (3, 2, 3))]


# -- gradient tricks --------------------------------------------------------------------------
@case("reversible_half_residual")
def _(c):
    x1 = c.input("x1", "batch:3;d_model:4")
    x2 = c.input("x2", "batch:3;d_model:4")
    c.call = ("two reversible_half_residual_and_swap blocks, f_i = tanh(dense(x, d_model, "
              "name='f_i')); output (y1 + y2) / 2")
    a, ab, b, bb = x1, None, x2, None
    for i in range(2):
        def f(x, i=i):
            return mtf.tanh(L.dense(x, D("d_model", 4), reduced_dims=[D("d_model", 4)],
                                    name="f_%d" % i))
        a, ab, b, bb = L.reversible_half_residual_and_swap(a, ab, b, bb, f)
    return (a + b) * 0.5


@case("clip_activation_gradient")
def _(c):
    x = c.input("x", "batch:3;d_model:4")
    c.call = "clip_activation_gradient(x * 5, clip_rms_norm=0.1) * 2"
    return L.clip_activation_gradient(x * 5.0, clip_rms_norm=0.1) * 2.0


@case("recompute_grad")
def _(c):
    x = c.input("x", "batch:3;d_model:4")
    c.call = "mtf.recompute_grad(lambda x: tanh(dense(x, hidden:5, name='inner')) , [x])"

    def fn(x):
        return mtf.tanh(L.dense(x, D("hidden", 5), reduced_dims=[D("d_model", 4)],
                                name="inner"))

    return mtf.recompute_grad(fn, [x])


# -- running a case ---------------------------------------------------------------------------
def _dims(t):
    return [d.name for d in t.shape.dims]


_COUNTED = {"allreduce": "all_reduce", "allconcat": "all_gather", "alltoall": "all_to_all",
            "receive": "permute"}


def _seed(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _new_mesh_impl(mesh_shape, layout):
    shape = mtf.convert_to_shape(mesh_shape)
    return mtf.placement_mesh_impl.PlacementMeshImpl(
        shape, mtf.convert_to_layout_rules(layout), [""] * shape.size)


def count_forward_collectives(fn, base, mesh_shape, layout):
    """The collectives mtf's lowering of the forward pass calls, by kind (a fresh graph)."""
    tf.reset_default_graph()
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    outs = fn(Ctx(mesh, np.random.RandomState(_seed(base))))
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    impl = _new_mesh_impl(mesh_shape, layout)
    counts = {v: 0 for v in _COUNTED.values()}
    for method, kind in _COUNTED.items():
        original = getattr(impl, method)

        def counted(*args, _original=original, _kind=kind):
            # a receive from oneself (mtf's shift by 0 processors) moves nothing: not counted
            if _kind != "permute" or list(args[2]) != list(range(len(args[2]))):
                counts[_kind] += 1
            return _original(*args)
        setattr(impl, method, counted)
    lowering = mtf.Lowering(graph, {mesh: impl}, autostack=False)
    for o in outs:
        lowering.export_to_tf_tensor(o)
    return counts


def run_case(name, out_dir):
    fn, mesh_shape, layout = CASES[name]
    base = name.split("@")[0]
    collectives = count_forward_collectives(fn, base, mesh_shape, layout)
    seed = _seed(base)
    rng = np.random.RandomState(seed)
    tf.reset_default_graph()
    tf.set_random_seed(seed % 1000)
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    c = Ctx(mesh, rng)
    outs = fn(c)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    float_outs = [i for i, o in enumerate(outs) if o.dtype.is_floating]
    rs = {i: rng.randn(*[d.size for d in outs[i].shape.dims]).astype(np.float32)
          for i in float_outs}
    objective = None
    for i in float_outs:
        r = mtf.import_tf_tensor(mesh, tf.constant(rs[i]), outs[i].shape)
        term = mtf.reduce_sum(outs[i] * r)
        objective = term if objective is None else objective + term
    float_inputs = [n for n, (a, t) in c.inputs.items() if a.dtype == np.float32]
    tvars = list(graph.trainable_variables)
    grads = []
    if objective is not None:
        grads = mtf.gradients([objective], [v.outputs[0] for v in tvars] +
                              [c.inputs[n][1] for n in float_inputs])
    mesh_impl = _new_mesh_impl(mesh_shape, layout)
    lowering = mtf.Lowering(graph, {mesh: mesh_impl}, autostack=False)
    t_outs = [lowering.export_to_tf_tensor(o) for o in outs]
    grad_names = ["var/" + v.name for v in tvars] + ["in/" + n for n in float_inputs]
    t_grads = {g: lowering.export_to_tf_tensor(t) for g, t in zip(grad_names, grads)
               if t is not None}
    all_vars = list(graph.all_variables)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        # fixed, non-trivial values: each variable's initial value plus a perturbation
        values = {}
        for v in all_vars:
            init = s.run(v.get_master())
            scale = float(init.std()) if init.size > 1 and init.std() > 0 else 1.0
            vrng = np.random.RandomState(_seed(base + v.name))
            values[v.name] = (init + 0.3 * scale * vrng.randn(*init.shape)).astype(init.dtype)
            s.run(v.assign_to_master(values[v.name]))
        s.run(lowering.copy_masters_to_slices())
        out_v, grad_v = s.run([t_outs, t_grads])
    data = {}
    meta = {"case": name, "call": c.call, "mesh_shape": mesh_shape, "layout": layout,
            "objective": "sum_i reduce_sum(out_i * r_i) over float outputs",
            "dims": {}, "variables": {}, "mtf_collectives": collectives}
    for n, (a, t) in c.inputs.items():
        data["in/" + n] = a
        meta["dims"]["in/" + n] = _dims(t)
    for v in all_vars:
        data["var/" + v.name] = values[v.name]
        meta["dims"]["var/" + v.name] = [d.name for d in v.shape.dims]
        meta["variables"][v.name] = {"trainable": bool(v.trainable)}
    for i, (o, val) in enumerate(zip(outs, out_v)):
        data["out/%d" % i] = val
        meta["dims"]["out/%d" % i] = _dims(o)
        if i in rs:
            data["r/%d" % i] = rs[i]
    for g, val in grad_v.items():
        data["grad/" + g] = val
    data["meta"] = np.array(json.dumps(meta))
    path = os.path.join(out_dir, name.replace("@", "@") + ".npz")
    np.savez_compressed(path, **data)
    print("%-45s outs %s vars %s collectives %s" % (
        name, [tuple(v.shape) for v in out_v], sorted(values),
        {k: v for k, v in collectives.items() if v}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for the .npz cases")
    p.add_argument("--cases", default="", help="comma-separated names (default: all)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    a = p.parse_args()
    if a.list:
        print("\n".join(CASES))
        return
    os.makedirs(a.out, exist_ok=True)
    names = [n for n in a.cases.split(",") if n] or list(CASES)
    for n in names:
        run_case(n, a.out)


if __name__ == "__main__":
    main()
