"""The dense layer: mtf's variable names, axis order, expert dims and init."""
import numpy as np
import tensorflow as tf

import namedmesh as nm


def test_dense_names_and_axis_order():
    mesh = nm.Mesh()
    store = nm.VariableStore(seed=0)
    x = np.random.RandomState(0).randn(2, 4, 8).astype(np.float32)  # experts, batch, d_model
    t = nm.import_tf_tensor(mesh, x, "experts:2;batch:4;d_model:8")
    y = nm.dense(t, "hidden:16", reduced_dims=["d_model:8"], expert_dims=["experts:2"],
                 use_bias=False, name="wi", store=store)
    assert y.shape == nm.convert_to_shape("experts:2;batch:4;hidden:16")
    kernel = store.variables()["wi/kernel"]
    assert kernel.shape == (2, 8, 16)  # expert + reduced + new, as mtf
    assert store.shapes()["wi/kernel"].names == ("experts", "d_model", "hidden")
    want = np.einsum("ebm,emh->ebh", x, kernel.numpy())
    np.testing.assert_allclose(nm.export_to_tf_tensor(y).numpy(), want, rtol=1e-5, atol=1e-5)


def test_dense_default_init_is_variance_scaling():
    mesh = nm.Mesh()
    store = nm.VariableStore(seed=1)
    t = nm.zeros(mesh, "batch:2;d_model:256")
    nm.dense(t, "hidden:512", reduced_dims=["d_model:256"], name="ff", store=store)
    k = store.variables()["ff/kernel"].numpy()
    assert abs(k.std() - np.sqrt(1 / 256) * 0.88) < 0.004  # truncated at 2 stddev
    assert np.abs(k).max() <= 2 * np.sqrt(1 / 256) + 1e-6
    assert np.all(store.variables()["ff/bias"].numpy() == 0)


def test_dense_reduced_dim_named_like_new_dim_is_renamed():
    mesh = nm.Mesh()
    store = nm.VariableStore()
    t = nm.ones(mesh, "batch:2;d_model:4")
    y = nm.dense(t, "d_model:4", reduced_dims=["d_model:4"], name="proj", store=store)
    assert y.shape.names == ("batch", "d_model")
    assert store.shapes()["proj/kernel"].names == ("_d_model", "d_model")


def test_dense_gradients_reach_variables():
    mesh = nm.Mesh()
    store = nm.VariableStore()
    t = nm.ones(mesh, "batch:2;d_model:4")
    nm.dense(t, "hidden:3", reduced_dims=["d_model:4"], store=store)
    with tf.GradientTape() as tape:
        y = nm.dense(t, "hidden:3", reduced_dims=["d_model:4"], store=store)
        loss = nm.export_to_tf_tensor(nm.reduce_sum(y))
    grads = tape.gradient(loss, store.trainable_variables)
    np.testing.assert_allclose(grads[0].numpy(), np.full((4, 3), 2.0))
    np.testing.assert_allclose(grads[1].numpy(), np.full((3,), 2.0))
