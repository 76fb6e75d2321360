"""The golden whole-model cases made by mtf 0.1.21 (tests/data/models, see its README).

They are well-formed, and consistent with a NumPy re-derivation of what mtf computes where that is
cheap: the embedding (with positional embedding), the first self-attention layer (causal and
segment masks, T5 relative position buckets), the last DenseReluDense and the final norm, the
softmax (shared with the embedding, scaled by d_model^-0.5, or a separate kernel), and how the
cross-entropy and z-loss are weighted and normalised.  The layer-by-layer parity of a whole model
belongs to the tests of the model itself.
"""
import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

DATA = os.path.join(os.path.dirname(__file__), "data", "models")
CASES = sorted(f[:-4] for f in os.listdir(DATA) if f.endswith(".npz"))
MODEL_CASES = [c for c in CASES if not c.startswith("ckpt_")]
CHECKPOINT_CASES = [c for c in CASES if c.startswith("ckpt_")]
MODES = ("train", "eval")
ATOL = 1e-5  # NumPy (float64) against mtf (float32) on values of size ~1


@functools.lru_cache(maxsize=None)
def load(name):
    data = np.load(os.path.join(DATA, name + ".npz"))
    arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("config"))), arrays


def models_of(config):
    """(model name, Unitransformer kwargs, LayerStack record) of the LM or of encoder, decoder."""
    if config["model_class"] == "Unitransformer":
        return [("transformer", config["unitransformer"], config["layer_stack"])]
    return [(side, config[side]["unitransformer"], config[side]["layer_stack"])
            for side in ("encoder", "decoder")]


def embedding_name(config, model):
    if config["model_class"] == "Bitransformer" and config["bitransformer"]["shared_embedding"]:
        return "shared/embedding"
    return model + "/embedding"


def positional_embedding_name(config, model):
    if config["model_class"] == "Bitransformer" and config["bitransformer"]["shared_embedding"]:
        enc, dec = (config[s]["unitransformer"] for s in ("encoder", "decoder"))
        if (enc["positional_embedding"] and dec["positional_embedding"]
                and enc["max_length"] == dec["max_length"]):
            return "shared/positional_embedding"
    return model + "/positional_embedding"


def stream(config, arrays, model):
    """The ids a model reads, the positions it embeds and the segment ids that mask it."""
    if model == "transformer":
        ids, position, segments = arrays["inputs"], arrays.get("position"), arrays.get(
            "sequence_id")
    elif model == "encoder":  # Bitransformer makes up sequence ids from the padding
        ids, position = arrays["inputs"], arrays.get("encoder_position")
        segments = arrays.get("encoder_sequence_id", np.minimum(arrays["inputs"], 1))
    else:
        ids, position = arrays["decoder_inputs"], arrays.get("decoder_position")
        segments = arrays.get("decoder_sequence_id", np.minimum(arrays["targets"], 1))
    if position is None:
        position = np.broadcast_to(np.arange(ids.shape[-1]), ids.shape)
    return ids, position, segments


def layer_outputs(arrays, mode, model):
    prefix = "%s/layer_outputs/%s/" % (mode, model)
    keys = sorted(k for k in arrays if k.startswith(prefix))
    return [arrays[k].astype(np.float64) for k in keys]


def norm_names(stack):
    legacy = stack["kwargs"]["dropout_rate"] is not None
    return ("layer_norm", "final_layer_norm") if legacy else ("rms_norm", "rms_norm")


def rms_norm(x, scale):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance=128):
    """T5's buckets as mtf computes them (log in float32, truncated to int)."""
    n = -relative_position
    ret = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact)) /
                  np.float32(np.log(max_distance / max_exact)) *
                  np.float32(num_buckets - max_exact))
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int32)
    return ret + np.where(n < max_exact, n, np.minimum(large, num_buckets - 1))


def self_attention(x, v, scope, kwargs, autoregressive, segments, position):
    """mtf's SelfAttention with combine_dims: q/k/v kernels [d_model, heads*d_kv] (heads major)."""
    heads, d_kv = kwargs["num_heads"], kwargs["key_value_size"]
    lead, length = x.shape[:-2], x.shape[-2]

    def split(w):
        return (x @ v[scope + w]).reshape(lead + (length, heads, d_kv))
    q, k, val = split("q"), split("k"), split("v")
    logits = np.einsum("...qhd,...mhd->...hqm", q, k)  # no 1/sqrt(d_kv): folded into q's init
    index = np.arange(length)
    if autoregressive:  # read_priority >= write_priority, both the index in the tensor
        logits += np.where(index[:, None] >= index[None, :], 0.0, -1e9)
    if segments is not None:
        same = segments[..., :, None] == segments[..., None, :]
        logits += np.where(same, 0.0, -1e9)[..., None, :, :]
    if kwargs["relative_attention_type"] is not None:
        rp = position[..., None, :] - position[..., :, None]  # memory - query
        bucket = relative_position_bucket(rp, not autoregressive,
                                          kwargs["relative_attention_num_buckets"])
        bias = v[_relative_bias_name(v, scope)]  # [heads, buckets]
        logits += np.moveaxis(bias[:, bucket], 0, -3)
    logits -= logits.max(-1, keepdims=True)
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    o = np.einsum("...hqm,...mhd->...qhd", weights, val).reshape(lead + (length, heads * d_kv))
    return o @ v[scope + "o"]


