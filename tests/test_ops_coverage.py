"""The table of mtf's ops.py in docs/named_dims.md is computed, not claimed: its rows are
mtf's public functions read from mtf's source (tests/data/mtf_ops/public_api.json), each
function it says namedmesh provides exists with mtf's parameters and takes name=, and the
coverage figure in the docs is the computed one."""
import ast
import inspect
import json
import pathlib

import namedmesh as nm
from namedmesh.core import mtf_ops_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
API = json.loads((ROOT / "tests" / "data" / "mtf_ops" / "public_api.json").read_text())
DOC = (ROOT / "docs" / "named_dims.md").read_text()

# helpers that are not ops (no Tensor out, or mtf's name= means something else)
NOT_OPS = {"convert_to_dimension", "convert_to_shape", "convert_to_layout_rules",
           "binary_arguments_to_tensors", "is_subsequence", "verify_no_new_dims",
           "pnum_to_processor_coordinates", "processor_coordinates_to_pnum",
           "pnum_to_processor_coordinates_nd", "processor_coordinates_to_pnum_map_nd",
           "pnum_to_group", "processor_groups", "list_product", "pretty_print_counters",
           "parallel", "transpose_list_of_lists", "binary_reduction_fn", "reduction_fn",
           "pool_fn", "log_variable_sizes", "tensor_dim_to_mesh_dim_size",
           "tensor_dim_to_size_per_split", "anonymous_shape", "replace_dimensions",
           "scalar_summary", "gradients",
           "recompute_grad"}  # a function wrapper: mtf's takes no name= either
# mtf parameters namedmesh does not take, and why
PARAMETER_EXCEPTIONS = {
    ("reduce_sum", "disable_positional_args"), ("reduce_mean", "disable_positional_args"),
    ("reduce_max", "disable_positional_args"), ("reduce_min", "disable_positional_args"),
    ("reduce_all", "disable_positional_args"), ("reduce_any", "disable_positional_args"),
}  # mtf's guard against a positional output_shape, which namedmesh accepts


def mtf_parameters(signature: str):
    args = ast.parse("def f%s: pass" % signature).body[0].args
    return [a.arg for a in args.posonlyargs + args.args], args.vararg, args.kwarg


def test_the_table_lists_mtfs_public_functions_in_order():
    assert [row[0] for row in mtf_ops_table.OPS] == [f["name"] for f in API["functions"]]


def test_provided_functions_exist_with_mtfs_parameters():
    signatures = {f["name"]: f["signature"] for f in API["functions"]}
    for mtf_name, ours, _ in mtf_ops_table.provided():
        fn = getattr(nm, ours)
        params = list(inspect.signature(fn).parameters)
        names, _, _ = mtf_parameters(signatures[mtf_name])
        positions = []
        for p in names:
            if (mtf_name, p) in PARAMETER_EXCEPTIONS:
                continue
            assert p in params, "%s: mtf's parameter %r is missing from %s%s" % (
                mtf_name, p, ours, inspect.signature(fn))
            positions.append(params.index(p))
        assert positions == sorted(positions), "%s: parameters out of mtf's order" % mtf_name
        if mtf_name not in NOT_OPS:
            assert "name" in params, "%s does not take name=" % ours


def test_functions_left_out_are_absent_and_explained():
    for mtf_name, ours, note in mtf_ops_table.OPS:
        if ours is None:
            assert note, mtf_name
            assert not hasattr(nm, mtf_name), mtf_name


def test_aliases_with_builtin_names():
    for alias, name in API["aliases"].items():
        assert getattr(nm, alias) is getattr(nm, name)


def test_docs_show_the_computed_table_and_coverage():
    assert mtf_ops_table.markdown_table() in DOC
    assert "%s of the public functions" % mtf_ops_table.coverage() in DOC
    provided = len(mtf_ops_table.provided())
    assert provided / len(mtf_ops_table.OPS) >= 0.85
