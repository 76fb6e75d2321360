"""The dimension glossary of mtf's MoE cheat sheets, kept as data.

mtf's ``transformer_moe_layer_v2`` documents its tensors with letters
(``input: [a0, b1, l, m]``, ``dispatch_tensor_x: [a0, g1, s, x, c]``, ...) and
``transformer_moe_layer_v1`` with capitals (``OG`SEC``).  Each entry below
says what a letter is, mtf's dimension name, its size formula, how the layout
splits it, and the steps of the layer where it appears.  ``docs/glossary.md``
is generated from this module (``namedmesh glossary``; a test fails when it is
stale), and ``namedmesh explain`` fills in the sizes for a given config.

The digit after a letter in mtf's sheet is the mesh axis that splits it in
the layout mtf had in mind (mesh ``b0:X;b1:Y``, layout
``outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0``): ``a0`` is ``a`` split
over mesh axis 0, ``g1`` is ``g`` split over axis 1; a letter without a digit
is not split.  In namedmesh the layout rules decide, by dimension *name*.
"""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class GlossaryEntry:
    """One letter of a cheat sheet.

    letter: as in mtf's docstring. layer: "v2" (MoE2D) or "v1" (MoE1D / Switch).
    field: the attribute of ``MoE2DDims`` / ``MoE1DDims`` holding its size (and
      ``field_unsplit`` its unsplit twin, if any). names: mtf's dimension names.
    meaning, size (formula), split (how the layout splits it), steps (where it appears).
    """

    letter: str
    layer: str
    field: str
    short: str
    names: str
    meaning: str
    size: str
    split: str
    steps: Tuple[str, ...]


V2_LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"

