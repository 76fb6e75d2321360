"""The dimension glossary: complete, consistent with the layers, and docs/glossary.md up to date."""
import pathlib
from dataclasses import fields

import namedmesh as nm
from namedmesh.moe.dims import MoE1DDims, MoE2DDims
from namedmesh.moe.glossary import GLOSSARY, PARAMETERS, STEPS, entries, render_markdown

ROOT = pathlib.Path(__file__).resolve().parents[1]
V2_LETTERS = "a b l m n g h s t x y c d".split()      # mtf's v2 cheat sheet
V1_LETTERS = "O B L M N G S E C H".split()            # mtf's v1 cheat sheet (capitals)


def test_every_cheat_sheet_letter_has_an_entry_with_a_size_formula():
    for layer, letters in (("v2", V2_LETTERS), ("v1", V1_LETTERS)):
        got = {e.letter: e for e in entries(layer)}
        assert sorted(got) == sorted(letters)
        for e in got.values():
            assert "=" in e.size, e.letter          # a formula, not a description
            assert e.meaning and e.names and e.split and e.steps


def test_entries_point_at_real_dims_and_steps():
    dims_fields = {"v2": {f.name for f in fields(MoE2DDims)},
                   "v1": {f.name for f in fields(MoE1DDims)}}
    for e in GLOSSARY:
        assert e.field in dims_fields[e.layer], e
        step_names = {s[0] for s in STEPS[e.layer]}
        assert set(e.steps) <= step_names, (e.letter, set(e.steps) - step_names)


def _marked_steps(layer, shape, mesh):
    with nm.trace_collectives() as tr:
        layer(nm.zeros(mesh, shape))
    return [s.name for s in tr.steps]


def test_the_layers_mark_exactly_the_glossary_steps_in_order():
    mesh = nm.Mesh("b0:2;b1:2", "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0;experts:b1")
    for dispatch in ("einsum", "index"):
        # the index dispatcher builds no dispatch tensor; every other step is the same
        expected = {layer: [s[0] for s in STEPS[layer]
                            if dispatch == "einsum" or not s[0].endswith("dispatch tensor")]
                    for layer in ("v1", "v2")}
        v2 = nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=8, group_size=8,
                          dispatch=dispatch)
        assert _marked_steps(v2, "outer_batch:2;batch:4;length:4;d_model:8", mesh) == \
            expected["v2"]
        v1 = nm.moe.MoE1D(num_experts=4, hidden_size=8, group_size=8, dispatch=dispatch)
        assert _marked_steps(v1, "outer_batch:2;batch:4;length:4;d_model:8", mesh) == \
            expected["v1"]


def test_parameter_table_matches_the_variables():
    v2 = nm.moe.MoE2D(expert_x=2, expert_y=3, hidden_size=5)
    assert sorted(v2.variable_shapes(nm.Dimension("d_model", 7))) == sorted(
        p[0] for p in PARAMETERS["v2"])
    shapes = v2.variable_shapes(nm.Dimension("d_model", 7))
    m, x, y, hidden = 7, 2, 3, 5
    assert shapes["outer_gating/kernel"].size == m * x
    assert shapes["inner_gating/kernel"].size == x * m * y  # not hidden·x·x as mtf's doc says
    assert shapes["wi/kernel"].size + shapes["wo/kernel"].size == x * y * (m * hidden + hidden * m)


def test_docs_glossary_is_generated_from_the_data():
    generated = render_markdown()
    on_disk = (ROOT / "docs" / "glossary.md").read_text()
    assert on_disk == generated, "docs/glossary.md is stale: run `namedmesh glossary > docs/glossary.md`"
