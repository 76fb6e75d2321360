"""Property test: a transformer block made of mtf's layers (embedding, masks, RMS norm,
multi-head attention, layer norm, dense-relu-dense, logits, cross-entropy with z-loss) on
random meshes and layouts gives the one-device loss and gradients of every variable."""
import os

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import namedmesh as nm

L = nm.layers
EXAMPLES = int(os.environ.get("NAMEDMESH_LAYER_PROPERTY_EXAMPLES", "24"))
MESHES = ["x:2", "x:4", "x:2;y:2", "x:2;y:4", "x:4;y:2", "x:2;y:2;z:2"]
DIMS = ["batch", "length", "memory_length", "d_model", "heads", "d_kv", "d_ff", "vocab"]
IDS = np.array([[5, 3, 9, 0], [7, 2, 0, 0], [1, 1, 4, 6], [8, 3, 0, 0]], np.int32)
TARGETS = np.array([[3, 9, 1, 0], [2, 4, 0, 0], [1, 4, 6, 2], [3, 5, 0, 0]], np.int32)


@st.composite
def meshes_and_layouts(draw):
    mesh_shape = draw(st.sampled_from(MESHES))
    rules, free = [], list(DIMS)
    for name in nm.convert_to_shape(mesh_shape).names:   # each mesh dim splits one dim or none
        dim = draw(st.sampled_from(free + [None]))
        if dim is not None:
            rules.append("%s:%s" % (dim, name))
            free.remove(dim)
    return mesh_shape, ";".join(rules)


def block_loss_and_grads(mesh, store):
    with tf.GradientTape() as tape:
        ids = nm.import_tf_tensor(mesh, IDS, "batch:4;length:4")
        targets = nm.import_tf_tensor(mesh, TARGETS, "batch:4;length:4")
        with store.as_default():
            x = L.embedding(ids, "vocab:16", "d_model:8")
            mask = (L.attention_mask_autoregressive(nm.range(mesh, "length:4", tf.int32))
                    + L.attention_mask_ignore_padding(ids))
            x = x + L.multihead_attention(L.rms_norm(x, "d_model:8"), None, mask, "d_kv:4",
                                          "heads:4", is_training=False)
            x = x + L.dense_relu_dense(L.layer_norm(x, "d_model:8"), "d_ff:8", is_training=False)
            logits = L.dense(x, "vocab:16", reduced_dims=["d_model:8"], name="logits")
            loss = L.softmax_cross_entropy_with_logits(logits, targets, "vocab:16", z_loss=1e-3)
            weights = L.weights_nonzero(targets)
            loss = nm.export_to_tf_tensor(nm.reduce_sum(loss * weights) / nm.reduce_sum(weights))
    names = sorted(store.variables())
    grads = tape.gradient(loss, [store.variables()[n] for n in names],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss.numpy(), {n: tf.convert_to_tensor(g).numpy() for n, g in zip(names, grads)}


_EXPECTED = []


def expected():
    if not _EXPECTED:
        _EXPECTED.append(block_loss_and_grads(nm.Mesh(), nm.VariableStore(seed=7)))
    return _EXPECTED[0]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(meshes_and_layouts())
def test_transformer_block_on_any_mesh_equals_one_device(mesh_and_layout):
    mesh_shape, layout = mesh_and_layout
    want_loss, want_grads = expected()
    loss, grads = block_loss_and_grads(nm.Mesh(mesh_shape, layout), nm.VariableStore(seed=7))
    np.testing.assert_allclose(loss, want_loss, atol=2e-5, err_msg="%s %s" % mesh_and_layout)
    assert sorted(grads) == sorted(want_grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, want_grads[name], atol=2e-5,
                                   err_msg="%s, %s %s" % (name, mesh_shape, layout))
