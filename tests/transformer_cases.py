"""The golden whole-model cases of tests/data/models (made by mtf 0.1.21), as namedmesh models.

``spec_of(config)`` turns a case's record of mtf's constructor arguments into a ModelSpec;
``gin_spec_of(config)`` ports the case's real gin files instead (mtf's defaults.gin, lm_moe.gin
or bi_moe.gin, and the case's scale-down bindings) the way a user would.  ``run_case`` runs a
case's batch on its own mesh in train and eval mode: logits, loss, its parts, the MoE aux losses
and the gradient of the train loss with respect to every variable.
"""
import functools
import json
import os

import numpy as np
import tensorflow as tf

import namedmesh as nm
from namedmesh.transformer import spec as S

DATA = os.path.join(os.path.dirname(__file__), "data", "models")
ATOL = 2e-5   # the project's parity bar against mtf, float32
CASES = sorted(f[:-4] for f in os.listdir(DATA) if f.endswith(".npz"))
MODEL_CASES = [c for c in CASES if not c.startswith("ckpt_")]
CHECKPOINT_CASES = [c for c in CASES if c.startswith("ckpt_")]


@functools.lru_cache(maxsize=None)
def load(name):
    data = np.load(os.path.join(DATA, name + ".npz"))
    arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("config"))), arrays


def _sublayers(names, defaults):
    out = []
    for name in names:
        short = name[len("sublayer_"):]
        kwargs = dict(defaults.get(name, {}))
        out.append(S.SublayerSpec(short, kwargs))
    return out


def _unit_spec(name, uni, stack):
    layers = []
    for layer in stack["layers"]:
        kwargs = dict(layer["kwargs"])
        kwargs.update(kwargs.pop("kwargs", None) or {})   # EncDecAttention(**kwargs)
        kwargs.update(layer.get("patched_hparams") or {})
        if layer["class"] == "MoE2D" and "moe_min_expert_capacity" in kwargs:
            kwargs["min_expert_capacity"] = kwargs.pop("moe_min_expert_capacity")
            kwargs.pop("moe_z_loss", None)
            kwargs.pop("moe_word_embed_mode", None)
        config = S.LAYER_CONFIGS[layer["class"]](**kwargs)
        layers.append(S.LayerSpec(layer["class"], layer["name"], config,
                                  variable_scope="%s/%s/%s/" % (name, layer["name"],
                                                                layer["class"])))
    kw = stack["kwargs"]
    used = stack["sublayers_used"]
    defaults = stack.get("sublayer_function_defaults", {})
    legacy = kw["dropout_rate"] is not None
    st = S.LayerStackSpec(
        layers, sublayers_initial=[] if legacy else _sublayers(used["initial"], defaults),
        sublayers_per_layer=[] if legacy else _sublayers(used["per_layer"], defaults),
        sublayers_final=[] if legacy else _sublayers(used["final"], defaults),
        dropout_rate=kw["dropout_rate"], norm_epsilon=kw["norm_epsilon"],
        recompute_grads=kw["recompute_grads"], num_blocks=stack["make_layer_stack"]["num_layers"])
    fields = {f: uni[f] for f in ("d_model", "input_vocab_size", "output_vocab_size",
                                  "autoregressive", "max_length",
                                  "shared_embedding_and_softmax_weights", "label_smoothing",
                                  "z_loss", "vocab_divisor", "positional_embedding",
                                  "sinusoid_positional_embedding", "ensemble",
                                  "input_full_attention", "loss_on_targets_only",
                                  "loss_denominator", "token_dropout_rate")}
    return S.UnitransformerSpec(name, st, **fields)


