"""Shape plumbing on one device against NumPy / TensorFlow, values and gradients:
slice, pad, concat, split, stack, unstack, transpose, shift, dynamic_shift, halo exchanges,
replace_dimensions, where, broadcast by name.  (Meshes: test_ops_properties.py.)"""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from ops_reference import arrays, check_against_tf

S = "a:3;b:8;c:4"


@pytest.fixture(scope="module")
def mesh():
    return nm.Mesh()


def test_slice_and_its_mtf_name(mesh):
    x, = arrays(0, [3, 8, 4])
    check_against_tf(mesh, lambda t: nm.slice(t, 2, 5, "b"), lambda v: v[:, 2:7], [(x, S)])
    out = nm.mtf_slice(nm.import_tf_tensor(mesh, x, S), 1, 2, "c")
    assert out.shape == nm.Shape([("a", 3), ("b", 8), ("c", 2)])


def test_pad(mesh):
    x, = arrays(1, [3, 8, 4])
    check_against_tf(mesh, lambda t: nm.pad(t, [2, 1], "a"),
                     lambda v: tf.pad(v, [[2, 1], [0, 0], [0, 0]]), [(x, S)])


def test_concat_any_order_of_the_other_dims(mesh):
    x, y = arrays(2, [3, 8, 4], [4, 5, 3])
    out = check_against_tf(
        mesh, lambda a, b: nm.concat([a, b], "b"),
        lambda a, b: tf.concat([a, tf.transpose(b, [2, 1, 0])], 1),
        [(x, S), (y, "c:4;b:5;a:3")])
    assert out.shape == (3, 13, 4)


def test_split_by_count_and_by_sizes(mesh):
    x, = arrays(3, [3, 8, 4])
    for spec, sizes in [(4, [2, 2, 2, 2]), ([1, 5, 2], [1, 5, 2])]:
        for i in range(len(sizes)):
            check_against_tf(mesh, lambda t, i=i: nm.split(t, nm.Dimension("b", 8), spec)[i],
                             lambda v, i=i: tf.split(v, sizes, axis=1)[i], [(x, S)])


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_stack(mesh, axis):
    x, y = arrays(4, [3, 8, 4], [3, 8, 4])
    out = nm.stack([nm.import_tf_tensor(mesh, x, S), nm.import_tf_tensor(mesh, y, S)], "s", axis)
    assert out.shape.names.index("s") == (axis if axis >= 0 else 3)
    check_against_tf(mesh, lambda a, b: nm.stack([a, b, a * b], "s", axis),
                     lambda a, b: tf.stack([a, b, a * b], axis), [(x, S), (y, S)])


def test_unstack(mesh):
    x, = arrays(5, [3, 8, 4])
    for i in (0, 3, 7):
        check_against_tf(mesh, lambda t, i=i: nm.unstack(t, "b")[i] * (i + 1),
                         lambda v, i=i: tf.unstack(v, axis=1)[i] * (i + 1), [(x, S)])


def test_transpose_by_names(mesh):
    x, = arrays(6, [3, 8, 4])
    check_against_tf(mesh, lambda t: nm.transpose(t, "c:4;a:3;b:8"),
                     lambda v: tf.transpose(v, [2, 0, 1]), [(x, S)])


def _shift_reference(v, offset, wrap):
    if wrap:
        return tf.roll(v, offset, axis=1)
    n = v.shape[1]
    if abs(offset) >= n:
        return tf.zeros_like(v)
    if offset >= 0:
        return tf.pad(v[:, :n - offset], [[0, 0], [offset, 0], [0, 0]])
    return tf.pad(v[:, -offset:], [[0, 0], [0, -offset], [0, 0]])


@pytest.mark.parametrize("offset", [1, 3, -2, 8, -9, 13, 0])
@pytest.mark.parametrize("wrap", [True, False])
def test_shift(mesh, offset, wrap):
    x, = arrays(7, [3, 8, 4])
    check_against_tf(mesh, lambda t: nm.shift(t, offset, "b", wrap),
                     lambda v: _shift_reference(v, offset, wrap), [(x, S)])


