"""Gradients under tf.GradientTape and use inside tf.function, against plain TensorFlow."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import shape_of

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def mesh():
    return nm.Mesh()


def _grad_pair(mesh, named_fn, tf_fn, x, order, out_names):
    """d/dx sum(f(x) * r) by namedmesh (x imported with axes ``order``) and by TF."""
    rng = np.random.RandomState(7)
    xv = tf.Variable(x)
    perm = [NAMES.index(n) for n in order]
    with tf.GradientTape() as tape:
        t = nm.import_tf_tensor(mesh, tf.transpose(xv, perm), shape_of(order, x.transpose(perm).shape))
        out = named_fn(t)
        value = nm.export_to_tf_tensor(out)
        value = tf.transpose(value, [out.shape.names.index(n) for n in out_names])
        r = tf.constant(rng.randn(*value.shape).astype(np.float32))
        loss = tf.reduce_sum(value * r)
    got = tape.gradient(loss, xv)
    with tf.GradientTape() as tape:
        ref = tf_fn(xv)
        loss = tf.reduce_sum(ref * r)
    want = tape.gradient(loss, xv)
    return got.numpy(), want.numpy()


W = np.random.RandomState(1).randn(4, 5).astype(np.float32)

GRAD_CASES = {
    "einsum": (lambda t: nm.einsum([t, nm.import_tf_tensor(t.mesh, W, "c:4;d:5")], "d:5;a:2"),
               lambda x: tf.einsum("abc,cd->da", x, W), ["d", "a"]),
    "reduce_sum": (lambda t: nm.reduce_sum(t, reduced_dim="b"), lambda x: tf.reduce_sum(x, 1),
                   ["a", "c"]),
    "reduce_mean": (lambda t: nm.reduce_mean(t, output_shape="c:4"),
                    lambda x: tf.reduce_mean(x, [0, 1]), ["c"]),
    "reduce_max": (lambda t: nm.reduce_max(t, reduced_dim="c"), lambda x: tf.reduce_max(x, 2),
                   ["a", "b"]),
    "softmax": (lambda t: nm.softmax(t, "b"), lambda x: tf.nn.softmax(x, 1), NAMES),
    "reshape": (lambda t: nm.reshape(nm.reshape(t, "a:2;b:3;c:4"), "m:6;c:4") * 2.0,
                lambda x: tf.reshape(x, [6, 4]) * 2.0, ["m", "c"]),
    "top_1": (lambda t: nm.top_1(t, "c")[0], lambda x: tf.reduce_max(x, 2), ["a", "b"]),
    "cumsum": (lambda t: nm.cumsum(t, "b", exclusive=True),
               lambda x: tf.cumsum(x, 1, exclusive=True), NAMES),
    "arith": (lambda t: nm.relu(t) * nm.exp(t) - t / 3.0 + nm.square(t),
              lambda x: tf.nn.relu(x) * tf.exp(x) - x / 3.0 + tf.square(x), NAMES),
    "where": (lambda t: nm.where(t > 0, t, t * 0.5), lambda x: tf.where(x > 0, x, x * 0.5), NAMES),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradient_matches_tensorflow(mesh, name):
    named_fn, tf_fn, out_names = GRAD_CASES[name]
    x = np.random.RandomState(3).randn(2, 3, 4).astype(np.float32)
    if name == "reshape":
        order = NAMES
    else:
        order = ["c", "a", "b"]
    got, want = _grad_pair(mesh, named_fn, tf_fn, x, order, out_names)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_reduce_max_gradient_reaches_every_tie_like_mtf(mesh):
    x = tf.Variable([[1., 3., 3.]])
    with tf.GradientTape() as tape:
        t = nm.import_tf_tensor(mesh, x, "a:1;e:3")
        y = nm.export_to_tf_tensor(nm.reduce_max(t, reduced_dim="e"))
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[0., 1., 1.]])
    with tf.GradientTape() as tape:
        t = nm.import_tf_tensor(mesh, x, "a:1;e:3")
        y = nm.export_to_tf_tensor(nm.top_1(t, "e")[0])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[0., 1., 0.]])  # first tie only


def test_inside_tf_function_no_retrace(mesh):
    traces = []
    store = nm.VariableStore(seed=3)

    @tf.function
    def step(x):
        traces.append(1)
        t = nm.import_tf_tensor(mesh, x, "batch:4;d_model:8")
        h = nm.dense(t, "hidden:16", reduced_dims=["d_model:8"], activation=nm.relu, name="wi",
                     store=store)
        y = nm.dense(h, "d_model:8", reduced_dims=["hidden:16"], name="wo", store=store)
        return nm.export_to_tf_tensor(nm.reduce_sum(nm.softmax(y, "d_model")))

    x = tf.random.normal([4, 8])
    step(x)  # creates the variables on the first trace
    first = len(traces)
    for _ in range(3):
        np.testing.assert_allclose(step(tf.random.normal([4, 8])).numpy(), 4.0, rtol=1e-5)
    assert len(traces) == first
    assert sorted(store.variables()) == ["wi/bias", "wi/kernel", "wo/bias", "wo/kernel"]
