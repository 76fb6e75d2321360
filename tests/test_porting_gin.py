"""Real mtf / T5 gin command lines, ported as mtf's main.py runs them.

Expected values are worked out by hand from the files (file:line in the comments);
``oracle/*.json`` are the same command lines built by mtf 0.1.21's own gin code
(tools/oracle/gin_model_dump.py), compared layer by layer.
"""
import dataclasses
import json
import os

import pytest

import namedmesh as nm
from namedmesh.porting import read_gin
from namedmesh.porting.gin_reader import tpu_mesh_shape

CONFIGS = os.path.join(os.path.dirname(__file__), "data", "configs")
with open(os.path.join(CONFIGS, "gin_commands.json")) as f:
    COMMANDS = json.load(f)["commands"]
MTF_GIN = os.path.join(CONFIGS, "tensorflow_mesh", "mesh_tensorflow", "transformer", "gin")
T5_GIN = os.path.join(CONFIGS, "t5", "t5", "models", "gin")
MINXU_GIN = os.path.join(CONFIGS, "min-xu-ai_mesh", "mesh_tensorflow", "transformer", "gin")
_CACHE = {}


def _path(p):
    full = os.path.join(CONFIGS, p)
    return full if os.path.exists(full) else p   # else found through the search paths


def port(name, **options):
    """The command line ``name`` of gin_commands.json, as mtf's main.py reads it."""
    key = (name, tuple(sorted(options.items())))
    if key not in _CACHE:
        cmd = COMMANDS[name]
        _CACHE[key] = read_gin([_path(cmd["mtf_defaults"])] + [_path(f) for f in cmd["files"]],
                               cmd.get("params", []),
                               [os.path.join(CONFIGS, p) for p in cmd.get("search_paths", [])],
                               **options)
    return _CACHE[key]


def kinds(unit):
    return [(l.scope, l.kind) for l in unit.layer_stack.layers]


MTF_MOE1D_DEFAULTS = nm.moe.MoE1DConfig().to_kwargs()


# -- the acceptance command: defaults.gin + models/lm_moe.gin + layouts/2x2_dp.gin ----------
def test_mtf_lm_moe_on_2x2_dp_is_3_blocks_of_attention_moe_attention_dense():
    config = port("mtf_lm_moe_2x2_dp")
    model = config.model
    assert (model.kind, model.model_type) == ("Unitransformer", "lm")     # lm_moe.gin:6
    unit = model.decoder
    assert unit.name == "transformer"   # Unitransformer's default name: mtf's LM scope
    assert kinds(unit) == [("block_%03d/layer_%03d" % (b, n), k) for b in range(3) for n, k in
                           enumerate(["SelfAttention", "MoE1D", "SelfAttention",
                                      "DenseReluDense"])]   # lm_moe.gin:11-16, num_layers = 3
    assert unit.d_model == 1024 and unit.max_length == 512                # defaults.gin:44,79
    assert unit.shared_embedding_and_softmax_weights is True              # defaults.gin:40
    for layer in unit.layer_stack.layers:
        if layer.kind == "SelfAttention":   # num_heads = 16 (lm_moe.gin:21), d_kv = 128
            assert (layer.config.num_heads, layer.config.key_value_size,
                    layer.config.dropout_rate) == (16, 128, 0.1)
        elif layer.kind == "DenseReluDense":   # d_ff = 8192 (lm_moe.gin:20)
            assert (layer.config.hidden_size, layer.config.dropout_rate) == (8192, 0.1)
        else:   # MoE1D.num_experts = 32, hidden_size = 4096 (lm_moe.gin:18-19), the rest mtf's
            assert layer.config.to_kwargs() == dict(MTF_MOE1D_DEFAULTS, num_experts=32,
                                                    hidden_size=4096)
            assert layer.variable_scope == "transformer/%s/MoE1D/" % layer.scope
    stack = unit.layer_stack
    assert [s.name for s in stack.sublayers_per_layer] == ["rms_norm", "call_layer", "dropout",
                                                            "residual"]   # defaults.gin:29
    assert stack.sublayers_per_layer[2].kwargs == {"dropout_rate": 0.1}   # defaults.gin:67
    assert not stack.legacy                                               # defaults.gin:51-52
    # 2x2_dp.gin:4-5 override defaults.gin's tpu_mesh_shape() and layout (last binding wins)
    assert (config.mesh_shape, config.layout) == ("all:8", "batch:all,experts:all")
    # ("tokens_per_replica", 2048) / 512 tokens * 8 replicas (batch split on all:8) = 32
    assert model.batch_dims == [("batch", 32)] and model.sequence_length["targets"] == 512
    assert [l.input_shape for l in config.layers] == ["batch:32;length:512;d_model:1024"] * 3
    ignored = {i.source.line: i for i in config.ignored if i.source.file.endswith("defaults.gin")}
    assert "overridden by" in ignored[95].reason and "2x2_dp.gin:4" in ignored[95].reason
    assert "tpu_mesh_shape() is not called" in ignored[98].reason