@pytest.mark.parametrize("wrap", [True, False])
def test_dynamic_shift(mesh, wrap):
    x, = arrays(8, [3, 8, 4])
    offsets = np.array([1, -2, 5], np.int32)
    want = np.stack([_shift_reference(tf.constant(x[i:i + 1]), int(o), wrap).numpy()[0]
                     for i, o in enumerate(offsets)])
    t = nm.import_tf_tensor(mesh, x, S)
    got = nm.export_to_tf_tensor(nm.dynamic_shift(t, nm.import_tf_tensor(mesh, offsets, "a:3"),
                                                  "b", wrap)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def _halo_reference(v, halo, wrap, left_only):
    """Blocks along axis 0 of ``v`` [blocks, block_size, ...], with neighbours' margins."""
    n, b = v.shape[0], v.shape[1]
    flat = np.concatenate(list(v), 0)                         # the whole sequence
    out = []
    for i in range(n):
        lo, hi = i * b - halo, (i + 1) * b + (0 if left_only else halo)
        rows = []
        for j in range(lo, hi):
            if 0 <= j < n * b:
                rows.append(flat[j])
            else:
                rows.append(flat[j % (n * b)] if wrap else np.zeros_like(flat[0]))
        out.append(np.stack(rows))
    return np.stack(out)


@pytest.mark.parametrize("halo", [1, 3, 4, 6])
@pytest.mark.parametrize("wrap", [True, False])
def test_halo_exchanges(mesh, halo, wrap):
    x, = arrays(9, [4, 3, 2])
    t = nm.import_tf_tensor(mesh, x, "blocks:4;block:3;d:2")
    both = nm.export_to_tf_tensor(nm.halo_exchange(t, "blocks", "block", halo, wrap)).numpy()
    np.testing.assert_allclose(both, _halo_reference(x, halo, wrap, False))
    left = nm.export_to_tf_tensor(nm.left_halo_exchange(t, "blocks", "block", halo, wrap)).numpy()
    np.testing.assert_allclose(left, _halo_reference(x, halo, wrap, True))


def test_replace_dimensions_follows_mtf(mesh):
    s = nm.convert_to_shape("a:2;b:3;c:4")
    assert nm.replace_dimensions(s, [nm.Dimension("b", 3), nm.Dimension("c", 4)],
                                 [nm.Dimension("bc", 12)]) == nm.convert_to_shape("a:2;bc:12")
    assert nm.replace_dimensions(s, nm.Dimension("a", 2), [nm.Dimension("p", 1),
                                                           nm.Dimension("a", 2)]).names == (
        "p", "a", "b", "c")
    with pytest.raises(ValueError, match="consecutively"):
        nm.replace_dimensions(s, ["a", "c"], "ac:8")
    with pytest.raises(ValueError, match="consecutively"):
        nm.replace_dimensions(s, ["c", "b"], "cb:12")


def test_where_orders_dims_as_mtf(mesh):
    c = nm.import_tf_tensor(mesh, np.array([True, False]), "b:2")
    t = nm.import_tf_tensor(mesh, np.ones([3], np.float32), "a:3")
    f = nm.import_tf_tensor(mesh, np.zeros([4, 2], np.float32), "d:4;b:2")
    out = nm.where(c, t, f)
    # mtf: broadcast(if_true, cond) = [a, b], broadcast(if_false, cond) = [d, b] -> [a, b, d]
    assert out.shape.names == ("a", "b", "d")
    want = np.where(np.array([True, False])[None, :, None], 1.0, 0.0) * np.ones([3, 2, 4])
    np.testing.assert_array_equal(nm.export_to_tf_tensor(out).numpy(), want)
    x, y = arrays(10, [3, 4], [4])
    check_against_tf(mesh, lambda a, b: nm.where(a > 0, a, b), lambda a, b: tf.where(a > 0, a, b),
                     [(x, "a:3;d:4"), (y, "d:4")])
