"""Read tensor2tensor's mesh-tensorflow hparams as the t2t model that reads them.

Input: a tensor2tensor ``HParams`` object, its ``to_json()`` dump, a ``.values()``
dict, or a JSON file of either.  The model is t2t's ``--model``
(``mtf_transformer``, ``mtf_unitransformer``, ``mtf_bitransformer``), given or
recognised from the keys its base hparams add (``feedforward_layer`` /
``transformer_type``; ``layers``; ``encoder_num_heads``).  What each model's code
does with the layer lists decides the layer kinds, never the type of one value:

* ``mtf_transformer`` (``tensor2tensor/models/mtf_transformer.py``):
  ``encoder_layers`` / ``decoder_layers`` (times ``*_replicate_factor``) of
  ``att``, ``enc_att``, ``local_att``, ``compressed_att``, ``drd``, ``none``,
  ``moe`` and ``hmoe``; ``moe`` is ``transformer_moe_layer_v1`` and ``hmoe``
  ``transformer_moe_layer_v2`` of t2t's own ``models/research/moe.py``, which
  read the ``moe_*`` hparams (``hmoe`` takes ``moe_num_experts = [x, y]``);
  ``transformer_type`` says which stacks exist (``decoder``: a language model);
* ``mtf_unitransformer`` / ``mtf_bitransformer``
  (``tensor2tensor/models/mtf_transformer2.py``): ``layers`` or
  ``encoder_layers`` / ``decoder_layers`` of ``self_att``, ``local_self_att``,
  ``enc_att``, ``drd``, ``moe_1d`` and ``moe_2d``; ``moe_1d`` is mtf's
  ``MoE1D(num_experts=moe_num_experts, hidden_size=moe_hidden_size)`` and
  ``moe_2d`` mtf's ``MoE2D(expert_x=moe_expert_x, expert_y=moe_expert_y,
  hidden_size=moe_hidden_size)``: every other keyword is the class default.

Keys the model does not read (``moe_k`` and ``moe_hidden_sizes``, inherited from
``basic_params1`` for t2t's non-mtf MoE; learning-rate and data settings) are
reported, not fatal.  A dict of ``moe_*`` hparams without a layer list is one MoE
layer (mtf's ``transformer_moe_layer_v1`` / ``_v2`` hparams), as before.
"""

import json
from typing import Any, Dict, List, Optional, Tuple, Union

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.moe.config import HPARAMS_V1, HPARAMS_V2, MoE1DConfig, MoE2DConfig
from namedmesh.porting.files import read_text_file
from namedmesh.porting.ported import (Ignored, PortedConfig, PortedLayer, ReadValue, Source)
from namedmesh.transformer.spec import (DenseReluDenseConfig, EncDecAttentionConfig,
                                        LayerSpec, LayerStackSpec, LEGACY_SUBLAYERS,
                                        LocalSelfAttentionConfig, ModelSpec,
                                        SelfAttentionConfig, UnitransformerSpec)

_MESH_KEYS = {"mesh_shape": "mesh_shape", "layout": "layout", "layout_rules": "layout"}
T2T_MODELS = ("mtf_transformer", "mtf_unitransformer", "mtf_bitransformer")
_MISSING = object()
UNUSED_MOE = {
    "moe_k": "basic_params1's key for t2t's non-mtf MoE (expert_utils); no mtf model reads it",
    "moe_hidden_sizes": "basic_params1's key for t2t's non-mtf MoE (expert_utils); no mtf "
                        "model reads it",
}