# -- every command line, against mtf's own build of it --------------------------------------
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_builds_the_model_mtf_builds(name):
    with open(os.path.join(CONFIGS, "oracle", name + ".json")) as f:
        oracle = json.load(f)
    model = port(name).model
    assert (model.kind, model.model_type, model.layout) == (oracle["kind"], oracle["model_type"],
                                                            oracle["layout"])
    assert model.mesh_shape.replace(",", ";") == oracle["mesh_shape"]
    assert len(model.stacks) == len(oracle["stacks"])
    for unit, expected in zip(model.stacks, oracle["stacks"]):
        assert (unit.name, unit.d_model, unit.autoregressive) == (
            expected["name"], expected["d_model"], expected["autoregressive"])
        assert unit.positional_embedding == expected["positional_embedding"]
        assert unit.shared_embedding_and_softmax_weights == \
            expected["shared_embedding_and_softmax_weights"]
        stack = unit.layer_stack
        assert (stack.dropout_rate, stack.norm_epsilon) == (expected["dropout_rate"],
                                                            expected["norm_epsilon"])
        assert [["sublayer_" + s.name for s in subs] for subs in (
            stack.sublayers_initial, stack.sublayers_per_layer, stack.sublayers_final)] == \
            expected["sublayers"]
        assert [(l.kind, l.scope) for l in stack.layers] == [(l["kind"], l["name"])
                                                             for l in expected["layers"]]
        for layer, want in zip(stack.layers, expected["layers"]):
            got = dataclasses.asdict(layer.config)
            assert {k: got[k] for k in want["kwargs"]} == want["kwargs"], layer.scope


# -- every MoE layer's kwargs, mesh and layout, worked out by hand from the files -------------
MOE_COMMANDS = {
    # name: (mesh, layout, batch dims, MoE scopes, MoE keywords set by the files)
    "mtf_bi_moe_2x2_dp": (
        "all:8", "batch:all,experts:all", [("batch", 32)],
        ["encoder/block_%03d/layer_001" % b for b in range(3)] +
        ["decoder/block_%03d/layer_002" % b for b in range(3)],
        {"num_experts": 32, "hidden_size": 4096}),                       # bi_moe.gin:35-36
    "mtf_lm_moe_8x8_m4": (                                               # 8x8_m4.gin:4-5
        "batch:32,model:4", "batch:batch,d_ff:model,heads:model,vocab:model", [("batch", 128)],
        ["transformer/block_%03d/layer_001" % b for b in range(3)],
        {"num_experts": 32, "hidden_size": 4096}),
    "mtf_lm_moe_tpu_v3_8": (   # defaults.gin:95 tpu_mesh_shape('v3-8', model_parallelism=1)
        "batch:8", "ensemble:ensemble,batch:batch,d_ff:model,heads:model,vocab:model,"
        "experts:batch", [("batch", 32)],
        ["transformer/block_%03d/layer_001" % b for b in range(3)],
        {"num_experts": 32, "hidden_size": 4096}),
    "minxu_run_moe_transformer_lm": (   # 8dp_gpu_minxu.gin:3,7; defaults.gin:84 (last wins)
        "model:4,batch:8", "batch:8", [("batch", 128)],
        ["transformer/block_%03d/layer_001" % b for b in range(2)],    # lm_moe_minxu.gin:17
        {"num_experts": 16, "hidden_size": 4096}),                      # lm_moe_minxu.gin:18-19
    "minxu_replicate_64k_moe": (   # defaults_64k.gin:91,99
        "batch:8", "batch:batch,d_ff:model,experts:batch", [("batch", 128)],
        ["transformer/block_%03d/layer_001" % b for b in range(2)],
        {"num_experts": 16, "hidden_size": 4096}),                      # lm_moe_minxu_64k.gin
    "minxu_replicate_8k_moe": (
        "batch:8", "batch:batch,d_ff:model,experts:batch", [("batch", 128)],
        ["transformer/block_%03d/layer_001" % b for b in range(2)],
        {"num_experts": 16, "hidden_size": 512}),                       # lm_moe_minxu_8k.gin
    "minxu_replicate_4k_moe_eval": (
        "batch:8", "batch:batch,d_ff:model,experts:batch", [("batch", 128)],
        ["transformer/block_%03d/layer_001" % b for b in range(2)],
        {"num_experts": 16, "hidden_size": 256}),                       # lm_moe_minxu_4k.gin
}


