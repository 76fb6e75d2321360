"""``namedmesh port``: every layer, every binding read or ignored (file:line), every default;
explain / --check at the config's own sizes; one-line errors."""
import json
import os
import subprocess
import sys

import pytest

import namedmesh as nm
from namedmesh.porting import read_gin, read_hparams
from namedmesh.porting.report import port_report
from namedmesh.transformer import LayerStackSpec, ModelSpec, UnitransformerSpec

CONFIGS = os.path.join(os.path.dirname(__file__), "data", "configs")
GIN = os.path.join(CONFIGS, "tensorflow_mesh", "mesh_tensorflow", "transformer", "gin")
LM_MOE = [os.path.join(GIN, f) for f in ("defaults.gin", "models/lm_moe.gin",
                                         "layouts/2x2_dp.gin")]


def test_text_report_accounts_for_every_layer_binding_and_default():
    text = port_report(read_gin(LM_MOE))
    model = text[text.index("## model"):text.index("## MoE layers")]
    for b in range(3):   # every layer, with kind, scope and sizes
        assert "block_%03d/layer_001          MoE1D              experts=32 hidden=4096 " \
               "group=1024" % b in model
        assert "block_%03d/layer_003          DenseReluDense     d_ff=8192" % b in model
    assert "## explain: MoE1D in transformer/block_000/layer_001 (and 2 more like it" in text
    assert "input batch:32;length:512;d_model:1024" in text   # the config's own sizes
    read = text[text.index("## read"):text.index("## ignored")]
    assert "models/lm_moe.gin:18 (MoE1D.num_experts)  <- read by " \
           "transformer/block_000/layer_001 MoE1D" in read
    ignored = text[text.index("## ignored"):text.index("## defaults")]
    assert "defaults.gin:95: utils.run.mesh_shape = @mesh_tensorflow.transformer.utils." \
           "tpu_mesh_shape()  -- overridden by" in ignored
    defaults = text[text.index("## defaults"):]
    assert "transformer/block_*/layer_001 MoE1D.group_size = 1024  (mtf 0.1.21 default, " \
           "3 times)" in defaults


def test_json_report_lists_model_reads_ignores_and_defaults():
    report = json.loads(port_report(read_gin(LM_MOE), fmt="json"))
    layers = report["model"]["decoder"]["layer_stack"]["layers"]
    assert [l["kind"] for l in layers[:4]] == ["SelfAttention", "MoE1D", "SelfAttention",
                                               "DenseReluDense"]
    assert layers[1]["kwargs"]["num_experts"] == 32
    assert all(":" in r["source"] for r in report["read"])
    assert {i["reason"].split(" ")[0] for i in report["ignored"]} >= {"overridden", "import"}
    assert any(d["key"].endswith("MoE1D.group_size") and d["count"] == 3
               for d in report["defaults"])
    values = {v["key"]: v for v in report["values"]}   # every value the model takes
    assert values["transformer/block_002/layer_001 MoE1D.num_experts"]["source"].endswith(
        "lm_moe.gin:18 (MoE1D.num_experts)")
    assert values["transformer/block_002/layer_001 MoE1D.group_size"]["default"] == \
        "mtf 0.1.21 default"
    assert report["explain"][0]["input_shape"] == "batch:32;length:512;d_model:1024"
    assert len(report["explain"][0]["scopes"]) == 3


def test_check_runs_each_distinct_layer_at_the_configs_own_sizes():
    config = read_hparams(os.path.join(CONFIGS, "t2t", "mtf_unitransformer_all_layers_tiny.json"))
    report = json.loads(port_report(config, check=True, fmt="json"))
    assert [c["output_shape"] for c in report["check"]] == [[2, 1024, 128]] * 2   # batch 2
    for check in report["check"]:
        for level in check["stats"].values():
            assert level["routed"] + level["dropped"] == level["assigned"]
    with pytest.raises(nm.ConfigError, match=r"--check would allocate [\d.]+ GiB .*MoE2D in "
                                             r"decoder/hmoe_7.*outer_batch:4;inner_batch:32"):
        port_report(read_hparams(os.path.join(CONFIGS, "t2t", "xmoe2_v1.json")), check=True)


def _port(*args):
    return subprocess.run([sys.executable, "-m", "namedmesh", "port", *args],
                          capture_output=True, text=True, timeout=600)


def test_port_command_t2t_overrides_and_one_line_errors(capsys):
    from namedmesh.cli.main import main
    xmoe2 = os.path.join(CONFIGS, "t2t", "xmoe2_v1.json")
    out = _port(xmoe2, "--hparams", "moe_num_experts=[16,4],moe_hidden_size=64,d_model=32",
                "--mesh", "b0:2;b1:2", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["layers"][0]["kwargs"]["expert_x"], report["layers"][0]["sources"]) == (16, {})
    assert report["layers"][0]["input_shape"] == "outer_batch:4;inner_batch:32;length:1024;" \
                                                 "d_model:32"
    assert any(r.startswith("t2t model: mtf_transformer") for r in report["reports"])
    assert report["mesh_shape"] == "b0:2;b1:2" == report["model"]["mesh_shape"]
    for args, words in (([xmoe2, "--gin_param", "d_model = 4"], "for gin configs"),
                        ([xmoe2, "--hparams", "moe_hiden_size=64"], "'moe_hiden_size'"),
                        ([xmoe2, "--hparams", "moe_num_experts=[4,2]"], "not divisible by 8"),
                        ([LM_MOE[0], LM_MOE[1]], "tpu_topology"),
                        ([LM_MOE[0], xmoe2], "one JSON config")):
        assert main(["port"] + args) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, (args, err)


def test_model_spec_is_typed_and_checks_itself():
    stack = LayerStackSpec([])
    unit = UnitransformerSpec("decoder", stack, d_model=8)
    with pytest.raises(nm.ConfigError, match="encoder and a decoder"):
        ModelSpec("Bitransformer", unit)
    with pytest.raises(nm.ConfigError, match="both be set"):
        LayerStackSpec([], dropout_rate=0.1)
    with pytest.raises(nm.ConfigError, match="d_model: expected an integer >= 1, got 0"):
        UnitransformerSpec("decoder", stack, d_model=0)
    spec = read_gin(LM_MOE).model
    assert json.loads(json.dumps(spec.to_dict()))["decoder"]["layer_stack"]["num_blocks"] == 3
    assert [l.kind for _, l in spec.moe_layers()] == ["MoE1D"] * 3
