"""namedmesh.transformer beyond the golden cases: T5's buckets against NumPy, recomputed layers,
decoding's incremental steps against the parallel forward, the other sublayers, and errors."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from namedmesh.transformer import spec as S
from namedmesh.transformer.attention_layers import relative_position_bucket
from transformer_cases import ATOL, load, spec_of


def numpy_bucket(rp, bidirectional, num_buckets, max_distance=128):
    """T5's relative position bucket, written from the paper's description."""
    n = -rp
    ret = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n < 0) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    exact = num_buckets // 2
    with np.errstate(divide="ignore", invalid="ignore"):   # log(0) where n < exact (unused)
        large = exact + (np.log(n.astype(np.float32) / np.float32(exact))
                         / np.float32(np.log(max_distance / exact))
                         * np.float32(num_buckets - exact)).astype(np.int32)
    return ret + np.where(n < exact, n, np.minimum(large, num_buckets - 1))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets", [8, 32, 128])
def test_relative_position_buckets_match_numpy(bidirectional, buckets):
    rp = np.arange(-300, 301, dtype=np.int32)
    mesh = nm.Mesh()
    t = nm.import_tf_tensor(mesh, rp, "rp:601")
    got = nm.export_to_tf_tensor(relative_position_bucket(t, bidirectional, buckets)).numpy()
    np.testing.assert_array_equal(got, numpy_bucket(rp, bidirectional, buckets))
    assert got.min() >= 0 and got.max() == buckets - 1


def _with_stack(spec, **changes):
    for unit in spec.stacks:
        unit.layer_stack = dataclasses.replace(unit.layer_stack, **changes)
    return spec


def test_recomputed_layers_give_the_same_loss_and_gradients():
    """recompute_grads re-runs each layer on the backward pass; the MoE aux losses it adds
    are outputs of the recomputed function, so their gradients still flow."""
    config, arrays = load("lm_moe_1dev")
    model = nm.transformer.build_model(_with_stack(spec_of(config), recompute_grads=True),
                                       vocab_size=32)
    model.load_variables({k[4:]: v for k, v in arrays.items() if k.startswith("var/")})
    model.build()
    mesh = nm.Mesh()
    variables = model.variables()
    with tf.GradientTape() as tape:
        out = model(mesh, {"targets": arrays["targets"], "sequence_id": arrays["sequence_id"]},
                    mode="train")
        loss = nm.export_to_tf_tensor(out.loss)
    np.testing.assert_allclose(loss, arrays["train/loss"], atol=ATOL, rtol=0)
    assert len(out.moe_losses) == 2
    for name, g in zip(variables, tape.gradient(loss, list(variables.values()))):
        np.testing.assert_allclose(tf.convert_to_tensor(g), arrays["train/grad/" + name],
                                   atol=ATOL, rtol=0, err_msg=name)


def _loss_and_grads(spec, arrays, seed):
    model = nm.transformer.build_model(spec, vocab_size=32)
    model.load_variables({k[4:]: v for k, v in arrays.items() if k.startswith("var/")})
    mesh = nm.Mesh("b:2", "batch:b")
    variables = model.build(mesh).variables()
    with tf.GradientTape() as tape:
        loss = nm.export_to_tf_tensor(model(mesh, {"targets": arrays["targets"],
                                                   "sequence_id": arrays["sequence_id"]},
                                            mode="train", seed=seed).loss)
    grads = tape.gradient(loss, list(variables.values()))
    return float(loss), {k: tf.convert_to_tensor(g).numpy() for k, g in zip(variables, grads)}


def test_recomputation_draws_the_forward_pass_random_numbers():
    """With dropout and MoE's random second-place policy, the recomputed backward pass draws
    what the forward pass drew (the same seeds): gradients equal the stored computation's."""
    config, arrays = load("lm_moe_1dev")

    def spec(recompute):
        s = _with_stack(spec_of(config), recompute_grads=recompute,
                        sublayers_per_layer=[S.SublayerSpec("rms_norm"),
                                             S.SublayerSpec("call_layer"),
                                             S.SublayerSpec("dropout", {"dropout_rate": 0.2}),
                                             S.SublayerSpec("residual")])
        for layer in s.decoder.layer_stack.layers:
            if layer.kind == "MoE1D":
                layer.config = layer.config.replace(second_policy_train="random")
        return s
    loss_a, grads_a = _loss_and_grads(spec(False), arrays, seed=11)
    loss_b, grads_b = _loss_and_grads(spec(True), arrays, seed=11)
    loss_c, _ = _loss_and_grads(spec(False), arrays, seed=12)
    assert abs(loss_a - loss_b) < 1e-6 and abs(loss_a - loss_c) > 1e-4
    for k in grads_a:
        np.testing.assert_allclose(grads_b[k], grads_a[k], atol=1e-6, rtol=0, err_msg=k)


