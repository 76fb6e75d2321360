"""Helpers for the op tests: run a named op and a plain TensorFlow reference on the same
inputs and compare values and gradients (of ``sum(output * r)`` for a random ``r``)."""
import numpy as np
import tensorflow as tf

import namedmesh as nm


def arrays(seed, *shapes):
    rng = np.random.RandomState(seed)
    return [rng.randn(*s).astype(np.float32) for s in shapes]


def named_value_and_grads(mesh, fn, inputs, r=None):
    """``fn(*named_tensors)`` -> a Tensor; inputs: [(array, shape), ...].
    Returns (output array, [d sum(out * r) / d input], output names)."""
    values = [tf.constant(a) for a, _ in inputs]
    with tf.GradientTape() as tape:
        tape.watch(values)
        named = [nm.import_tf_tensor(mesh, v, s) for v, (_, s) in zip(values, inputs)]
        out = fn(*named)
        exported = nm.export_to_tf_tensor(out)
        if r is None:
            r = np.random.RandomState(7).randn(*exported.shape).astype(np.float32)
        loss = tf.reduce_sum(tf.cast(exported, tf.float32) * r)
    grads = tape.gradient(loss, values)
    grads = [np.zeros_like(a) if g is None else tf.convert_to_tensor(g).numpy()
             for g, (a, _) in zip(grads, inputs)]
    return exported.numpy(), grads, out.shape.names, r


def reference_value_and_grads(fn, arrays_in, r):
    """The same for a plain TF function of tf tensors."""
    values = [tf.constant(a) for a in arrays_in]
    with tf.GradientTape() as tape:
        tape.watch(values)
        out = fn(*values)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * r)
    grads = tape.gradient(loss, values)
    return out.numpy(), [np.zeros_like(a) if g is None else tf.convert_to_tensor(g).numpy()
                         for g, a in zip(grads, arrays_in)]


def check_against_tf(mesh, named_fn, tf_fn, inputs, atol=1e-5):
    """Values and gradients of ``named_fn`` on ``mesh`` equal those of ``tf_fn``."""
    got, got_grads, names, r = named_value_and_grads(mesh, named_fn, inputs)
    want, want_grads = reference_value_and_grads(tf_fn, [a for a, _ in inputs], r)
    np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-5, err_msg="gradient %d" % i)
    return got
