"""Convolutions and pooling on meshes: the forward ops equal TensorFlow's on one device, and
mtf's eight backprop functions equal the forward ops' gradients, on layouts that split batch,
channels and spatial dims.  (Values against mtf itself: test_ops_mtf.py.)"""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm

CASES = {  # forward, input dims, filter dims, strides, TF reference, backprops
    "conv2d": (nm.conv2d_with_filter, "batch:2;h:8;w:8;in:4", "fh:3;fw:3;in:4;out:6",
               [1, 2, 2, 1], lambda x, f, s: tf.nn.conv2d(x, f, s, "SAME"),
               nm.conv2d_backprop_input, nm.conv2d_backprop_filter),
    "conv2d_transpose": (nm.conv2d_transpose_with_filter, "batch:2;h:4;w:4;in:4",
                         "fh:2;fw:2;out:6;in:4", [1, 2, 2, 1],
                         lambda x, f, s: tf.nn.conv2d_transpose(x, f, [2, 8, 8, 6], s, "SAME"),
                         nm.conv2d_transpose_backprop_input, nm.conv2d_transpose_backprop_filter),
    "conv3d": (nm.conv3d_with_filter, "batch:2;d:4;h:4;w:4;in:2", "fd:2;fh:2;fw:2;in:2;out:4",
               [1, 2, 2, 2, 1], lambda x, f, s: tf.nn.conv3d(x, f, s, "SAME"),
               nm.conv3d_backprop_input, nm.conv3d_backprop_filter),
    "conv3d_transpose": (nm.conv3d_transpose_with_filter, "batch:2;d:2;h:2;w:2;in:2",
                         "fd:2;fh:2;fw:2;out:4;in:2", [1, 2, 2, 2, 1],
                         lambda x, f, s: tf.nn.conv3d_transpose(x, f, [2, 4, 4, 4, 4], s, "SAME"),
                         nm.conv3d_transpose_backprop_input, nm.conv3d_transpose_backprop_filter),
}
LAYOUTS = [("", ""), ("m:2;n:2", "batch:m;in:n"), ("m:2;n:2", "h:m;out:n")]


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("mesh_shape,layout", LAYOUTS)
def test_conv_and_its_backprop_functions(kind, mesh_shape, layout):
    forward, x_dims, f_dims, strides, reference, backprop_input, backprop_filter = CASES[kind]
    mesh = nm.Mesh(mesh_shape, layout)
    rng = np.random.RandomState(len(kind))
    x = tf.constant(rng.randn(*nm.convert_to_shape(x_dims).sizes).astype(np.float32))
    f = tf.constant(rng.randn(*nm.convert_to_shape(f_dims).sizes).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([x, f])
        nx, nf = nm.import_tf_tensor(mesh, x, x_dims), nm.import_tf_tensor(mesh, f, f_dims)
        y = forward(nx, nf, strides, "SAME")
        exported = nm.export_to_tf_tensor(y)
        r = tf.constant(rng.randn(*exported.shape).astype(np.float32))
        loss = tf.reduce_sum(exported * r)
    np.testing.assert_allclose(exported.numpy(), reference(x, f, strides).numpy(), atol=2e-5)
    dx, df = tape.gradient(loss, [x, f])
    dy = nm.import_tf_tensor(mesh, r, y.shape)
    got_dx = nm.export_to_tf_tensor(backprop_input(nx.shape, nf, dy, strides, "SAME"))
    got_df = nm.export_to_tf_tensor(backprop_filter(nx, nf.shape, dy, strides, "SAME"))
    np.testing.assert_allclose(got_dx.numpy(), dx.numpy(), atol=2e-5)
    np.testing.assert_allclose(got_df.numpy(), df.numpy(), atol=2e-5)


@pytest.mark.parametrize("pool_fn", ["MAX_2D", "AVG_2D"])
def test_pool_gradient_is_mtfs_pool_backprop(pool_fn):
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) % 5  # many ties
    mesh = nm.Mesh("m:2", "h:m")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        nx = nm.import_tf_tensor(mesh, xt, "batch:2;h:4;w:4;c:3")
        y = nm.pool(nx, [2, 2], [2, 2], pool_fn)
        loss = tf.reduce_sum(nm.export_to_tf_tensor(y) * 2.0)
    dx = tape.gradient(loss, xt).numpy()
    dy = nm.constant(mesh, 2.0, y.shape)
    want = nm.export_to_tf_tensor(nm.pool_backprop(nx, y, dy, [2, 2], [2, 2], pool_fn)).numpy()
    np.testing.assert_array_equal(dx, want)
    tf_pool = tf.nn.max_pool2d if pool_fn == "MAX_2D" else tf.nn.avg_pool2d
    np.testing.assert_allclose(nm.export_to_tf_tensor(y).numpy(), tf_pool(x, 2, 2, "VALID"))
    if pool_fn == "MAX_2D":  # mtf: every position equal to the max gets the gradient
        windows = x.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4), keepdims=True)
        ties = (x.reshape(2, 2, 2, 2, 2, 3) == windows).reshape(x.shape)
        np.testing.assert_array_equal(dx, 2.0 * ties)
