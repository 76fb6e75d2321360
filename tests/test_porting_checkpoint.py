"""Whole-model checkpoints: MoE scopes paired with the config's layers in the model's own order;
missing, extra and mis-shaped variables named.  ``mtf_bi_moe_tiny`` was written by mtf 0.1.21
itself (tools/oracle/model_checkpoints.py)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.porting import (find_moe_layers, load_layer_from_checkpoint,
                               pair_model_checkpoint, read_gin, read_gpt_neo, write_checkpoint)
from namedmesh.porting.checkpoint import model_order_key
from namedmesh.porting.report import pair_checkpoint_scopes

DATA = os.path.join(os.path.dirname(__file__), "data")
PREFIX = os.path.join(DATA, "ckpt", "mtf_bi_moe_tiny.ckpt")
ORDER = ["encoder/block_000/layer_001/MoE1D/", "encoder/block_001/layer_001/MoE1D/",
         "decoder/block_000/layer_002/MoE1D/", "decoder/block_001/layer_002/MoE1D/"]


def _config():
    with open(os.path.join(DATA, "ckpt", "mtf_bi_moe_tiny.json")) as f:
        meta = json.load(f)
    with open(os.path.join(DATA, "configs", "gin_commands.json")) as f:
        cmd = json.load(f)["commands"][meta["command"]]
    files = [os.path.join(DATA, "configs", p) for p in [cmd["mtf_defaults"]] + cmd["files"]]
    return read_gin(files, cmd["params"] + meta["extra_gin_params"])


def _tensors(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)}


def test_mtf_checkpoint_pairs_in_model_order_not_alphabetically():
    config = _config()
    assert [f.scope for f in find_moe_layers(PREFIX)] == ORDER   # encoder first
    assert sorted(ORDER) != ORDER                                  # alphabetically decoder first
    pairing = pair_model_checkpoint(config, PREFIX)
    assert pairing.ok and pairing.scopes == ORDER
    assert pair_checkpoint_scopes(config, PREFIX) == ORDER
    reader = tf.train.load_checkpoint(PREFIX)
    for spec, scope in zip(config.layers, pairing.scopes):
        layer = load_layer_from_checkpoint(spec.build(), PREFIX, scope)
        np.testing.assert_array_equal(layer._loaded["wo/kernel"],
                                      reader.get_tensor(scope + "wo/kernel"))


def test_missing_extra_and_misshaped_variables_are_named(tmp_path):
    config = _config()
    tensors = _tensors(PREFIX)
    broken = dict(tensors)
    del broken[ORDER[3] + "wo/kernel"]
    broken[ORDER[0] + "wi/kernel"] = np.zeros((4, 16, 8), np.float32)
    extra = "decoder/block_001/layer_005/MoE1D/"
    for name in ("top_2_gating/kernel", "wi/kernel", "wo/kernel"):
        broken[extra + name] = tensors[ORDER[3] + name if name != "wo/kernel"
                                       else ORDER[2] + name]
    prefix = str(tmp_path / "broken.ckpt")
    write_checkpoint(prefix, broken)
    pairing = pair_model_checkpoint(config, prefix)
    assert pairing.missing == ["%swo/kernel [4, 16, 16] (wo/kernel of MoE1D in "
                               "decoder/block_001/layer_002)" % ORDER[3]]
    assert pairing.misshaped == ["%swi/kernel has shape [4, 16, 8], expected [4, 16, 16] "
                                 "(MoE1D in encoder/block_000/layer_001)" % ORDER[0]]
    assert [e.split(" ")[0] for e in pairing.extra] == [extra + n for n in (
        "top_2_gating/kernel", "wi/kernel", "wo/kernel")]
    with pytest.raises(nm.ConfigError) as info:
        pair_checkpoint_scopes(config, prefix)
    message = str(info.value)
    assert "missing " + ORDER[3] + "wo/kernel" in message and "extra " + extra in message


def test_gpt_neo_scopes_are_in_block_order(tmp_path):
    # GPT-Neo names blocks h0..h11 (models/gpt2/gpt2.py): h10 sorts before h2 alphabetically
    values = json.load(open(os.path.join(DATA, "configs", "gpt-neo", "c8aaae2", "configs",
                                         "gpt3_small_moe_8.json")))
    values.update(n_embd=8, n_head=2, moe_params={"moe_hidden_size": 4, "moe_num_experts": 2})
    path = tmp_path / "neo.json"
    path.write_text(json.dumps(values))
    config = read_gpt_neo(str(path))
    tensors = {}
    for spec in config.layers:
        layer = spec.build()
        layer.build("batch:2;length:4;d_model:8")
        for name, var in layer.mtf_variables().items():
            tensors[spec.variable_scope + name] = var.numpy()
    prefix = str(tmp_path / "neo.ckpt")
    write_checkpoint(prefix, tensors)
    scopes = ["gpt2/h%d/" % i for i in (2, 4, 6, 8, 10)]
    assert [f.scope for f in find_moe_layers(prefix)] == scopes
    assert pair_checkpoint_scopes(config, prefix) == scopes
    assert sorted(scopes) != scopes
    assert sorted(["bert/encoder/block_10/moe/", "bert/encoder/block_2/moe/"],
                  key=model_order_key)[0] == "bert/encoder/block_2/moe/"