@pytest.mark.parametrize("name", sorted(MOE_COMMANDS))
def test_moe_layers_mesh_and_layout_worked_out_by_hand(name):
    mesh, layout, batch, scopes, kwargs = MOE_COMMANDS[name]
    config = port(name)
    assert (config.mesh_shape, config.layout) == (mesh, layout)
    assert config.model.batch_dims == batch
    assert [l.scope for l in config.layers] == scopes
    for layer in config.layers:
        assert layer.kind == "MoE1D" and layer.kwargs == kwargs
        assert layer.build().config.to_kwargs() == dict(MTF_MOE1D_DEFAULTS, **kwargs)


def test_minxu_fork_reports_what_mtf_silently_ignores():
    config = port("minxu_run_moe_transformer_lm")
    # 8dp_gpu_minxu.gin:3 "batch:8" maps batch to a mesh dim named "8": mtf ignores the rule
    assert any("batch:8" in r and "'8'" in r for r in config.reports)
    # 8dp_gpu_minxu.gin:8 lists 8 GPUs for a 32-processor mesh
    assert any("mesh_devices lists 8 devices" in r and "32 processors" in r
               for r in config.reports)
    ignored = [i for i in config.ignored if i.source.line == 54 and "batch_size" in i.text]
    assert ignored and "overridden by" in ignored[0].reason   # defaults.gin:54, then :84
    unit = config.model.decoder   # fork's defaults: d_model 512, max_length 256, 4 heads
    assert (unit.d_model, unit.max_length, unit.shared_embedding_and_softmax_weights) == (
        512, 256, False)
    assert config.layers[0].input_shape == "batch:128;length:256;d_model:512"


# -- T5 command lines (no MoE): the model and mesh as mtf runs them ---------------------------
def test_t5_readme_training_command():
    config = port("t5_readme_train_bi_v1")
    model = config.model
    assert model.kind == "Bitransformer" and not config.layers
    assert config.mesh_shape == "batch:8"   # tpu_mesh_shape('v3-8', model_parallelism = 1)
    enc, dec = model.encoder, model.decoder
    assert (enc.name, dec.name) == ("encoder", "decoder")
    assert (len(enc.layer_stack.layers), len(dec.layer_stack.layers)) == (24, 36)  # 12 blocks
    sa, drd = enc.layer_stack.layers[:2]   # bi_bert_base.gin: d_model 768, heads 12, d_kv 64
    assert (enc.d_model, sa.config.num_heads, sa.config.key_value_size) == (768, 12, 64)
    assert drd.config.hidden_size == 3072
    assert sa.config.relative_attention_type == "bias_shared"    # bi_v1.gin:9
    # EncDecAttention passes its own relative_attention_type (None) to SelfAttention, so
    # bi_v1.gin's SelfAttention binding does not reach it; num_heads etc. do
    encdec = dec.layer_stack.layers[1]
    assert encdec.kind == "EncDecAttention" and encdec.config.relative_attention_type is None
    assert encdec.config.num_heads == 12
    assert enc.positional_embedding is False                      # bi_v1.gin:5
    ignored = {i.text.split(" = ")[0]: i.reason for i in config.ignored}
    assert "not a configurable" in ignored["mesh_train_dataset_fn.use_cached"]


