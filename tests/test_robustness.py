"""Plainly wrong inputs to every public function and class: each raises a namedmesh error of
the right type whose message names the offending value (never a raw TensorFlow or Python
error from deep inside, never a silent wrong answer).

One table, ``CASES``: ``(id, call, error type, words the message must contain)``.  ``call``
takes the ``Env`` fixture (meshes, a tensor factory).  The files and the command line have
their own tables (test_robustness_files.py, test_robustness_cli.py).
"""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.errors import (ConfigError, LayoutError, MeshError, NamedMeshError, ShapeError,
                              WrongTypeError)

L = nm.layers
NAN, INF = float("nan"), float("inf")


class Env:
    def __init__(self):
        self.m = nm.Mesh()
        self.m4 = nm.Mesh("b0:2;b1:2", "batch:b0;hidden:b1")

    def t(self, spec, dtype=np.float32, mesh=None):
        """A tensor of ones with dims ``spec``."""
        shape = nm.convert_to_shape(spec)
        return nm.import_tf_tensor(mesh or self.m, np.ones(shape.sizes, dtype), shape)

    def b(self, spec):
        """A bool tensor with dims ``spec``."""
        return nm.greater(self.t(spec), 0.0)


def S():
    return nm.VariableStore()


def moe1(**kw):
    return nm.moe.MoE1D(**dict(dict(num_experts=4, hidden_size=8, group_size=4), **kw))


def moe2(**kw):
    return nm.moe.MoE2D(**dict(dict(expert_x=2, expert_y=2, hidden_size=8, group_size=4), **kw))


X1 = "batch:2;length:4;d_model:8"      # an MoE1D input
X2 = "outer_batch:1;batch:2;length:4;d_model:8"


def _loaded(layer, **arrays):
    base = {"top_2_gating/kernel": np.ones([8, 4]), "wi/kernel": np.ones([4, 8, 8]),
            "wo/kernel": np.ones([4, 8, 8])}
    base.update(arrays)
    return layer.load_mtf_variables(base)


def _strategy(n):
    return tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(n)])


def _moe_in_run_unbuilt(e):
    mesh = nm.Mesh("b0:2", "batch:b0", strategy=_strategy(2))
    layer = moe1()

    def program(x):
        y, _ = layer(nm.import_tf_tensor(mesh, x, X1))
        return nm.export_to_tf_tensor(y)
    return mesh.run(program, tf.ones([2, 4, 8]))


def _moe_built_without_strategy(e):
    mesh = nm.Mesh("b0:2", "batch:b0", strategy=_strategy(2))
    layer = moe1()
    layer.build(X1)

    def program(x):
        y, _ = layer(nm.import_tf_tensor(mesh, x, X1))
        return nm.export_to_tf_tensor(y)
    return mesh.run(program, tf.ones([2, 4, 8]))


def _explain(layer, shape):
    from namedmesh.moe.explain import explain
    return explain(layer, shape, "b0:2", "")


def _render(fmt):
    from namedmesh.moe.explain import explain, render
    return render(explain(moe2(), X2, "b0:2", ""), fmt)


def _dense_twice(e):
    store = S()
    nm.dense(e.t("a:2;b:3"), "c:4", store=store)
    return nm.dense(e.t("a:2;b:3"), "c:5", store=store)


def _built_then_other_d_model(e):
    layer = moe1()
    layer(e.t(X1))
    return layer(e.t("batch:2;length:4;d_model:6"))


_MODEL = {}


def lm():
    """A tiny language model of mtf's lm_moe.gin (built once; its variables are made lazily)."""
    if "lm" not in _MODEL:
        gin = os.path.join(os.path.dirname(__file__), "data", "models", "gin") + os.sep
        config = nm.porting.read_gin([gin + "mtf/defaults.gin", gin + "mtf/lm_moe.gin",
                                      gin + "cases/ckpt_lm_moe.gin"])
        _MODEL["lm"] = (config, config.build_model(vocab_size=32))
    return _MODEL["lm"][1]


def lm_config():
    lm()
    return _MODEL["lm"][0]


IDS = np.ones([2, 8], np.int32)


