"""The mtf-compatible surface: Shape.dims is a list, name= everywhere, constant from arrays,
empty layouts as {} or [], random ops and dropout with mtf's signatures (seeded)."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy


def test_shape_dims_is_a_list_like_mtf():
    shape = nm.convert_to_shape("a:2;b:3")
    dims = shape.dims + [nm.Dimension("c", 4)]
    assert isinstance(shape.dims, list) and nm.Shape(dims).names == ("a", "b", "c")
    shape.dims.append(nm.Dimension("z", 1))          # a copy: the shape is unchanged
    assert shape.names == ("a", "b")
    assert shape.to_integer_list == [2, 3] and shape.to_integer_list() == [2, 3]
    assert shape.dimension_names == ["a", "b"]
    assert shape.cumprod == [1, 2] and shape.cumprod_to_tensor_axis(2) == 1
    assert shape.cumprod_to_tensor_axis(5) is None
    assert shape.resize_dimension("b", 7) == nm.convert_to_shape("a:2;b:7")
    assert shape.get_dim_by_name("b") == nm.Dimension("b", 3)
    assert shape - [nm.Dimension("q", 9)] == shape          # mtf: a list may name absent dims
    with pytest.raises(ValueError, match="'q'"):
        shape - nm.Dimension("q", 9)


@pytest.mark.parametrize("layout", [{}, [], "", None])
def test_mesh_accepts_an_empty_layout(layout):
    mesh = nm.Mesh("m:2", layout, devices=["", ""])
    assert len(mesh.layout_rules) == 0
    assert mesh.tensor_layout("a:4").mesh_axes == (None,)


def test_layout_as_a_dict():
    mesh = nm.Mesh("m:2", {"a": "m"}, devices=["", ""])
    assert mesh.tensor_layout("a:4").mesh_axes == (0,)


@pytest.mark.parametrize("mesh_shape,layout", [("", ""), ("m:2;n:2", "a:m;b:n")])
def test_constant_from_arrays_and_scalars(mesh_shape, layout):
    mesh = nm.Mesh(mesh_shape, layout)
    values = np.arange(8).reshape(2, 4)
    t = nm.constant(mesh, values, "a:2;b:4", dtype=tf.int32)
    np.testing.assert_array_equal(nm.export_to_tf_tensor(t).numpy(), values)
    flat = nm.constant(mesh, list(range(8)), "a:2;b:4")        # row-major, like tf.constant
    np.testing.assert_array_equal(nm.export_to_tf_tensor(flat).numpy(), values)
    np.testing.assert_array_equal(nm.export_to_tf_tensor(nm.constant(mesh, 3.0, "b:4")).numpy(),
                                  [3, 3, 3, 3])
    assert nm.constant(mesh, 2).shape == nm.Shape([])          # mtf: shape=None is a scalar
    with pytest.raises(ValueError, match="6 elements"):
        nm.constant(mesh, np.zeros([2, 3]), "a:2;b:4")


def test_every_op_takes_a_name_and_uses_it_as_a_scope():
    mesh = nm.Mesh()

    @tf.function
    def f(v):
        x = nm.import_tf_tensor(mesh, v, "a:4", name="my_input")
        y = nm.shift(x, 1, "a", False, name="shift me!")       # made a valid scope name
        z = nm.reduce_sum(nm.exp(y, name="e"), name="total")
        return nm.export_to_tf_tensor(z)

    graph = f.get_concrete_function(tf.TensorSpec([4])).graph
    names = [op.name for op in graph.get_operations()]
    for scope in ("my_input/", "shift_me_/", "e/", "total/"):
        assert any(n.startswith(scope) for n in names), (scope, names)
    nm.top_k(nm.import_tf_tensor(mesh, np.ones([4], np.float32), "a:4"), "a", "k:2", "named")


@pytest.mark.parametrize("mesh_shape,layout", [("m:2;n:2", "a:m;b:n"), ("m:4", "b:m")])
def test_random_values_do_not_depend_on_the_mesh(mesh_shape, layout):
    one = nm.Mesh()
    mesh = nm.Mesh(mesh_shape, layout)
    for fn, kwargs in [(nm.random_uniform, {"minval": -1.0, "maxval": 2.0}),
                       (nm.random_normal, {"mean": 1.0, "stddev": 0.5}),
                       (nm.random_uniform, {"maxval": 10, "dtype": tf.int32})]:
        want = nm.export_to_tf_tensor(fn(one, "a:4;b:8", seed=[7, 3], **kwargs)).numpy()
        got = nm.export_to_tf_tensor(fn(mesh, "a:4;b:8", seed=[7, 3], **kwargs)).numpy()
        np.testing.assert_array_equal(got, want)
    u = nm.export_to_tf_tensor(nm.random_uniform(one, "a:4;b:8", seed=1)).numpy()
    assert 0 <= u.min() and u.max() < 1


def test_random_without_a_seed_like_mtf():
    mesh = nm.Mesh("m:2", "")
    t = nm.random_uniform(mesh, "a:64")          # mtf's call: no seed
    a, b = t.slices                               # replicated slices agree
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:64")).numpy()
    assert not np.array_equal(a.numpy(), other)   # a new draw per call
    tf.random.set_seed(5)
    first = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:64")).numpy()
    tf.random.set_seed(5)
    np.testing.assert_array_equal(first, nm.export_to_tf_tensor(nm.random_uniform(mesh,
                                                                                  "a:64")).numpy())


def test_random_without_a_seed_under_a_strategy_is_refused():
    mesh = nm.Mesh("m:2", "", strategy=strategy(2))
    with pytest.raises(nm.MeshError, match="seed="):
        mesh.run(lambda: nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:4")))


def test_dropout_follows_mtf():
    mesh = nm.Mesh()
    x = nm.ones(mesh, "a:64;b:32")
    kept = nm.export_to_tf_tensor(nm.dropout(x, True, keep_prob=0.75, seed=4)).numpy()
    u = nm.export_to_tf_tensor(nm.random_uniform(mesh, "a:64;b:32", seed=4)).numpy()
    np.testing.assert_allclose(kept, np.where(u < 0.75, 1 / 0.75, 0.0), rtol=1e-6)
    same = nm.export_to_tf_tensor(nm.dropout(x, True, rate=0.25, seed=4)).numpy()
    np.testing.assert_array_equal(same, kept)
    assert nm.dropout(x, False, rate=0.5) is x and nm.dropout(x, True, keep_prob=1.0) is x
    rows = nm.export_to_tf_tensor(nm.dropout(x, True, rate=0.5, noise_shape="a:64",
                                             seed=2)).numpy()
    assert all(len(set(r)) == 1 for r in rows)       # one decision per row
    ints = nm.export_to_tf_tensor(nm.dropout(nm.ones(mesh, "a:64", tf.int32), True, rate=0.5,
                                             seed=2)).numpy()
    assert set(ints) == {0, 1}                        # integers are not scaled
    with pytest.raises(ValueError, match="exactly one"):
        nm.dropout(x, True)
    np.testing.assert_array_equal(
        nm.export_to_tf_tensor(nm.stateless_dropout(x, 0.25, 4)).numpy(), kept)


def test_errors_are_value_errors_and_type_errors_where_mtf_has_them():
    mesh = nm.Mesh()
    x = nm.ones(mesh, "a:2")
    with pytest.raises(ValueError):
        nm.one_hot(x, "v:3")                 # mtf: ValueError
    with pytest.raises(TypeError):
        nm.one_hot(x, "v:3")                 # and still a TypeError, as before
    with pytest.raises(TypeError):
        nm.convert_to_dimension(5)           # mtf: TypeError
