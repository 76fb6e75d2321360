"""Run mtf 0.1.21's ops.py in the oracle venv and record what namedmesh must reproduce.

    /tmp/mtf-oracle/bin/python tools/oracle/mtf_ops_oracle.py --out tests/data/mtf_ops

Writes (committed under tests/data/mtf_ops, see its README):
  public_api.json  the public functions of mtf's ops.py (read from its source with ast),
                   with their signatures: the source of docs/named_dims.md's table.
  cases.json       each op case: mesh, layout, inputs, the mtf call, and what mtf did:
                   the collectives its lowering called on a PlacementMeshImpl (allreduce /
                   allconcat / alltoall / receive, with receive's source map), or the error
                   it raised; plus, for misuse cases, the exception type mtf raises.
  cases.npz        inputs, outputs and gradients (of sum_i(out_i * r_i)) of each case,
                   computed by mtf on one processor (cases.json says whether mtf's run on
                   the case's mesh gave the same values).
"""
import argparse
import ast
import inspect
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtf_shim  # noqa: E402,F401
import mesh_tensorflow as mtf  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from mesh_tensorflow import placement_mesh_impl  # noqa: E402

tf.disable_v2_behavior()

OPS_PY = os.path.join(os.path.dirname(mtf.__file__), "ops.py")