GLOSSARY = (
    # -- transformer_moe_layer_v2 (MoE2D) ---------------------------------------------------
    GlossaryEntry(
        "a", "v2", "outer_batch", "outer batch", "`outer_batch` (1 when the input is 3-D)",
        "outer batch: the input's first dim; in mtf's design it replicates experts across "
        "a mesh dim (each slice of `a` has its own routing)",
        "a = input dim 0", "`a0`: split over mesh dim 0 (rule `outer_batch:b0`)",
        ("input", "grouped input", "outer dispatch tensor", "outer expert input",
         "all-to-all to expert_x", "first-level layout", "outer combine", "output")),
    GlossaryEntry(
        "b", "v2", "batch", "inner batch", "the input's batch dim, e.g. `batch`",
        "inner batch: sequences per outer-batch slice", "b = input dim 1",
        "`b1`: split over mesh dim 1 (rule `batch:b1`)", ("input", "output")),
    GlossaryEntry(
        "l", "v2", "length", "length", "the input's length dim, e.g. `length`",
        "sequence length (tokens per sequence)", "l = input dim 2", "not split",
        ("input", "output")),
    GlossaryEntry(
        "m", "v2", "d_model", "model depth", "the input's last dim, e.g. `d_model`",
        "model (input) depth", "m = input dim 3", "not split",
        ("input", "grouped input", "outer expert input", "all-to-all to expert_x",
         "second-level groups", "inner expert input", "all-to-all to expert_y")),
    GlossaryEntry(
        "n", "v2", "output", "output depth", "same as `m` (mtf passes `output_dim = d_model`)",
        "output depth", "n = m", "not split",
        ("expert output", "all-to-all back from expert_y", "inner combine", "first-level layout",
         "all-to-all back from expert_x", "outer combine", "output")),
    GlossaryEntry(
        "g", "v2", "groups_x", "first-level groups", "`g1`: the batch dim's name (e.g. `batch`) with size g; "
        "`g`: `<batch>_unsplit`",
        "first-level groups: tokens of one outer-batch slice are routed in groups; each group "
        "sends at most c tokens to each expert group x",
        "g = the smallest multiple of the mesh dim splitting b that is >= max(1, b·l // "
        "group_size) and divides b·l (mtf's _split_into_groups)",
        "`g1` keeps b's name, so b's rule splits it (over mesh dim 1); the all-to-all to "
        "expert_x moves that split to x and leaves `g` (`<batch>_unsplit`) whole",
        ("grouped input", "outer dispatch tensor", "outer expert input", "all-to-all to expert_x",
         "first-level layout", "all-to-all back from expert_x", "outer combine")),
    GlossaryEntry(
        "s", "v2", "group_size_x", "first-level group size", "`group_size_x`",
        "first-level group size: tokens per first-level group", "s = b·l / g", "not split",
        ("grouped input", "outer dispatch tensor", "outer combine")),
    GlossaryEntry(
        "x", "v2", "experts_x", "expert groups (level 1)", "`expert_x` (split, `x1`), `expert_x_unsplit` (`x`)",
        "first-level experts: expert groups chosen by the outer router", "x = expert_x",
        "`x1`: split over mesh dim 1 (rule `expert_x:b1`); `x` is the unsplit twin used "
        "where the groups are split instead",
        ("outer dispatch tensor", "outer expert input", "all-to-all to expert_x",
         "second-level groups", "inner dispatch tensor", "inner expert input",
         "all-to-all to expert_y", "expert hidden", "expert output",
         "all-to-all back from expert_y", "inner combine", "first-level layout",
         "all-to-all back from expert_x")),
    GlossaryEntry(
        "c", "v2", "capacity_x", "level-1 capacity", "`expert_capacity_x`",
        "first-level expert capacity: slots each expert group x has per first-level group",
        "c = max(min(s, int(s · capacity_factor / x)), min_expert_capacity); "
        "capacity_factor is capacity_factor_train or _eval",
        "not split", ("outer dispatch tensor", "outer expert input", "all-to-all to expert_x",
                      "first-level layout", "all-to-all back from expert_x")),
    GlossaryEntry(
        "h", "v2", "groups_y", "second-level groups", "`h0`: the outer-batch dim's name (`outer_batch`) with size h; "
        "`h`: `outer_batch_unsplit`",
        "second-level groups: the first level's expert slots (a·g·c per expert group) "
        "regrouped for the inner router",
        "h = the smallest multiple of the mesh dim splitting a that is >= max(1, a·g·c // "
        "group_size) and divides a·g·c",
        "`h0` reuses the name `outer_batch`, so a's rule splits it over mesh dim 0 and the "
        "regrouping reshape `[x1, a0, g, c, m] -> [x1, h0, t, m]` costs nothing; the "
        "all-to-all to expert_y moves the split to y",
        ("second-level groups", "inner dispatch tensor", "inner expert input",
         "all-to-all to expert_y", "expert hidden", "expert output",
         "all-to-all back from expert_y", "inner combine")),
    GlossaryEntry(
        "t", "v2", "group_size_y", "second-level group size", "`group_size_y`",
        "second-level group size: slots per second-level group", "t = a·g·c / h", "not split",
        ("second-level groups", "inner dispatch tensor", "inner combine")),
    GlossaryEntry(
        "y", "v2", "experts_y", "experts per group (level 2)", "`expert_y` (split, `y0`), `expert_y_unsplit` (`y`)",
        "second-level experts within each expert group x; x·y experts in all",
        "y = expert_y", "`y0`: split over mesh dim 0 (rule `expert_y:b0`)",
        ("inner dispatch tensor", "inner expert input", "all-to-all to expert_y",
         "expert hidden", "expert output", "all-to-all back from expert_y")),
    GlossaryEntry(
        "d", "v2", "capacity_y", "level-2 capacity", "`expert_capacity_y`",
        "second-level expert capacity: slots each expert has per second-level group",
        "d = max(min(t, int(t · capacity_factor_second_level / y)), min_expert_capacity)",
        "not split", ("inner dispatch tensor", "inner expert input", "all-to-all to expert_y",
                      "expert hidden", "expert output", "all-to-all back from expert_y")),
    # -- transformer_moe_layer_v1 (MoE1D, Switch) -------------------------------------------
    GlossaryEntry(
        "O", "v1", "outer_batch", "outer batch", "`outer_batch` (1 when the input has none)",
        "outer batch: replicates experts, e.g. 4 copies of 128 experts on 512 cores",
        "O = input dim 0 if it is named outer_batch, else 1", "as its layout rule says",
        ("grouped input", "dispatch tensor", "expert input", "all-to-all to experts",
         "expert output", "all-to-all back from experts", "combine")),
    GlossaryEntry(
        "B", "v1", "batch", "batch", "the input's batch dim (the first dim after outer_batch)",
        "batch", "B = that dim's size", "usually split (rule `batch:<mesh dim>`)",
        ("input", "output")),
    GlossaryEntry(
        "L", "v1", "length", "length", "the input's other dims before d_model",
        "sequence length (all positions per sequence)", "L = tokens / (O · B)", "not split",
        ("input", "output")),
    GlossaryEntry(
        "M", "v1", "d_model", "model depth", "the input's last dim", "model (input) depth", "M = input's last dim",
        "not split", ("input", "grouped input", "expert input", "all-to-all to experts")),
    GlossaryEntry(
        "N", "v1", "output", "output depth", "the input's last dim name, size `output_dim` (default M)",
        "output depth", "N = output_dim or M", "not split",
        ("expert output", "all-to-all back from experts", "combine", "output")),
    GlossaryEntry(
        "G", "v1", "groups", "groups", "the batch dim's name with size G (split); `batch_unsplit`",
        "groups: tokens are routed in groups, each sends at most C tokens to each expert",
        "G = the smallest multiple of the mesh dim splitting B that is >= max(1, B·L // "
        "group_size) and divides B·L", "keeps B's name, so B's rule splits it (mtf's sheet "
        "marks split letters with a trailing backtick); the all-to-all to experts moves the "
        "split to E and leaves `batch_unsplit` whole",
        ("grouped input", "dispatch tensor", "expert input", "all-to-all to experts",
         "expert output", "all-to-all back from experts", "combine")),
    GlossaryEntry(
        "S", "v1", "group_size", "group size", "`group`", "group size: tokens per group", "S = B·L / G",
        "not split", ("grouped input", "dispatch tensor", "combine")),
    GlossaryEntry(
        "E", "v1", "experts", "experts", "`experts` (split), `expert_unsplit`",
        "experts", "E = num_experts", "split by rule `experts:<mesh dim>`; `expert_unsplit` is the whole twin",
        ("dispatch tensor", "expert input", "all-to-all to experts", "expert hidden",
         "expert output", "all-to-all back from experts")),
    GlossaryEntry(
        "C", "v1", "capacity", "expert capacity", "`expert_capacity`",
        "expert capacity: slots each expert has per group",
        "C = max(min(S, int(S · capacity_factor / E)), min_expert_capacity)", "not split",
        ("dispatch tensor", "expert input", "all-to-all to experts", "expert hidden",
         "expert output", "all-to-all back from experts")),
    GlossaryEntry(
        "H", "v1", "hidden", "expert hidden size", "`expert_hidden`", "hidden size of each expert's feed-forward",
        "H = hidden_size", "not split", ("expert hidden",)),
)


