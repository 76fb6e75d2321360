"""What the golden cases cannot show: random layers (statistics, seeds, mesh = one device),
initializers and the unit-scaling convention, the variable store, batch_norm's updates,
block convolutions against whole-image ones, and clear errors for bad input."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm

L = nm.layers


def _np(t, names=None):
    value = nm.export_to_tf_tensor(t).numpy()
    if names is None:
        return value
    return np.transpose(value, [t.shape.names.index(n) for n in names])


# -- random layers -------------------------------------------------------------------------------
def test_layer_dropout_is_seeded_broadcast_and_mesh_invariant():
    x = tf.ones([8, 16, 32])
    results = []
    for mesh in (nm.Mesh(), nm.Mesh("b0:2;b1:2", "batch:b0;d_ff:b1")):
        store = nm.VariableStore(seed=1)
        t = nm.import_tf_tensor(mesh, x, "batch:8;length:16;d_model:32")
        h = L.dense_relu_dense(t, "d_ff:64", is_training=True, dropout=0.5,
                               dropout_broadcast_dims=["length:16"], store=store, seed=3)
        same = L.dense_relu_dense(t, "d_ff:64", is_training=True, dropout=0.5,
                                  dropout_broadcast_dims=["length:16"], store=store, seed=3)
        off = L.dense_relu_dense(t, "d_ff:64", is_training=False, dropout=0.5, store=store)
        results.append((_np(h), _np(same), _np(off)))
    (h, same, off), (h_mesh, _, off_mesh) = results
    np.testing.assert_array_equal(h, same)
    np.testing.assert_allclose(h_mesh, h, atol=1e-5)       # the mask does not depend on the mesh
    np.testing.assert_allclose(off_mesh, off, atol=1e-5)
    assert not np.allclose(h, off)
    # the hidden mask is constant along length: the same output at every position
    np.testing.assert_allclose(h[:, 1:], np.broadcast_to(h[:, :1], h[:, 1:].shape), atol=1e-5)


def test_attention_dropout_keeps_half_the_weights():
    mesh = nm.Mesh()
    q = nm.import_tf_tensor(mesh, tf.zeros([4, 8, 2]), "heads:4;length:8;d_k:2")
    k = nm.import_tf_tensor(mesh, tf.zeros([4, 8, 2]), "heads:4;memory_length:8;d_k:2")
    v = nm.import_tf_tensor(mesh, tf.eye(8, batch_shape=[4]), "heads:4;memory_length:8;d_v:8")
    out = _np(L.dot_product_attention(q, k, v, None, True, dropout=0.5, seed=11))
    # uniform weights 1/8, kept ones scaled to 1/4: every entry is 0 or 0.25
    assert set(np.round(out.ravel(), 6)) <= {0.0, 0.25}
    assert 0.35 < np.mean(out > 0) < 0.65


def test_multiplicative_jitter_range_and_seed():
    mesh = nm.Mesh("b0:2", "a:b0")
    x = nm.ones(mesh, "a:64;b:32")
    y = _np(L.multiplicative_jitter(x, epsilon=0.1, seed=5))
    assert y.min() >= 0.9 and y.max() < 1.1 and y.std() > 0.03
    np.testing.assert_array_equal(_np(L.multiplicative_jitter(x, epsilon=0.1, seed=5)), y)
    np.testing.assert_allclose(_np(L.multiplicative_jitter(nm.ones(nm.Mesh(), "a:64;b:32"),
                                                           epsilon=0.1, seed=5)), y)
    assert L.multiplicative_jitter(x, epsilon=0) is x


def test_annealed_dropout_schedule():
    mesh = nm.Mesh()
    x = nm.ones(mesh, "a:100;b:100")
    kept = [np.mean(_np(L.annealed_dropout(x, True, 100, 200, init_rate=0.5, step=s, seed=1)) > 0)
            for s in (100, 150, 200)]
    assert abs(kept[0] - 0.5) < 0.03 and abs(kept[1] - 0.75) < 0.03 and kept[2] == 1.0
    y = _np(L.annealed_dropout(x, True, 100, 200, init_rate=0.5, step=150, seed=1))
    np.testing.assert_allclose(y[y > 0], 1 / 0.75, rtol=1e-6)      # kept values scaled up
    assert L.annealed_dropout(x, False, 100, 200, init_rate=0.5, step=0) is x
    with pytest.raises(nm.ConfigError, match="step="):
        L.annealed_dropout(x, True, 100, 200, init_rate=0.5)


# -- initializers and the unit-scaling convention ------------------------------------------------
@pytest.mark.parametrize("mode, distribution, n", [
    ("fan_in", "normal", 256), ("fan_out", "normal", 64), ("fan_avg", "uniform", 160)])
def test_variance_scaling_initializer(mode, distribution, n):
    store = nm.VariableStore(seed=2)
    t = nm.zeros(nm.Mesh(), "batch:2;d_model:256")
    init = L.VarianceScalingInitializer(scale=2.0, mode=mode, distribution=distribution)
    L.dense(t, "hidden:64", reduced_dims=["d_model:256"], kernel_initializer=init, store=store)
    k = store.variables()["dense/kernel"].numpy()
    stddev = np.sqrt(2.0 / n)
    if distribution == "normal":   # truncated at two stddevs: std 0.88 of the untruncated
        assert abs(k.std() / stddev - 0.88) < 0.03 and np.abs(k).max() <= 2 * stddev + 1e-6
    else:
        assert abs(k.std() / stddev - 1.0) < 0.03 and np.abs(k).max() <= stddev * 3 ** 0.5
    with pytest.raises(nm.ConfigError, match="mode"):
        L.VarianceScalingInitializer(mode="fan_sideways")


def test_unit_scaling_convention_divides_contractions_and_uses_unit_init():
    store = nm.VariableStore(seed=3)
    mesh = nm.Mesh()
    x = nm.ones(mesh, "batch:2;d_model:64")
    with L.use_unit_scaling_convention():
        assert L.unit_scaling_convention()
        y = L.dense(x, "hidden:32", reduced_dims=["d_model:64"], use_bias=False, store=store)
        with pytest.raises(nm.ConfigError, match="fan_in"):
            L.VarianceScalingInitializer(mode="fan_out")([], [])
    assert not L.unit_scaling_convention()
    k = store.variables()["dense/kernel"].numpy()
    assert abs(k.std() - 0.88) < 0.03                  # unit variance (truncated normal)
    np.testing.assert_allclose(_np(y)[0], k.sum(0) / 8.0, rtol=1e-5)   # divided by sqrt(64)


# -- the variable store --------------------------------------------------------------------------
def test_layers_need_a_store_and_loaded_values_must_fit():
    x = nm.ones(nm.Mesh(), "batch:2;d_model:4")
    with pytest.raises(nm.ConfigError, match="store.as_default"):
        L.layer_norm(x, "d_model:4")
    store = nm.VariableStore(values={"layer_prepostprocess/layer_norm/layer_norm_scale":
                                     np.ones(5)})
    with pytest.raises(nm.ShapeError, match="layer_norm_scale.*shape"):
        L.layer_norm(x, "d_model:4", store=store)
    store = nm.VariableStore(values={"rms_norm/scale": np.full(4, 2.0), "elsewhere": np.ones(1)})
    y = L.rms_norm(x, "d_model:4", store=store)
    np.testing.assert_allclose(_np(y), 2.0 / np.sqrt(1 + 1e-6), rtol=1e-6)
    assert store.unused_values() == ["elsewhere"]


def test_batch_norm_updates_assign_the_moving_statistics():
    store = nm.VariableStore(seed=0)
    data = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    x = nm.import_tf_tensor(nm.Mesh("b0:2", "batch:b0"), data, "batch:4;length:3;d_model:2")
    y, updates = L.batch_norm(x, True, 0.9, dims_idx_start=0, dims_idx_end=2, store=store)
    old = store.variables()["batch_norm/bn_moving_mean"].numpy()
    assert [u.name for u in updates] == ["batch_norm/bn_moving_mean",
                                         "batch_norm/bn_moving_variance"]
    for u in updates:
        u.assign()
    np.testing.assert_allclose(store.variables()["batch_norm/bn_moving_mean"].numpy(),
                               0.9 * old + 0.1 * data.mean((0, 1)), rtol=1e-5)
    np.testing.assert_allclose(_np(y).mean((0, 1)), [0.0, 0.0], atol=1e-5)
    _, none = L.batch_norm(x, False, 0.9, dims_idx_start=0, dims_idx_end=2, store=store)
    assert none == []


def test_summary_for_clip_activation_gradient():
    x = nm.import_tf_tensor(nm.Mesh(), np.array([[3.0, 4.0], [0.0, 0.0]], np.float32),
                            "batch:2;d:2")
    values = L.summary_for_clip_activation_gradient(x, "act", ["batch:2"])
    np.testing.assert_allclose(values["mean/"], 1.75)
    np.testing.assert_allclose(values["rms_max/act"], np.sqrt(12.5), rtol=1e-6)
    np.testing.assert_allclose(values["rms_var/act"], 12.5 / 4, rtol=1e-6)


def test_embedding_with_an_ensemble_dim_and_ids_out_of_range():
    store = nm.VariableStore(seed=0)
    ids = nm.import_tf_tensor(nm.Mesh(), tf.constant([[1, 12]]), "batch:1;length:2")
    w = L.embedding_weights(ids.mesh, "vocab:10", "d_model:3", ensemble_dim="ensemble:2",
                            store=store, name="shared")
    assert w.shape.names == ("ensemble", "vocab", "d_model")
    out = _np(L.embedding(ids, "vocab:10", "d_model:3", store=store))
    np.testing.assert_allclose(out[0, 0], store.variables()["embedding"].numpy()[1])
    np.testing.assert_array_equal(out[0, 1], 0.0)   # id 12 is outside the vocab: a zero row


# -- block convolutions are SAME convolutions of the whole image ---------------------------------
def test_conv2d_with_blocks_equals_the_whole_image_convolution():
    data = np.random.RandomState(0).randn(2, 2, 2, 4, 3, 3).astype(np.float32)
    whole = data.transpose(0, 1, 3, 2, 4, 5).reshape(2, 8, 6, 3)    # [batch, h, w, c]
    store = nm.VariableStore(seed=1)
    mesh = nm.Mesh("b0:2;b1:2", "h_blocks:b0;w_blocks:b1")
    x = nm.import_tf_tensor(mesh, data, "batch:2;h_blocks:2;w_blocks:2;h:4;w:3;c:3")
    with nm.trace_collectives() as trace:
        y = L.conv2d_with_blocks(x, "out:5", h_blocks_dim="h_blocks:2", w_blocks_dim="w_blocks:2",
                                 store=store)
    kernel = store.variables()["conv2d/kernel"].numpy()
    want = tf.nn.conv2d(whole, kernel, 1, "SAME").numpy()
    got = _np(y).transpose(0, 1, 3, 2, 4, 5).reshape(2, 8, 6, 5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert {r.kind for r in trace.records} == {"permute"}             # halo exchanges only


# -- bad input -----------------------------------------------------------------------------------
MESH = nm.Mesh()


def _t(shape, dtype=tf.float32):
    return nm.zeros(MESH, shape, dtype)


@pytest.mark.parametrize("call, error, words", [
    (lambda s: L.softmax_cross_entropy_with_logits(_t("b:2;v:3"), _t("c:2", dtype=tf.int32),
                                                   "v:3"), nm.ShapeError, "hard targets"),
    (lambda s: L.softmax_cross_entropy_with_logits(_t("b:2;v:3"), _t("b:2;v:3"), "w:3"),
     nm.ShapeError, "vocab_dim w:3"),
    (lambda s: L.sigmoid_cross_entropy_with_logits(_t("b:2"), _t("c:2")), nm.ShapeError,
     "same dims"),
    (lambda s: L.layer_norm(_t("b:2;d:3"), "e:3", store=s), nm.ShapeError, "e:3"),
    (lambda s: L.dense(_t("b:2;d:3"), "h:4", reduced_dims=["q:3"], store=s), nm.ShapeError, "q:3"),
    (lambda s: L.dense_product(_t("b:2;d:3"), ["d:3"], ["h:4"], ["nope"], store=s),
     nm.ConfigError, "nope"),
    (lambda s: L.max_pool2d(_t("b:2;h:5;w:4;c:1"), (2, 2)), nm.ShapeError, "h:5"),
    (lambda s: L.compress_mean(_t("b:2;l:5"), "l:5", 2), nm.ShapeError, "compression_factor"),
    (lambda s: L.conv2d_with_blocks(_t("b:1;hb:2;wb:1;h:2;w:2;c:1"), "o:1", filter_size=(2, 2),
                                    h_blocks_dim="hb:2", store=s), nm.ShapeError, "odd"),
    (lambda s: L.local_2d_self_attention_spatial_blocks(_t("b:1;nh:2;nw:2;h:2;w:2;d:4"), "k:2",
                                                        "heads:2", False, mask_right=True,
                                                        store=s),
     nm.ConfigError, "mask_right"),
    (lambda s: L.multihead_attention(_t("b:2;l:3;d:4"), _t("c:2;m:3;d:4"), None, "k:2", "h:2",
                                     False, store=s), nm.ShapeError, "memory batch"),
    (lambda s: L.batch_norm(_t("b:2;d:3"), True, 0.9, dims_idx_start=1, dims_idx_end=1, store=s),
     nm.ShapeError, "select no dims"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call(nm.VariableStore())
