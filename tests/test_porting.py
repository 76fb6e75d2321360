"""Porting legacy gin files, hparams and TF1 checkpoints."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.porting import (find_moe_layers, load_layer_from_checkpoint, read_config,
                               read_gin, read_hparams, read_moe_variables,
                               save_layer_to_checkpoint, write_checkpoint)

DATA = os.path.join(os.path.dirname(__file__), "data")
GIN = os.path.join(DATA, "gin")
HPARAMS = os.path.join(DATA, "hparams")
CKPT = os.path.join(DATA, "ckpt")
CONFIGS = sorted(os.path.join(GIN, f) for f in os.listdir(GIN) if f.endswith(".gin")) + \
    sorted(os.path.join(HPARAMS, f) for f in os.listdir(HPARAMS))


def test_the_data_has_five_gin_files_and_two_hparams_files():
    assert len([c for c in CONFIGS if c.endswith(".gin")]) >= 5
    assert len([c for c in CONFIGS if c.endswith(".json")]) >= 2


def _run_ported(config, seed=0):
    mesh = config.build_mesh()
    outs = []
    for spec in config.layers:
        shape = nm.convert_to_shape(config.default_input_shape(spec, d_model=16))
        x = nm.import_tf_tensor(mesh, tf.random.stateless_normal(shape.sizes, [seed, 1]), shape)
        y, loss, stats = spec.build()(x, return_stats=True)
        outs.append((nm.export_to_tf_tensor(y).numpy(), stats))
    return outs


def _port_cli(*args):
    out = subprocess.run([sys.executable, "-m", "namedmesh", "port", *args, "--format", "json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_ports_and_runs(path):
    # gin finds an include in its search paths (here the directory), not beside the includer
    config = read_config(path, search_paths=[GIN]) if path.endswith(".gin") else read_config(path)
    if config.build_mesh(devices=[""] * nm.convert_to_shape(config.mesh_shape or "").size
                         ).size > 8:
        # more processors than this test process has devices: the command, in its own process
        report = _port_cli(path, "--check")
        for level in report["check"][0]["stats"].values():
            assert level["routed"] + level["dropped"] == level["assigned"]
        return
    for y, stats in _run_ported(config):
        assert np.isfinite(y).all()
        for level in stats.numpy().values():
            assert level["routed"] + level["dropped"] == level["assigned"]
    namespace = {}
    exec(config.python_snippet(), namespace)  # the printed code runs
    layers = [v for k, v in namespace.items() if k.startswith("layer")]
    assert [type(layer).__name__ for layer in layers] == [s.kind for s in config.layers]
    assert [layer.config.to_kwargs() for layer in layers] == \
        [s.build().config.to_kwargs() for s in config.layers]


def test_t5_base_macros_layer_stack_and_ignored_bindings():
    config = read_gin(os.path.join(GIN, "t5_moe1d_base.gin"))
    # a fragment (no encoder stack, no max_length): mtf's make_layer_stack still repeats the
    # decoder's [SelfAttention, MoE1D] num_layers = 4 times, so four MoE1D layers
    assert config.model is None and any("not a whole mtf model" in r for r in config.reports)
    assert [l.scope for l in config.layers] == ["decoder/block_%03d/layer_001" % b
                                                for b in range(4)]
    layer = config.layers[0]
    assert layer.kind == "MoE1D"
    assert layer.kwargs == {"num_experts": 8, "hidden_size": 64, "group_size": 16,
                            "min_expert_capacity": 2}  # NUM_EXPERTS and MOE_HIDDEN macros
    assert layer.sources["num_experts"].line == 17
    assert config.mesh_shape == "model:1,batch:4"
    assert config.layout.startswith("ensemble:ensemble,batch:batch")
    ignored = {i.source.line: i.text for i in config.ignored}
    assert 14 not in ignored  # num_layers is read now
    assert 15 not in ignored  # SelfAttention.num_heads: read by the stack's SelfAttention layers
    assert "utils.run.learning_rate_schedule" in ignored[26]
    assert 2 in ignored and 3 in ignored  # the import lines
    assert any("ensemble:ensemble" in r and "['model', 'batch']" in r for r in config.reports)


def test_include_and_overrides():
    with pytest.raises(nm.ConfigError, match="t5_moe1d_switch.gin:2.*'t5_moe1d_base.gin' not "
                                             "found.*not beside the including file"):
        read_gin(os.path.join(GIN, "t5_moe1d_switch.gin"))  # gin does not look beside it
    config = read_gin(os.path.join(GIN, "t5_moe1d_switch.gin"), search_paths=[GIN])
    layer = config.layers[0]
    assert layer.kwargs["moe_gating"] == "switch" and layer.kwargs["num_experts"] == 8
    assert layer.kwargs["z_loss"] == 0.001
    assert layer.sources["moe_gating"].file.endswith("t5_moe1d_switch.gin")
    assert layer.sources["num_experts"].file.endswith("t5_moe1d_base.gin")


def test_scoped_stacks_give_two_stacks_of_six_blocks():
    config = read_gin(os.path.join(GIN, "scoped_two_stacks.gin"))
    # make_layer_stack's default num_layers is 6: six MoE1D blocks per stack, encoder first
    assert [(l.scope, l.kwargs["num_experts"], l.kwargs["hidden_size"]) for l in config.layers] \
        == [("encoder/block_%03d/layer_000" % b, 4, 16) for b in range(6)] + \
        [("decoder/block_%03d/layer_000" % b, 8, 32) for b in range(6)]
    assert all(l.kwargs["group_size"] == 8 for l in config.layers)  # unscoped binding shared
    # 'model.mesh_shape' names no mtf configurable (mtf's run passes its own mesh to the
    # model): the mesh is not set, and the bindings are reported as ignored
    assert config.mesh_shape is None and config.layout is None
    ignored = {i.text.split(" = ")[0]: i.reason for i in config.ignored}
    assert "not a configurable" in ignored["model.mesh_shape"]


def test_semicolons_lists_and_devices():
    config = read_gin(os.path.join(GIN, "mtf_moe1d_semicolons.gin"))
    assert config.layers[0].kwargs["activation"] == ["gelu", "linear"]
    assert config.mesh_devices == ["gpu:0", "gpu:1", "gpu:2", "gpu:3"]
    layer = config.layers[0].build()
    assert sorted(layer.variable_shapes(nm.Dimension("d_model", 8))) == [
        "top_2_gating/kernel", "wi_0/kernel", "wi_1/kernel", "wo/kernel"]


def test_namedmesh_moe2d_gin_and_report_of_missing_mesh_dim():
    config = read_gin(os.path.join(GIN, "namedmesh_moe2d.gin"))
    assert config.layers[0].kind == "MoE2D" and config.layers[0].kwargs["expert_x"] == 4
    assert config.mesh_shape == "b0:2;b1:2"  # from the MESH macro
    assert any("heads:model" in r and "['b0', 'b1']" in r for r in config.reports)


def test_hparams_v2():
    config = read_hparams(os.path.join(HPARAMS, "mtf_transformer2_moe2d.json"))
    (layer,) = config.layers
    assert layer.kind == "MoE2D"
    assert (layer.kwargs["expert_x"], layer.kwargs["expert_y"]) == (4, 2)
    assert config.layout == "outer_batch:b0;inner_batch:b1,expert_x:b1,expert_y:b0"
    assert {i.text.split(" = ")[0] for i in config.ignored} == {"d_model", "num_heads",
                                                                 "batch_size", "max_length"}
    assert config.default_input_shape(layer).startswith("outer_batch:2;inner_batch:4")
    big = read_hparams(os.path.join(HPARAMS, "t2t_moe2d_big.json"))
    assert big.layers[0].build().config.min_expert_capacity == 4  # mtf's MoE2D would crash


# -- checkpoints -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v2", "v1"])
def test_oracle_checkpoint_reproduces_the_case(name):
    prefix = os.path.join(CKPT, "%s_model.ckpt" % name)
    case = np.load(os.path.join(CKPT, "%s_ckpt_case.npz" % name))
    call = json.loads(str(case["mtf_call"]))
    hparams = json.loads(str(case["hparams"]))
    (found,) = find_moe_layers(prefix)
    assert found.scope == "" and found.kind == ("MoE2D" if name == "v2" else "MoE1D")
    layer = getattr(nm.moe, found.kind).from_hparams(hparams)
    load_layer_from_checkpoint(layer, prefix)
    mesh = nm.Mesh(call["mesh_shape"], call["layout"])
    shape = nm.convert_to_shape(call["input_shape"])
    y, loss = layer(nm.import_tf_tensor(mesh, case["x"], shape))
    np.testing.assert_allclose(nm.export_to_tf_tensor(y).numpy(), case["y"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(nm.export_to_tf_tensor(loss).numpy(), case["loss"], atol=2e-5)


def test_checkpoint_round_trip(tmp_path):
    prefix = os.path.join(CKPT, "v2_model.ckpt")
    hparams = json.loads(str(np.load(os.path.join(CKPT, "v2_ckpt_case.npz"))["hparams"]))
    layer = nm.moe.MoE2D.from_hparams(hparams)
    load_layer_from_checkpoint(layer, prefix)
    layer.build("outer_batch:2;batch:4;length:8;d_model:16")
    out = str(tmp_path / "roundtrip.ckpt")
    save_layer_to_checkpoint(layer, out, scope="decoder/block_003/layer_002")
    back = read_moe_variables(out, "decoder/block_003/layer_002/")
    original = read_moe_variables(prefix)
    assert sorted(back) == sorted(original)
    for k in original:
        np.testing.assert_array_equal(back[k], original[k])


def test_port_command_json(tmp_path):
    report = _port_cli(os.path.join(GIN, "t5_moe1d_base.gin"))
    assert report["mesh_shape"] == "model:1,batch:4"
    assert report["layers"][0]["kwargs"]["num_experts"] == 8
    assert report["explain"][0]["layer"] == "MoE1D"
    assert len(report["explain"]) == 1 and len(report["explain"][0]["scopes"]) == 4
    assert any("num_layers" in r["source"] for r in report["read"])
    assert any("learning_rate_schedule" in i["text"] for i in report["ignored"])


def _scoped_checkpoint(tmp_path):
    """A T5-like checkpoint: two MoE layers in blocks, slots and other variables around."""
    arrays = read_moe_variables(os.path.join(CKPT, "v1_model.ckpt"))
    tensors = {"global_step": np.int64(1000), "decoder/block_000/layer_000/SelfAttention/q":
               np.zeros((16, 16), np.float32)}
    for block in ("decoder/block_001/layer_001/", "decoder/block_003/layer_001/"):
        for k, v in arrays.items():
            tensors[block + k] = v
            tensors[block + k + "_slot_vc"] = np.zeros(v.shape[:-1], np.float32)
    prefix = str(tmp_path / "t5.ckpt")
    write_checkpoint(prefix, tensors)
    return prefix


def test_find_layers_in_a_scoped_checkpoint(tmp_path):
    prefix = _scoped_checkpoint(tmp_path)
    found = find_moe_layers(prefix)
    assert [f.scope for f in found] == ["decoder/block_001/layer_001/",
                                        "decoder/block_003/layer_001/"]
    assert sorted(found[0].shapes) == ["top_2_gating/kernel", "wi/kernel", "wo/kernel"]


def test_port_command_pairs_a_whole_model_checkpoint_in_model_order_and_checks():
    # mtf 0.1.21 itself built and saved this model: the bi_moe command line with its sizes
    # shrunk by extra --gin_param's (tools/oracle/model_checkpoints.py, tests/data/ckpt/README)
    prefix = os.path.join(CKPT, "mtf_bi_moe_tiny.ckpt")
    with open(os.path.join(CKPT, "mtf_bi_moe_tiny.json")) as f:
        meta = json.load(f)
    with open(os.path.join(DATA, "configs", "gin_commands.json")) as f:
        cmd = json.load(f)["commands"][meta["command"]]
    files = [os.path.join(DATA, "configs", p) for p in [cmd["mtf_defaults"]] + cmd["files"]]
    params = ["--gin_param=" + p for p in cmd["params"] + meta["extra_gin_params"]]
    report = _port_cli(*files, *params, "--checkpoint", prefix, "--check")
    expected = ["encoder/block_000/layer_001/MoE1D/", "encoder/block_001/layer_001/MoE1D/",
                "decoder/block_000/layer_002/MoE1D/", "decoder/block_001/layer_002/MoE1D/"]
    assert [l["checkpoint_scope"] for l in report["layers"]] == expected  # not alphabetical
    assert [l["input_shape"] for l in report["layers"]] == ["batch:4;length:512;d_model:16"] * 4
    assert len(report["check"]) == 4 and report["check"][0]["output_shape"] == [4, 512, 16]
    namespace = {}
    exec(report["snippet"], namespace)  # loads the weights from the checkpoint
    reader = tf.train.load_checkpoint(prefix)
    np.testing.assert_array_equal(namespace["layer_2"]._loaded["wi/kernel"],
                                  reader.get_tensor(expected[2] + "wi/kernel"))


# -- bad configs: each error names the file and line, the key or the variable ---------------
def _gin(tmp_path, text, name="bad.gin"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_GIN = [
    ("typo in a key", "MoE1D.num_expert = 8\n", ["bad.gin:1", "num_expert", "unknown"]),
    ("wrong type", "MoE1D.num_experts = 8\nMoE1D.hidden_size = 'big'\n",
     ["bad.gin:2", "hidden_size", "'big'"]),
    ("unknown gating", "moe.MoE1D.moe_gating = 'top_3'\n", ["bad.gin:1", "moe_gating", "'top_3'"]),
    ("missing include", "include 'nowhere.gin'\nMoE1D.num_experts = 8\n",
     ["bad.gin:1", "nowhere.gin", "not found"]),
    ("malformed mesh string", "MoE1D.num_experts = 8\nutils.run.mesh_shape = 'b0:2;b1'\n",
     ["bad.gin:2", "utils.run.mesh_shape", "'b1'"]),
    ("mesh that mtf computes without a topology", "MoE1D.num_experts = 8\n"
     "utils.run.mesh_shape = @mesh_tensorflow.transformer.utils.tpu_mesh_shape()\n",
     ["bad.gin:2", "tpu_mesh_shape", "tpu_topology", "--tpu-topology"]),
    ("undefined macro", "MoE1D.num_experts = %EXPERTS\n", ["bad.gin:1", "%EXPERTS"]),
    ("gin syntax error", "MoE1D.num_experts == 8\n", ["bad.gin:1", "syntax"]),
    ("no model and no MoE layer", "utils.run.mesh_shape = 'b0:2'\n",
     ["bad.gin", "neither a model", "MoE1D.num_experts"]),
    ("layout maps a dim twice", "MoE1D.num_experts = 8\n"
     "utils.run.layout_rules = 'batch:b0;batch:b1'\n", ["bad.gin:2", "'batch'"]),
    ("unknown policy", "MoE2D.second_policy_eval = 'sometimes'\n",
     ["bad.gin:1", "second_policy_eval", "'sometimes'"]),
]


@pytest.mark.parametrize("name,text,words", BAD_GIN, ids=[b[0] for b in BAD_GIN])
def test_bad_gin(tmp_path, name, text, words):
    with pytest.raises(nm.ConfigError) as info:
        read_gin(_gin(tmp_path, text))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_hparams(tmp_path):
    path = tmp_path / "hp.json"
    path.write_text('{\n  "moe_num_experts": [4, 4],\n  "moe_hiden_size": 32\n}\n')
    with pytest.raises(nm.ConfigError, match=r"hp.json:3.*moe_hiden_size"):
        read_hparams(str(path))
    path.write_text('{\n  "moe_num_experts": [4, 4],\n  "moe_group_size": "big"\n}\n')
    with pytest.raises(nm.ConfigError, match=r"hp.json:3.*group_size.*'big'"):
        read_hparams(str(path))
    path.write_text('{"moe_num_experts": [4, 4],}')
    with pytest.raises(nm.ConfigError, match=r"hp.json:1: not valid JSON"):
        read_hparams(str(path))


def test_expert_count_not_divisible_by_mesh_dim_names_the_key(tmp_path):
    gin = _gin(tmp_path, "MoE1D.num_experts = 6\nMoE1D.group_size = 8\n"
                         "utils.run.mesh_shape = 'b0:4'\nutils.run.layout_rules = "
                         "'batch:b0;experts:b0'\n")
    from namedmesh.porting.report import port_report
    with pytest.raises(nm.ConfigError) as info:
        port_report(read_gin(gin))
    message = str(info.value)
    assert "experts:6" in message and "b0:4" in message and "bad.gin:1" in message


def test_checkpoint_missing_and_misshapen_variables_are_named(tmp_path):
    arrays = read_moe_variables(os.path.join(CKPT, "v2_model.ckpt"))
    missing = str(tmp_path / "missing.ckpt")
    write_checkpoint(missing, {"enc/" + k: v for k, v in arrays.items() if k != "wo/kernel"})
    layer = nm.moe.MoE2D(expert_x=4, expert_y=4, hidden_size=32, group_size=8)
    with pytest.raises(nm.ConfigError, match=r"missing.ckpt.*'enc/'.*'wo/kernel' is missing"):
        load_layer_from_checkpoint(layer, missing, "enc")
    wrong = str(tmp_path / "wrong.ckpt")
    write_checkpoint(wrong, dict(arrays, **{"wi/kernel": np.zeros((4, 4, 16, 8), np.float32)}))
    with pytest.raises(nm.ConfigError, match=r"'wi/kernel' has shape \(4, 4, 16, 8\)"):
        load_layer_from_checkpoint(layer, wrong)
    with pytest.raises(nm.ConfigError, match="no MoE layer under scope 'dec/'"):
        read_moe_variables(missing, "dec")
    with pytest.raises(nm.ConfigError, match="cannot be read"):
        find_moe_layers(str(tmp_path / "nothing.ckpt"))


def test_port_command_errors_are_one_line(tmp_path):
    bad = _gin(tmp_path, "MoE1D.num_expert = 8\n")
    for args in ([bad], [str(tmp_path / "absent.gin")], [bad.replace(".gin", ".yaml")]):
        out = subprocess.run([sys.executable, "-m", "namedmesh", "port"] + args,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