def _line_of(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if '"%s"' % key in line:
            return i
    return 0


def load_hparams(source) -> Tuple[Dict[str, Any], str, str]:
    """``(values, path, text)`` of an HParams object, a dict or a JSON file."""
    if isinstance(source, dict):
        return dict(source), "<hparams>", ""
    if hasattr(source, "values") and callable(source.values) and not isinstance(source, str):
        return dict(source.values()), "<%s>" % type(source).__name__, ""
    if hasattr(source, "to_json") and callable(source.to_json):
        text = source.to_json()
        return json.loads(text), "<%s.to_json()>" % type(source).__name__, text
    if not isinstance(source, str):
        raise ConfigError("hparams: expected an HParams object, a dict or a JSON file path, "
                          "got %s" % type(source).__name__)
    text = read_text_file(source, "hparams file")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("%s:%d: not valid JSON: %s" % (source, e.lineno, e.msg)) from None
    if not isinstance(values, dict):
        raise ConfigError("%s: expected a JSON object of hparams, got %s"
                          % (source, type(values).__name__))
    return values, source, text


class _Reader:
    """The hparams as the model's code reads them: every read is recorded with its source."""

    def __init__(self, values, path, text, ported: PortedConfig, model: str,
                 overridden=()):
        self.values, self.path, self.text = values, path, text
        self.ported, self.model = ported, model
        self.overridden = set(overridden)
        self.read: Dict[str, List[str]] = {}

    def source(self, key) -> Source:
        if key in self.overridden:
            return Source("--hparams", 0, key)
        return Source(self.path, _line_of(self.text, key), key)

    def get(self, key, default=_MISSING, who: str = "", kind=None):
        """``hparams.<key>`` as the model reads it (``default``: ``hparams.get(key, d)``)."""
        if key not in self.values:
            if default is _MISSING:
                raise ConfigError("%s: no hparam %r: tensor2tensor's %s reads hparams.%s%s"
                                  % (self.path, key, self.model, key,
                                     " (for %s)" % who if who else ""))
            self.ported.values.append(ReadValue(key, default, None,
                                                "%s's hparams.get default" % self.model))
            return default
        value = self.values[key]
        if kind is not None and (isinstance(value, bool) and kind is not bool or
                                 not isinstance(value, kind)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__
                                                                          for k in kind)
            raise ConfigError("%s: hparams.%s = %r: expected %s%s"
                              % (self.source(key), key, value, names,
                                 " (read for %s)" % who if who else ""))
        self.read.setdefault(key, []).append(who or self.model)
        self.ported.values.append(ReadValue(key, value, self.source(key)))
        return value


def _typed(config_cls, kwargs: Dict[str, Any], reader: _Reader, keys: Dict[str, str], who):
    try:
        return config_cls(**kwargs)
    except NamedMeshError as e:
        for field_name, hparam in keys.items():
            try:
                config_cls(**{field_name: kwargs[field_name]})
            except NamedMeshError as e1:
                raise ConfigError("%s: %s (read for %s)" % (reader.source(hparam), e1,
                                                              who)) from None
        raise ConfigError("%s: %s (in %s)" % (reader.path, e, who)) from None


def _t2t_moe(reader: _Reader, kind: str, who: str):
    """t2t's research/moe.py layers: v1 (``moe``) and v2 (``hmoe``) read these hparams."""
    g = lambda key, k=None: reader.get(key, who=who, kind=k)  # noqa: E731
    num = (int, float)
    kwargs = {"hidden_size": g("moe_hidden_size", int), "group_size": g("moe_group_size", int),
              "capacity_factor_train": g("moe_capacity_factor_train", num),
              "capacity_factor_eval": g("moe_capacity_factor_eval", num),
              "loss_coef": g("moe_loss_coef", num),
              "use_second_place_loss": bool(g("moe_use_second_place_loss", (int, bool))),
              "second_policy_train": g("moe_second_policy_train", str),
              "second_policy_eval": g("moe_second_policy_eval", str),
              "second_threshold_train": g("moe_second_threshold_train", num),
              "second_threshold_eval": g("moe_second_threshold_eval", num)}
    keys = {"hidden_size": "moe_hidden_size", "group_size": "moe_group_size",
            "capacity_factor_train": "moe_capacity_factor_train",
            "capacity_factor_eval": "moe_capacity_factor_eval", "loss_coef": "moe_loss_coef",
            "second_policy_train": "moe_second_policy_train",
            "second_policy_eval": "moe_second_policy_eval",
            "second_threshold_train": "moe_second_threshold_train",
            "second_threshold_eval": "moe_second_threshold_eval"}
    gating = g("moe_gating", str)
    if gating != "top_2":
        raise ConfigError("%s: hparams.moe_gating = %r: tensor2tensor's research/moe.py "
                          "supports only 'top_2'" % (reader.source("moe_gating"), gating))
    experts = g("moe_num_experts")
    if kind == "MoE1D":
        if isinstance(experts, bool) or not isinstance(experts, int):
            raise ConfigError("%s: hparams.moe_num_experts = %r: the 'moe' layer "
                              "(transformer_moe_layer_v1) needs one expert count"
                              % (reader.source("moe_num_experts"), experts))
        kwargs.update(num_experts=experts, min_expert_capacity=1)
        keys["num_experts"] = "moe_num_experts"
        reader.ported.values.append(ReadValue(
            who + " MoE1D.min_expert_capacity", 1, None,
            "t2t research/moe.py v1 has no minimum expert capacity"))
        return _typed(MoE1DConfig, kwargs, reader, keys, who), kwargs
    if not (isinstance(experts, (list, tuple)) and len(experts) == 2):
        raise ConfigError("%s: hparams.moe_num_experts = %r: the 'hmoe' layer "
                          "(transformer_moe_layer_v2) needs two expert counts [x, y]"
                          % (reader.source("moe_num_experts"), experts))
    kwargs.update(expert_x=experts[0], expert_y=experts[1], min_expert_capacity=4,
                  capacity_factor_second_level=g("moe_capacity_factor_second_level", num))
    keys.update(expert_x="moe_num_experts", expert_y="moe_num_experts",
                capacity_factor_second_level="moe_capacity_factor_second_level")
    reader.ported.values.append(ReadValue(
        who + " MoE2D.min_expert_capacity", 4, None,
        "t2t research/moe.py v2 hard-codes a minimum expert capacity of 4"))
    return _typed(MoE2DConfig, kwargs, reader, keys, who), kwargs


def _mtf_transformer_stacks(reader: _Reader):
    """t2t ``mtf_transformer``: ``(stack name, layer names, [LayerSpec])`` per stack."""
    g = lambda key, k=None, who="": reader.get(key, who=who, kind=k)  # noqa: E731
    ttype = g("transformer_type", str)
    if ttype not in ("encdec", "decoder", "encoder"):
        raise ConfigError("%s: hparams.transformer_type = %r: expected 'encdec', 'decoder' or "
                          "'encoder'" % (reader.source("transformer_type"), ttype))
    names = []
    if ttype in ("encdec", "encoder"):
        names.append(("encoder", g("encoder_layers", list) *
                      g("encoder_replicate_factor", int)))
    if ttype in ("encdec", "decoder"):
        names.append(("decoder", g("decoder_layers", list) *
                      g("decoder_replicate_factor", int)))
    known = ("att", "enc_att", "local_att", "compressed_att", "drd", "none", "moe", "hmoe")
    out = []
    for stack, layer_names in names:
        specs = []
        for lnum, name in enumerate(layer_names):
            who = "%s/%s_%d" % (stack, name, lnum)
            scope = "%s_%d" % (name, lnum)
            vscope = "transformer/%s/%s/" % (stack, scope)
            if name not in known:
                raise ConfigError("%s: %s_layers[%d] = %r: tensor2tensor's mtf_transformer knows "
                                  "%s (it raises 'layer_type not recognized')"
                                  % (reader.source(stack + "_layers"), stack, lnum, name,
                                     ", ".join(known)))
            impl = "tensor2tensor.models.mtf_transformer"
            if name in ("att", "enc_att"):
                cls = SelfAttentionConfig if name == "att" else EncDecAttentionConfig
                config = cls(num_heads=g("num_heads", int, who), key_value_size=g("d_kv", int, who),
                             dropout_rate=g("attention_dropout", (int, float), who))
                kind = "SelfAttention" if name == "att" else "EncDecAttention"
            elif name == "local_att":
                config = LocalSelfAttentionConfig(
                    num_heads=g("num_heads", int, who), key_value_size=g("d_kv", int, who),
                    radius=g("local_attention_window_size", int, who))
                kind = "LocalSelfAttention"
            elif name == "drd":
                config = DenseReluDenseConfig(hidden_size=g("d_ff", int, who),
                                              dropout_rate=g("relu_dropout", (int, float), who))
                kind = "DenseReluDense"
            elif name in ("moe", "hmoe"):
                kind = "MoE1D" if name == "moe" else "MoE2D"
                config, passed = _t2t_moe(reader, kind, who)
                impl = "tensor2tensor.models.research.moe.transformer_moe_layer_v%d" % (
                    1 if name == "moe" else 2)
            else:
                kind = {"compressed_att": "MemoryCompressedSelfAttention",
                        "none": "ResidualNorm"}[name]
                config = None
                raw = {"num_heads": g("num_heads", int, who), "d_kv": g("d_kv", int, who),
                       "compression_factor": g("compression_factor", int, who),
                       "dropout_rate": g("attention_dropout", (int, float), who)} \
                    if name == "compressed_att" else {}
                specs.append(LayerSpec(kind, scope, None, raw, vscope, impl, name))
                continue
            specs.append(LayerSpec(kind, scope, config, passed if kind.startswith("MoE") else {},
                                   vscope, impl, name))
        out.append((stack, specs))
    return out


def _mtf_transformer2_stacks(reader: _Reader, model: str):
    """t2t ``mtf_unitransformer`` / ``mtf_bitransformer``: the registered mtf layers."""
    g = lambda key, k=None, who="": reader.get(key, who=who, kind=k)  # noqa: E731
    prefixes = [("", "transformer")] if model == "mtf_unitransformer" else [
        ("encoder_", "encoder"), ("decoder_", "decoder")]
    known = ("self_att", "local_self_att", "enc_att", "drd", "moe_1d", "moe_2d")
    out = []
    for prefix, stack in prefixes:
        specs = []
        for lnum, name in enumerate(g(prefix + "layers", list)):
            who = "%s/%s[%d]" % (stack, name, lnum)
            if name not in known:
                raise ConfigError("%s: %slayers[%d] = %r: tensor2tensor's %s registers the mtf "
                                  "layers %s (a KeyError in its layer registry)"
                                  % (reader.source(prefix + "layers"), prefix, lnum, name, model,
                                     ", ".join(known)))
            if name in ("self_att", "local_self_att", "enc_att"):
                kwargs = dict(num_heads=reader.get(prefix + "num_heads", None, who),
                              num_memory_heads=reader.get(prefix + "num_memory_heads", None, who),
                              key_value_size=g("d_kv", int, who),
                              shared_kv=reader.get(prefix + "shared_kv", False, who),
                              attention_kwargs={
                                  "dropout_rate": g("attention_dropout", (int, float), who),
                                  "extra_logit": 0.0 if g("extra_logit", None, who) else None})
                if kwargs["num_heads"] is None or kwargs["num_memory_heads"] is None:
                    key = prefix + ("num_heads" if kwargs["num_heads"] is None
                                    else "num_memory_heads")
                    raise ConfigError("%s: hparams.%s is not held by these hparams: %s's %s layer "
                                      "would get None" % (reader.path, key, model, name))
                if name == "local_self_att":
                    kwargs["radius"] = g("local_attention_radius", int, who)
                cls, kind = {"self_att": (SelfAttentionConfig, "SelfAttention"),
                             "local_self_att": (LocalSelfAttentionConfig, "LocalSelfAttention"),
                             "enc_att": (EncDecAttentionConfig, "EncDecAttention")}[name]
                config = cls(**kwargs)
            elif name == "drd":
                kind, config = "DenseReluDense", DenseReluDenseConfig(
                    hidden_size=g("d_ff", int, who), dropout_rate=g("relu_dropout", None, who))
            elif name == "moe_1d":
                kind = "MoE1D"
                config = _typed(MoE1DConfig, {"num_experts": g("moe_num_experts", int, who),
                                              "hidden_size": g("moe_hidden_size", int, who)},
                                reader, {"num_experts": "moe_num_experts",
                                         "hidden_size": "moe_hidden_size"}, who)
            else:
                kind = "MoE2D"
                config = _typed(MoE2DConfig, {"expert_x": g("moe_expert_x", int, who),
                                              "expert_y": g("moe_expert_y", int, who),
                                              "hidden_size": g("moe_hidden_size", int, who)},
                                reader, {"expert_x": "moe_expert_x", "expert_y": "moe_expert_y",
                                         "hidden_size": "moe_hidden_size"}, who)
            passed = {}
            if kind in ("MoE1D", "MoE2D"):
                set_here = {"MoE1D": ("num_experts", "hidden_size"),
                            "MoE2D": ("expert_x", "expert_y", "hidden_size")}[kind]
                passed = {k: getattr(config, k) for k in set_here}
                for key, value in config.to_kwargs().items():
                    if key not in set_here:
                        reader.ported.values.append(ReadValue(
                            "%s %s.%s" % (who, kind, key), value, None,
                            "mtf 0.1.21 %s default (mtf_transformer2 passes only %s)"
                            % (kind, ", ".join(set_here))))
            # mtf 0.1.21's LayerStack scopes an unnamed layer as "" + its class name
            specs.append(LayerSpec(kind, "", config, passed, "%s//%s/" % (stack, kind),
                                   "mesh_tensorflow.transformer.%s.%s" % (
                                       "moe" if kind.startswith("MoE") else "transformer_layers",
                                       kind), name))
        out.append((stack, specs))
    return out


def _infer_model(values: Dict[str, Any], path: str) -> Tuple[str, str]:
    if "feedforward_layer" in values or "transformer_type" in values:
        return "mtf_transformer", "its keys feedforward_layer / transformer_type (mtf_transformer_base)"
    if "layers" in values:
        return "mtf_unitransformer", "its key 'layers' (mtf_unitransformer_base)"
    if "encoder_num_heads" in values or "encoder_layers" in values:
        return "mtf_bitransformer", "its keys encoder_layers / encoder_num_heads " \
                                    "(mtf_bitransformer_base)"
    raise ConfigError("%s: cannot tell which tensor2tensor model reads these hparams (no "
                      "layers, encoder_layers or transformer_type); pass the model (%s)"
                      % (path, ", ".join(T2T_MODELS)))


def _read_model(values, path, text, model: Optional[str], overrides=None) -> PortedConfig:
    ported = PortedConfig(path=path, layers=[], source_format="t2t hparams")
    if overrides:
        unknown = [k for k in overrides if k not in values]
        if unknown:
            raise ConfigError("--hparams: %s holds no hparam %s (tensor2tensor's HParams.parse "
                              "rejects unknown names)" % (path, ", ".join(map(repr, unknown))))
        values = dict(values, **overrides)
        ported.path = "%s --hparams=%s" % (path, ",".join("%s=%r" % kv
                                                          for kv in overrides.items()))
    if model is None:
        model, why = _infer_model(values, path)
        ported.reports.append("t2t model: %s, recognised from %s" % (model, why))
    elif model not in T2T_MODELS:
        raise ConfigError("t2t model %r: expected one of %s" % (model, ", ".join(T2T_MODELS)))
    reader = _Reader(values, path, text, ported, model, overrides or ())
    g = lambda key, k=None: reader.get(key, kind=k)  # noqa: E731
    if model == "mtf_transformer":
        stacks = _mtf_transformer_stacks(reader)
        ttype = g("transformer_type")
    else:
        stacks = _mtf_transformer2_stacks(reader, model)
        ttype = "decoder" if model == "mtf_unitransformer" else "encdec"
    legacy = (g("layer_prepostprocess_dropout", (int, float)), g("norm_epsilon", (int, float)))
    d_model, max_length = g("d_model", int), g("max_length", int)
    units = {}
    for name, specs in stacks:
        stack = LayerStackSpec(specs, *[list(s) for s in LEGACY_SUBLAYERS],
                               dropout_rate=legacy[0], norm_epsilon=legacy[1])
        decoder_like = name != "encoder" or ttype == "encoder"
        kwargs = dict(d_model=d_model, max_length=max_length, vocab_divisor=g("vocab_divisor",
                                                                                int))
        if decoder_like:
            kwargs["shared_embedding_and_softmax_weights"] = bool(
                g("shared_embedding_and_softmax_weights"))
            kwargs["label_smoothing"] = g("label_smoothing", (int, float))
        if model != "mtf_transformer" and decoder_like:
            kwargs["z_loss"] = g("z_loss", (int, float))
        elif model == "mtf_transformer":
            kwargs["z_loss"] = None
        autoregressive = (bool(g("autoregressive")) if model == "mtf_unitransformer"
                          else name == "decoder")
        units[name] = UnitransformerSpec(name=name, layer_stack=stack,
                                         autoregressive=autoregressive, **kwargs)
    if model == "mtf_transformer" and ttype == "encoder":
        spec = ModelSpec("Unitransformer", units["encoder"], None, model)
    elif "encoder" in units:
        spec = ModelSpec("Bitransformer", units["decoder"], units["encoder"], model,
                         bool(g("shared_embedding")))
    else:
        spec = ModelSpec("Unitransformer", units.get("decoder", units.get("transformer")),
                         None, model)
    for key in ("mesh_shape", "layout"):
        value = g(key, str)
        setattr(ported, key, value)
        ported.sources[key] = reader.source(key)
    batch, outer = g("batch_size", int), g("outer_batch_size", int)
    if outer:
        if batch % outer:
            raise ConfigError("%s: outer_batch_size %d does not divide batch_size %d (t2t "
                              "raises)" % (reader.source("outer_batch_size"), outer, batch))
        spec.batch_dims = [("outer_batch", outer), ("inner_batch", batch // outer)]
    else:
        spec.batch_dims = [("batch", batch)]
    length = max_length
    if model != "mtf_transformer":
        length = reader.get("length", 0) or max_length
    spec.sequence_length = {"inputs": length, "targets": length}
    spec.mesh_shape, spec.layout = ported.mesh_shape, ported.layout
    ported.model = spec
    shape = ";".join("%s:%d" % d for d in spec.batch_dims)
    for unit, layer in spec.layers():
        if layer.is_moe:
            ported.layers.append(PortedLayer(
                layer.kind, dict(layer.kwargs), "%s/%s" % (unit.name, layer.scope or layer.source_name),
                {}, layer.variable_scope,
                "%s;length:%d;d_model:%d" % (shape, length, unit.d_model),
                layer.implementation))
    if model == "mtf_transformer" and any(l.kind == "MoE1D" for l in ported.layers):
        ported.reports.append(
            "t2t's research/moe.py transformer_moe_layer_v1 splits tokens into groups of exactly "
            "moe_group_size (namedmesh, like mtf's moe.py, takes the largest group size <= "
            "moe_group_size that divides the tokens and the mesh: the same groups when batch * "
            "length is a multiple of moe_group_size)")
    if model != "mtf_transformer" and spec.moe_layers():
        kinds = sorted({l.kind for _, l in spec.moe_layers()})
        ported.reports.append(
            "%s builds mtf's %s from moe_num_experts / moe_expert_x, moe_expert_y and "
            "moe_hidden_size only; group size, capacity factors and policies are the class "
            "defaults (the other moe_* hparams are not read)" % (model, " and ".join(kinds)))
        if any(l.kind == "MoE2D" for _, l in spec.moe_layers()):
            ported.reports.append(
                "mtf 0.1.21's MoE2D layer fails before building (its hparams lack "
                "moe_min_expert_capacity); namedmesh uses min_expert_capacity=4, mtf's "
                "transformer_moe_layer_v2 floor")
        ported.reports.append(
            "mtf 0.1.21's LayerStack scopes these unnamed layers by class name only "
            "(<stack>//<Class>/), so layers of one class share their variables in its "
            "checkpoints")
    for key in values:
        if key not in reader.read:
            value = values[key]
            if callable(value) or (isinstance(value, dict) and any(callable(v) for v in
                                                                   value.values())):
                text_value = "<%s>" % ("function" if callable(value) else "functions")
            else:
                text_value = repr(value)
            reason = UNUSED_MOE.get(key) or ("not read by %s for the model" % model)
            ported.ignored.append(Ignored(reader.source(key), "%s = %s" % (key, text_value),
                                          reason))
    ported.used = [(reader.source(k), "read by %s" % ", ".join(dict.fromkeys(w)))
                   for k, w in reader.read.items()]
    ported.check_mesh_and_layout()
    return ported


def _read_moe_only(values, path, text) -> PortedConfig:
    """A dict of ``moe_*`` hparams with a mesh and layout: one MoE layer."""
    def where(key):
        return Source(path, _line_of(text, key), key)

    ported = PortedConfig(path=path, layers=[], source_format="moe hparams")
    moe = {}
    for key, value in values.items():
        if key.startswith("moe_"):
            moe[key] = value
        elif key in _MESH_KEYS:
            if not isinstance(value, str):
                raise ConfigError("%s: expected a string such as 'b0:4;b1:8', got %r"
                                  % (where(key), value))
            setattr(ported, _MESH_KEYS[key], value)
            ported.sources[_MESH_KEYS[key]] = where(key)
        else:
            ported.ignored.append(Ignored(where(key), "%s = %r" % (key, value),
                                          "not an MoE, mesh or layout hparam"))
    if not moe:
        raise ConfigError("%s: no moe_* hparams and no layer list (layers, encoder_layers, "
                          "decoder_layers) found" % path)
    kind = "MoE2D" if isinstance(moe.get("moe_num_experts"), (list, tuple)) else "MoE1D"
    config_cls = MoE2DConfig if kind == "MoE2D" else MoE1DConfig
    table = HPARAMS_V2 if kind == "MoE2D" else HPARAMS_V1
    for key in moe:  # validate key by key, so that an error names its key and line
        try:
            config_cls.from_hparams({key: moe[key]})
        except NamedMeshError as e:
            raise ConfigError("%s: %s" % (where(key), e)) from None
    try:
        config = config_cls.from_hparams(moe)
    except NamedMeshError as e:
        raise ConfigError("%s: %s" % (path, e)) from None
    defaults = config_cls().to_kwargs()
    kwargs = {k: v for k, v in config.to_kwargs().items() if v != defaults[k]}
    for key, value in moe.items():
        if table.get(key) is None:
            ported.ignored.append(Ignored(where(key), "%s = %r" % (key, value),
                                          "not read by mtf's transformer_moe_layer_v%s"
                                          % ("2" if kind == "MoE2D" else "1")))
        else:
            ported.values.append(ReadValue(key, value, where(key)))
    for key, value in config.to_kwargs().items():
        if key not in kwargs:
            ported.values.append(ReadValue("%s.%s" % (kind, key), value, None,
                                           "namedmesh %s default" % kind))
    ported.layers.append(PortedLayer(kind, kwargs, "", {k: where("moe_" + k) for k in kwargs}))
    ported.check_mesh_and_layout()
    return ported


def read_hparams(source: Union[str, dict, Any], model: Optional[str] = None,
                 overrides: Optional[Dict[str, Any]] = None) -> PortedConfig:
    """Port tensor2tensor hparams (an HParams object, its ``to_json()`` dump, a ``values()``
    dict, or a JSON file of either) as t2t's ``model`` reads them (recognised from the keys
    when not given), with t2t-style ``overrides`` (``--hparams``) of held names; a dict of
    ``moe_*`` hparams without layer lists is one MoE layer."""
    values, path, text = load_hparams(source)
    if model is not None or overrides or any(
            k in values for k in ("layers", "encoder_layers", "decoder_layers",
                                  "transformer_type")):
        return _read_model(values, path, text, model, overrides)
    return _read_moe_only(values, path, text)