CASES = [
    # -- names and strings ----------------------------------------------------------------
    ("dim name with space", lambda e: nm.Dimension("a b", 2), ShapeError, ["'a b'", "' '"]),
    ("dim name with colon", lambda e: nm.Dimension("a:b", 2), ShapeError, ["'a:b'", "':'"]),
    ("dim name with semicolon", lambda e: nm.Dimension("x;y", 2), ShapeError, ["'x;y'"]),
    ("dim name with comma", lambda e: nm.Dimension("x,y", 2), ShapeError, ["'x,y'"]),
    ("dim name with period", lambda e: nm.Dimension("x.y", 2), ShapeError, ["'x.y'"]),
    ("dim name with newline", lambda e: nm.Dimension("x\ny", 2), ShapeError, ["'x\\ny'"]),
    ("dim name with tab", lambda e: nm.Dimension("x\ty", 2), ShapeError, ["'x\\ty'"]),
    ("dim name empty", lambda e: nm.Dimension("", 2), ShapeError, ["non-empty", "''"]),
    ("dim name int", lambda e: nm.Dimension(3, 2), ShapeError, ["got 3"]),
    ("dim name None", lambda e: nm.Dimension(None, 2), ShapeError, ["None"]),
    ("dim size None", lambda e: nm.Dimension("a", None), ShapeError, ["'a'", "None"]),
    ("dim size string word", lambda e: nm.Dimension("a", "x"), ShapeError, ["'a'", "'x'"]),
    ("dim size float", lambda e: nm.Dimension("a", 2.5), ShapeError, ["'a'", "2.5"]),
    ("dim size bool", lambda e: nm.Dimension("a", True), ShapeError, ["'a'", "True"]),
    ("dim size zero", lambda e: nm.Dimension("a", 0), ShapeError, ["'a'", "positive", "0"]),
    ("dim size negative", lambda e: nm.Dimension("a", -3), ShapeError, ["'a'", "-3"]),
    ("dim size list", lambda e: nm.Dimension("a", [2]), ShapeError, ["'a'", "[2]"]),
    ("shape string size with underscore", lambda e: nm.convert_to_shape("a:1_0"),
     ShapeError, ["'1_0'"]),
    ("shape string size not ascii digits", lambda e: nm.convert_to_shape("a:\u0663"),
     ShapeError, ["'\u0663'"]),
    ("shape string float size", lambda e: nm.convert_to_shape("a:2.5"), ShapeError, ["a:2"]),
    ("shape string trailing colon", lambda e: nm.convert_to_shape("a:2;b:"),
     ShapeError, ["'b:'", "name:value"]),
    ("shape string leading colon", lambda e: nm.convert_to_shape(":2"), ShapeError, ["':2'"]),
    ("shape string three parts", lambda e: nm.convert_to_shape("a:2:3"), ShapeError,
     ["'a:2:3'"]),
    ("shape string pair without size", lambda e: nm.convert_to_shape("a:2;b"),
     ShapeError, ["'b'"]),
    ("shape string duplicate name", lambda e: nm.convert_to_shape("a:2;a:2"),
     ShapeError, ["'a'"]),
    ("shape string one name two sizes", lambda e: nm.convert_to_shape("a:2;a:3"),
     ShapeError, ["'a'", "2", "3"]),
    ("shape string as bytes", lambda e: nm.convert_to_shape(b"a:2"), ShapeError, ["b'a:2'"]),
    ("shape from int", lambda e: nm.convert_to_shape(5), ShapeError, ["5"]),
    ("shape from dict", lambda e: nm.convert_to_shape({"a": 2}), ShapeError, ["{'a': 2}"]),
    ("Shape of an int", lambda e: nm.Shape(3), WrongTypeError, ["Shape(3)"]),
    ("Shape of a string", lambda e: nm.Shape("a:2"), WrongTypeError,
     ["'a:2'", "convert_to_shape"]),
    ("Shape of ints", lambda e: nm.Shape([1, 2]), WrongTypeError, ["1"]),
    ("dimension from a triple", lambda e: nm.convert_to_dimension(("a", 2, 3)),
     WrongTypeError, ["('a', 2, 3)"]),
    ("dimension from two pairs", lambda e: nm.convert_to_dimension("a:2;b:3"),
     ShapeError, ["'a:2;b:3'", "exactly one"]),
    ("shape minus absent dim", lambda e: nm.convert_to_shape("a:2") - "b", ShapeError, ["'b'"]),
    ("shape plus dim of other size", lambda e: nm.convert_to_shape("a:2") + "a:3",
     ShapeError, ["a:3", "'a'"]),
    ("shape index absent", lambda e: nm.convert_to_shape("a:2").index("z"), ShapeError, ["'z'"]),
    ("shape resize to zero", lambda e: nm.convert_to_shape("a:2").resize_dimension("a", 0),
     ShapeError, ["'a'", "0"]),
    ("shape rename to bad name",
     lambda e: nm.convert_to_shape("a:2").rename_dimension("a", "x y"), ShapeError, ["'x y'"]),
    ("layout rule tensor dim with space", lambda e: nm.convert_to_layout_rules([("a b", "b0")]),
     LayoutError, ["'a b'"]),
    ("layout rule mesh dim with period", lambda e: nm.convert_to_layout_rules([("a", "b.0")]),
     LayoutError, ["'b.0'"]),
    ("layout string entry without colon", lambda e: nm.convert_to_layout_rules("batch"),
     LayoutError, ["'batch'"]),
    ("layout string three parts", lambda e: nm.convert_to_layout_rules("a:b:c"),
     LayoutError, ["'a:b:c'"]),
    ("layout from int", lambda e: nm.convert_to_layout_rules(5), LayoutError, ["5"]),
    ("layout pair of ints", lambda e: nm.convert_to_layout_rules([(1, 2)]), LayoutError, ["1"]),
    ("layout maps a dim twice", lambda e: nm.convert_to_layout_rules("batch:b0;batch:b1"),
     LayoutError, ["'batch'", "'b0'", "'b1'"]),
    ("LayoutRules pair of one", lambda e: nm.LayoutRules([("a",)]), LayoutError, ["('a',)"]),

    # -- meshes, devices, strategies ----------------------------------------------------------
    ("mesh string typo", lambda e: nm.Mesh("b0:2;b1"), MeshError, ["'b1'"]),
    ("mesh from int", lambda e: nm.Mesh(4), MeshError, ["4"]),
    ("mesh from list of ints", lambda e: nm.Mesh([2, 2]), MeshError, ["2"]),
    ("mesh zero size", lambda e: nm.Mesh("b0:0"), MeshError, ["b0", "0"]),
    ("mesh layout int", lambda e: nm.Mesh("b0:2", 3, devices=["", ""]), LayoutError, ["3"]),
    ("mesh name not a string", lambda e: nm.Mesh("b0:2", "", devices=["", ""], name=3),
     MeshError, ["3"]),
    ("mesh devices a string", lambda e: nm.Mesh("b0:2", "", devices="/cpu:0"),
     MeshError, ["'/cpu:0'"]),
    ("mesh devices of wrong count", lambda e: nm.Mesh("b0:2", "", devices=["/cpu:0"]),
     MeshError, ["2 processors", "1 devices"]),
    ("mesh device that does not exist", lambda e: nm.Mesh("b0:2", "", devices=["/cpu:0",
                                                                              "/cpu:99"]),
     MeshError, ["'/cpu:99'", "does not exist"]),
    ("mesh GPU device absent", lambda e: nm.Mesh("b0:2", "", devices=["/gpu:0", "/gpu:1"]),
     MeshError, ["'/gpu:0'", "does not exist"]),
    ("mesh device name garbage", lambda e: nm.Mesh("b0:2", "", devices=["foo", "bar"]),
     MeshError, ["'foo'"]),
    ("mesh device not a string", lambda e: nm.Mesh("b0:2", "", devices=[0, 1]),
     MeshError, ["0"]),
    ("mesh devices and strategy", lambda e: nm.Mesh("b0:2", "", devices=["", ""],
                                                    strategy=_strategy(2)),
     MeshError, ["not both"]),
    ("strategy given as a string", lambda e: nm.Mesh("b0:2", "", strategy="mirrored"),
     MeshError, ["'mirrored'", "MirroredStrategy"]),
    ("strategy of the wrong size", lambda e: nm.Mesh("b0:4", "", strategy=_strategy(2)),
     MeshError, ["b0:4", "4 processors", "2 replicas"]),
    ("mesh timeout NaN", lambda e: nm.Mesh("", "", collective_timeout=NAN), MeshError, ["nan"]),
    ("mesh timeout infinite", lambda e: nm.Mesh("", "", collective_timeout=INF),
     MeshError, ["inf"]),
    ("mesh timeout negative", lambda e: nm.Mesh("", "", collective_timeout=-1),
     MeshError, ["-1"]),
    ("mesh timeout string", lambda e: nm.Mesh("", "", collective_timeout="10"),
     MeshError, ["'10'"]),
    ("mesh spmd not a bool", lambda e: nm.Mesh("", "", spmd="no"), MeshError,
     ["spmd", "'no'", "True or False"]),
    ("mesh alltoall_in_bfloat16 not a bool", lambda e: nm.Mesh("", "", alltoall_in_bfloat16=1),
     MeshError, ["alltoall_in_bfloat16", "1", "True or False"]),
    ("logical_to_physical not a permutation",
     lambda e: nm.Mesh("b0:2", "", devices=["", ""], logical_to_physical=[0, 0]),
     MeshError, ["[0, 0]"]),
    ("logical_to_physical auto without TPU",
     lambda e: nm.Mesh("b0:2", "", devices=["", ""], logical_to_physical="auto"),
     MeshError, ["'auto'"]),
    ("mesh larger than the devices", lambda e: nm.Mesh("b0:64"), MeshError, ["64"]),
    ("coordinates of a string", lambda e: e.m4.coordinates("1"), MeshError, ["'1'"]),
    ("coordinates of a float", lambda e: e.m4.coordinates(1.5), MeshError, ["1.5"]),
    ("coordinates out of the mesh", lambda e: e.m4.coordinates(4), MeshError, ["4"]),
    ("pnum of too few coordinates", lambda e: e.m4.pnum([1]), ShapeError, ["[1]"]),
    ("pnum coordinate out of range", lambda e: e.m4.pnum([5, 0]), ShapeError, ["[5, 0]"]),
    ("groups of an absent mesh dim", lambda e: e.m4.groups(["zz"]), MeshError, ["'zz'"]),
    ("groups of an axis out of range", lambda e: e.m4.groups([7]), MeshError, ["7"]),
    ("mesh_axis absent", lambda e: e.m4.mesh_axis("q"), MeshError, ["'q'"]),
    ("mesh.run reduce unknown", lambda e: e.m4.run(lambda: 1, reduce="mean"),
     MeshError, ["'mean'"]),
    ("layout not divisible", lambda e: e.m4.tensor_layout("batch:3"),
     LayoutError, ["batch:3", "b0:2", "divisible"]),
    ("two dims on one mesh dim",
     lambda e: nm.Mesh("b0:2", "a:b0;b:b0", devices=["", ""]).tensor_layout("a:2;b:2"),
     LayoutError, ["'a'", "'b'", "'b0'"]),
    ("configure_cpu_devices from a string", lambda e: nm.configure_cpu_devices("8"),
     MeshError, ["'8'"]),
    ("configure_cpu_devices zero", lambda e: nm.configure_cpu_devices(0), MeshError, ["0"]),
    ("pnum_to_processor_coordinates out of range",
     lambda e: nm.pnum_to_processor_coordinates([2, 2], 9), ShapeError, ["9"]),
    ("processor_coordinates_to_pnum out of range",
     lambda e: nm.processor_coordinates_to_pnum([2, 2], [1, 5]), ShapeError, ["[1, 5]"]),
    ("processor_groups axis out of range",
     lambda e: nm.processor_groups(nm.convert_to_shape("a:2;b:2"), [5]), ShapeError, ["[5]"]),
    ("pnum_to_group pnum out of range",
     lambda e: nm.pnum_to_group(nm.convert_to_shape("a:2;b:2"), [0], 10), ShapeError, ["10"]),
    ("list_product of a string", lambda e: nm.list_product("ab"), ShapeError, ["'ab'"]),
    ("tensor_dim_to_size_per_split indivisible",
     lambda e: nm.tensor_dim_to_size_per_split("a:b0", "b0:2", "a:3"), LayoutError, ["a:3"]),
    ("auto_logical_to_physical sizes as a string",
     lambda e: nm.auto_logical_to_physical("x", [2, 2, 1, 2]), MeshError, ["'x'"]),
    ("auto_logical_to_physical wrong size",
     lambda e: nm.auto_logical_to_physical([3, 3], [2, 2, 1, 2]), MeshError, ["9", "8"]),
    ("tpu_device_assignment of a string", lambda e: nm.tpu_device_assignment("v3-8", "b0:8"),
     MeshError, ["'v3-8'"]),
    ("collective_rank_order of a bad device", lambda e: nm.collective_rank_order("x"),
     MeshError, ["'x'"]),
    ("check_collectives of a string", lambda e: nm.check_collectives("mesh"),
     WrongTypeError, ["'mesh'"]),

    # -- tensors: import, export, creation ----------------------------------------------------
    ("import ragged list", lambda e: nm.import_tf_tensor(e.m, [[1, 2], [3]], "a:2;b:2"),
     WrongTypeError, ["[[1, 2], [3]]", "ragged"]),
    ("import None", lambda e: nm.import_tf_tensor(e.m, None, "a:2"), WrongTypeError, ["None"]),
    ("import an object", lambda e: nm.import_tf_tensor(e.m, object(), "a:2"),
     WrongTypeError, ["object"]),
    ("import a dict", lambda e: nm.import_tf_tensor(e.m, {"a": 1}, "a:2"),
     WrongTypeError, ["{'a': 1}"]),
    ("import strings", lambda e: nm.import_tf_tensor(e.m, ["x", "y"], "a:2"),
     WrongTypeError, ["string"]),
    ("import onto a string mesh", lambda e: nm.import_tf_tensor("mesh", np.ones([2]), "a:2"),
     WrongTypeError, ["'mesh'"]),
    ("import size mismatch", lambda e: nm.import_tf_tensor(e.m, np.zeros([2, 4]), "a:2;b:3"),
     ShapeError, ["'b'", "3", "4"]),
    ("import rank mismatch", lambda e: nm.import_tf_tensor(e.m, np.zeros([2]), "a:2;b:3"),
     ShapeError, ["rank 1", "a:2"]),
    ("import shape as int", lambda e: nm.import_tf_tensor(e.m, np.ones([2]), 2),
     ShapeError, ["2"]),
    ("import non-scalar without shape", lambda e: nm.import_tf_tensor(e.m, np.ones([2])),
     ShapeError, ["[2]", "scalar"]),
    ("import_fully_replicated mismatch",
     lambda e: nm.import_fully_replicated(e.m, np.ones([3]), "a:2"), ShapeError, ["'a'", "3"]),
    ("import_laid_out_tensor slice count",
     lambda e: nm.import_laid_out_tensor(e.m4, [np.ones([2, 3])], "batch:4;x:3"),
     ShapeError, ["1 slices", "4"]),
    ("import_laid_out_tensor not a list",
     lambda e: nm.import_laid_out_tensor(e.m4, 5, "batch:4;x:3"), WrongTypeError, ["5"]),
    ("export a numpy array", lambda e: nm.export_to_tf_tensor(np.ones(2)),
     WrongTypeError, ["array"]),
    ("zeros on a string mesh", lambda e: nm.zeros("mesh", "a:2"), WrongTypeError, ["'mesh'"]),
    ("zeros dtype misspelt", lambda e: nm.zeros(e.m, "a:2", dtype="flaot32"),
     WrongTypeError, ["'flaot32'"]),
    ("ones shape as int", lambda e: nm.ones(e.m, 5), ShapeError, ["5"]),
    ("constant with too many values", lambda e: nm.constant(e.m, [1.0, 2.0, 3.0], "a:2"),
     ShapeError, ["3", "a:2"]),
    ("constant of a string", lambda e: nm.constant(e.m, "x", "a:2"), WrongTypeError, ["'x'"]),
    ("constant 0.5 as int32 would truncate",
     lambda e: nm.constant(e.m, [0.5, 1.5], "a:2", dtype=tf.int32),
     WrongTypeError, ["0.5", "int32"]),
    ("constant overflowing int8", lambda e: nm.constant(e.m, 300, "a:2", dtype=tf.int8),
     WrongTypeError, ["300", "int8"]),
    ("constant 2 as bool", lambda e: nm.constant(e.m, [0, 2], "a:2", dtype=tf.bool),
     WrongTypeError, ["[0, 2]", "bool"]),
    ("range dtype string", lambda e: nm.range(e.m, "x:3", tf.string), WrongTypeError,
     ["string"]),
    ("range dtype misspelt", lambda e: nm.range(e.m, "x:3", "int99"), WrongTypeError,
     ["'int99'"]),
    ("range without size", lambda e: nm.range(e.m, "x", tf.int32), ShapeError, ["'x'"]),
    ("random_uniform minval above maxval",
     lambda e: nm.random_uniform(e.m, "a:2", seed=1, minval=2.0, maxval=1.0),
     ConfigError, ["minval=2.0", "maxval=1.0"]),
    ("random_uniform seed as string", lambda e: nm.random_uniform(e.m, "a:2", seed="x"),
     ShapeError, ["seed"]),
    ("random_normal on a string mesh", lambda e: nm.random_normal("m", "a:2", seed=1),
     WrongTypeError, ["'m'"]),
    ("random on a strategy mesh without seed",
     lambda e: nm.random_uniform(nm.Mesh("b0:2", "", strategy=_strategy(2)), "a:2"),
     MeshError, ["seed="]),

    # -- sizes that do not agree --------------------------------------------------------------
    ("reduce_sum over a dim of another size",
     lambda e: nm.reduce_sum(e.t("a:2;b:3"), reduced_dim="b:4"), ShapeError, ["b:4", "3"]),
    ("reduce_sum over a missing dim", lambda e: nm.reduce_sum(e.t("a:2;b:3"), reduced_dim="c"),
     ShapeError, ["'c'"]),
    ("reduce_sum on the mesh, size mismatch",
     lambda e: nm.reduce_sum(e.t("batch:4;hidden:6", mesh=e.m4), reduced_dim="hidden:5"),
     ShapeError, ["hidden:5", "6"]),
    ("reduce_max output dim absent", lambda e: nm.reduce_max(e.t("a:2;b:3"), output_shape="q:2"),
     ShapeError, ["'q'"]),
    ("reduce_sum output size differs", lambda e: nm.reduce_sum(e.t("a:2;b:3"),
                                                               output_shape="a:5"),
     ShapeError, ["a:5", "2"]),
    ("reduce_sum reduced_dim contradicts output",
     lambda e: nm.reduce_sum(e.t("a:2;b:3;c:4"), output_shape="a:2", reduced_dim="b"),
     ShapeError, ["'b'", "a:2"]),
    ("reduce_sum of a numpy array", lambda e: nm.reduce_sum(np.ones(3)), WrongTypeError,
     ["ndarray"]),
    ("einsum reduced dim absent", lambda e: nm.einsum([e.t("a:2;b:3")], reduced_dims=["z:4"]),
     ShapeError, ["'z'"]),
    ("einsum sizes disagree", lambda e: nm.einsum([e.t("a:2;b:3"), e.t("b:4")]),
     ShapeError, ["'b'", "3", "4"]),
    ("einsum output size differs", lambda e: nm.einsum([e.t("a:2;b:3")], output_shape="a:3"),
     ShapeError, ["'a'", "3", "2"]),
    ("einsum of a tensor, not a list", lambda e: nm.einsum(e.t("a:2")), WrongTypeError,
     ["Tensor", "einsum([x, y]"]),
    ("einsum of nothing", lambda e: nm.einsum([]), ShapeError, ["at least one"]),
    ("einsum of a numpy array", lambda e: nm.einsum([np.ones(2)]), WrongTypeError, ["ndarray"]),
    ("einsum on two meshes", lambda e: nm.einsum([e.t("batch:4"), e.t("batch:4", mesh=e.m4)]),
     ShapeError, ["different meshes"]),
    ("einsum mixed dtypes", lambda e: nm.einsum([e.t("a:2"), e.t("a:2", np.int32)]),
     WrongTypeError, ["int32", "float32"]),
    ("einsum of bools", lambda e: nm.einsum([e.b("a:2"), e.b("a:2")]), WrongTypeError,
     ["bool"]),
    ("matmul sizes disagree", lambda e: nm.matmul(e.t("a:4;b:3"), e.t("b:5;c:2")),
     ShapeError, ["'b'", "3", "5"]),
    ("reshape changes the size", lambda e: nm.reshape(e.t("a:2;b:3"), "c:7"),
     ShapeError, ["6", "7", "c:7"]),
    ("reshape to an int", lambda e: nm.reshape(e.t("a:2;b:3"), 6), ShapeError, ["6"]),
    ("reshape a numpy array", lambda e: nm.reshape(np.ones(6), "c:6"), WrongTypeError,
     ["ndarray"]),
    ("transpose to other dims", lambda e: nm.transpose(e.t("a:2;b:3"), "a:2;c:3"),
     ShapeError, ["c:3"]),
    ("rename an absent dim", lambda e: nm.rename_dimension(e.t("a:2;b:3"), "q", "r"),
     ShapeError, ["'q'"]),
    ("rename onto an existing dim", lambda e: nm.rename_dimension(e.t("a:2;b:3"), "a", "b"),
     ShapeError, ["'b'"]),
    ("rename to a name with a space", lambda e: nm.rename_dimension(e.t("a:2;b:3"), "a", "x y"),
     ShapeError, ["'x y'"]),
    ("replace_dimensions changes size",
     lambda e: nm.replace_dimensions(e.t("a:2;b:3"), "a:2", "c:3"), ShapeError, ["c:3"]),
    ("binary op sizes disagree", lambda e: e.t("a:2;b:3") + e.t("b:4"), ShapeError,
     ["'b'", "3", "4"]),
    ("binary op on two meshes", lambda e: e.t("batch:4") + e.t("batch:4", mesh=e.m4),
     ShapeError, ["different meshes"]),
    ("binary op output lacks a dim", lambda e: nm.add(e.t("a:2"), e.t("a:2"),
                                                      output_shape="z:2"),
     ShapeError, ["z:2", "'a'"]),
    ("broadcast drops a dim", lambda e: nm.broadcast(e.t("a:4"), "b:3"), ShapeError, ["'a'"]),
    ("broadcast size differs", lambda e: nm.broadcast(e.t("a:4"), "a:3;b:3"), ShapeError,
     ["'a'", "4", "3"]),
    ("add_n sizes disagree", lambda e: nm.add_n([e.t("a:2"), e.t("a:3")]), ShapeError, ["'a'"]),
    ("softmax over a missing dim", lambda e: nm.softmax(e.t("a:2;b:3"), "c"), ShapeError,
     ["'c'"]),
    ("softmax dim of another size", lambda e: nm.softmax(e.t("a:2;b:3"), "b:4"),
     ShapeError, ["b:4", "3"]),
    ("top_1 over a missing dim", lambda e: nm.top_1(e.t("a:2"), "e"), ShapeError, ["'e'"]),
    ("cumsum dim of another size", lambda e: nm.cumsum(e.t("a:2"), "a:3"), ShapeError,
     ["a:3"]),
    ("one_hot onto an existing dim", lambda e: nm.one_hot(e.t("a:2", np.int32), "a:3"),
     ShapeError, ["'a'"]),
    ("gather over a missing dim", lambda e: nm.gather(e.t("a:4;b:3"), e.t("i:2", np.int32), "z"),
     ShapeError, ["'z'"]),
    ("slice past the end", lambda e: nm.slice(e.t("a:4"), 2, 5, "a"), ShapeError,
     ["a:4"]),
    ("slice of a missing dim", lambda e: nm.slice(e.t("a:4"), 0, 2, "z"), ShapeError, ["'z'"]),
    ("slice with a float begin", lambda e: nm.slice(e.t("a:4"), 0.5, 2, "a"), ShapeError,
     ["0.5"]),
    ("pad with one number", lambda e: nm.pad(e.t("a:4"), 3, "a"), ShapeError, ["3"]),
    ("pad negative", lambda e: nm.pad(e.t("a:4"), [-1, 2], "a"), ShapeError, ["-1"]),
    ("split sizes do not add up", lambda e: nm.split(e.t("a:4"), "a", [1, 2]), ShapeError,
     ["[1, 2]", "4"]),
    ("split into a non-divisor", lambda e: nm.split(e.t("a:4"), "a", 3), ShapeError, ["3"]),
    ("concat missing dim", lambda e: nm.concat([e.t("a:4"), e.t("a:4")], "z"), ShapeError,
     ["'z'"]),
    ("stack onto an existing name", lambda e: nm.stack([e.t("a:4"), e.t("a:4")], "a"),
     ShapeError, ["'a'"]),
    ("unstack a missing dim", lambda e: nm.unstack(e.t("a:4"), "z"), ShapeError, ["'z'"]),
    ("shift by a float", lambda e: nm.shift(e.t("a:4"), 1.5, "a", wrap=False), ShapeError,
     ["1.5"]),
    ("top_k with k larger than the dim", lambda e: nm.top_k(e.t("a:2;b:3"), "b", "k:5"),
     ShapeError, ["k:5", "b:3"]),
    ("top_k with k as an int", lambda e: nm.top_k(e.t("a:2;b:3"), "b", 2), WrongTypeError,
     ["2", "Dimension"]),
    ("nth_largest_element n too large", lambda e: nm.nth_largest_element(e.t("a:3"), 5, "a"),
     ShapeError, ["5"]),
    ("dropout noise dim absent", lambda e: nm.dropout(e.t("a:4"), True, rate=0.5, seed=1,
                                                      noise_shape="z:2"),
     ShapeError, ["z:2"]),

    # -- dtypes ------------------------------------------------------------------------------
    ("softmax of integers", lambda e: nm.softmax(e.t("a:2;b:3", np.int32), "b"),
     WrongTypeError, ["softmax", "int32"]),
    ("softmax of bools", lambda e: nm.softmax(e.b("a:2"), "a"), WrongTypeError, ["bool"]),
    ("log_softmax of integers", lambda e: nm.log_softmax(e.t("a:2;b:3", np.int32), "b"),
     WrongTypeError, ["int32"]),
    ("reduce_logsumexp of integers",
     lambda e: nm.reduce_logsumexp(e.t("a:2;b:3", np.int32), "b"), WrongTypeError, ["int32"]),
    ("exp of integers", lambda e: nm.exp(e.t("a:2", np.int32)), WrongTypeError, ["exp", "int32"]),
    ("log of integers", lambda e: nm.log(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("sqrt of integers", lambda e: nm.sqrt(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("rsqrt of integers", lambda e: nm.rsqrt(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("sigmoid of integers", lambda e: nm.sigmoid(e.t("a:2", np.int32)), WrongTypeError,
     ["int32"]),
    ("tanh of integers", lambda e: nm.tanh(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("gelu of integers", lambda e: nm.gelu(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("sin of integers", lambda e: nm.sin(e.t("a:2", np.int32)), WrongTypeError, ["int32"]),
    ("relu of bools", lambda e: nm.relu(e.b("a:2")), WrongTypeError, ["relu", "bool"]),
    ("negative of bools", lambda e: nm.negative(e.b("a:2")), WrongTypeError, ["bool"]),
    ("square of bools", lambda e: nm.square(e.b("a:2")), WrongTypeError, ["bool"]),
    ("add float and int", lambda e: e.t("a:2") + e.t("a:2", np.int32), WrongTypeError,
     ["float32", "int32"]),
    ("add float and bool", lambda e: e.t("a:2") + e.b("a:2"), WrongTypeError,
     ["float32", "bool"]),
    ("add bools", lambda e: e.b("a:2") + e.b("a:2"), WrongTypeError, ["bool"]),
    ("int tensor plus 0.5 would truncate", lambda e: e.t("a:2", np.int32) + 0.5,
     WrongTypeError, ["0.5", "int32"]),
    ("int tensor times 0.5 would truncate", lambda e: e.t("a:2", np.int32) * 0.5,
     WrongTypeError, ["0.5", "int32"]),
    ("int tensor to the power 0.5", lambda e: nm.pow(e.t("a:2", np.int32), 0.5),
     WrongTypeError, ["0.5"]),
    ("int tensor times a float tf scalar", lambda e: e.t("a:2", np.int32) * tf.constant(0.5),
     WrongTypeError, ["int32"]),
    ("int8 tensor plus 1000", lambda e: e.t("a:2", np.int8) + 1000, WrongTypeError,
     ["1000", "int8"]),
    ("float32 tensor times 1e300 overflows", lambda e: e.t("a:2") * 1e300, WrongTypeError,
     ["1e+300", "float32"]),
    ("add a string", lambda e: e.t("a:2") + "x", WrongTypeError, ["'x'"]),
    ("add a list", lambda e: e.t("a:2") + [1, 2], WrongTypeError, ["[1, 2]"]),
    ("add a numpy vector", lambda e: e.t("a:2") + np.ones(2), WrongTypeError,
     ["import_tf_tensor"]),
    ("add None", lambda e: e.t("a:2") + None, WrongTypeError, ["None"]),
    ("maximum float32 and float64", lambda e: nm.maximum(e.t("a:2"), e.t("a:2", np.float64)),
     WrongTypeError, ["float64"]),
    ("equal float and int", lambda e: nm.equal(e.t("a:2"), e.t("a:2", np.int32)),
     WrongTypeError, ["int32"]),
    ("less of bools", lambda e: nm.less(e.b("a:2"), e.b("a:2")), WrongTypeError, ["bool"]),
    ("where with a float condition", lambda e: nm.where(e.t("a:2"), e.t("a:2"), e.t("a:2")),
     WrongTypeError, ["condition", "float32", "bool"]),
    ("where with mixed branches", lambda e: nm.where(e.b("a:2"), e.t("a:2"),
                                                     e.t("a:2", np.int32)),
     WrongTypeError, ["int32"]),
    ("where sizes disagree", lambda e: nm.where(e.b("a:2"), e.t("a:3"), e.t("a:3")),
     ShapeError, ["'a'"]),
    ("where with a python condition", lambda e: nm.where(True, e.t("a:2"), e.t("a:2")),
     WrongTypeError, ["bool"]),
    ("logical_and of floats", lambda e: nm.logical_and(e.t("a:2"), e.t("a:2")),
     WrongTypeError, ["logical_and", "float32"]),
    ("logical_not of floats", lambda e: nm.logical_not(e.t("a:2")), WrongTypeError,
     ["float32"]),
    ("reduce_sum of bools", lambda e: nm.reduce_sum(e.b("a:2")), WrongTypeError, ["bool"]),
    ("reduce_mean of integers", lambda e: nm.reduce_mean(e.t("a:2", np.int32)),
     WrongTypeError, ["int32"]),
    ("cast to a misspelt dtype", lambda e: nm.cast(e.t("a:2"), "flaot32"), WrongTypeError,
     ["'flaot32'"]),
    ("cast to None", lambda e: nm.cast(e.t("a:2"), None), WrongTypeError, ["None"]),
    ("one_hot of floats", lambda e: nm.one_hot(e.t("a:2"), "e:3"), WrongTypeError,
     ["integer", "float32"]),
    ("gather with float indices", lambda e: nm.gather(e.t("a:4;b:3"), e.t("i:2"), "a"),
     WrongTypeError, ["float32"]),

    # -- numbers -----------------------------------------------------------------------------
    ("dropout rate above one", lambda e: nm.dropout(e.t("a:4"), True, rate=1.5),
     ConfigError, ["rate=1.5"]),
    ("dropout rate negative", lambda e: nm.dropout(e.t("a:4"), True, rate=-0.1),
     ConfigError, ["rate=-0.1"]),
    ("dropout rate NaN", lambda e: nm.dropout(e.t("a:4"), True, rate=NAN), ConfigError,
     ["rate=nan"]),
    ("dropout rate a string", lambda e: nm.dropout(e.t("a:4"), True, rate="0.1"),
     ConfigError, ["rate='0.1'"]),
    ("dropout keep_prob zero", lambda e: nm.dropout(e.t("a:4"), True, keep_prob=0.0),
     ConfigError, ["keep_prob=0.0"]),
    ("dropout both rate and keep_prob",
     lambda e: nm.dropout(e.t("a:4"), True, rate=0.1, keep_prob=0.9), ConfigError,
     ["keep_prob=0.9", "rate=0.1"]),
    ("sample with a negative temperature",
     lambda e: nm.sample_with_temperature(e.t("a:2;v:5"), "v", temperature=-1.0),
     ConfigError, ["-1.0"]),
    ("sample with an infinite temperature",
     lambda e: nm.sample_with_temperature(e.t("a:2;v:5"), "v", temperature=INF),
     ConfigError, ["inf"]),
    ("VarianceScaling scale negative", lambda e: L.VarianceScalingInitializer(scale=-1.0),
     ConfigError, ["-1.0"]),
    ("VarianceScaling scale NaN", lambda e: L.VarianceScalingInitializer(scale=NAN),
     ConfigError, ["nan"]),
    ("VarianceScaling mode unknown", lambda e: L.VarianceScalingInitializer(mode="fan_x"),
     ConfigError, ["'fan_x'"]),
    ("expert_capacity of a negative group",
     lambda e: nm.moe.expert_capacity(-1, 1.0, 4, 4), ConfigError, ["-1"]),
    ("expert_capacity factor NaN", lambda e: nm.moe.expert_capacity(8, NAN, 4, 4),
     ConfigError, ["nan"]),
    ("split_into_groups zero groups size", lambda e: nm.moe.split_into_groups(8, 0, 1),
     ConfigError, ["max_group_size", "0"]),
    ("split_into_groups indivisible", lambda e: nm.moe.split_into_groups(6, 4, 4),
     ConfigError, ["n=6", "mesh_dim_size=4"]),

    # -- layers ------------------------------------------------------------------------------
    ("dense of integers would truncate its kernel",
     lambda e: nm.dense(e.t("a:2;b:3", np.int32), "c:4", store=S()),
     WrongTypeError, ["dense", "int32"]),
    ("dense of bools", lambda e: nm.dense(e.b("a:2;b:3"), "c:4", store=S()), WrongTypeError,
     ["bool"]),
    ("dense new_dims an int", lambda e: nm.dense(e.t("a:2;b:3"), 4, store=S()),
     WrongTypeError, ["4"]),
    ("dense reduced dim of another size",
     lambda e: nm.dense(e.t("a:2;b:3"), "c:4", reduced_dims=["b:5"], store=S()),
     ShapeError, ["b:5"]),
    ("dense activation misspelt",
     lambda e: nm.dense(e.t("a:2;b:3"), "c:4", activation="relux", store=S()),
     ConfigError, ["'relux'"]),
    ("dense activation a number", lambda e: nm.dense(e.t("a:2;b:3"), "c:4", activation=3,
                                                     store=S()),
     ConfigError, ["3"]),
    ("dense variable dtype misspelt",
     lambda e: nm.dense(e.t("a:2;b:3"), "c:4", variable_dtype="flt", store=S()),
     WrongTypeError, ["'flt'"]),
    ("dense integer variables", lambda e: nm.dense(e.t("a:2;b:3"), "c:4",
                                                   variable_dtype=tf.int32, store=S()),
     WrongTypeError, ["int32"]),
    ("dense kernel_weights of other dims",
     lambda e: nm.dense(e.t("a:2;b:3"), "c:4", kernel_weights=e.t("b:3;d:4"), use_bias=False,
                        store=S()),
     ShapeError, ["kernel_weights", "d:4", "c:4"]),
    ("dense without a store", lambda e: nm.dense(e.t("a:2;b:3"), "c:4"), ConfigError,
     ["store"]),
    ("dense of a numpy array", lambda e: nm.dense(np.ones([2, 3]), "c:4", store=S()),
     WrongTypeError, ["ndarray"]),
    ("dense variable reused with other dims", _dense_twice, ShapeError, ["dense/kernel"]),
    ("dense_product activation misspelt",
     lambda e: L.dense_product(e.t("a:2;d:4"), "d:4", "h:8", ["relux"], store=S()),
     ConfigError, ["'relux'"]),
    ("dense_relu_dense of integers",
     lambda e: L.dense_relu_dense(e.t("a:2;d:4", np.int32), "h:8", False, store=S()),
     WrongTypeError, ["int32"]),
    ("dense_relu_dense dropout 2", lambda e: L.dense_relu_dense(e.t("a:2;d:4"), "h:8", True,
                                                                dropout=2.0, store=S()),
     ConfigError, ["2.0"]),
    ("layer_norm of integers", lambda e: L.layer_norm(e.t("a:2;b:3", np.int32), "b:3",
                                                      store=S()),
     WrongTypeError, ["layer_norm", "int32"]),
    ("layer_norm over a missing dim", lambda e: L.layer_norm(e.t("a:2;b:3"), "z:3", store=S()),
     ShapeError, ["z"]),
    ("rms_norm of integers", lambda e: L.rms_norm(e.t("a:2;b:3", np.int32), "b:3", store=S()),
     WrongTypeError, ["int32"]),
    ("batch_norm of integers", lambda e: L.batch_norm(e.t("b:2;c:3", np.int32), True, 0.9,
                                                      store=S()),
     WrongTypeError, ["int32"]),
    ("conv1d of integers", lambda e: L.conv1d(e.t("b:2;l:4;c:3", np.int32), "o:2", store=S()),
     WrongTypeError, ["conv1d", "int32"]),
    ("conv2d padding lower case",
     lambda e: L.conv2d(e.t("b:2;h:4;w:4;c:3"), "o:2", padding="same", store=S()),
     ShapeError, ["'same'"]),
    ("conv2d filter size of one entry",
     lambda e: L.conv2d(e.t("b:2;h:4;w:4;c:3"), "o:2", filter_size=(3,), store=S()),
     ShapeError, ["(3,)"]),
    ("max_pool2d window of one entry", lambda e: L.max_pool2d(e.t("b:2;h:4;w:4;c:3"),
                                                              ksize=(3,)),
     ShapeError, ["(3,)"]),
    ("avg_pool2d window not dividing", lambda e: L.avg_pool2d(e.t("b:2;h:5;w:4;c:3"),
                                                              ksize=(2, 2)),
     ShapeError, ["h:5"]),
    ("embedding with float ids", lambda e: L.embedding(e.t("a:2"), "v:5", "d:3", tf.float32,
                                                       store=S()),
     WrongTypeError, ["float32"]),
    ("embedding vocab as an int", lambda e: L.embedding(e.t("a:2", np.int32), 5, "d:3",
                                                        tf.float32, store=S()),
     WrongTypeError, ["5"]),
    ("softmax cross-entropy of integers",
     lambda e: L.softmax_cross_entropy_with_logits(e.t("a:2;v:3", np.int32),
                                                   e.t("a:2;v:3"), "v:3"),
     WrongTypeError, ["logits", "int32"]),
    ("sigmoid cross-entropy dims disagree",
     lambda e: L.sigmoid_cross_entropy_with_logits(e.t("a:2"), e.t("a:3")),
     ShapeError, ["[a:2]", "[a:3]"]),
    ("attention of integers",
     lambda e: L.dot_product_attention(e.t("b:2;l:3;k:4", np.int32), e.t("b:2;m:3;k:4",
                                                                          np.int32),
                                       e.t("b:2;m:3;v:4", np.int32), None, is_training=False),
     WrongTypeError, ["int32"]),
    ("multiplicative_jitter of integers",
     lambda e: L.multiplicative_jitter(e.t("a:2", np.int32), epsilon=0.1), WrongTypeError,
     ["int32"]),
    ("store seed a string", lambda e: nm.VariableStore(seed="x"), WrongTypeError, ["'x'"]),
    ("store seed a float", lambda e: nm.VariableStore(seed=1.5), WrongTypeError, ["1.5"]),
    ("store values a list", lambda e: nm.VariableStore(values=[1, 2]), WrongTypeError,
     ["list"]),
    ("store value of strings", lambda e: nm.VariableStore(values={"w": ["a", "b"]}),
     WrongTypeError, ["'w'"]),
    ("store value with NaN", lambda e: nm.VariableStore(values={"w": [1.0, NAN]}),
     ConfigError, ["'w'", "NaN"]),
    ("store scope of an int", lambda e: S().scope(3).__enter__(), ConfigError, ["3"]),
    ("recompute_grad of a non-function", lambda e: nm.recompute_grad(3, [e.t("a:2")]),
     WrongTypeError, ["3"]),
    ("recompute_grad of a numpy input", lambda e: nm.recompute_grad(lambda x: x, [np.ones(2)]),
     WrongTypeError, ["ndarray"]),
    ("while_loop of a non-function", lambda e: nm.while_loop(3, lambda x: [x], [e.t("a:2")]),
     WrongTypeError, ["cond_fn", "3"]),
    ("depend of a numpy array", lambda e: nm.depend(np.ones(2), []), WrongTypeError,
     ["ndarray"]),
    ("scalar_summary of a vector", lambda e: nm.scalar_summary("x", e.t("a:2")), ShapeError,
     ["[a:2]"]),
    ("Print data not a list", lambda e: nm.Print(e.t("a:2"), 5, "m"), WrongTypeError, ["5"]),
    ("pool_tensor_1d reduce_fn an int", lambda e: nm.pool_tensor_1d(e.t("a:4;l:6"), "l", 4),
     WrongTypeError, ["4"]),
    ("pretty_print_counters of an int", lambda e: nm.pretty_print_counters(5), WrongTypeError,
     ["5"]),
    ("log_variable_sizes of an int", lambda e: nm.log_variable_sizes(5), WrongTypeError,
     ["5"]),
    ("is_subsequence of ints", lambda e: nm.is_subsequence(1, 2), WrongTypeError, ["1"]),
    ("mesh.run of a non-function", lambda e: e.m.run(5), WrongTypeError, ["5"]),
    ("mesh.run function flag a string", lambda e: e.m.run(lambda: 1, function="yes"),
     WrongTypeError, ["'yes'"]),
    ("tensor_layout of None", lambda e: e.m.tensor_layout(None), ShapeError, ["None"]),
    ("trace count of a misspelt kind", lambda e: nm.CollectiveTrace().count("all_too_all"),
     ConfigError, ["'all_too_all'", "all_to_all"]),
    ("explain of a layer name", lambda e: _explain("MoE2D", X2), WrongTypeError, ["'MoE2D'"]),
    ("explain of a bad input shape", lambda e: _explain(moe2(), "x"), ShapeError, ["'x'"]),
    ("render in an unknown format", lambda e: _render("yaml"), ConfigError, ["'yaml'"]),
    ("reciprocal of integers", lambda e: nm.reciprocal(e.t("a:2", np.int32)), WrongTypeError,
     ["int32"]),
    ("cumsum of bools", lambda e: nm.cumsum(e.b("a:2"), "a"), WrongTypeError, ["bool"]),
    ("one_hot dtype misspelt", lambda e: nm.one_hot(e.t("a:2", np.int32), "e:3", dtype="x"),
     WrongTypeError, ["'x'"]),

    # -- MoE configuration numbers -------------------------------------------------------------
] + [
    ("MoE1D %s=%r" % (key, value), (lambda k, v: lambda e: moe1(**{k: v}))(key, value),
     ConfigError, [key, repr(value)])
    for key, value in [
        ("capacity_factor_train", NAN), ("capacity_factor_train", INF),
        ("capacity_factor_train", -1.0), ("capacity_factor_train", 0.0),
        ("capacity_factor_train", "1.25"), ("capacity_factor_eval", NAN),
        ("capacity_factor_eval", 0), ("loss_coef", NAN), ("loss_coef", INF),
        ("loss_coef", -0.01), ("second_threshold_train", NAN),
        ("second_threshold_train", -0.5), ("second_threshold_eval", INF),
        ("group_size", 0), ("group_size", -4), ("group_size", 2.5), ("group_size", NAN),
        ("num_experts", 0), ("num_experts", 1.5), ("num_experts", True),
        ("num_experts", "8"), ("hidden_size", 0), ("min_expert_capacity", 0),
        ("switch_jitter", NAN), ("switch_jitter", -1.0), ("switch_temperature", 0.0),
        ("dropout_rate", 1.0), ("dropout_rate", NAN), ("switch_dropout", 1.5),
        ("z_loss", NAN), ("z_loss", -1.0), ("second_policy_train", "randm"),
        ("moe_gating", "top_3"), ("activation", "relux"), ("use_second_place_loss", "yes"),
        ("dispatch", "gather"), ("nonfinite_tokens", "ignore"),
    ]
] + [
    ("MoE2D %s=%r" % (key, value), (lambda k, v: lambda e: moe2(**{k: v}))(key, value),
     ConfigError, [key, repr(value)])
    for key, value in [("expert_x", 0), ("expert_y", 2.0), ("expert_x", NAN),
                       ("capacity_factor_second_level", NAN),
                       ("capacity_factor_second_level", 0.0),
                       ("capacity_factor_second_level", -1.0)]
] + [
    ("MoE1D unknown keyword", lambda e: nm.moe.MoE1D(num_expert=4), ConfigError,
     ["'num_expert'"]),
    ("MoE1D hparams unknown key", lambda e: nm.moe.MoE1D.from_hparams({"moe_num_expert": 4}),
     ConfigError, ["'moe_num_expert'"]),
    ("MoE1D hparams as a string", lambda e: nm.moe.MoE1D.from_hparams("moe_num_experts=4"),
     ConfigError, ["'moe_num_experts=4'"]),
    ("MoE1D hparams NaN", lambda e: nm.moe.MoE1D.from_hparams(
        {"moe_capacity_factor_train": NAN}), ConfigError, ["capacity_factor_train", "nan"]),
    ("MoE2D hparams one expert count", lambda e: nm.moe.MoE2D.from_hparams(
        {"moe_num_experts": 8}), ConfigError, ["8"]),
    ("MoE1DConfig string count", lambda e: nm.moe.MoE1DConfig(num_experts="8"), ConfigError,
     ["'8'"]),
    ("PortedLayer of an unknown kind", lambda e: nm.porting.PortedLayer("MoE3D", {}).build(),
     ConfigError, ["'MoE3D'"]),
    ("SelfAttention heads negative",
     lambda e: nm.transformer.SelfAttentionConfig(num_heads=-1), ConfigError, ["-1"]),
    ("DenseReluDense hidden zero", lambda e: nm.transformer.DenseReluDenseConfig(hidden_size=0),
     ConfigError, ["0"]),

    # -- MoE layers used wrongly ---------------------------------------------------------------
    ("MoE1D of integers", lambda e: moe1()(e.t(X1, np.int32)), WrongTypeError,
     ["MoE1D", "int32"]),
    ("MoE1D of bools", lambda e: moe1()(e.b(X1)), WrongTypeError, ["bool"]),
    ("MoE2D of integers", lambda e: moe2()(e.t(X2, np.int32)), WrongTypeError,
     ["MoE2D", "int32"]),
    ("MoE1D of a numpy array", lambda e: moe1()(np.ones([2, 4, 8])), WrongTypeError,
     ["ndarray"]),
    ("MoE1D of one dim", lambda e: moe1()(e.t("d_model:8")), ConfigError, ["[d_model:8]"]),
    ("MoE2D of two dims", lambda e: moe2()(e.t("batch:2;d_model:8")), ConfigError,
     ["batch:2"]),
    ("MoE1D train given as a string", lambda e: moe1()(e.t(X1), train="no"), WrongTypeError,
     ["train", "'no'"]),
    ("MoE1D return_stats as a string", lambda e: moe1()(e.t(X1), return_stats="yes"),
     WrongTypeError, ["'yes'"]),
    ("MoE1D seed a string", lambda e: moe1()(e.t(X1), train=True, seed="abc"),
     WrongTypeError, ["'abc'"]),
    ("MoE1D seed a float", lambda e: moe1()(e.t(X1), train=True, seed=1.5), WrongTypeError,
     ["1.5"]),
    ("MoE1D nonpadding a numpy array", lambda e: moe1()(e.t(X1), nonpadding=np.ones([2, 4])),
     WrongTypeError, ["nonpadding", "ndarray"]),
    ("MoE1D nonpadding of other dims", lambda e: moe1()(e.t(X1), nonpadding=e.t("batch:2")),
     ConfigError, ["nonpadding", "[batch:2]"]),
    ("MoE1D nonpadding of another size",
     lambda e: moe1()(e.t(X1), nonpadding=e.t("batch:2;length:5")), ConfigError,
     ["length:5"]),
    ("MoE1D nonpadding on another mesh",
     lambda e: moe1()(e.t(X1), nonpadding=e.t("batch:2;length:4", mesh=e.m4)), MeshError,
     ["nonpadding", "b0:2;b1:2"]),
    ("MoE1D called again with another d_model", _built_then_other_d_model, ConfigError,
     ["d_model:8", "d_model:6"]),
    ("MoE1D build of an empty shape", lambda e: moe1().build(""), ShapeError, ["''"]),
    ("MoE1D build on a string mesh", lambda e: moe1().build(X1, "mesh"), WrongTypeError,
     ["'mesh'"]),
    ("MoE1D called in mesh.run before build", _moe_in_run_unbuilt, ConfigError,
     ["layer.build", "before mesh.run"]),
    ("MoE1D built without the strategy it runs under", _moe_built_without_strategy,
     MeshError, ["without a tf.distribute strategy", "layer.build"]),
    ("MoE1D load a list", lambda e: moe1().load_mtf_variables([1, 2]), WrongTypeError,
     ["list"]),
    ("MoE1D load a scalar gate", lambda e: _loaded(moe1(), **{"top_2_gating/kernel": 1.0}),
     ConfigError, ["'top_2_gating/kernel'", "()"]),
    ("MoE1D load strings", lambda e: _loaded(moe1(), **{"wi/kernel": np.full([4, 8, 8], "a")}),
     WrongTypeError, ["'wi/kernel'"]),
    ("MoE1D load NaN weights",
     lambda e: _loaded(moe1(), **{"wo/kernel": np.full([4, 8, 8], np.nan)}), ConfigError,
     ["'wo/kernel'", "NaN"]),
    ("MoE1D load a wrong shape", lambda e: _loaded(moe1(), **{"wo/kernel": np.ones([4, 8, 9])}),
     ConfigError, ["'wo/kernel'", "(4, 8, 9)"]),
    ("MoE1D load a missing variable",
     lambda e: moe1().load_mtf_variables({"top_2_gating/kernel": np.ones([8, 4])}),
     ConfigError, ["'wi/kernel'", "missing"]),
    ("save an unbuilt layer", lambda e: nm.porting.save_layer_to_checkpoint(moe1(), "/tmp/x"),
     ConfigError, ["MoE1D", "no variables"]),

    # whole transformer models (namedmesh.transformer)
    ("model features not a dict", lambda e: lm()(e.m, IDS), WrongTypeError,
     ["features", "dict", "ndarray"]),
    ("model unknown feature", lambda e: lm()(e.m, {"targets": IDS, "bogus": IDS}), ConfigError,
     ["'bogus'"]),
    ("model missing targets", lambda e: lm()(e.m, {"inputs": IDS}), ConfigError,
     ["'targets'", "missing"]),
    ("model float ids", lambda e: lm()(e.m, {"targets": IDS.astype(np.float32)}),
     WrongTypeError, ["'targets'", "float32"]),
    ("model 1-D ids", lambda e: lm()(e.m, {"targets": IDS[0]}), ShapeError, ["2-D", "1 dims"]),
    ("model id beyond the vocabulary", lambda e: lm()(e.m, {"targets": IDS * 500}), ConfigError,
     ["'targets'", "500", "[0, 128)"]),
    ("model negative id", lambda e: lm()(e.m, {"targets": -IDS}), ConfigError,
     ["'targets'", "-1"]),
    ("model bad mode", lambda e: lm()(e.m, {"targets": IDS}, mode="training"), ConfigError,
     ["'training'"]),
    ("model longer than max_length", lambda e: lm()(e.m, {"targets": np.ones([2, 40], np.int32)}),
     ShapeError, ["40", "max_length"]),
    ("model mesh given as a string", lambda e: lm()("b0:2", {"targets": IDS}), WrongTypeError,
     ["'b0:2'"]),
    ("model decode float prompts", lambda e: lm().decode(e.m, IDS.astype(np.float32)),
     WrongTypeError, ["'prompts'", "float32"]),
    ("model decode negative temperature", lambda e: lm().decode(e.m, IDS, temperature=-1.0),
     ConfigError, ["temperature", "-1.0"]),
    ("model missing checkpoint", lambda e: lm().load_checkpoint("/nonexistent/model.ckpt"),
     ConfigError, ["'/nonexistent/model.ckpt'"]),
    ("model checkpoint of another model",
     lambda e: lm().load_checkpoint(os.path.join(
         os.path.dirname(__file__), "data", "models", "ckpt_bi_moe", "model.ckpt-20")), ConfigError,
     ["does not match", "transformer/embedding"]),
    ("build_model vocab 0", lambda e: lm_config().build_model(vocab_size=0), ConfigError,
     ["vocab", "0"]),
    ("build_model vocab as a string", lambda e: lm_config().build_model(vocab_size="32"),
     ConfigError, ["'32'"]),
]


@pytest.fixture(scope="module")
def env():
    return Env()


@pytest.mark.parametrize("name,call,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(env, name, call, error, words):
    with pytest.raises(error) as info:
        call(env)
    assert isinstance(info.value, NamedMeshError), type(info.value).__mro__
    message = str(info.value)
    for w in words:
        assert w in message, "%r not in %r" % (w, message)


def test_the_table_is_large_and_its_ids_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids)


def test_every_error_is_a_value_error_and_type_errors_are_also_type_errors():
    for cls in (ShapeError, LayoutError, MeshError, ConfigError, nm.CollectiveError,
                nm.FileError, WrongTypeError):
        assert issubclass(cls, NamedMeshError) and issubclass(cls, ValueError)
    assert issubclass(WrongTypeError, TypeError) and issubclass(nm.FileError, ConfigError)


def test_a_scalar_that_fits_is_still_accepted(env):
    """The checks refuse only lossy scalars: 2.0 on an int tensor, 1 on a float tensor,
    True on a bool mask via logical ops, and ints in range are fine."""
    i = env.t("a:2", np.int32)
    assert nm.export_to_tf_tensor(i * 2.0).numpy().tolist() == [2, 2]
    assert nm.export_to_tf_tensor(env.t("a:2") + 1).numpy().tolist() == [2.0, 2.0]
    assert nm.export_to_tf_tensor(nm.constant(env.m, [1.0, 2.0], "a:2", tf.int32)
                                  ).numpy().tolist() == [1, 2]
    assert math.isinf(float(nm.export_to_tf_tensor(env.t("a:2") * INF).numpy()[0]))