def _relative_bias_name(v, scope):
    """bias_shared: one variable per stack, created by its first self-attention layer."""
    model = scope.split("/")[0]
    (name,) = [k for k in v if k.startswith(model + "/") and k.endswith(
        "SelfAttention/relative_attention_bias")]
    return name


def gelu(x):  # mtf.gelu: the tanh approximation
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def dense_relu_dense(x, v, scope, kwargs):
    activations = kwargs["activation"]
    if not isinstance(activations, list):
        activations = [activations]
    h = 1.0
    for i, act in enumerate(activations):
        name = scope + ("wi_%d" % i if len(activations) > 1 else "wi")
        y = x @ v[name + "/kernel"] + (v[name + "/bias"] if kwargs["use_bias"] else 0.0)
        h = h * {"relu": lambda t: np.maximum(t, 0), "gelu": gelu, "linear": lambda t: t}[act](y)
    return h @ v[scope + "wo/kernel"] + (v[scope + "wo/bias"] if kwargs["use_bias"] else 0.0)


def variables(arrays):
    return {k[4:]: v.astype(np.float64) for k, v in arrays.items() if k.startswith("var/")}


# -- well-formed ------------------------------------------------------------------------------
def test_the_cases_are_there():
    assert len(MODEL_CASES) >= 10 and CHECKPOINT_CASES == ["ckpt_bi_moe", "ckpt_lm_moe"]


@pytest.mark.parametrize("name", MODEL_CASES)
def test_every_variable_has_its_value_dims_and_gradient(name):
    config, arrays = load(name)
    var_dims = config["var_dims"]
    assert sorted(var_dims) == sorted(config["variable_order"])
    for var, dims in var_dims.items():
        shape = tuple(size for _, size in dims)
        assert arrays["var/" + var].shape == shape, var
        assert arrays["train/grad/" + var].shape == shape, var
        assert np.isfinite(arrays["train/grad/" + var]).all(), var
    assert sorted(k[11:] for k in arrays if k.startswith("train/grad/")) == sorted(var_dims)
    for mode in MODES:
        assert arrays[mode + "/logits"].shape == tuple(s for _, s in config["logits_dims"])


@pytest.mark.parametrize("name", MODEL_CASES)
def test_the_loss_is_the_sum_of_its_parts(name):
    config, arrays = load(name)
    scopes = config["moe_loss_scopes"]
    moe_layers = [layer for _, _, stack in models_of(config) for layer in stack["layers"]
                  if layer["class"] in ("MoE1D", "MoE2D")]
    assert len(scopes) == len(moe_layers)
    for mode in MODES:
        moe = [float(arrays["%s/moe_loss/%s" % (mode, s)]) for s in scopes]
        assert all(m > 0 for m in moe)
        total = arrays[mode + "/cross_entropy"] + arrays[mode + "/z_loss"] + sum(moe)
        np.testing.assert_allclose(arrays[mode + "/loss"], total, atol=1e-6, rtol=0)
    assert abs(float(arrays["eval/z_loss"])) < 1e-6  # the z-loss is a training loss only


@pytest.mark.parametrize("name", MODEL_CASES)
def test_autoregressive_inputs_are_the_targets_shifted_right_within_a_sequence(name):
    config, arrays = load(name)
    key, segments_key = (("inputs", "sequence_id") if config["model_class"] == "Unitransformer"
                         else ("decoder_inputs", "decoder_sequence_id"))
    targets = arrays["targets"]
    expected = np.concatenate([np.zeros_like(targets[..., :1]), targets[..., :-1]], -1)
    segments = arrays.get(segments_key, np.minimum(targets, 1))
    first = segments != np.concatenate([np.zeros_like(segments[..., :1]), segments[..., :-1]], -1)
    if config["model_class"] == "Unitransformer" and "sequence_id" not in arrays:
        first = np.zeros_like(first)  # without sequence ids only the very first input is 0
    np.testing.assert_array_equal(arrays[key], np.where(first, 0, expected))


@pytest.mark.parametrize("name", [c for c in MODEL_CASES if load(c)[0]["gin"]])
def test_the_gin_files_of_a_case_are_committed(name):
    config, _ = load(name)
    for path in config["gin"]["files"]:
        assert os.path.isfile(os.path.join(DATA, "gin", path)), path


