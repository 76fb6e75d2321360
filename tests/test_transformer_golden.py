"""Whole models against mtf 0.1.21's own Unitransformer / Bitransformer (tests/data/models).

Each golden case runs on its own mesh (one device, 2x2, 2x4; heads, d_ff, vocab, experts and
batch split as the case's layout says) in train and eval mode: the logits, the loss, its parts
(cross-entropy, z-loss, each MoE layer's aux loss) and the gradient of the train loss with
respect to every variable equal mtf's to 2e-5.  A case made from real gin files (mtf's
defaults.gin + lm_moe.gin or bi_moe.gin + the case's scale-down) is built the way a user builds
it: ported by namedmesh's gin reader, then ``config.build_model``; the others from the recorded
constructor arguments.
"""
import numpy as np
import pytest

import namedmesh as nm
from transformer_cases import (ATOL, MODEL_CASES, gin_spec_of, load, run_case, spec_of)


def _from_gin(name):
    return bool(load(name)[0]["gin"])


def _assert_matches_mtf(name, out):
    config, arrays = load(name)
    for mode in config["modes"]:
        r = out[mode]
        np.testing.assert_allclose(r["logits"], arrays[mode + "/logits"], atol=ATOL, rtol=0,
                                   err_msg="%s %s logits" % (name, mode))
        for part in ("loss", "cross_entropy", "z_loss"):
            np.testing.assert_allclose(r[part], arrays["%s/%s" % (mode, part)], atol=ATOL,
                                       rtol=0, err_msg="%s %s %s" % (name, mode, part))
        assert sorted(r["moe_loss"]) == sorted(config["moe_loss_scopes"])
        for scope, value in r["moe_loss"].items():
            np.testing.assert_allclose(value, arrays["%s/moe_loss/%s" % (mode, scope)],
                                       atol=ATOL, rtol=0, err_msg="%s %s" % (name, scope))
    grads = out["train"]["grad"]
    assert sorted(grads) == sorted(config["var_dims"])   # every variable, by mtf's name
    for var, g in grads.items():
        np.testing.assert_allclose(g, arrays["train/grad/" + var], atol=ATOL, rtol=0,
                                   err_msg="%s gradient of %s" % (name, var))


@pytest.mark.parametrize("name", MODEL_CASES)
def test_golden_case_matches_mtf_on_its_mesh(name):
    _assert_matches_mtf(name, run_case(name, from_gin=_from_gin(name)))


def test_the_cases_cover_the_meshes_and_layers():
    meshes = {load(n)[0]["mesh_shape"] for n in MODEL_CASES}
    assert {"", "batch:2,model:2", "batch:2,model:4", "b0:2,b1:2"} <= meshes
    kinds = {layer["class"] for n in MODEL_CASES for stack in _stacks(load(n)[0])
             for layer in stack["layers"]}
    assert kinds == {"SelfAttention", "EncDecAttention", "DenseReluDense", "MoE1D", "MoE2D"}


def _stacks(config):
    if config["model_class"] == "Unitransformer":
        return [config["layer_stack"]]
    return [config["encoder"]["layer_stack"], config["decoder"]["layer_stack"]]


def test_tf_distribute_executor_matches_mtf():
    _assert_matches_mtf("lm_moe_2x2", run_case("lm_moe_2x2", executor="strategy",
                                               from_gin=True))


@pytest.mark.parametrize("name", [n for n in MODEL_CASES if _from_gin(n)])
def test_the_gin_files_port_to_the_model_mtf_built(name):
    """namedmesh's reading of the real gin files equals the constructor arguments mtf's own
    gin recorded (layer by layer), and the mesh and layout the case ran on."""
    config, _ = load(name)
    ported = gin_spec_of(config)
    recorded = spec_of(config)
    assert ported.model.kind == recorded.kind
    for got, want in zip(ported.model.stacks, recorded.stacks):
        assert got.name == want.name and got.d_model == want.d_model
        assert got.max_length == want.max_length and got.z_loss == want.z_loss
        assert got.shared_embedding_and_softmax_weights == \
            want.shared_embedding_and_softmax_weights
        assert [(l.kind, l.scope, l.config) for l in got.layer_stack.layers] == \
            [(l.kind, l.scope, l.config) for l in want.layer_stack.layers]
        assert [s.name for s in got.layer_stack.sublayers_per_layer] == \
            [s.name for s in want.layer_stack.sublayers_per_layer]
    assert ported.mesh_shape.replace(";", ",") == config["mesh_shape"]
    assert ported.layout.replace(";", ",") == config["layout"]


def test_variables_carry_mtf_names_and_dims():
    config, arrays = load("t5_relbias_bi")
    model = nm.transformer.build_model(spec_of(config), vocab_size=32)
    model.build()
    shapes = model.variable_shapes()
    assert shapes == {k: tuple(s for _, s in dims) for k, dims in config["var_dims"].items()}
    # bias_shared: only the first self-attention of each stack holds the bias
    assert sorted(k for k in shapes if k.endswith("relative_attention_bias")) == [
        "decoder/block_000/layer_000/SelfAttention/relative_attention_bias",
        "encoder/block_000/layer_000/SelfAttention/relative_attention_bias"]
