"""Every core op against numpy, with the inputs' axes permuted by name."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import as_numpy, permuted_import, random_order, shape_of

NAMES = ["a", "b", "c"]
SIZES = [2, 3, 4]


@pytest.fixture(scope="module")
def mesh():
    return nm.Mesh()


@pytest.fixture(params=range(3))
def rng(request):
    return np.random.RandomState(request.param)


def _x(rng, sizes=SIZES):
    return rng.randn(*sizes).astype(np.float32)


def test_einsum_explicit_output(mesh, rng):
    x = _x(rng)
    w = rng.randn(4, 5).astype(np.float32)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    tw = permuted_import(mesh, w, ["c", "d"], random_order(rng, ["c", "d"]))
    out = nm.einsum([tx, tw], shape_of(["d", "a"], [5, 2]))
    np.testing.assert_allclose(as_numpy(out, ["d", "a"]), np.einsum("abc,cd->da", x, w), atol=1e-5)


def test_einsum_default_output_keeps_dims_seen_once(mesh, rng):
    x = _x(rng)
    w = rng.randn(4, 5).astype(np.float32)
    order = random_order(rng, NAMES)
    out = nm.einsum([permuted_import(mesh, x, NAMES, order),
                     permuted_import(mesh, w, ["c", "d"], ["d", "c"])])
    assert out.shape.names == tuple([n for n in order if n != "c"] + ["d"])
    np.testing.assert_allclose(as_numpy(out, ["a", "b", "d"]), np.einsum("abc,cd->abd", x, w),
                               atol=1e-5)


def test_einsum_reduced_dims_and_three_operands(mesh, rng):
    x, y, z = _x(rng), rng.randn(3, 4).astype(np.float32), rng.randn(2).astype(np.float32)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    ty = permuted_import(mesh, y, ["b", "c"], ["c", "b"])
    tz = permuted_import(mesh, z, ["a"], ["a"])
    out = nm.einsum([tx, ty, tz], reduced_dims=[nm.Dimension("b", 3)])
    np.testing.assert_allclose(as_numpy(out, ["a", "c"]), np.einsum("abc,bc,a->ac", x, y, z),
                               atol=1e-5)


def test_elementwise_broadcast_by_name(mesh, rng):
    x = _x(rng)
    y = rng.randn(4, 2).astype(np.float32)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    ty = permuted_import(mesh, y, ["c", "a"], ["c", "a"])
    want = {
        "add": x + y.T[:, None, :], "sub": x - y.T[:, None, :], "mul": x * y.T[:, None, :],
        "div": x / y.T[:, None, :], "min": np.minimum(x, y.T[:, None, :]),
        "max": np.maximum(x, y.T[:, None, :]),
    }
    got = {"add": tx + ty, "sub": tx - ty, "mul": tx * ty, "div": tx / ty,
           "min": nm.minimum(tx, ty), "max": nm.maximum(tx, ty)}
    for k in want:
        assert set(got[k].shape.names) == set(NAMES)
        np.testing.assert_allclose(as_numpy(got[k], NAMES), want[k], rtol=1e-5, atol=1e-5,
                                   err_msg=k)


def test_broadcast_output_order_follows_mtf(mesh):
    a = nm.zeros(mesh, "a:2;b:3")
    c = nm.zeros(mesh, "c:4;a:2")
    assert (a + c).shape.names == ("a", "b", "c")
    assert (nm.zeros(mesh, "b:3") + a).shape.names == ("a", "b")  # subsequence: longer wins


def test_scalar_operands(mesh, rng):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    np.testing.assert_allclose(as_numpy(2.0 * tx - 1, NAMES), 2 * x - 1, atol=1e-6)
    np.testing.assert_allclose(as_numpy(1.0 / (tx * tx + 1), NAMES), 1 / (x * x + 1), rtol=1e-6)
    np.testing.assert_allclose(as_numpy(-tx, NAMES), -x)
    np.testing.assert_allclose(as_numpy(tx ** 2, NAMES), x ** 2, rtol=1e-6)


def test_comparisons(mesh, rng):
    x = _x(rng)
    y = rng.randn(3).astype(np.float32)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    ty = permuted_import(mesh, y, ["b"], ["b"])
    yb = y[None, :, None]
    for got, want in [(nm.greater(tx, ty), x > yb), (nm.less(tx, ty), x < yb),
                      (nm.equal(tx, tx), np.ones_like(x, bool)), (tx >= ty, x >= yb),
                      (tx <= 0.0, x <= 0), (nm.not_equal(tx, ty), x != yb)]:
        assert got.dtype == tf.bool
        np.testing.assert_array_equal(as_numpy(got, NAMES), want)


def test_cast_to_float_to_int32(mesh, rng):
    x = (rng.randn(*SIZES) * 5).astype(np.float32)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    ti = nm.to_int32(tx)
    assert ti.dtype == tf.int32
    np.testing.assert_array_equal(as_numpy(ti, NAMES), x.astype(np.int32))
    tf_ = nm.to_float(ti)
    assert tf_.dtype == tf.float32
    np.testing.assert_array_equal(as_numpy(nm.cast(tx > 0, "float32"), NAMES),
                                  (x > 0).astype(np.float32))
    assert nm.to_bfloat16(tx).dtype == tf.bfloat16


@pytest.mark.parametrize("fn,ref", [
    (nm.relu, lambda v: np.maximum(v, 0)),
    (nm.exp, np.exp),
    (nm.tanh, np.tanh),
    (nm.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
    (nm.square, np.square),
    (nm.abs, np.abs),
    (nm.gelu, lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))),
    (nm.silu, lambda v: v / (1 + np.exp(-v))),
    (nm.softplus, lambda v: np.log1p(np.exp(v))),
])
def test_unary(mesh, rng, fn, ref):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    np.testing.assert_allclose(as_numpy(fn(tx), NAMES), ref(x), rtol=1e-5, atol=1e-6)


def test_log_sqrt_rsqrt(mesh, rng):
    x = np.abs(_x(rng)) + 0.1
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    np.testing.assert_allclose(as_numpy(nm.log(tx), NAMES), np.log(x), rtol=1e-5)
    np.testing.assert_allclose(as_numpy(nm.sqrt(tx), NAMES), np.sqrt(x), rtol=1e-5)
    np.testing.assert_allclose(as_numpy(nm.rsqrt(tx), NAMES), 1 / np.sqrt(x), rtol=1e-5)


@pytest.mark.parametrize("reduce,ref", [(nm.reduce_sum, np.sum), (nm.reduce_mean, np.mean),
                                        (nm.reduce_max, np.max), (nm.reduce_min, np.min)])
def test_reductions(mesh, rng, reduce, ref):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    by_dim = reduce(tx, reduced_dim="b")
    np.testing.assert_allclose(as_numpy(by_dim, ["a", "c"]), ref(x, axis=1), rtol=1e-5, atol=1e-5)
    by_shape = reduce(tx, output_shape="c:4;a:2")
    assert by_shape.shape.names == ("c", "a")
    np.testing.assert_allclose(as_numpy(by_shape, ["c", "a"]), ref(x, axis=1).T, rtol=1e-5,
                               atol=1e-5)
    several = reduce(tx, reduced_dim=["a", nm.Dimension("c", 4)])
    np.testing.assert_allclose(as_numpy(several, ["b"]), ref(x, axis=(0, 2)), rtol=1e-5, atol=1e-5)
    everything = reduce(tx)
    assert everything.shape.ndims == 0
    np.testing.assert_allclose(nm.export_to_tf_tensor(everything).numpy(), ref(x), rtol=1e-5,
                               atol=1e-5)


def test_reduce_any_all(mesh, rng):
    x = _x(rng) > 0.5
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    np.testing.assert_array_equal(as_numpy(nm.reduce_any(tx, reduced_dim="c"), ["a", "b"]),
                                  x.any(2))
    np.testing.assert_array_equal(as_numpy(nm.reduce_all(tx, reduced_dim="c"), ["a", "b"]),
                                  x.all(2))


def test_top_1_values_indices_first_on_ties(mesh):
    x = np.array([[1., 3., 3., 0.], [2., 2., 2., 2.]], np.float32)
    t = permuted_import(mesh, x, ["a", "e"], ["e", "a"])
    values, indices = nm.top_1(t, "e")
    np.testing.assert_array_equal(as_numpy(indices, ["a"]), [1, 0])  # mtf 0.1.21 semantics
    np.testing.assert_array_equal(as_numpy(values, ["a"]), [3., 2.])
    assert indices.dtype == tf.int32
    np.testing.assert_array_equal(as_numpy(nm.argmax(t, "e"), ["a"]), [1, 0])


def test_top_1_random(mesh, rng):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    values, indices = nm.top_1(tx, "b")
    np.testing.assert_array_equal(as_numpy(indices, ["a", "c"]), x.argmax(1))
    np.testing.assert_allclose(as_numpy(values, ["a", "c"]), x.max(1))


def test_one_hot(mesh, rng):
    idx = rng.randint(-1, 6, size=(2, 3)).astype(np.int32)  # includes out-of-range values
    t = permuted_import(mesh, idx, ["a", "b"], ["b", "a"])
    oh = nm.one_hot(t, nm.Dimension("e", 5), on_value=2.0, off_value=-1.0)
    assert oh.shape.names == ("b", "a", "e")
    want = np.where(idx[..., None] == np.arange(5), 2.0, -1.0)
    np.testing.assert_allclose(as_numpy(oh, ["a", "b", "e"]), want)


@pytest.mark.parametrize("exclusive", [False, True])
def test_cumsum(mesh, rng, exclusive):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    got = as_numpy(nm.cumsum(tx, "c", exclusive=exclusive), NAMES)
    want = np.cumsum(x, 2) - (x if exclusive else 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_softmax_and_log_softmax(mesh, rng):
    x = _x(rng) * 3
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    e = np.exp(x - x.max(1, keepdims=True))
    want = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(as_numpy(nm.softmax(tx, "b"), NAMES), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(as_numpy(nm.log_softmax(tx, "b"), NAMES), np.log(want), rtol=1e-5,
                               atol=1e-5)
    lse = np.log(np.exp(x).sum(1))
    np.testing.assert_allclose(as_numpy(nm.reduce_logsumexp(tx, "b"), ["a", "c"]), lse, rtol=1e-5)


def test_reshape_rename_merge_split(mesh, rng):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, NAMES)
    renamed = nm.rename_dimension(tx, "b", "bee")
    assert renamed.shape.names == ("a", "bee", "c")
    np.testing.assert_array_equal(as_numpy(renamed, ["a", "bee", "c"]), x)
    merged = nm.reshape(tx, "ab:6;c:4")
    np.testing.assert_array_equal(as_numpy(merged, ["ab", "c"]), x.reshape(6, 4))
    split = nm.reshape(merged, "a:2;b:3;c1:2;c2:2")
    np.testing.assert_array_equal(as_numpy(split, ["a", "b", "c1", "c2"]), x.reshape(2, 3, 2, 2))
    replaced = nm.replace_dimensions(tx, ["b", "c"], [nm.Dimension("bc", 12)])
    np.testing.assert_array_equal(as_numpy(replaced, ["a", "bc"]), x.reshape(2, 12))


def test_where_and_broadcast(mesh, rng):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    got = nm.where(tx > 0, tx, 0.0)
    np.testing.assert_allclose(as_numpy(got, NAMES), np.where(x > 0, x, 0))
    b = nm.broadcast(permuted_import(mesh, x[:, 0, 0], ["a"], ["a"]), "c:4;a:2")
    np.testing.assert_allclose(as_numpy(b, ["c", "a"]), np.broadcast_to(x[:, 0, 0], (4, 2)))


def test_creation(mesh):
    z = nm.zeros(mesh, "a:2;b:3")
    o = nm.ones(mesh, "a:2;b:3", tf.int32)
    assert nm.export_to_tf_tensor(z).numpy().sum() == 0
    assert o.dtype == tf.int32 and nm.export_to_tf_tensor(o).numpy().sum() == 6
    assert nm.export_to_tf_tensor(nm.ones_like(z)).numpy().sum() == 6
    assert nm.export_to_tf_tensor(nm.zeros_like(o)).numpy().sum() == 0
    np.testing.assert_array_equal(nm.export_to_tf_tensor(nm.range(mesh, "e:5")).numpy(),
                                  np.arange(5))
    assert nm.export_to_tf_tensor(nm.constant(mesh, 7.0, "a:2")).numpy().tolist() == [7.0, 7.0]


def test_random_uniform_is_seeded(mesh):
    a = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:3;b:4", seed=5)).numpy()
    b = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:3;b:4", seed=5)).numpy()
    c = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:3;b:4", seed=6)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 1 and a.shape == (3, 4)
    d = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:3;b:4", seed=[5, 1], minval=-2.0,
                                                 maxval=-1.0)).numpy()
    assert d.min() >= -2 and d.max() < -1


def test_stop_gradient_add_n(mesh, rng):
    x = _x(rng)
    tx = permuted_import(mesh, x, NAMES, random_order(rng, NAMES))
    np.testing.assert_allclose(as_numpy(nm.add_n([tx, tx, nm.stop_gradient(tx)]), NAMES), 3 * x,
                               rtol=1e-6)
