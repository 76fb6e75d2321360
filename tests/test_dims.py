"""Dimension, Shape and the mtf string formats."""
import pickle

import pytest

import namedmesh as nm
from namedmesh.core.dims import parse_pairs


def test_dimension_is_a_name_and_size():
    d = nm.Dimension("batch", 8)
    assert d.name == "batch" and d.size == 8
    assert d == ("batch", 8) and tuple(d) == ("batch", 8)
    assert str(d) == "batch:8"
    assert pickle.loads(pickle.dumps(d)) == d
    assert nm.convert_to_dimension("batch:8") == d
    assert nm.convert_to_dimension(("batch", "8")) == d


@pytest.mark.parametrize("text", ["b0:2;b1:4", "b0:2,b1:4", "b0:2 b1:4", "b0:2.b1:4",
                                  " b0:2 ;, b1:4; ", "b0:2;b1:4;"])
def test_shape_strings_any_separator(text):
    s = nm.convert_to_shape(text)
    assert s.names == ("b0", "b1") and s.sizes == (2, 4)
    assert s == nm.convert_to_shape([("b0", 2), ("b1", 4)])
    assert s == nm.convert_to_shape([nm.Dimension("b0", 2), nm.Dimension("b1", 4)])


def test_empty_string_is_empty_shape():
    assert nm.convert_to_shape("") == nm.Shape([])
    assert nm.convert_to_shape("").size == 1
    assert nm.convert_to_shape(None) is None


def test_shape_lookup_by_name():
    s = nm.convert_to_shape("a:2;b:3;c:4")
    assert "b" in s and nm.Dimension("b", 3) in s and nm.Dimension("b", 4) not in s
    assert s["c"] == nm.Dimension("c", 4)
    assert s.index("c") == 2 and s[0].name == "a"
    assert s.size == 24 and s.ndims == 3 and len(s) == 3
    assert s.to_string() == "a:2;b:3;c:4"
    assert s.get("zz") is None


def test_shape_algebra_by_name():
    s = nm.convert_to_shape("a:2;b:3")
    assert (s + "c:4").names == ("a", "b", "c")
    assert (s + "b:3;c:4") == nm.convert_to_shape("a:2;b:3;c:4")  # existing dims are kept once
    assert (s - "a") == nm.convert_to_shape("b:3")
    assert (s - nm.Dimension("b", 3)) == nm.convert_to_shape("a:2")
    assert (s - ["a", "b"]) == nm.Shape([])
    with pytest.raises(nm.ShapeError, match="'b'"):
        s + "b:5"
    assert s.rename_dimension("a", "z").names == ("z", "b")


def test_shape_equality_and_hash():
    a = nm.convert_to_shape("a:2;b:3")
    b = nm.Shape([nm.Dimension("a", 2), nm.Dimension("b", 3)])
    assert a == b and hash(a) == hash(b)
    assert a != nm.convert_to_shape("b:3;a:2")  # order matters
    assert {a: 1}[b] == 1


def test_parse_pairs_mixed_separators():
    assert parse_pairs("x:1, y:2;z:3.w:4", "s") == [("x", "1"), ("y", "2"), ("z", "3"), ("w", "4")]


def test_layout_rules_formats():
    r = nm.convert_to_layout_rules("batch:b0;experts:b1")
    assert r.mesh_dim_name("batch") == "b0" and r.mesh_dim_name("experts") == "b1"
    assert r.mesh_dim_name("d_model") is None
    long = nm.convert_to_layout_rules(
        "ensemble:ensemble,batch:batch,d_ff:model,heads:model,vocab:model,experts:batch")
    assert len(long) == 6 and long.mesh_dim_name("vocab") == "model"
    assert len(nm.convert_to_layout_rules("")) == 0
    assert len(nm.convert_to_layout_rules(None)) == 0
    assert nm.convert_to_layout_rules([("a", "b0")]).to_string() == "a:b0"


def test_mesh_coordinates_and_groups():
    mesh = nm.Mesh("x:2;y:3", devices=[""] * 6)
    assert [mesh.coordinates(p) for p in range(6)] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert mesh.groups(["x"]) == [[0, 3], [1, 4], [2, 5]]
    assert mesh.groups(["y"]) == [[0, 1, 2], [3, 4, 5]]
    assert mesh.groups(["x", "y"]) == [[0, 1, 2, 3, 4, 5]]
    assert mesh.pnum((1, 2)) == 5


def test_rule_for_absent_mesh_dim_is_reported():
    with pytest.warns(nm.LayoutWarning, match=r"batch:8.*'8'.*\['b0'\]"):
        mesh = nm.Mesh("b0:2", "batch:8", devices=["", ""])
    assert mesh.ignored_rules == (("batch", "8"),)
    assert mesh.tensor_layout("batch:4").mesh_axes == (None,)