def test_incremental_decoding_steps_equal_the_parallel_forward():
    """Greedy decoding's per-step logits (first_part + incremental, with the recorded keys
    and values) equal the teacher-forced logits of the decoded sequence (a causal model
    sees only earlier positions)."""
    config, arrays = load("bi_separate_embeddings")
    model = nm.transformer.build_model(spec_of(config), vocab_size=32)
    model.load_variables({k[4:]: v for k, v in arrays.items() if k.startswith("var/")})
    mesh = nm.Mesh()
    inputs = arrays["inputs"]
    tokens = nm.export_to_tf_tensor(model.decode(mesh, inputs)).numpy()
    out = model(mesh, {"inputs": inputs, "targets": tokens,
                       "decoder_sequence_id": np.ones_like(tokens)}, mode="eval")
    logits = nm.export_to_tf_tensor(out.logits).numpy()
    np.testing.assert_array_equal(logits.argmax(-1), tokens)


def test_other_sublayers_run_with_their_variables():
    config, _ = load("lm_gated_separate_softmax")
    spec = _with_stack(spec_of(config),
                       sublayers_initial=[S.SublayerSpec("dropout", {"dropout_rate": 0.1})],
                       sublayers_per_layer=[S.SublayerSpec("true_layer_norm"),
                                            S.SublayerSpec("call_layer"),
                                            S.SublayerSpec("rezero", {"initial_value": 0.5}),
                                            S.SublayerSpec("residual")],
                       sublayers_final=[S.SublayerSpec("scale_norm", {"name": "final"})])
    model = nm.transformer.build_model(spec, vocab_size=32)
    mesh = nm.Mesh("b:2", "batch:b")
    targets = np.random.RandomState(0).randint(1, 32, size=(2, 8)).astype(np.int32)
    a = model(mesh, {"targets": targets}, mode="train", seed=5)
    b = model(mesh, {"targets": targets}, mode="train", seed=5)
    c = model(mesh, {"targets": targets}, mode="eval")
    names = model.variable_shapes()
    assert names["transformer/block_000/layer_000/true_layer_norm/layer_norm/layer_norm_scale"] \
        == (8,)
    assert names["transformer/block_000/layer_000/rezero_weight"] == ()
    assert names["transformer/final/scale"] == ()
    la, lb, lc = (float(nm.export_to_tf_tensor(o.loss)) for o in (a, b, c))
    assert la == lb and la != lc   # seeded dropout in training only


