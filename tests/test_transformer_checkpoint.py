"""Whole models and TF1 checkpoints: mtf's own checkpoints load and give mtf's logits and greedy
tokens; what namedmesh saves has mtf's names, shapes and dtypes and loads back exactly; a
checkpoint that does not match the model is an error naming each variable.

The checkpoints ckpt_lm_moe / ckpt_bi_moe were written by mtf 0.1.21's training loop for an
``lm_moe.gin`` / ``bi_moe.gin``-shaped model (tests/data/models/README.md); their models are
ported from those gin files here.  That mtf reads a checkpoint namedmesh wrote was shown with the
oracle (``make_model_goldens.py --verify-checkpoint``, see the README); this test holds the
namedmesh side of it against the committed mtf logits.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.porting.checkpoint import write_checkpoint
from transformer_cases import ATOL, CHECKPOINT_CASES, DATA, gin_spec_of, load


def _prefix(config):
    return os.path.join(DATA, config["checkpoint"]["prefix"])


def _model(name):
    config, _ = load(name)
    return gin_spec_of(config).build_model(vocab_size=config["data"]["vocab_size"])


def _eval_features(config, arrays):
    keys = ("targets", "inputs", "sequence_id")
    return {k: arrays[k] for k in keys if k in arrays}


def _logits(model, mesh, config, arrays):
    out = model(mesh, _eval_features(config, arrays), mode="eval")
    return (nm.export_to_tf_tensor(out.logits).numpy(), float(nm.export_to_tf_tensor(out.loss)),
            {k: float(nm.export_to_tf_tensor(v)) for k, v in out.moe_losses.items()})


@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_mtf_checkpoint_loads_and_gives_mtf_logits_and_greedy_tokens(name):
    config, arrays = load(name)
    model = _model(name)
    model.load_checkpoint(os.path.dirname(_prefix(config)))   # a directory works too
    mesh = nm.Mesh()
    logits, loss, moe = _logits(model, mesh, config, arrays)
    np.testing.assert_allclose(logits, arrays["eval/logits"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(loss, arrays["eval/loss"], atol=ATOL, rtol=0)
    for scope, value in moe.items():
        np.testing.assert_allclose(value, arrays["eval/moe_loss/" + scope], atol=ATOL, rtol=0)
    tokens = nm.export_to_tf_tensor(model.decode(mesh, arrays["decode/prompts"])).numpy()
    np.testing.assert_array_equal(tokens, arrays["decode/tokens"])


def test_greedy_decoding_on_a_mesh_gives_mtf_tokens():
    """The LM decodes on a 2x2 mesh (batch and heads split; the loop's collectives on the
    placement executor) to mtf's tokens: each step's tokens form one MoE group per processor
    row, below capacity, so the routing is the one-device routing."""
    config, arrays = load("ckpt_lm_moe")
    model = _model("ckpt_lm_moe")
    mesh = nm.Mesh("batch:2;model:2", "batch:batch,heads:model,d_ff:model,vocab:model")
    model.load_checkpoint(_prefix(config), mesh=mesh)
    tokens = nm.export_to_tf_tensor(model.decode(mesh, arrays["decode/prompts"])).numpy()
    np.testing.assert_array_equal(tokens, arrays["decode/tokens"])


@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_save_writes_mtf_names_shapes_dtypes_and_loads_back(name, tmp_path):
    config, arrays = load(name)
    model = _model(name)
    model.load_checkpoint(_prefix(config))
    prefix = model.save_checkpoint(str(tmp_path / "model.ckpt-7"), global_step=7)
    written = dict(tf.train.list_variables(prefix))
    mtf_written = {k: v for k, v in tf.train.list_variables(_prefix(config))
                   if "_slot_" not in k}
    assert written == mtf_written          # every model variable and global_step, same shapes
    ours, theirs = tf.train.load_checkpoint(prefix), tf.train.load_checkpoint(_prefix(config))
    for var in written:
        assert ours.get_variable_to_dtype_map()[var] == theirs.get_variable_to_dtype_map()[var]
    assert ours.get_tensor("global_step") == 7
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
    fresh = _model(name)
    fresh.load_checkpoint(prefix)
    logits, _, _ = _logits(fresh, nm.Mesh(), config, arrays)
    np.testing.assert_allclose(logits, arrays["eval/logits"], atol=ATOL, rtol=0)


def test_trained_values_round_trip_exactly(tmp_path):
    """Values namedmesh changed (one training step on a 2x2 mesh) come back bit for bit."""
    config, arrays = load("ckpt_lm_moe")
    model = _model("ckpt_lm_moe")
    mesh = nm.Mesh("batch:2;model:2", "batch:batch,heads:model,d_ff:model,vocab:model")
    model.load_checkpoint(_prefix(config), mesh=mesh)
    start = model.values()
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = nm.export_to_tf_tensor(model(mesh, _eval_features(config, arrays),
                                            mode="train").loss)
    grads = tape.gradient(loss, variables)
    tf.keras.optimizers.SGD(0.5).apply_gradients(zip(grads, variables))
    before = model.values()
    assert all(np.abs(before[k] - start[k]).max() > 0 for k in before)
    prefix = model.save_checkpoint(str(tmp_path / "trained"))
    again = _model("ckpt_lm_moe")
    again.load_checkpoint(prefix)
    after = again.values()
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def _copy_with(prefix, tmp_path, drop=(), add=None, reshape=None):
    reader = tf.train.load_checkpoint(prefix)
    tensors = {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(prefix)
               if n not in drop}
    tensors.update(add or {})
    for name, shape in (reshape or {}).items():
        tensors[name] = np.zeros(shape, np.float32)
    return write_checkpoint(str(tmp_path / "bad"), tensors)


@pytest.mark.parametrize("change,words", [
    ({"drop": ["transformer/block_001/layer_002/SelfAttention/k"]},
     ["missing", "transformer/block_001/layer_002/SelfAttention/k [8, 8]"]),
    ({"drop": ["transformer/block_000/layer_001/MoE1D/wo/kernel"]},
     ["transformer/block_000/layer_001/MoE1D", "wo/kernel", "missing"]),
    ({"add": {"transformer/block_002/layer_000/SelfAttention/q": np.zeros((8, 8), np.float32)}},
     ["does not have", "transformer/block_002/layer_000/SelfAttention/q [8, 8]"]),
    ({"reshape": {"transformer/positional_embedding": (32, 8)}},
     ["transformer/positional_embedding", "max_length:16, d_model:8", "(32, 8)"]),
])
def test_a_checkpoint_that_does_not_match_is_named(change, words, tmp_path):
    config, _ = load("ckpt_lm_moe")
    bad = _copy_with(_prefix(config), tmp_path, **change)
    with pytest.raises(nm.ConfigError) as info:
        _model("ckpt_lm_moe").load_checkpoint(bad)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_unreadable_checkpoint_is_named(tmp_path):
    with pytest.raises(nm.ConfigError, match="cannot be read"):
        _model("ckpt_lm_moe").load_checkpoint(str(tmp_path / "nothing"))
    with pytest.raises(nm.ConfigError, match="no checkpoint"):
        _model("ckpt_lm_moe").load_checkpoint(str(tmp_path))


def test_sampling_is_seeded_and_keeps_the_prompts():
    config, arrays = load("ckpt_lm_moe")
    model = _model("ckpt_lm_moe")
    model.load_checkpoint(_prefix(config))
    mesh, prompts = nm.Mesh(), arrays["decode/prompts"]

    def sample(seed):
        return nm.export_to_tf_tensor(model.decode(mesh, prompts, temperature=1.0, seed=seed,
                                                   stop_at_token=None)).numpy()
    a, b, c = sample(3), sample(3), sample(4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    np.testing.assert_array_equal(np.where(prompts > 0, a, 0), prompts)
    assert (a[prompts == 0] > 0).all() and (a < model.output_vocab_dim.size).all()


def test_decoding_options_never_end_and_top_k():
    """never_end keeps the stop token out; keeping the top 1 logit samples the argmax."""
    config, arrays = load("ckpt_lm_moe")
    model = _model("ckpt_lm_moe")
    model.load_checkpoint(_prefix(config))
    mesh, prompts = nm.Mesh(), arrays["decode/prompts"]
    greedy = arrays["decode/tokens"]
    top1 = nm.export_to_tf_tensor(model.decode(mesh, prompts, temperature=1.0, seed=9,
                                               sampling_keep_top_k=1)).numpy()
    np.testing.assert_array_equal(top1, greedy)
    stop = int(greedy[prompts == 0][0])   # a token the model emits: never_end forbids it
    tokens = nm.export_to_tf_tensor(model.decode(mesh, prompts, stop_at_token=stop,
                                                 never_end=True)).numpy()
    assert not (tokens[prompts == 0] == stop).any() and (tokens[prompts == 0] > 0).all()
    with pytest.raises(nm.ConfigError, match="sampling_keep_top_k"):
        model.decode(mesh, prompts, sampling_keep_top_k=0)
