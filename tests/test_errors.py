"""Bad input gets an error of the right type whose message names the offender."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm


@pytest.fixture(scope="module")
def mesh():
    return nm.Mesh()


def _t(mesh, spec):
    shape = nm.convert_to_shape(spec)
    return nm.import_tf_tensor(mesh, np.zeros(shape.sizes, np.float32), shape)


CASES = [
    # (description, callable, error type, words the message must contain)
    ("duplicate dim name", lambda m: nm.Shape([("a", 2), ("b", 3), ("a", 2)]),
     nm.ShapeError, ["'a'", "duplicate"]),
    ("one name two sizes", lambda m: nm.Shape([("a", 2), ("a", 3)]),
     nm.ShapeError, ["'a'", "2", "3"]),
    ("size not an int in string", lambda m: nm.convert_to_shape("b0:x"),
     nm.ShapeError, ["b0", "'x'"]),
    ("pair without size", lambda m: nm.convert_to_shape("b0"), nm.ShapeError, ["'b0'", "name:value"]),
    ("same mesh dim twice", lambda m: nm.convert_to_shape("b0:2;b0:4"), nm.ShapeError, ["'b0'"]),
    ("negative size", lambda m: nm.convert_to_shape("b0:-1"), nm.ShapeError, ["b0", "-1"]),
    ("zero size", lambda m: nm.convert_to_shape("b0:0"), nm.ShapeError, ["b0", "0", "positive"]),
    ("three-part entry", lambda m: nm.convert_to_shape("a:2:3"), nm.ShapeError, ["a:2:3"]),
    ("float size", lambda m: nm.Dimension("a", 2.5), nm.ShapeError, ["'a'", "2.5"]),
    ("empty dim name", lambda m: nm.Dimension("", 2), nm.ShapeError, ["non-empty"]),
    ("layout maps a tensor dim twice", lambda m: nm.convert_to_layout_rules("batch:b0;batch:b1"),
     nm.LayoutError, ["'batch'", "'b0'", "'b1'"]),
    ("layout entry without colon", lambda m: nm.convert_to_layout_rules("batch"),
     nm.LayoutError, ["'batch'"]),
    ("mesh string typo", lambda m: nm.Mesh("b0:2;b1"), nm.MeshError, ["b1"]),
    ("reshape changes size", lambda m: nm.reshape(_t(m, "a:2;b:3"), "c:5"),
     nm.ShapeError, ["6", "5", "c:5"]),
    ("einsum reduced dim absent", lambda m: nm.einsum([_t(m, "a:2;b:3")], reduced_dims=["z:4"]),
     nm.ShapeError, ["'z'", "not dims of any input"]),
    ("einsum size mismatch", lambda m: nm.einsum([_t(m, "a:2;b:3"), _t(m, "b:4")]),
     nm.ShapeError, ["'b'", "3", "4"]),
    ("reduce over missing dim", lambda m: nm.reduce_sum(_t(m, "a:2;b:3"), reduced_dim="c"),
     nm.ShapeError, ["'c'", "a:2"]),
    ("reduce output dim missing", lambda m: nm.reduce_max(_t(m, "a:2;b:3"), output_shape="q:2"),
     nm.ShapeError, ["'q'"]),
    ("binary op size mismatch", lambda m: _t(m, "a:2;b:3") + _t(m, "b:4"),
     nm.ShapeError, ["'b'", "3", "4"]),
    ("import shape mismatch", lambda m: nm.import_tf_tensor(m, np.zeros([2, 4]), "a:2;b:3"),
     nm.ShapeError, ["'b'", "3", "4"]),
    ("import rank mismatch", lambda m: nm.import_tf_tensor(m, np.zeros([2]), "a:2;b:3"),
     nm.ShapeError, ["rank 1", "a:2"]),
    ("top_1 over missing dim", lambda m: nm.top_1(_t(m, "a:2"), "e"), nm.ShapeError, ["'e'"]),
    ("one_hot of floats", lambda m: nm.one_hot(_t(m, "a:2"), "e:3"), TypeError, ["integer"]),
    ("cumsum over missing dim", lambda m: nm.cumsum(_t(m, "a:2"), "q"), nm.ShapeError, ["'q'"]),
    ("shape minus missing dim", lambda m: nm.convert_to_shape("a:2") - "b", nm.ShapeError, ["'b'"]),
    ("dense reduced dim missing", lambda m: nm.dense(_t(m, "a:2;b:3"), "c:4", reduced_dims=["q:3"],
                                                     store=nm.VariableStore()),
     nm.ShapeError, ["q:3"]),
    ("layout indivisible", lambda m: nm.Mesh("b0:2", "a:b0", devices=["", ""]).tensor_layout("a:3"),
     nm.LayoutError, ["a:3", "b0:2", "divisible"]),
    ("two dims on one mesh dim",
     lambda m: nm.Mesh("b0:2", "a:b0;b:b0", devices=["", ""]).tensor_layout("a:2;b:2"),
     nm.LayoutError, ["'a'", "'b'", "'b0'"]),
]


@pytest.mark.parametrize("name,fn,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(mesh, name, fn, error, words):
    with pytest.raises(error) as info:
        fn(mesh)
    message = str(info.value)
    for w in words:
        assert w in message, "%r not in %r" % (w, message)


def test_errors_are_value_errors():
    assert issubclass(nm.ShapeError, ValueError)
    assert issubclass(nm.LayoutError, ValueError)


def test_tensor_has_no_truth_value(mesh):
    with pytest.raises(TypeError, match="ambiguous"):
        bool(_t(mesh, "a:2"))


def test_different_dtypes_in_einsum(mesh):
    a = _t(mesh, "a:2")
    with pytest.raises(TypeError, match="int32"):
        nm.einsum([a, nm.cast(a, tf.int32)])
