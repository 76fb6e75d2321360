"""The table of mtf's layers.py in docs/layers.md is computed, not claimed: its rows are mtf's
public functions read from mtf's source (tests/data/layers/public_api.json); each function it
says namedmesh provides exists in namedmesh.layers with mtf's parameters in mtf's order; each
golden claim has a golden case made by mtf calling that function; the coverage figure is the
computed one and at least 60%."""
import ast
import inspect
import json
import pathlib

import namedmesh as nm
from layer_cases import CASES, LayerCase
from namedmesh.layers import mtf_layers_table as table

ROOT = pathlib.Path(__file__).resolve().parents[1]
API = json.loads((ROOT / "tests" / "data" / "layers" / "public_api.json").read_text())
DOC = (ROOT / "docs" / "layers.md").read_text()


def test_rows_are_mtfs_public_functions_in_order():
    assert [row[0] for row in table.LAYERS] == [f["name"] for f in API["functions"]]
    assert [row[0] for row in table.CLASSES] == API["classes"]


def test_provided_functions_take_mtfs_parameters_in_order():
    signatures = {f["name"]: f["signature"] for f in API["functions"]}
    for mtf_name, ours, _ in table.provided():
        params = list(inspect.signature(getattr(nm.layers, ours)).parameters)
        mtf_params = [a.arg for a in ast.parse("def f%s: pass" % signatures[mtf_name])
                      .body[0].args.args]
        assert params[:len(mtf_params)] == mtf_params, (mtf_name, params, mtf_params)
    for mtf_name, ours, _ in table.CLASSES:
        assert inspect.isclass(getattr(nm.layers, ours)), mtf_name


def test_left_out_functions_are_absent_and_explained():
    for mtf_name, ours, note in table.LAYERS:
        if ours is None:
            assert len(note) > 40 and not hasattr(nm.layers, mtf_name), mtf_name


def test_transformer_and_control_rows_exist():
    for _, ours, _ in table.TRANSFORMER:
        assert callable(getattr(nm.layers, ours))
    for _, ours, _ in table.CONTROL:
        obj = nm
        for part in ours.split(".")[1:]:
            obj = getattr(obj, part)
        assert callable(obj), ours


def test_golden_claims_have_golden_cases():
    calls = [LayerCase(c).meta["call"] for c in CASES]
    for mtf_name, _, note in table.LAYERS + table.TRANSFORMER + table.CONTROL:
        if "golden" in note and "through" not in note:
            short = mtf_name.split(".")[-1]
            assert any(short + "(" in call or short + " " in call for call in calls), mtf_name


def test_docs_show_the_computed_table_and_coverage():
    assert table.markdown_table() in DOC
    assert "%s of the public functions of mtf 0.1.21's layers.py" % table.coverage() in DOC
    assert len(table.provided()) / len(table.LAYERS) >= 0.6