def public_api():
    """Public module-level functions of ops.py, in source order, with signatures."""
    tree = ast.parse(open(OPS_PY).read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            fn = getattr(mtf.ops, node.name)
            signature = re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"\1",
                               str(inspect.signature(fn)))
            out.append({"name": node.name, "line": node.lineno, "signature": signature})
    classes = [n.name for n in tree.body
               if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
    return {"source": "mesh_tensorflow 0.1.21 mesh_tensorflow/ops.py", "functions": out,
            "classes": classes,
            "aliases": {"abs": "mtf_abs", "pow": "mtf_pow", "range": "mtf_range",
                        "slice": "mtf_slice"}}


# -- the cases --------------------------------------------------------------------------
def D(spec):
    return {"dim": spec}


def S(spec):
    return {"shape": spec}


def I(name):
    return {"input": name}


X = ["a:4;b:8;c:2", "float32"]


def case(id_, op, args, inputs=None, mesh="", layout="", kwargs=None, random=False, grads=True):
    return {"id": id_, "op": op, "args": args, "kwargs": kwargs or {},
            "inputs": inputs if inputs is not None else {"x": X}, "mesh_shape": mesh,
            "layout": layout, "random": random, "grads": grads and not random}


def cases():
    out = []
    # shift along a split dim: mtf's neighbour exchange (receive), by whole blocks and parts
    for mesh, layout in [("m:4", "b:m"), ("m:2;n:2", "a:m;b:n")]:
        for offset in [1, 2, -1, -2, 3, 5, -6, 9, -8, 0]:
            for wrap in [True, False]:
                out.append(case("shift_%s_%s_%d_%s" % (mesh, layout, offset, wrap), "shift",
                                [I("x"), offset, D("b:8"), wrap], mesh=mesh, layout=layout))
    out.append(case("halo_blocks_split", "halo_exchange",
                    [I("x"), D("blocks:4"), D("block:3"), 2], {"x": ["blocks:4;block:3;d:2",
                                                                     "float32"]},
                    mesh="m:4", layout="blocks:m", kwargs={"wrap": False}))
    out.append(case("left_halo_wrap", "left_halo_exchange",
                    [I("x"), D("blocks:4"), D("block:3"), 4, True],
                    {"x": ["blocks:4;block:3;d:2", "float32"]}, mesh="m:2", layout="blocks:m"))
    # gather: from a split vocab (one all-reduce), from a split output dim (none)
    g_in = {"w": ["vocab:8;d:4", "float32"], "ids": ["batch:2;length:3", "int32", -1, 9]}
    for mesh, layout in [("", ""), ("m:4", "vocab:m"), ("m:2;n:2", "vocab:m;batch:n"),
                         ("m:2", "d:m")]:
        out.append(case("gather_%s_%s" % (mesh, layout), "gather",
                        [I("w"), I("ids"), D("vocab:8")], g_in, mesh=mesh, layout=layout))
    out.append(case("gather_batch_dims", "gather", [I("w"), I("ids"), D("length:6")],
                    {"w": ["batch:2;length:6;d:3", "float32"],
                     "ids": ["batch:2;k:2", "int32", 0, 6]}, mesh="m:2", layout="length:m"))
    # along-a-dim ops, split and not: mtf refuses the split dim ("can't ... along split axis")
    for mesh, layout in [("m:2", "b:m"), ("m:2", "a:m")]:
        tag = "%s_%s" % (mesh, layout)
        out.append(case("slice_" + tag, "mtf_slice", [I("x"), 2, 4, "b"], mesh=mesh,
                        layout=layout))
        out.append(case("pad_" + tag, "pad", [I("x"), [1, 3], "b"], mesh=mesh, layout=layout))
        out.append(case("concat_" + tag, "concat", [[I("x"), I("y")], "b"],
                        {"x": X, "y": ["a:4;b:4;c:2", "float32"]}, mesh=mesh, layout=layout))
        out.append(case("split_" + tag, "split", [I("x"), D("b:8"), [2, 6]], mesh=mesh,
                        layout=layout))
        out.append(case("stack_" + tag, "stack", [[I("x"), I("y")], "s", 1],
                        {"x": X, "y": X}, mesh=mesh, layout=layout))
        out.append(case("unstack_" + tag, "unstack", [I("x"), D("b:8")], mesh=mesh,
                        layout=layout))
    out.append(case("stack_new_dim_split", "stack", [[I("x"), I("y")], "s", 0],
                    {"x": X, "y": X}, mesh="m:2", layout="s:m"))
    # top_k / top_1 / argmax / nth / sampling along a split dim
    for k in [1, 3, 5]:
        out.append(case("top_k_%d_split" % k, "top_k", [I("x"), D("b:8"), D("k:%d" % k)],
                        mesh="m:2", layout="b:m"))
        out.append(case("top_k_%d" % k, "top_k", [I("x"), D("b:8"), D("k:%d" % k)]))
    out.append(case("top_1_split", "top_1", [I("x"), D("b:8")], mesh="m:4", layout="b:m"))
    out.append(case("nth_largest_split", "nth_largest_element", [I("x"), 2, D("b:8")],
                    mesh="m:2", layout="b:m"))
    out.append(case("nth_smallest", "nth_smallest_element", [I("x"), 0, D("a:4")]))
    # reductions, softmax family, cumsum, einsum-built ops along a split dim
    for op, args in [("reduce_logsumexp", [I("x"), D("b:8")]), ("log_softmax", [I("x"), D("b:8")]),
                     ("softmax", [I("x"), D("b:8")]), ("cumsum", [I("x"), D("b:8")]),
                     ("reduce_sum", [I("x")]), ("reduce_max", [I("x")]),
                     ("reduce_first", [I("x"), D("b:8")])]:
        kw = {"reduced_dim": {"dim": "b:8"}} if op in ("reduce_sum", "reduce_max") else {}
        out.append(case(op + "_split", op, args, mesh="m:2", layout="b:m", kwargs=kw))
        out.append(case(op, op, args, kwargs=kw))
    out.append(case("cumsum_exclusive", "cumsum", [I("x"), D("b:8"), True]))
    out.append(case("dynamic_shift_split", "dynamic_shift",
                    [I("x"), I("off"), D("b:8"), True],
                    {"x": X, "off": ["a:4", "int32", -8, 9]}, mesh="m:2", layout="b:m"))
    out.append(case("dynamic_shift", "dynamic_shift", [I("x"), I("off"), D("b:8"), False],
                    {"x": X, "off": ["a:4", "int32", -8, 9]}))
    out.append(case("extra_logit", "reduce_logsumexp", [I("x"), D("b:8")],
                    {"x": X, "e": ["a:4;c:2", "float32"]}, kwargs={"extra_logit": I("e")}))
    out.append(case("softmax_extra_scalar", "softmax", [I("x"), D("c:2")],
                    kwargs={"extra_logit": 0.5}))
    out.append(case("pool_tensor_1d", "pool_tensor_1d", [I("x"), D("b:8")],
                    kwargs={"pool_size": 4}))
    out.append(case("stride_tensor_1d", "stride_tensor_1d", [I("x"), D("b:8")],
                    kwargs={"pool_size": 2}))
    out.append(case("transpose_split", "transpose", [I("x"), S("c:2;a:4;b:8")], mesh="m:2;n:2",
                    layout="b:m;c:n"))
    out.append(case("where_broadcast", "where", [I("cond"), I("t"), I("f")],
                    {"cond": ["b:8", "bool"], "t": ["a:4;b:8", "float32"],
                     "f": ["c:2;b:8", "float32"]}))
    out.append(case("one_hot_split", "one_hot", [I("ids"), D("v:8")],
                    {"ids": ["a:4;c:2", "int32", -1, 9]}, mesh="m:4", layout="v:m"))
    out.append(case("range_split", "mtf_range", ["$mesh", D("b:8"), "int32"], {}, mesh="m:4",
                    layout="b:m"))
    for op in ["sin", "cos", "elu", "selu", "squared_relu", "leaky_relu", "sign", "mtf_abs",
               "gelu", "swish", "softplus", "identity", "reciprocal", "negative"]:
        out.append(case("unary_" + op, op, [I("x")]))
    out.append(case("mtf_pow", "mtf_pow", [I("p"), 1.5], {"p": ["a:4;b:8", "positive"]}))
    out.append(case("floordiv", "floordiv", [I("x"), I("y")],
                    {"x": ["a:4;b:8", "int32", -20, 20], "y": ["b:8", "int32", 1, 6]}))
    out.append(case("mod", "mod", [I("x"), I("y")],
                    {"x": ["a:4;b:8", "int32", -20, 20], "y": ["b:8", "int32", 1, 6]}))
    out.append(case("mod_float", "mod", [I("x"), 0.75], grads=False))  # mtf: no gradient
    out.append(case("matmul", "matmul", [I("x"), I("w")],
                    {"x": X, "w": ["c:2;d:5", "float32"]}, mesh="m:2", layout="c:m"))
    out.append(case("einsum_broadcast_new_dim", "einsum", [[I("x")], S("a:4;n:4;b:8;c:2")]))
    out.append(case("broadcast", "broadcast", [I("x"), S("n:2;a:4;b:8;c:2")]))
    out.append(case("add_n", "add_n", [[I("x"), I("x"), I("y")]], {"x": X, "y": ["b:8", "float32"]}))
    out.append(case("reduce_mean_to_shape", "reduce_mean", [I("x")],
                    kwargs={"output_shape": S("c:2;a:4")}))
    # convolutions (mtf's operation classes and the eight backprop functions) and pooling
    c2 = {"x": ["batch:2;h:8;w:8;in:4", "float32"], "f": ["fh:3;fw:3;in:4;out:6", "float32"],
          "dy": ["batch:2;h:4;w:4;out:6", "float32"]}
    s2 = [1, 2, 2, 1]
    for mesh, layout in [("", ""), ("m:2", "in:m"), ("m:2;n:2", "batch:m;out:n"),
                         ("m:2", "h:m")]:
        tag = "%s_%s" % (mesh, layout)
        out.append(case("conv2d_" + tag, "Conv2dOperation", [I("x"), I("f"), s2, "SAME"],
                        {"x": c2["x"], "f": c2["f"]}, mesh=mesh, layout=layout))
    for mesh, layout in [("", ""), ("m:2", "out:m"), ("m:2", "batch:m")]:
        tag = "%s_%s" % (mesh, layout)
        out.append(case("conv2d_backprop_input_" + tag, "conv2d_backprop_input",
                        [S(c2["x"][0]), I("f"), I("dy"), s2, "SAME"],
                        {"f": c2["f"], "dy": c2["dy"]}, mesh=mesh, layout=layout, grads=False))
        out.append(case("conv2d_backprop_filter_" + tag, "conv2d_backprop_filter",
                        [I("x"), S(c2["f"][0]), I("dy"), s2, "SAME"],
                        {"x": c2["x"], "dy": c2["dy"]}, mesh=mesh, layout=layout, grads=False))
    out.append(case("conv2d_valid", "Conv2dOperation", [I("x"), I("f"), [1, 1, 1, 1], "VALID"],
                    {"x": c2["x"], "f": c2["f"]}))
    t2 = {"x": ["batch:2;h:4;w:4;in:4", "float32"], "f": ["fh:2;fw:2;out:6;in:4", "float32"],
          "dy": ["batch:2;h:8;w:8;out:6", "float32"]}
    out.append(case("conv2d_transpose", "Conv2dTransposeOperation", [I("x"), I("f"), s2, "SAME"],
                    {"x": t2["x"], "f": t2["f"]}, mesh="m:2", layout="in:m"))
    out.append(case("conv2d_transpose_backprop_input", "conv2d_transpose_backprop_input",
                    [S(t2["x"][0]), I("f"), I("dy"), s2, "SAME"], {"f": t2["f"], "dy": t2["dy"]},
                    mesh="m:2", layout="out:m", grads=False))
    out.append(case("conv2d_transpose_backprop_filter", "conv2d_transpose_backprop_filter",
                    [I("x"), S(t2["f"][0]), I("dy"), s2, "SAME"], {"x": t2["x"], "dy": t2["dy"]},
                    mesh="m:2", layout="batch:m", grads=False))
    c3 = {"x": ["batch:2;d:4;h:4;w:4;in:2", "float32"], "f": ["fd:2;fh:2;fw:2;in:2;out:3", "float32"],
          "dy": ["batch:2;d:2;h:2;w:2;out:3", "float32"]}
    s3 = [1, 2, 2, 2, 1]
    out.append(case("conv3d", "Conv3dOperation", [I("x"), I("f"), s3, "SAME"],
                    {"x": c3["x"], "f": c3["f"]}, mesh="m:2", layout="in:m"))
    out.append(case("conv3d_backprop_input", "conv3d_backprop_input",
                    [S(c3["x"][0]), I("f"), I("dy"), s3, "SAME"], {"f": c3["f"], "dy": c3["dy"]},
                    grads=False))
    out.append(case("conv3d_backprop_filter", "conv3d_backprop_filter",
                    [I("x"), S(c3["f"][0]), I("dy"), s3, "SAME"], {"x": c3["x"], "dy": c3["dy"]},
                    mesh="m:2", layout="batch:m", grads=False))
    t3 = {"x": ["batch:2;d:2;h:2;w:2;in:2", "float32"], "f": ["fd:2;fh:2;fw:2;out:3;in:2", "float32"],
          "dy": ["batch:2;d:4;h:4;w:4;out:3", "float32"]}
    out.append(case("conv3d_transpose", "Conv3dTransposeOperation", [I("x"), I("f"), s3, "SAME"],
                    {"x": t3["x"], "f": t3["f"]}))
    out.append(case("conv3d_transpose_backprop_input", "conv3d_transpose_backprop_input",
                    [S(t3["x"][0]), I("f"), I("dy"), s3, "SAME"], {"f": t3["f"], "dy": t3["dy"]},
                    grads=False))
    out.append(case("conv3d_transpose_backprop_filter", "conv3d_transpose_backprop_filter",
                    [I("x"), S(t3["f"][0]), I("dy"), s3, "SAME"], {"x": t3["x"], "dy": t3["dy"]},
                    grads=False))
    for fn, shape, k in [("MAX_2D", "batch:2;h:4;w:6;c:3", [2, 3]),
                         ("AVG_2D", "batch:2;h:4;w:6;c:3", [2, 2]),
                         ("MAX_3D", "batch:2;d:2;h:4;w:4;c:2", [2, 2, 2]),
                         ("AVG_3D", "batch:2;d:2;h:4;w:4;c:2", [1, 2, 2])]:
        out.append(case("pool_" + fn, "PoolOperation", [I("x"), k, k, fn],
                        {"x": [shape, "float32"]}, mesh="m:2", layout="h:m"))
    out.append(case("pool_backprop_avg", "pool_backprop", [I("x"), I("y"), I("dy"), [2, 2], [2, 2],
                                                          "AVG_2D"],
                    {"x": ["batch:2;h:4;w:4;c:3", "float32"], "y": ["batch:2;h:2;w:2;c:3", "float32"],
                     "dy": ["batch:2;h:2;w:2;c:3", "float32"]}, mesh="m:2", layout="w:m",
                    grads=False))
    out.append(case("random_uniform_split", "random_uniform", ["$mesh", S("a:4;b:8")], {},
                    mesh="m:2;n:2", layout="b:n", random=True))
    out.append(case("dropout_split", "dropout", [I("x"), True], mesh="m:2", layout="b:m",
                    kwargs={"keep_prob": 0.5}, random=True))
    return out


def misuse_cases():
    """Wrong calls: the exception type mtf raises for each (namedmesh must raise one that is
    an instance of it, except where mtf's is an accident, listed in the tests)."""
    m = [
        ("concat_incompatible", "concat", [[I("x"), I("y")], "b"], {"x": X, "y": ["a:2;b:4;c:2", "float32"]}),
        ("concat_missing_dim", "concat", [[I("x"), I("x")], "q"], None),
        ("split_sizes_do_not_add_up", "split", [I("x"), D("b:8"), [3, 3]], None),
        ("split_not_dividing", "split", [I("x"), D("b:8"), 3], None),
        ("split_dim_absent", "split", [I("x"), D("q:8"), 2], None),
        ("stack_different_shapes", "stack", [[I("x"), I("y")], "s"], {"x": X, "y": ["a:4;b:4;c:2", "float32"]}),
        ("unstack_dim_absent", "unstack", [I("x"), D("q:3")], None),
        ("slice_dim_absent", "mtf_slice", [I("x"), 0, 2, "q"], None),
        ("pad_dim_absent", "pad", [I("x"), [1, 1], "q"], None),
        ("shift_dim_absent", "shift", [I("x"), 1, D("q:3"), True], None),
        ("top_k_dim_absent", "top_k", [I("x"), D("q:3"), D("k:2")], None),
        ("top_k_k_too_large", "top_k", [I("x"), D("c:2"), D("k:5")], None),
        ("one_hot_float_indices", "one_hot", [I("x"), D("v:4")], None),
        ("gather_float_indices", "gather", [I("w"), I("x"), D("v:4")], {"w": ["v:4;d:2", "float32"], "x": X}),
        ("reshape_size_change", "reshape", [I("x"), S("a:5")], None),
        ("einsum_dtype_mismatch", "einsum", [[I("x"), I("i")]], {"x": X, "i": ["a:4", "int32", 0, 3]}),
        ("binary_dtype_mismatch", "multiply", [I("x"), I("i")], {"x": X, "i": ["a:4", "int32", 0, 3]}),
        ("transpose_other_dims", "transpose", [I("x"), S("a:4;b:8")], None),
        ("replace_dimensions_not_consecutive", "replace_dimensions", [S("a:4;b:8;c:2"), [D("a:4"), D("c:2")], [D("ac:6")]], {}),
        ("reduce_dim_absent", "reduce_sum", [I("x")], None, {"reduced_dim": D("q:4")}),
        ("softmax_dim_absent", "softmax", [I("x"), D("q:4")], None),
        ("cumsum_dim_absent", "cumsum", [I("x"), D("q:4")], None),
        ("dropout_both_rates", "dropout", [I("x"), True], None, {"keep_prob": 0.5, "rate": 0.5}),
        ("shape_repeated_dims", "Shape", [[D("a:2"), D("a:2")]], {}),
        ("convert_to_dimension_int", "convert_to_dimension", [5], {}),
        ("convert_to_shape_bad_string", "convert_to_shape", ["x;4"], {}),
        ("layout_rules_bad_string", "convert_to_layout_rules", ["d_ff;heads"], {}),
        ("dynamic_shift_offset_has_dim", "dynamic_shift", [I("x"), I("off"), D("b:8"), True], {"x": X, "off": ["b:8", "int32", 0, 2]}),
        ("combined_dimension_empty", "combined_dimension", [[]], {}),
        ("size_per_split_not_divisible", "tensor_dim_to_size_per_split", ["b:m", "m:3", D("b:8")], {}),
        ("binary_two_scalars", "binary_arguments_to_tensors", [1.0, 2.0], {}),
        ("transpose_list_of_lists_empty", "transpose_list_of_lists", [[]], {}),
        ("reduction_fn_unknown", "reduction_fn", ["PROD"], {}),
        ("binary_reduction_fn_unknown", "binary_reduction_fn", ["PROD"], {}),
        ("pool_fn_unknown", "pool_fn", ["MAX_1D"], {}),
        ("parallel_devices_not_a_list", "parallel", ["ab", "$len", [[1], [2]]], {}),
        ("import_incompatible_shape", "import_tf_tensor", ["$mesh", "$zeros_2_3", S("a:3;b:3")], {}),
        ("pnum_bad_mesh_shape", "pnum_to_processor_coordinates", ["x:2", 1], {}),
    ]
    out = []
    for entry in m:
        id_, op, args, inputs = entry[:4]
        kwargs = entry[4] if len(entry) > 4 else {}
        out.append({"id": id_, "op": op, "args": args, "kwargs": kwargs,
                    "inputs": {"x": X} if inputs is None else inputs})
    return out


def pure_cases():
    """Functions of plain values (no graph): mtf's result is recorded as JSON."""
    da = {"device_assignment": {"topology": [2, 2, 1, 2], "replicas": [3, 1, 0, 2]}}
    return [
        ("coords_2x3", "pnum_to_processor_coordinates", [S("x:2;y:3"), 4]),
        ("coords_list", "pnum_to_processor_coordinates", [[2, 3, 4], 17]),
        ("pnum_2x3", "processor_coordinates_to_pnum", [S("x:2;y:3"), [1, 1]]),
        ("pnum_list", "processor_coordinates_to_pnum", [[2, 3, 4], [1, 1, 1]]),
        ("group_of_5", "pnum_to_group", [S("x:2;y:3;z:2"), [1], 5]),
        ("groups_y", "processor_groups", [S("x:2;y:3;z:2"), [1]]),
        ("groups_xz", "processor_groups", [S("x:2;y:3;z:2"), [0, 2]]),
        ("list_product", "list_product", [[2, 3, 7]]),
        ("list_product_empty", "list_product", [[]]),
        ("mesh_dim_size", "tensor_dim_to_mesh_dim_size", ["d_ff:model;batch:rows", "rows:2;model:4",
                                                          D("d_ff:12")]),
        ("mesh_dim_size_absent_rule", "tensor_dim_to_mesh_dim_size", ["batch:8", "rows:2",
                                                                      D("batch:12")]),
        ("size_per_split", "tensor_dim_to_size_per_split", ["d_ff:model", "rows:2;model:4",
                                                            D("d_ff:12")]),
        ("combined", "combined_dimension", [[D("a:2"), D("b:3")]]),
        ("combined_named", "combined_dimension", [[D("a:2"), D("b:3")], "ab"]),
        ("anonymous", "anonymous_shape", [S("a:2;b:3")]),
        ("subsequence_yes", "is_subsequence", [[1, 3], [1, 2, 3]]),
        ("subsequence_no", "is_subsequence", [[3, 1], [1, 2, 3]]),
        ("subsequence_empty", "is_subsequence", [[], [1]]),
        ("transpose_lol", "transpose_list_of_lists", [[[1, 2, 3], [4, 5, 6]]]),
        ("counters", "pretty_print_counters", [[["a/b", 2], ["a/c", 3], ["d", 1.5], ["a", 1]]]),
        ("nd_coordinates", "pnum_to_processor_coordinates_nd", [[2, 2], 1, da]),
        ("nd_map", "processor_coordinates_to_pnum_map_nd",
         [[2, 2], [[0, 0], [1, 0], [0, 1], [1, 1]], da]),
    ]


def jsonable(value):
    if isinstance(value, mtf.Shape):
        return {"shape": ";".join("%s:%d" % (d.name, d.size) for d in value.dims)}
    if isinstance(value, mtf.Dimension):
        return {"dim": "%s:%d" % (value.name, value.size)}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def device_assignment(spec):
    """A TPU DeviceAssignment built without a TPU: a topology of mesh shape ``topology``
    (one task), replicas on the cores of chips listed row-major (x fastest)."""
    from tensorflow.python.tpu import device_assignment as tpu_da
    from tensorflow.python.tpu import topology as tpu_topology
    shape = spec["topology"]
    coords = [[x, y, z, c] for z in range(shape[2]) for y in range(shape[1])
              for x in range(shape[0]) for c in range(shape[3])]
    topology = tpu_topology.Topology(mesh_shape=shape,
                                     device_coordinates=np.array([coords], np.int32))
    chips = [[x, y, z, 0] for z in range(shape[2]) for y in range(shape[1]) for x in range(shape[0])]
    cores = np.array([[chips[r]] for r in spec["replicas"]], np.int32)
    return tpu_da.DeviceAssignment(topology, cores)


def run_pure(fn_name, args):
    def resolve_plain(v):
        if isinstance(v, dict) and "device_assignment" in v:
            return device_assignment(v["device_assignment"])
        if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
            return resolve(v, {}, None)
        if isinstance(v, list):
            return [resolve_plain(x) for x in v]
        return v
    return jsonable(getattr(mtf, fn_name)(*[resolve_plain(a) for a in args]))


# -- running a case in mtf ----------------------------------------------------------------
class CollectiveCounter:
    """Counts the PlacementMeshImpl collectives called while lowering."""

    def __init__(self):
        self.calls = []
        impl = placement_mesh_impl.PlacementMeshImpl
        self.originals = {n: getattr(impl, n) for n in ("allreduce", "allconcat", "alltoall",
                                                         "receive")}
        counter = self

        def wrap(name):
            original = self.originals[name]

            def recorded(self_, x, mesh_axis_or_axes, *args):
                entry = {"kind": name}
                if name == "allreduce":
                    entry["mesh_axes"] = sorted(mesh_axis_or_axes)
                    entry["reduction"] = args[0]
                else:
                    entry["mesh_axes"] = [mesh_axis_or_axes]
                if name == "receive":
                    entry["sources"] = list(args[0])
                counter.calls.append(entry)
                return original(self_, x, mesh_axis_or_axes, *args)
            return recorded

        for n in self.originals:
            setattr(impl, n, wrap(n))


def make_inputs(spec, rng):
    arrays = {}
    for name, desc in spec["inputs"].items():
        shape = mtf.convert_to_shape(desc[0])
        sizes = shape.to_integer_list
        if desc[1] == "float32":
            arrays[name] = rng.randn(*sizes).astype(np.float32)
        elif desc[1] == "positive":
            arrays[name] = (rng.rand(*sizes) + 0.5).astype(np.float32)
        elif desc[1] == "bool":
            arrays[name] = rng.rand(*sizes) > 0.5
        else:
            arrays[name] = rng.randint(desc[2], desc[3], sizes).astype(np.int32)
    return arrays


def resolve(value, tensors, mesh):
    if isinstance(value, dict):
        if "dim" in value:
            return mtf.convert_to_dimension(tuple(value["dim"].split(":")[:1]) +
                                            (int(value["dim"].split(":")[1]),))
        if "shape" in value:
            return mtf.convert_to_shape(value["shape"])
        if "input" in value:
            return tensors[value["input"]]
    if isinstance(value, list):
        return [resolve(v, tensors, mesh) for v in value]
    if value == "$mesh":
        return mesh
    if value == "$len":
        return len
    if value == "$zeros_2_3":
        return tf.zeros([2, 3])
    if value in ("int32", "float32"):
        return tf.as_dtype(value)
    return value


def as_list(result):
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def run(spec, arrays, mesh_shape, layout, with_grads, counter=None):
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    tensors = {}
    for name, desc in spec["inputs"].items():
        dtype = {"float32": tf.float32, "positive": tf.float32, "bool": tf.bool}.get(desc[1], tf.int32)
        tensors[name] = mtf.import_tf_tensor(mesh, tf.constant(arrays[name], dtype),
                                             mtf.convert_to_shape(desc[0]))
    fn = getattr(mtf, spec["op"])
    args = [resolve(a, tensors, mesh) for a in spec["args"]]
    kwargs = {k: resolve(v, tensors, mesh) for k, v in spec["kwargs"].items()}
    result = fn(*args, **kwargs)
    outputs = result.outputs if isinstance(result, mtf.Operation) else as_list(result)
    float_outs = [o for o in outputs if o.dtype.is_floating]
    float_inputs = [n for n in sorted(tensors) if tensors[n].dtype.is_floating]
    rs, grads = [], []
    if with_grads and float_outs and float_inputs:
        rng = np.random.RandomState(1)
        rs = [rng.randn(*o.shape.to_integer_list).astype(np.float32) for o in float_outs]
        terms = [mtf.reduce_sum(o * mtf.import_tf_tensor(mesh, tf.constant(r), o.shape))
                 for o, r in zip(float_outs, rs)]
        grads = mtf.gradients([mtf.add_n(terms)], [tensors[n] for n in float_inputs])
    shape = mtf.convert_to_shape(mesh_shape)
    impl = placement_mesh_impl.PlacementMeshImpl(shape, mtf.convert_to_layout_rules(layout),
                                                 [""] * shape.size)
    if counter is not None:
        counter.calls = []
    lowering = mtf.Lowering(graph, {mesh: impl})
    exported = [lowering.export_to_tf_tensor(o) for o in outputs]
    calls = list(counter.calls) if counter is not None else None
    exported_grads = [lowering.export_to_tf_tensor(g) if g is not None else None for g in grads]
    with tf.Session() as session:
        values = session.run(exported)
        grad_values = session.run([g for g in exported_grads if g is not None])
    grad_iter = iter(grad_values)
    grad_dict = {n: next(grad_iter) for n, g in zip(float_inputs, exported_grads) if g is not None}
    meta = [{"shape": ";".join("%s:%d" % (d.name, d.size) for d in o.shape.dims),
             "dtype": o.dtype.name} for o in outputs]
    return values, meta, rs, grad_dict, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "public_api.json"), "w") as f:
        json.dump(public_api(), f, indent=1)
    counter = CollectiveCounter()
    arrays_out = {}
    records = []
    for spec in cases():
        rng = np.random.RandomState(sum(map(ord, spec["id"])))
        arrays = make_inputs(spec, rng)
        for k, v in arrays.items():
            arrays_out["%s/in/%s" % (spec["id"], k)] = v
        record = dict(spec)
        values, meta, rs, grads, _ = run(spec, arrays, "", "", spec["grads"])
        record["outputs"] = meta
        if not spec["random"]:
            for i, v in enumerate(values):
                arrays_out["%s/out/%d" % (spec["id"], i)] = v
            for i, r in enumerate(rs):
                arrays_out["%s/r/%d" % (spec["id"], i)] = r
            for k, g in grads.items():
                arrays_out["%s/grad/%s" % (spec["id"], k)] = g
        try:  # forward only: the collectives of the op itself
            _, _, _, _, calls = run(spec, arrays, spec["mesh_shape"], spec["layout"], False,
                                    counter)
            values, _, _, grads, _ = run(spec, arrays, spec["mesh_shape"], spec["layout"],
                                         spec["grads"])
            record["mtf_collectives"] = calls
            record["mtf_error"] = None
            if not spec["random"]:  # mtf itself: the mesh gives the one-device values?
                same = all(np.allclose(v, arrays_out["%s/out/%d" % (spec["id"], i)], atol=1e-5)
                           for i, v in enumerate(values))
                same = same and all(np.allclose(g, arrays_out["%s/grad/%s" % (spec["id"], k)],
                                                atol=1e-5) for k, g in grads.items())
                record["mtf_mesh_equals_one_device"] = bool(same)
        except Exception as e:  # mtf refuses this layout: record what it says
            record["mtf_collectives"] = None
            record["mtf_error"] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200])
        records.append(record)
        print(spec["id"], record["mtf_error"] or [c["kind"] for c in record["mtf_collectives"]])
    misuse = []
    for spec in misuse_cases():
        arrays = make_inputs(spec, np.random.RandomState(0))
        try:
            run(spec, arrays, "", "", False)
            error = None
        except Exception as e:
            error = {"type": type(e).__name__,
                     "mro": [c.__name__ for c in type(e).__mro__],
                     "message": str(e).splitlines()[0][:200] if str(e) else ""}
        record = dict(spec)
        record["mtf_error"] = error
        misuse.append(record)
        print("misuse", spec["id"], error and error["type"])
    pure = []
    for id_, fn_name, args in pure_cases():
        pure.append({"id": id_, "op": fn_name, "args": args, "mtf_result": run_pure(fn_name, args)})
        print("pure", id_, pure[-1]["mtf_result"])
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump({"cases": records, "misuse": misuse, "pure": pure}, f, indent=1)
    np.savez_compressed(os.path.join(a.out, "cases.npz"), **arrays_out)


if __name__ == "__main__":
    main()