# The steps of each layer: (step, dims in cheat-sheet letters, what happens)
STEPS = {
    "v2": (
        ("input", "[a0, b1, l, m]", "the layer's input"),
        ("grouped input", "[a0, g1, s, m]", "reshape into first-level groups (free)"),
        ("outer dispatch tensor", "[a0, g1, s, x, c]", "outer router: top-2 of x per token"),
        ("outer expert input", "[x, a0, g1, c, m]", "dispatch: einsum with the dispatch tensor"),
        ("all-to-all to expert_x", "[x1, a0, g, c, m]",
         "all-to-all: the split moves from g to x"),
        ("importance all-to-all to expert_x", "[x1, a0, g, c]",
         "the same all-to-all for the slots' importance (1.0 first, 0.5 second choice)"),
        ("second-level groups", "[x1, h0, t, m]",
         "reshape into second-level groups; h reuses a's name: free"),
        ("inner dispatch tensor", "[x1, h0, t, y, d]", "inner router: top-2 of y per slot"),
        ("inner expert input", "[y, x1, h0, d, m]", "dispatch"),
        ("all-to-all to expert_y", "[y0, x1, h, d, m]", "all-to-all: the split moves from h to y"),
        ("expert hidden", "[y0, x1, h, d, expert_hidden]", "wi and relu, per expert (x, y)"),
        ("expert output", "[y0, x1, h, d, n]", "wo, per expert"),
        ("all-to-all back from expert_y", "[y, x1, h0, d, n]", "all-to-all: y back to h"),
        ("inner combine", "[x1, h0, t, n]", "combine: einsum with the inner combine tensor"),
        ("first-level layout", "[x1, a0, g, c, n]", "reshape back (free)"),
        ("all-to-all back from expert_x", "[x, a0, g1, c, n]", "all-to-all: x back to g"),
        ("outer combine", "[a0, g1, s, n]", "combine with the outer combine tensor"),
        ("output", "[a0, b1, l, n]", "reshape to the input's dims (free)"),
    ),
    "v1": (
        ("input", "[O, B, L, M]", "the layer's input"),
        ("grouped input", "[O, G`, S, M]", "reshape into groups (free)"),
        ("dispatch tensor", "[O, G`, S, E, C]", "router: top-2 (or Switch top-1) per token"),
        ("expert input", "[O, E, G`, C, M]", "dispatch: einsum with the dispatch tensor"),
        ("all-to-all to experts", "[O, E`, G, C, M]", "all-to-all: the split moves from G to E"),
        ("expert hidden", "[O, E`, G, C, H]", "wi and the activation, per expert"),
        ("expert output", "[O, E`, G, C, N]", "wo, per expert"),
        ("all-to-all back from experts", "[O, E, G`, C, N]", "all-to-all: E back to G"),
        ("combine", "[O, G`, S, N]", "combine: einsum with the combine tensor"),
        ("output", "[O, B, L, N]", "reshape to the input's dims (free)"),
    ),
}

