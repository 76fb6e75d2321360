"""JSON configs of other mtf users (GPT-Neo, mtf BERT), mapped as their code maps them.

Expected values are worked out by hand from the configs and the code that reads them
(EleutherAI/gpt-neo ``models/gpt2/gpt2.py``; tensorflow/mesh ``mesh_tensorflow/bert/bert.py``,
``run_pretraining.py``; mtf's ``set_default_moe_hparams``)."""
import json
import os

import pytest

import namedmesh as nm
from namedmesh.porting import read_config, read_gpt_neo, read_mtf_bert

CONFIGS = os.path.join(os.path.dirname(__file__), "data", "configs")
NEO = {c: os.path.join(CONFIGS, "gpt-neo", c, "configs", "gpt3_small_moe_8.json")
       for c in ("3f22f89", "6da0801", "c8aaae2")}
BERT = os.path.join(CONFIGS, "tensorflow_mesh", "mesh_tensorflow", "bert", "config", "moe.json")
# mtf's set_default_moe_hparams, as moe_* -> namedmesh keyword
MTF_HPARAM_DEFAULTS = dict(num_experts=16, loss_coef=1e-2, moe_gating="top_2",
                           capacity_factor_train=1.25, capacity_factor_eval=2.0, hidden_size=4096,
                           group_size=1024, use_second_place_loss=False,
                           second_policy_train="random", second_policy_eval="random",
                           second_threshold_train=0.2, second_threshold_eval=0.2)


@pytest.mark.parametrize("commit,code,min_capacity", [
    ("c8aaae2", "33f69b9", 1),          # gpt2.py since 33f69b9 adds moe_min_expert_capacity=1
    ("6da0801", "before-33f69b9", 4),   # mtf 0.1.16's transformer_moe_layer_v1 floor
    ("3f22f89", "before-33f69b9", 4),
])
def test_gpt_neo_moe_layers_as_gpt2_py_builds_them(commit, code, min_capacity):
    config = read_gpt_neo(NEO[commit], code=code)
    # moe_layers [2, 4, 6, 8, 10, 12] over blocks h0..h11: 12 does not exist
    assert [l.scope for l in config.layers] == ["h2", "h4", "h6", "h8", "h10"]
    assert any("moe_layers lists 12" in r for r in config.reports)
    expected = dict(nm.moe.MoE1DConfig().to_kwargs(), **MTF_HPARAM_DEFAULTS,
                    min_expert_capacity=min_capacity, dropout_rate=0.0,   # moe_params
                    activation="relu")                                   # moe_activation default
    for layer in config.layers:
        assert layer.build().config.to_kwargs() == expected
        assert layer.variable_scope == "gpt2/%s/" % layer.scope
        assert layer.input_shape == "batch:256;length:2048;d_model:768"  # train_batch_size, n_ctx
    assert (config.mesh_shape, config.layout) == (
        "x:4,y:2", "batch:x,heads:y,vocab:y,intermediate_expanded:y,experts:y")
    unit = config.model.decoder
    kinds = [(l.scope, l.kind) for l in unit.layer_stack.layers]
    assert kinds[:5] == [("h0/attn", "SelfAttention"), ("h0/mlp", "DenseReluDense"),
                         ("h1/attn", "SelfAttention"), ("h1/mlp", "DenseReluDense"),
                         ("h2/attn", "SelfAttention")]
    assert kinds[5] == ("h2", "MoE1D") and len(kinds) == 24
    attn, mlp = unit.layer_stack.layers[:2]
    assert (attn.config.num_heads, attn.config.key_value_size) == (12, 64)   # n_head, n_embd
    assert (mlp.config.hidden_size, mlp.config.activation) == (3072, "gelu")
    ignored = {i.text.split(" = ")[0] for i in config.ignored}
    assert {"lr", "opt_name", "model_path"} <= ignored


def test_gpt_neo_defaults_are_reported_with_whose_they_are():
    config = read_gpt_neo(NEO["c8aaae2"])
    defaults = {v.key: v.default for v in config.defaults()}
    assert "33f69b9" in defaults["MoE1D.min_expert_capacity"]
    assert defaults["MoE1D.group_size"] == "mtf set_default_moe_hparams"
    assert "moe_activation" in defaults["moe_activation"]


def test_mtf_bert_moe_json_as_bert_py_builds_it():
    config = read_config(BERT)     # recognised from its keys
    assert config.source_format == "mtf BERT JSON"
    # 3 blocks of [attention, feedforward, attention, moe, attention, feedforward]
    assert [l.scope for l in config.layers] == ["bert/encoder/block_%d/moe" % b
                                                for b in range(3)]
    expected = dict(nm.moe.MoE1DConfig().to_kwargs(), moe_gating="top_2", num_experts=32,
                    loss_coef=1e-3, hidden_size=6144, group_size=2048,   # BertModel.moe
                    capacity_factor_train=1.25, capacity_factor_eval=8.0,
                    use_second_place_loss=False, second_policy_train="random",
                    second_policy_eval="random", second_threshold_train=0.2,
                    second_threshold_eval=0.2, activation="gelu",
                    min_expert_capacity=4, dropout_rate=0.0)   # min-xu-ai/mesh b3df950
    for layer in config.layers:
        assert layer.build().config.to_kwargs() == expected
        assert layer.input_shape == "batch:32;length:128;d_model:768"   # run_pretraining flags
    assert any("AttributeError" in r for r in config.reports)
    assert (config.mesh_shape, config.layout) == (
        "batch:8", "batch:batch,vocab:model,intermediate:model,num_heads:model,experts:batch")
    unit = config.model.decoder
    assert [l.scope for l in unit.layer_stack.layers][:6] == [
        "block_0/attention", "block_0/feedforward", "block_0/attention_1", "block_0/moe",
        "block_0/attention_2", "block_0/feedforward_1"]
    attn = unit.layer_stack.layers[0].config
    assert (attn.num_heads, attn.key_value_size) == (12, 64)
    assert unit.positional_embedding is False     # position_signal relative_attention_bias
    assert unit.input_vocab_size == 30522
    other = read_mtf_bert(BERT, mesh_shape="b0:2", layout="batch:b0;experts:b0",
                          max_seq_length=64, train_batch_size=8)
    assert other.layers[0].input_shape == "batch:8;length:64;d_model:768"


def test_bad_json_names_the_key(tmp_path):
    values = json.load(open(NEO["c8aaae2"]))
    path = tmp_path / "neo.json"
    path.write_text(json.dumps(dict(values, moe_params={"moe_hidden_size": "big"}), indent=1))
    with pytest.raises(nm.ConfigError, match=r"neo.json:\d+ \(moe_params\['moe_hidden_size'\]\)"
                                             r".*'big'"):
        read_gpt_neo(str(path))
    path.write_text(json.dumps(dict(values, attention_types=[[["global"], 11]]), indent=1))
    with pytest.raises(nm.ConfigError, match=r"attention_types expands to 11 layers, n_layer is 12"):
        read_gpt_neo(str(path))
    bert = json.load(open(BERT))
    path = tmp_path / "bert.json"
    path.write_text(json.dumps(dict(bert, block_layers=["attention", "mixture"]), indent=1))
    with pytest.raises(nm.ConfigError, match=r"bert.json:\d+ \(block_layers\).*'mixture'"):
        read_config(str(path))