def test_bad_configs_and_inputs_are_named():
    config, _ = load("lm_gated_separate_softmax")
    spec = spec_of(config)
    no_vocab = spec_of(config)
    no_vocab.decoder = dataclasses.replace(no_vocab.decoder, input_vocab_size=None,
                                           output_vocab_size=None)
    with pytest.raises(nm.ConfigError, match="input_vocab_size of transformer.*vocab_size="):
        nm.transformer.build_model(no_vocab)
    local = dataclasses.replace(spec.decoder.layer_stack.layers[0], kind="LocalSelfAttention",
                                config=S.LocalSelfAttentionConfig())
    broken = spec_of(config)
    broken.decoder.layer_stack.layers[0] = local
    with pytest.raises(nm.ConfigError, match="block_000/layer_000 is a LocalSelfAttention"):
        nm.transformer.build_model(broken, vocab_size=32)
    odd = _with_stack(spec_of(config), sublayers_final=[S.SublayerSpec("annealed_dropout")])
    with pytest.raises(nm.ConfigError, match="annealed_dropout.*global step"):
        nm.transformer.build_model(odd, vocab_size=32)
    odd = _with_stack(spec_of(config), sublayers_final=[S.SublayerSpec("rms_norm",
                                                                       {"epsilom": 1})])
    with pytest.raises(nm.ConfigError, match="unknown parameter epsilom"):
        nm.transformer.build_model(odd, vocab_size=32)
    model = nm.transformer.build_model(spec, vocab_size=32)
    mesh = nm.Mesh()
    with pytest.raises(nm.ConfigError, match="unknown \\['encoder_position'\\]"):
        model(mesh, {"targets": np.ones((2, 4), np.int32), "encoder_position": None})
    with pytest.raises(nm.ConfigError, match="\\['targets'\\] missing"):
        model(mesh, {"sequence_id": np.ones((2, 4), np.int32)})
    with pytest.raises(nm.WrongTypeError, match="feature 'targets' must hold integer ids, got float32"):
        model(mesh, {"targets": np.ones((2, 4), np.float32)})
    with pytest.raises(nm.ShapeError, match="exceeds the positional embedding"):
        model(mesh, {"targets": np.ones((2, 40), np.int32)})
    with pytest.raises(nm.ConfigError, match="mode 'training'"):
        model(mesh, {"targets": np.ones((2, 4), np.int32)}, mode="training")


def test_beam_search_is_refused_with_a_reason():
    config, arrays = load("bi_separate_embeddings")
    model = nm.transformer.build_model(spec_of(config), vocab_size=32)
    with pytest.raises(nm.ConfigError, match="beam_size=4"):
        model.decode(nm.Mesh(), arrays["inputs"], beam_size=4)


def test_a_fresh_model_initialises_each_moe_layer_differently():
    config, _ = load("lm_moe_1dev")
    model = nm.transformer.build_model(spec_of(config), vocab_size=32, seed=1)
    model.build()
    values = model.values()
    a = values["transformer/block_000/layer_001/MoE1D/wi/kernel"]
    b = values["transformer/block_001/layer_001/MoE1D/wi/kernel"]
    assert a.shape == b.shape and np.abs(a - b).max() > 0.1
    assert abs(a.std() - 8 ** -0.5 * 0.88) < 0.05   # truncated normal, stddev sqrt(1/d_model)
    again = nm.transformer.build_model(spec_of(config), vocab_size=32, seed=1).build().values()
    for k in values:
        np.testing.assert_array_equal(again[k], values[k])


def test_every_real_whole_model_config_builds():
    """Each real command line of tests/data/configs that ports to a whole model (mtf's
    lm_moe / bi_moe, T5 and T5.1.1, operative configs, a fork's MoE LMs) builds: every layer
    kind and sublayer is one namedmesh builds (variables are not allocated here)."""
    from test_porting_gin import COMMANDS, port
    built = 0
    for name in COMMANDS:
        config = port(name)
        if config.model is None:
            continue
        model = config.build_model(vocab_size=32128)
        assert len(model.layers()) == sum(len(u.layer_stack.layers)
                                          for u in config.model.stacks), name
        built += 1
    assert built >= 12


def test_stacks_named_alike_share_their_variables_by_name():
    """T5's bi_v1_shared names the encoder "decoder": mtf then shares every variable of the
    same name between the two stacks (get_variable by full name); so does namedmesh."""
    config, arrays = load("bi_separate_embeddings")
    spec = spec_of(config)
    spec.encoder = dataclasses.replace(spec.encoder, name="decoder")
    model = nm.transformer.build_model(spec, vocab_size=32)
    mesh = nm.Mesh()
    variables = model.build().variables()
    assert "decoder/embedding" in variables and not any(k.startswith("encoder/")
                                                        for k in variables)
    assert len(variables) < len(config["var_dims"])
    with tf.GradientTape() as tape:
        loss = nm.export_to_tf_tensor(model(mesh, {"inputs": arrays["inputs"],
                                                   "targets": arrays["targets"]},
                                            mode="train").loss)
    grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
    assert grads["decoder/block_000/layer_000/SelfAttention/q"] is not None