PARAMETERS = {
    "v2": (
        ("outer_gating/kernel", "[m, x]", "m·x"),
        ("inner_gating/kernel", "[x1, m, y]", "x·m·y"),
        ("wi/kernel", "[y0, x1, m, expert_hidden]", "x·y·m·hidden"),
        ("wo/kernel", "[y0, x1, expert_hidden, n]", "x·y·hidden·n"),
    ),
    "v1": (
        ("top_2_gating/kernel or switch_gating/kernel", "[M, E]", "M·E"),
        ("wi/kernel", "[E`, M, H]", "E·M·H"),
        ("wo/kernel", "[E`, H, N]", "E·H·N"),
    ),
}

MTF_DOCSTRING_NOTE = (
    "mtf's `transformer_moe_layer_v2` docstring gives the gating parameters as "
    "`input_dim·num_experts + (moe_hidden_size·num_experts)·num_experts`; the variables it "
    "creates hold `m·x` (outer_gating) + `x·m·y` (inner_gating): the inner router reads "
    "`d_model`, not the hidden size. Its expert count `num_experts·(input_dim + output_dim)·"
    "moe_hidden_size` is right when `num_experts` means x·y. The v1 docstring's gating "
    "count `input_dim·num_experts` and expert count `num_experts·(input_dim + output_dim)·"
    "moe_hidden_size` match its variables.")


def entries(layer=None):
    return [e for e in GLOSSARY if layer is None or e.layer == layer]


def render_markdown() -> str:
    """docs/glossary.md, generated from this module."""
    out = ["# The MoE dimension glossary", "",
           "<!-- generated by `namedmesh glossary` from namedmesh/moe/glossary.py; "
           "do not edit by hand -->", "",
           "mesh-tensorflow's MoE code documents its tensors with letters. This page says what "
           "each letter is, its mtf dimension name, how big it is, how the layout splits it, "
           "and where it appears. `namedmesh explain` prints the same table with the sizes of "
           "a given config, mesh and layout.", "",
           "**The digit after a letter** (`a0`, `g1`, `x1`, `y0`) is the mesh axis that splits "
           "it in the layout mtf had in mind: mesh `b0:X;b1:Y` with layout `%s`. `a0` is `a` "
           "split over mesh axis 0 (`b0`); a letter without a digit is not split. In mtf and "
           "namedmesh the layout rules decide, by dimension *name*: `g1` is split because it "
           "carries the batch dim's name." % V2_LAYOUT, ""]
    titles = {"v2": "transformer_moe_layer_v2 (MoE2D): 2-level hierarchical top-2",
              "v1": "transformer_moe_layer_v1 (MoE1D, Switch): one level"}
    intro = {"v2": "mtf's cheat sheet for v2 uses lower-case letters with mesh-axis digits.",
             "v1": "mtf's sheet for v1 uses capitals; a trailing backtick marks the letter "
                   "that is split along a mesh dim (`` OG`SM ``: the groups are split)."}
    for layer in ("v2", "v1"):
        out += ["## %s" % titles[layer], "", intro[layer], "",
                "| letter | mtf name | what it is | size | split |", "| --- | --- | --- | --- | --- |"]
        for e in entries(layer):
            out.append("| `%s` | %s | %s | %s | %s |" % (e.letter, e.names, e.meaning, e.size,
                                                          e.split))
        out += ["", "### Steps", "", "| step | dims | what happens |", "| --- | --- | --- |"]
        for step, dims, what in STEPS[layer]:
            out.append("| %s | `` %s `` | %s |" % (step, dims, what))
        out += ["", "Where each letter appears:", ""]
        for e in entries(layer):
            out.append("- `%s`: %s" % (e.letter, ", ".join(e.steps)))
        out += ["", "### Parameters", "", "| variable | dims | count |", "| --- | --- | --- |"]
        for name, dims, count in PARAMETERS[layer]:
            out.append("| `%s` | `` %s `` | %s |" % (name, dims, count))
        out.append("")
    out += ["## Where mtf's docstring differs", "", MTF_DOCSTRING_NOTE, "",
            "## Where the all-to-alls happen", "",
            "MoE2D on mesh `b0:2;b1:2` with layout `%s` makes mtf's five forward all-to-alls: "
            "the expert inputs and their importance to `expert_x` (two, along `b1`), the "
            "second-level inputs to `expert_y` (along `b0`), and the two moves back (along "
            "`b0`, then `b1`). MoE1D makes two: to `experts` and back, along the mesh dim of "
            "its `experts` rule. `namedmesh explain` reads them off the collective trace of "
            "the real layer." % V2_LAYOUT, ""]
    return "\n".join(out)