def spec_of(config):
    """The ModelSpec of a golden case's recorded constructor arguments."""
    if config["model_class"] == "Unitransformer":
        uni = config["unitransformer"]
        return S.ModelSpec("Unitransformer", _unit_spec(uni["name"], uni, config["layer_stack"]),
                           model_type="lm", mesh_shape=config["mesh_shape"],
                           layout=config["layout"])
    parts = {side: _unit_spec(config[side]["unitransformer"]["name"],
                              config[side]["unitransformer"], config[side]["layer_stack"])
             for side in ("encoder", "decoder")}
    return S.ModelSpec("Bitransformer", parts["decoder"], encoder=parts["encoder"],
                       model_type="bitransformer",
                       shared_embedding=config["bitransformer"]["shared_embedding"],
                       mesh_shape=config["mesh_shape"], layout=config["layout"])


def gin_files(config):
    return [os.path.join(DATA, "gin", f) for f in config["gin"]["files"]]


def gin_spec_of(config):
    """The ModelSpec namedmesh's gin reader ports from the case's real gin files."""
    ported = nm.porting.read_gin(gin_files(config))
    assert ported.model is not None, ported.reports
    return ported


def model_of(name, from_gin=False):
    config, arrays = load(name)
    vocab = config["data"]["vocab_size"]
    if from_gin:
        model = gin_spec_of(config).build_model(vocab_size=vocab)
    else:
        model = nm.transformer.build_model(spec_of(config), vocab_size=vocab)
    model.load_variables({k[4:]: v for k, v in arrays.items() if k.startswith("var/")})
    return model


def features_of(config, arrays):
    keys = (("targets", "sequence_id", "position") if config["model_class"] == "Unitransformer"
            else ("inputs", "targets", "encoder_sequence_id", "decoder_sequence_id",
                  "encoder_position", "decoder_position"))
    return {k: arrays[k] for k in keys if k in arrays}


def batch_names(config):
    return [n for n, _ in config["data"]["batch_dims"]]


def mesh_of(config, strategy=None):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nm.LayoutWarning)
        return nm.Mesh(config["mesh_shape"], config["layout"], strategy=strategy)


def _run(model, mesh, features, names, mode, seed=None):
    variables = model.variables()
    with tf.GradientTape() as tape:
        out = model(mesh, features, mode=mode, batch_dims=names, loss_parts=True, seed=seed)
        loss = nm.export_to_tf_tensor(out.loss)
    grads = tape.gradient(loss, list(variables.values())) if mode == "train" else None
    result = {"logits": nm.export_to_tf_tensor(out.logits), "loss": loss,
              "cross_entropy": nm.export_to_tf_tensor(out.cross_entropy),
              "z_loss": nm.export_to_tf_tensor(out.z_loss),
              "moe_loss": {k: nm.export_to_tf_tensor(v) for k, v in out.moe_losses.items()}}
    if grads is not None:   # an embedding's gradient may come as IndexedSlices
        result["grad"] = {k: tf.convert_to_tensor(g) for k, g in zip(variables, grads)}
    return result


def run_case(name, executor="placement", from_gin=False):
    """{mode: {"logits", "loss", "cross_entropy", "z_loss", "moe_loss": {scope: v},
    "grad": {name: g} (train)}} of a golden case on its own mesh, as NumPy."""
    config, arrays = load(name)
    model = model_of(name, from_gin=from_gin)
    features, names = features_of(config, arrays), batch_names(config)
    out = {}
    if executor == "placement":
        mesh = mesh_of(config)
        model.build(mesh, names)
        for mode in config["modes"]:
            out[mode] = tf.nest.map_structure(lambda t: t.numpy(),
                                              _run(model, mesh, features, names, mode))
        return out
    from helpers import strategy
    mesh = mesh_of(config, strategy(config["devices"]))
    model.build(mesh, names)
    n = config["devices"]
    tf_features = {k: tf.constant(v) for k, v in features.items()}
    for mode in config["modes"]:
        def replica(feats, mode=mode):
            r = _run(model, mesh, feats, names, mode, seed=tf.constant(0, tf.int64))
            grads = r.pop("grad", None)   # per-replica gradients sum to the program's
            r = tf.nest.map_structure(lambda t: t / n, r)
            if grads is not None:
                r["grad"] = grads
            return r
        out[mode] = tf.nest.map_structure(lambda t: t.numpy(),
                                          mesh.run(replica, tf_features, reduce="sum"))
    return out
