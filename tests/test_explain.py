"""`namedmesh explain`: sizes checked against hand computation, bytes against the real trace."""
import json
import subprocess
import sys

import numpy as np
import pytest

import namedmesh as nm
from namedmesh.moe.explain import explain, render

V2_LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "namedmesh", *args], capture_output=True,
                          text=True, timeout=timeout)


def letters(ex):
    return {e["letter"]: (e["size"], e["split_over"], e["per_processor"]) for e in ex["letters"]}


def a2a(ex):
    return [(s["name"], tuple(c["mesh_dims"]), c["bytes_per_processor"])
            for s in ex["steps"] for c in s["collectives"] if c["kind"] == "all_to_all"]


@pytest.fixture(scope="module")
def mtf_defaults_4x8():
    out = run_cli("explain", "--layer", "MoE2D", "--mesh", "b0:4;b1:8", "--layout", V2_LAYOUT,
                  "--input-shape", "outer_batch:4;batch:64;length:1024;d_model:1024",
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_mtf_moe2d_defaults_on_4x8(mtf_defaults_4x8):
    ex = mtf_defaults_4x8
    # by hand: 8x8 experts, hidden 4096, group 1024, eval capacity factor 2.0, min capacity 4
    a, b, l, m = 4, 64, 1024, 1024
    g = b * l // 1024                       # 64 groups, a multiple of b1 = 8
    s = b * l // g                          # 1024
    c = max(min(s, int(s * 2.0 / 8)), 4)    # 256
    h = a * g * c // 1024                   # 64, a multiple of b0 = 4
    t = a * g * c // h                      # 1024
    d = max(min(t, int(t * 1.0 / 8)), 4)    # 128
    assert letters(ex) == {
        "a": (4, "b0", 1), "b": (64, "b1", 8), "l": (1024, None, 1024), "m": (1024, None, 1024),
        "n": (1024, None, 1024), "g": (g, "b1", g // 8), "s": (s, None, s), "x": (8, "b1", 1),
        "c": (c, None, c), "h": (h, "b0", h // 4), "t": (t, None, t), "y": (8, "b0", 2),
        "d": (d, None, d)}
    assert ex["capacity"] == {"outer": 256, "inner": 128}
    f32 = 4
    assert a2a(ex) == [
        ("all-to-all to expert_x", ("b1",), 8 * 1 * (g // 8) * c * m * f32),  # [x, a0, g1, c, m]
        ("importance all-to-all to expert_x", ("b1",), 8 * 1 * (g // 8) * c * f32),
        ("all-to-all to expert_y", ("b0",), 8 * 1 * (h // 4) * d * m * f32),  # [y, x1, h0, d, m]
        ("all-to-all back from expert_y", ("b0",), 2 * 1 * h * d * m * f32),  # [y0, x1, h, d, n]
        ("all-to-all back from expert_x", ("b1",), 1 * 1 * g * c * m * f32),  # [x1, a0, g, c, n]
    ]
    params = {p["name"]: p["count"] for p in ex["parameters"]}
    assert params == {"outer_gating/kernel": m * 8, "inner_gating/kernel": 8 * m * 8,
                      "wi/kernel": 8 * 8 * m * 4096, "wo/kernel": 8 * 8 * 4096 * m}
    assert ex["parameter_count"] == 536_944_640
    # wi, wo split over both mesh dims (x1 on b1, y0 on b0); the gating kernels mostly not
    assert ex["parameter_bytes_per_processor"] == (m * 8 + 8 * m * 8 // 8
                                                   + 2 * 8 * 8 * m * 4096 // 32) * f32
    assert ex["padding_share"] == {"outer": 0.0, "inner": 0.0}


def _small_v2():
    return nm.moe.MoE2D(expert_x=4, expert_y=4, hidden_size=32, group_size=8,
                        min_expert_capacity=2, second_policy_eval="all")


def _real_trace_bytes(layer, shape, mesh_shape, layout):
    mesh = nm.Mesh(mesh_shape, layout)
    with nm.trace_collectives() as tr:
        layer(nm.zeros(mesh, shape))
    return [(s.name, tuple(c.mesh_dims), c.bytes_per_processor)
            for s, cs in tr.collectives_of_steps() for c in cs if c.kind == "all_to_all"]


def test_small_2x2_config_matches_hand_sizes_and_the_real_trace():
    shape = "outer_batch:2;batch:4;length:8;d_model:16"
    ex = explain(_small_v2(), shape, "b0:2;b1:2", V2_LAYOUT).to_dict()
    # g = 4*8/8 = 4 groups of s = 8; c = max(min(8, int(8*2/4)), 2) = 4; h = 2*4*4/8 = 4, t = 8;
    # d = max(min(8, int(8*1/4)), 2) = 2
    got = letters(ex)
    assert {k: v[0] for k, v in got.items()} == {"a": 2, "b": 4, "l": 8, "m": 16, "n": 16,
                                                 "g": 4, "s": 8, "x": 4, "c": 4, "h": 4,
                                                 "t": 8, "y": 4, "d": 2}
    assert a2a(ex) == _real_trace_bytes(_small_v2(), shape, "b0:2;b1:2", V2_LAYOUT)
    assert [b for _, _, b in a2a(ex)] == [4 * 1 * 2 * 4 * 16 * 4, 4 * 1 * 2 * 4 * 4,
                                          4 * 2 * 2 * 2 * 16 * 4, 2 * 2 * 4 * 2 * 16 * 4,
                                          2 * 1 * 4 * 4 * 16 * 4]
    # perfect balance: 2 assignments per token, 8 tokens over 4 experts x 4 slots: no padding;
    # level 2: 8 real slots * 1.5 assignments = 12 over 4 x 2 = 8 slots: none either
    assert ex["padding_share"] == {"outer": 0.0, "inner": 0.0}


def test_v1_switch_config():
    layer = nm.moe.MoE1D(moe_gating="switch", num_experts=8, group_size=8, hidden_size=32,
                         capacity_factor_eval=1.0, min_expert_capacity=1)
    shape = "outer_batch:2;batch:4;length:8;d_model:16"
    layout = "outer_batch:b0;batch:b1;experts:b1"
    ex = explain(layer, shape, "b0:2;b1:2", layout).to_dict()
    sizes = {k: v[0] for k, v in letters(ex).items()}
    # G = 4*8/8 = 4 (a multiple of b1 = 2), S = 8, C = max(min(8, int(8*1.0/8)), 1) = 1
    assert sizes == {"O": 2, "B": 4, "L": 8, "M": 16, "N": 16, "G": 4, "S": 8, "E": 8, "C": 1,
                     "H": 32}
    assert letters(ex)["E"] == (8, "b1", 4)
    assert a2a(ex) == _real_trace_bytes(layer, shape, "b0:2;b1:2", layout)
    assert [b for _, _, b in a2a(ex)] == [1 * 8 * 2 * 1 * 16 * 4, 1 * 4 * 4 * 1 * 16 * 4]
    # switch: one assignment per token: 8 tokens over 8 experts x 1 slot: no padding
    assert ex["padding_share"] == {"experts": 0.0}
    assert ex["parameter_count"] == 16 * 8 + 8 * 16 * 32 * 2


def test_padding_share_under_perfect_balance():
    layer = nm.moe.MoE1D(moe_gating="switch", num_experts=8, group_size=8, hidden_size=8)
    ex = explain(layer, "batch:4;length:8;d_model:8", "b0:1", "")
    # capacity max(min(8, 1), 4) = 4 slots x 8 experts = 32 for 8 tokens: 75% padding
    assert ex.capacity == {"experts": 4} and ex.padding_share == {"experts": 0.75}


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_renderings(fmt):
    ex = explain(_small_v2(), "outer_batch:2;batch:4;length:8;d_model:16", "b0:2;b1:2",
                 V2_LAYOUT)
    text = render(ex, fmt)
    assert "all-to-all to expert_y" in text and "expert_capacity_y" in text
    assert "all-to-alls in the forward pass: 5" in text
    if fmt == "markdown":
        assert text.startswith("# MoE2D") and "| letter |" in text


def test_cli_hparams_file(tmp_path):
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"moe_num_experts": [2, 2], "moe_hidden_size": 8,
                              "moe_group_size": 8, "hidden_size": 512}))
    out = run_cli("explain", "--hparams", str(hp), "--mesh", "b0:2;b1:2", "--layout", V2_LAYOUT,
                  "--input-shape", "outer_batch:2;batch:4;length:8;d_model:16", "--format", "json")
    assert out.returncode == 0, out.stderr
    ex = json.loads(out.stdout)
    assert ex["layer"] == "MoE2D" and ex["config"]["expert_x"] == 2
    assert out.stderr == ""


@pytest.mark.parametrize("args,words", [
    (["-p", "expert_z=4"], ["unknown keyword 'expert_z'"]),
    (["--mesh", "b0:2;b1"], ["mesh shape 'b0:2;b1'", "'b1'"]),
    (["-p", "expert_x=3"], ["expert_x:3", "b1:2", "divisible"]),
    (["--input-shape", "outer_batch:2;batch:3;length:8;d_model:16"], ["batch:3", "b1:2"]),
    (["--hparams", "/nonexistent.json"], ["/nonexistent.json"]),
    (["--format", "yaml"], ["yaml"]),
])
def test_bad_input_is_one_line_exit_2(args, words):
    base = {"--mesh": "b0:2;b1:2", "--layout": V2_LAYOUT,
            "--input-shape": "outer_batch:2;batch:4;length:8;d_model:16"}
    argv = ["explain"]
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    out = run_cli(*(argv + args))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for w in words:
        assert w in lines[0], lines[0]