def test_t5_1_1_xxl_on_8x8_with_model_parallelism():
    config = port("t5_1_1_xxl")
    # 8x8 chips * 2 cores, model_parallelism = 8 (t5.1.1.xxl.gin:23): batch 16, model 8
    assert config.mesh_shape == "batch:16;model:8"
    unit = config.model.encoder
    drd = unit.layer_stack.layers[1]
    assert (unit.d_model, len(unit.layer_stack.layers) // 2) == (4096, 24)
    assert (drd.config.hidden_size, drd.config.activation, drd.config.dropout_rate) == (
        10240, ["gelu", "linear"], 0.0)                               # t5.1.1.base.gin:17-19
    assert unit.shared_embedding_and_softmax_weights is False


def test_operative_config_none_and_empty_list_as_mtf_reads_them():
    # T5's fine-tuning command: params come after every --gin_file, whatever their position
    config = port("t5_readme_finetune_operative")
    assert config.mesh_shape == ""          # run.mesh_shape = [] -> mtf.Shape([]): one processor
    assert config.mesh_devices is None      # run.mesh_devices = None -> one device each
    ignored = {i.text.split(" = ")[0]: i.reason for i in config.ignored}
    assert "not called" in ignored["utils.tpu_mesh_shape.tpu_topology"]   # the --gin_param
    unit = config.model.decoder
    assert (unit.d_model, len(unit.layer_stack.layers)) == (32, 6)   # d_model = 32, 2 layers
    assert unit.layer_stack.layers[2].config.activation == ["gelu", "linear"]


def test_operative_config_of_a_trained_run_last_binding_wins():
    config = port("kgt5_operative")
    assert config.mesh_shape == "batch:128"   # tpu_mesh_shape.tpu_topology = '8x8', mp 1
    dec = config.model.decoder
    assert dec.loss_denominator == 233472     # operative_config.gin: None, then 233472
    stack = dec.layer_stack
    assert (stack.dropout_rate, stack.norm_epsilon) == (0.1, 1e-06) and stack.legacy
    assert [s.name for s in stack.sublayers_per_layer] == ["legacy_rms_norm", "call_layer",
                                                            "legacy_dropout", "residual"]
    assert config.model.batch_dims == [("batch", 2048)]   # tokens_per_batch 1048576 / 512


def test_t5_shared_stacks_and_named_layers():
    config = port("t5_bi_v1_shared")
    enc = config.model.encoder
    assert enc.name == "decoder"     # make_bitransformer.encoder_name = "decoder"
    assert enc.layer_stack.layers[0].scope == "block_000/self_attention"   # ('name', @Layer)


def test_t5_lm_v1_is_one_stack_on_a_2x2_with_model_parallelism():
    config = port("t5_lm_v1")
    assert config.model.kind == "Unitransformer" and config.model.model_type == "lm"
    assert config.mesh_shape == "batch:4;model:2"    # 2x2 chips * 2 cores, mp 2


# -- gin semantics, one rule per test ---------------------------------------------------------
def test_tpu_mesh_shape_is_evaluated_only_as_the_final_value(tmp_path):
    lm = [os.path.join(MTF_GIN, "defaults.gin"), os.path.join(MTF_GIN, "models/lm_moe.gin")]
    with pytest.raises(nm.ConfigError, match=r"defaults.gin:95 .*tpu_topology.*--tpu-topology"):
        read_gin(lm)   # the final mesh_shape is tpu_mesh_shape() and no topology is given
    assert read_gin(lm, tpu_topology="4x4").mesh_shape == "batch:32"
    assert read_gin(lm, ["utils.tpu_mesh_shape.model_parallelism = 8"],
                    tpu_topology="4x4").mesh_shape == "batch:4;model:8"
    assert read_gin(lm, mesh="b0:2;b1:4").mesh_shape == "b0:2;b1:4"   # never evaluated
    assert tpu_mesh_shape("v3-8", 1) == "batch:8"
    assert tpu_mesh_shape("4x4_twisted", 2, 2) == "ensemble:2;batch:8;model:2"
    assert tpu_mesh_shape("v3-32", [("batch", None), ("model", [2, 2])]) == "batch:8;model:4"
    with pytest.raises(nm.ConfigError, match="tpu_topology = 'four'"):
        tpu_mesh_shape("four", 1)


def test_search_paths_find_includes_and_files():
    # T5's models/bi_v1.gin includes 'models/bi_bert_base.gin': a path in the search path
    with pytest.raises(nm.ConfigError, match=r"not found.*searched '\.'"):
        read_gin([os.path.join(T5_GIN, "models", "bi_v1.gin")])
    config = read_gin([os.path.join(MTF_GIN, "defaults.gin"), "models/bi_v1.gin"],
                      search_paths=[T5_GIN], tpu_topology="v3-8")
    assert config.model.encoder.d_model == 768


def test_macros_scopes_references_and_inline_layer_specs(tmp_path):
    gin = tmp_path / "model.gin"
    gin.write_text(
        "EXPERTS = 4\n"
        "encoder/transformer.make_layer_stack.layers = [\n"
        "    [@moe.MoE1D, 'moe', {'hidden_size': 32}],\n"
        "    @decoder/transformer_layers.DenseReluDense,\n"
        "]\n"
        "decoder/transformer.make_layer_stack.layers = [@moe.MoE1D]\n"
        "MoE1D.num_experts = %EXPERTS\n"
        "MoE1D.hidden_size = 16\n"
        "decoder/MoE1D.num_experts = 8\n"
        "DenseReluDense.hidden_size = 64\n"
        "decoder/DenseReluDense.hidden_size = 128\n"
        "transformer.make_layer_stack.num_layers = 1\n"
        "Unitransformer.max_length = 8\n"
        "transformer.LayerStack.sublayers_initial = []\n"
        "transformer.LayerStack.sublayers_per_layer = [@transformer.sublayer_call_layer]\n"
        "transformer.LayerStack.sublayers_final = []\n"
        "utils.run.mesh_shape = 'b0:2'\n"
        "utils.run.layout_rules = 'batch:b0'\n")
    config = read_gin(str(gin))
    enc, dec = config.model.encoder, config.model.decoder
    moe, drd = enc.layer_stack.layers
    assert moe.scope == "block_000/moe"                                  # inline name
    assert (moe.config.num_experts, moe.config.hidden_size) == (4, 32)   # macro, inline kwargs
    assert drd.config.hidden_size == 128   # @decoder/... runs in scope decoder, not encoder
    assert dec.layer_stack.layers[0].config.num_experts == 8            # scoped binding
    assert config.layers[0].sources["num_experts"].line == 7
    # mtf's default batch is ("tokens_per_replica", 2048): without a sequence length there is
    # no batch size (mtf raises at run time); the report says so
    assert config.model.batch_dims == []
    assert any("needs utils.run.sequence_length" in r for r in config.reports)


def test_fragments_port_their_layer_stacks(tmp_path):
    # the earlier demo's config (now test data): a decoder stack of two MoE2D layers, one block
    config = read_gin(os.path.join(os.path.dirname(CONFIGS), "gin", "namedmesh_moe2d_fragment.gin"))
    assert config.model is None
    assert [(l.kind, l.scope) for l in config.layers] == [
        ("MoE2D", "decoder/block_000/layer_000"), ("MoE2D", "decoder/block_000/layer_001")]
    assert any("not a whole mtf model" in r and "max_length" in r for r in config.reports)


# -- errors: one line naming file:line, the key and what was expected --------------------------
def _one_line_error(call, *words):
    with pytest.raises(nm.ConfigError) as info:
        call()
    message = str(info.value)
    for w in words:
        assert w in message, (w, message)
    return message


def test_real_broken_command_line_names_the_param():
    # min-xu-ai/mesh replicate_tf.sh line 5: --gin_param "run.modea'train'"
    cmd = COMMANDS["minxu_replicate_64k_moe"]
    _one_line_error(lambda: read_gin([_path(f) for f in cmd["files"]], ["run.modea'train'"]),
                    "--gin_param[1]", "gin syntax error")


@pytest.mark.parametrize("text,words", [
    ("MoE1D.num_expert = 8\n", ["bad.gin:1", "unknown parameter 'num_expert'", "num_experts"]),
    ("utils.run.model_type = 'encoder'\ntransformer.make_layer_stack.layers = []\n",
     ["bad.gin:1", "model_type", "'encoder'", "'lm'"]),
    ("MoE1D.num_experts = 8\nutils.run.mesh_shape = 8\n",
     ["bad.gin:2", "mesh_shape = 8", "expected a string"]),
    ("MoE1D.num_experts = 8\nutils.run.mesh_shape = @utils.tpu_mesh_shape()\n"
     "utils.tpu_mesh_shape.tpu_topology = 'v3-8'\nutils.tpu_mesh_shape.model_parallelism = 'x'\n",
     ["bad.gin:4", "model_parallelism = 'x'", "positive integer"]),
    ("transformer.make_layer_stack.layers = [@moe.MoE1D, 3]\nutils.run.model_type = 'lm'\n",
     ["bad.gin:1", "layer 3", "expected @Layer"]),
    ("LayerStack.dropout_rate = 0.1\ntransformer.make_layer_stack.layers = [@moe.MoE1D]\n"
     "utils.run.model_type = 'lm'\nUnitransformer.max_length = 8\n",
     ["bad.gin:1", "norm_epsilon", "both"]),
])
def test_bad_gin_fails_in_one_line(tmp_path, text, words):
    path = tmp_path / "bad.gin"
    path.write_text(text)
    message = _one_line_error(lambda: read_gin(str(path)), *words)
    assert "\n" not in message