@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_a_checkpoint_holds_every_variable_plus_mtf_training_state(name):
    config, arrays = load(name)
    prefix = os.path.join(DATA, config["checkpoint"]["prefix"])
    stored = dict(tf.train.list_variables(prefix))
    for var, dims in config["var_dims"].items():
        assert tuple(stored.pop(var)) == tuple(size for _, size in dims), var
    assert stored.pop("global_step") == []
    assert stored and all("_slot_" in k for k in stored)  # Adafactor's accumulators
    prompts, tokens = arrays["decode/prompts"], arrays["decode/tokens"]
    assert tokens.shape == prompts.shape[:-1] + tokens.shape[-1:]
    if config["model_class"] == "Unitransformer":  # the prompts are continued, never rewritten
        np.testing.assert_array_equal(np.where(prompts > 0, tokens, 0), prompts)


# -- consistent with NumPy --------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_CASES)
def test_embedding_plus_positional_embedding_is_the_first_layer_output(name):
    config, arrays = load(name)
    v = variables(arrays)
    for model, uni, _ in models_of(config):
        ids, position, _ = stream(config, arrays, model)
        expected = v[embedding_name(config, model)][ids]  # padding (id 0) reads row 0
        if uni["positional_embedding"]:
            expected = expected + v[positional_embedding_name(config, model)][position]
        for mode in MODES:
            np.testing.assert_allclose(layer_outputs(arrays, mode, model)[0], expected,
                                       atol=ATOL, rtol=0, err_msg="%s %s" % (model, mode))


@pytest.mark.parametrize("name", MODEL_CASES)
def test_the_first_self_attention_layer(name):
    """rms_norm -> mask padding -> SelfAttention -> residual, from the first layer's input."""
    config, arrays = load(name)
    v = variables(arrays)
    for model, uni, stack in models_of(config):
        first = stack["layers"][0]
        assert first["class"] == "SelfAttention"
        scope = "%s/%s/" % (model, first["name"])
        _, position, segments = stream(config, arrays, model)
        if not uni["positional_embedding"]:  # call_simple drops given positions then
            position = np.broadcast_to(np.arange(position.shape[-1]), position.shape)
        for mode in MODES:
            outputs = layer_outputs(arrays, mode, model)
            x = outputs[0]
            h = rms_norm(x, v[scope + norm_names(stack)[0] + "/scale"])
            if segments is not None:
                h = h * (segments != 0)[..., None]
            y = x + self_attention(h, v, scope + "SelfAttention/", first["kwargs"],
                                   uni["autoregressive"], segments, position)
            np.testing.assert_allclose(outputs[1], y, atol=ATOL, rtol=0,
                                       err_msg="%s %s" % (model, mode))


@pytest.mark.parametrize("name", MODEL_CASES)
def test_the_last_dense_relu_dense_and_the_final_norm(name):
    """The stack's last layer (a DenseReluDense in every case), final rms_norm, padding mask."""
    config, arrays = load(name)
    v = variables(arrays)
    for model, _, stack in models_of(config):
        last = stack["layers"][-1]
        assert last["class"] == "DenseReluDense"
        scope = "%s/%s/" % (model, last["name"])
        layer_norm, final_norm = norm_names(stack)
        _, _, segments = stream(config, arrays, model)
        mask = 1.0 if segments is None else (segments != 0)[..., None]
        for mode in MODES:
            outputs = layer_outputs(arrays, mode, model)
            x = outputs[-2]  # the output of the layer before the last
            h = rms_norm(x, v[scope + layer_norm + "/scale"]) * mask
            y = x + dense_relu_dense(h, v, scope + "DenseReluDense/", last["kwargs"])
            final = rms_norm(y, v["%s/%s/scale" % (model, final_norm)]) * mask
            np.testing.assert_allclose(outputs[-1], final, atol=ATOL, rtol=0,
                                       err_msg="%s %s" % (model, mode))


@pytest.mark.parametrize("name", MODEL_CASES)
def test_logits_from_the_final_layer_output(name):
    config, arrays = load(name)
    v = variables(arrays)
    model, uni, _ = models_of(config)[-1]
    for mode in MODES:
        final = layer_outputs(arrays, mode, model)[-1]
        if uni["shared_embedding_and_softmax_weights"]:
            logits = (final * uni["d_model"] ** -0.5) @ v[embedding_name(config, model)].T
        else:
            logits = final @ v[model + "/logits/kernel"]
        np.testing.assert_allclose(arrays[mode + "/logits"], logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", MODEL_CASES)
def test_cross_entropy_and_z_loss_from_the_logits(name):
    """Over the whole (padded) vocab; weights targets > 0; divided by the number of targets."""
    config, arrays = load(name)
    _, uni, _ = models_of(config)[-1]
    targets = arrays["targets"]
    weights = (targets > 0).astype(np.float64)
    assert config["loss_denominator"] == targets.size
    for mode in MODES:
        logits = arrays[mode + "/logits"].astype(np.float64)
        top = logits.max(-1, keepdims=True)
        log_z = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
        cross_entropy = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
        np.testing.assert_allclose(arrays[mode + "/cross_entropy"],
                                   (cross_entropy * weights).sum() / targets.size, atol=ATOL)
        z_loss = uni["z_loss"] * (log_z ** 2 * weights).sum() / targets.size
        np.testing.assert_allclose(arrays[mode + "/z_loss"], z_loss if mode == "train" else 0.0,
                                   atol=ATOL)
