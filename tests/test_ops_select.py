"""Selection ops on one device against NumPy / TensorFlow: gather (the embedding lookup),
top_k, nth largest / smallest, sampling, cumsum exclusive / reverse."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from ops_reference import arrays, check_against_tf, named_value_and_grads


@pytest.fixture(scope="module")
def mesh():
    return nm.Mesh()


def test_gather_is_an_embedding_lookup(mesh):
    w, = arrays(0, [10, 4])
    ids = np.array([[3, 0, 9], [9, 9, 1]], np.int32)
    t_ids = nm.import_tf_tensor(mesh, ids, "batch:2;length:3")

    def named(weights):
        return nm.gather(weights, t_ids, "vocab")

    out = check_against_tf(mesh, named, lambda v: tf.gather(v, ids), [(w, "vocab:10;d_model:4")])
    assert out.shape == (2, 3, 4)


def test_gather_out_of_range_gives_zero_rows_like_one_hot(mesh):
    w, = arrays(1, [5, 3])
    ids = np.array([-1, 2, 5, 7], np.int32)
    t = nm.gather(nm.import_tf_tensor(mesh, w, "v:5;d:3"), nm.import_tf_tensor(mesh, ids, "i:4"),
                  "v")
    want = np.einsum("iv,vd->id", np.eye(5, dtype=np.float32)[np.clip(ids, 0, 4)] *
                     ((ids >= 0) & (ids < 5))[:, None], w)
    np.testing.assert_array_equal(nm.export_to_tf_tensor(t).numpy(), want)


def test_gather_with_shared_batch_dims_and_output_shape(mesh):
    w, = arrays(2, [2, 6, 3])                  # [batch, length, d]
    ids = np.array([[5, 0], [1, 1]], np.int32)  # [batch, k]
    t_ids = nm.import_tf_tensor(mesh, ids, "batch:2;k:2")
    got = check_against_tf(
        mesh, lambda v: nm.gather(v, t_ids, "length", output_shape="d:3;k:2;batch:2"),
        lambda v: tf.transpose(tf.gather(v, ids, axis=1, batch_dims=1), [2, 1, 0]),
        [(w, "batch:2;length:6;d:3")])
    assert got.shape == (3, 2, 2)


def test_gather_scalar_index_and_bool_weights(mesh):
    w = np.array([[True, False], [False, False], [True, True]])
    t = nm.gather(nm.import_tf_tensor(mesh, w, "v:3;d:2"), 2, "v")
    assert t.dtype == tf.bool and t.shape.names == ("d",)
    np.testing.assert_array_equal(nm.export_to_tf_tensor(t).numpy(), [True, True])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_top_k_values_indices_and_gradient(mesh, k):
    x, = arrays(3, [4, 6, 2])
    x[0, 1, 0] = x[0, 4, 0] = 9.0            # a tie: the lower index comes first
    order = [0, 2, 1]

    def reference(v):
        return tf.transpose(tf.math.top_k(tf.transpose(v, order), k).values, [0, 2, 1])

    got = check_against_tf(mesh, lambda t: nm.top_k(t, "b", nm.Dimension("k", k))[0],
                           lambda v: tf.transpose(reference(v), [0, 2, 1]), [(x, "a:4;b:6;c:2")])
    assert got.shape == (4, 2, k)
    _, idx = nm.top_k(nm.import_tf_tensor(mesh, x, "a:4;b:6;c:2"), "b", nm.Dimension("k", k))
    assert idx.dtype == tf.int32 and idx.shape.names == ("a", "c", "k")
    want = tf.math.top_k(tf.transpose(x, order), k).indices.numpy()
    np.testing.assert_array_equal(nm.export_to_tf_tensor(idx).numpy(), want)
    if k > 1:
        assert list(want[0, 0, :2]) == [1, 4]


def test_top_k_case_of_mtf_ops_test(mesh):
    """mtf's TopKTest: values, indices and the gradient d_inputs it expects."""
    x = np.array([[1, 10], [2, 9], [3, 8], [4, 7], [5, 6], [6, 5]], np.float32)
    d_values = np.array([[11, 12], [13, 14]], np.float32)  # [b, k]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        values, indices = nm.top_k(nm.import_tf_tensor(mesh, xt, "a:6;b:2"), "a", "k:2")
        loss = tf.reduce_sum(nm.export_to_tf_tensor(values) * d_values)
    np.testing.assert_array_equal(nm.export_to_tf_tensor(values).numpy(), [[6, 5], [10, 9]])
    np.testing.assert_array_equal(nm.export_to_tf_tensor(indices).numpy(), [[5, 4], [0, 1]])
    np.testing.assert_array_equal(tape.gradient(loss, xt).numpy(),
                                  [[0, 13], [0, 14], [0, 0], [0, 0], [12, 0], [11, 0]])


def test_nth_largest_and_smallest_cases_of_mtf_ops_test(mesh):
    x = nm.import_tf_tensor(mesh, np.array([[1, 10], [2, 9], [3, 8], [4, 7], [5, 6], [6, 5]],
                                           np.int32), "a:6;b:2")
    np.testing.assert_array_equal(
        nm.export_to_tf_tensor(nm.nth_largest_element(x, 1, "a", "test_nth_largest")).numpy(),
        [5, 9])
    np.testing.assert_array_equal(
        nm.export_to_tf_tensor(nm.nth_smallest_element(x, 0, "b")).numpy(), [1, 2, 3, 4, 5, 5])


def test_sample_with_temperature(mesh):
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]], np.float32) + 1e-30)
    t = nm.import_tf_tensor(mesh, np.repeat(logits[None], 4000, 0), "draw:4000;row:2;v:3")
    zero = nm.export_to_tf_tensor(nm.sample_with_temperature(t, "v", 0.0)).numpy()
    assert (zero == [0, 2]).all()
    samples = nm.export_to_tf_tensor(nm.sample_with_temperature(t, "v", 1.0, seed=3)).numpy()
    frequencies = np.stack([(samples[:, 0] == v).mean() for v in range(3)])
    np.testing.assert_allclose(frequencies, [0.7, 0.2, 0.1], atol=0.03)
    assert (samples[:, 1] == 2).all()
    again = nm.export_to_tf_tensor(nm.sample_with_temperature(t, "v", 1.0, seed=3)).numpy()
    np.testing.assert_array_equal(samples, again)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_exclusive_reverse(mesh, exclusive, reverse):
    x, = arrays(4, [3, 5])
    check_against_tf(mesh, lambda t: nm.cumsum(t, "b", exclusive=exclusive, reverse=reverse),
                     lambda v: tf.cumsum(v, 1, exclusive=exclusive, reverse=reverse),
                     [(x, "a:3;b:5")])


def test_one_hot_of_gather_gradient_is_a_scatter(mesh):
    w, = arrays(5, [6, 2])
    ids = np.array([1, 1, 4], np.int32)
    t_ids = nm.import_tf_tensor(mesh, ids, "i:3")
    _, grads, _, r = named_value_and_grads(mesh, lambda v: nm.gather(v, t_ids, "v"),
                                           [(w, "v:6;d:2")])
    want = np.zeros_like(w)
    np.add.at(want, ids, r)
    np.testing.assert_allclose(grads[0], want, atol=1e-6)
