"""Read the JSON configs of other mtf users as their code maps them.

* **GPT-Neo** (``EleutherAI/gpt-neo``, ``configs/*.json``; ``models/gpt2/gpt2.py``):
  ``n_layer`` blocks ``h0 .. h{n-1}`` (variable scope ``gpt2/h<i>/``), each an
  attention layer (``attention_types``, expanded as ``[[types], repeat]``) and
  either an MLP (``4 * n_embd``) or, for the block numbers listed in
  ``moe_layers`` (numbered from 0), mtf's ``transformer_moe_layer_v1`` with
  hparams built as GPT-Neo's code builds them: ``set_default_moe_hparams``, then
  ``moe_min_expert_capacity = 1`` and ``moe_use_experts_attention = False``
  (since GPT-Neo commit 33f69b9, 2021-01-02; before it, with mtf 0.1.16, the
  layer's capacity floor was a hard-coded 4), then ``moe_params`` on top, and
  ``activation = moe_activation`` (default ``relu``).
* **mtf BERT** (``mesh_tensorflow/bert/config/*.json``; ``bert.py``):
  ``num_blocks`` blocks ``block_<i>`` of ``block_layers`` (``attention``,
  ``feedforward``, ``moe``; repeated kinds get ``_1``, ``_2`` ...); ``moe`` is
  ``transformer_moe_layer_v1`` with the hparams ``BertModel.moe`` writes out
  (top-2, ``moe_num_experts``, hidden ``moe_intermediate_size``, group 2048,
  capacity 1.25 / 8.0, loss coefficient 1e-3) and the feed-forward activation.
  Those hparams lack ``moe_min_expert_capacity`` and ``moe_dropout_rate``, which
  mtf's layer has read since August 2020 (it raises AttributeError): namedmesh
  uses 4 and 0.0, the values min-xu-ai/mesh@b3df950 ("make bert moe run") adds.
  Mesh, layout, sequence length and batch are ``run_pretraining.py`` flags:
  their defaults unless given.
"""

import json
from typing import Any, Dict, Optional

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.moe.config import HPARAMS_V1, MoE1DConfig
from namedmesh.porting.files import read_text_file
from namedmesh.porting.ported import (Ignored, PortedConfig, PortedLayer, ReadValue, Source)
from namedmesh.transformer.spec import (DenseReluDenseConfig, LayerSpec, LayerStackSpec,
                                        LocalSelfAttentionConfig, ModelSpec, SelfAttentionConfig,
                                        SublayerSpec, UnitransformerSpec)

GPT_NEO_CODES = ("33f69b9", "before-33f69b9")
MTF_MOE_DEFAULTS = {   # mtf's transformer/moe.py set_default_moe_hparams
    "moe_num_experts": 16, "moe_loss_coef": 1e-2, "moe_gating": "top_2",
    "moe_capacity_factor_train": 1.25, "moe_capacity_factor_eval": 2.0,
    "moe_capacity_factor_second_level": 1.0, "moe_hidden_size": 4096, "moe_group_size": 1024,
    "moe_use_second_place_loss": 0, "moe_second_policy_train": "random",
    "moe_second_policy_eval": "random", "moe_second_threshold_train": 0.2,
    "moe_second_threshold_eval": 0.2}
BERT_RUN_PRETRAINING = {"mesh_shape": "batch:8",
                        "layout": "batch:batch,vocab:model,intermediate:model,num_heads:model,"
                                  "experts:batch",
                        "max_seq_length": 128, "train_batch_size": 32}


def _line_of(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if '"%s"' % key in line:
            return i
    return 0


class _Json:
    def __init__(self, path: str):
        self.text = read_text_file(path, "config file")
        try:
            self.values = json.loads(self.text)
        except json.JSONDecodeError as e:
            raise ConfigError("%s:%d: not valid JSON: %s" % (path, e.lineno, e.msg)) from None
        if not isinstance(self.values, dict):
            raise ConfigError("%s: expected a JSON object, got %s"
                              % (path, type(self.values).__name__))
        self.path = path
        self.read = set()

    def source(self, key) -> Source:
        return Source(self.path, _line_of(self.text, key), key)

    def get(self, key, default=None, kind=None, ported=None, default_label=""):
        if key not in self.values or self.values[key] is None and default is not None:
            if ported is not None:
                ported.values.append(ReadValue(key, default, None, default_label))
            return default
        value = self.values[key]
        self.read.add(key)
        if kind is not None and (isinstance(value, bool) and kind is not bool or
                                 not isinstance(value, kind)):
            raise ConfigError("%s: %s = %r: expected %s" % (
                self.source(key), key, value,
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__
                                                                         for k in kind)))
        if ported is not None:
            ported.values.append(ReadValue(key, value, self.source(key)))
        return value

    def ignored(self, reason: str):
        return [Ignored(self.source(k), "%s = %r" % (k, v), reason)
                for k, v in self.values.items() if k not in self.read]


def detect_json_flavor(values: Dict[str, Any]) -> Optional[str]:
    if "n_embd" in values and "n_layer" in values:
        return "gpt-neo"
    if "block_layers" in values or ("d_model" in values and "num_blocks" in values):
        return "mtf-bert"
    return None


def _moe1d(hparams: Dict[str, Any], sources: Dict[str, Source], activation, where: str,
           ported: PortedConfig) -> MoE1DConfig:
    kwargs = {"activation": activation}
    for key, value in hparams.items():
        target = HPARAMS_V1.get(key)
        if target is not None:
            kwargs[target] = bool(value) if target == "use_second_place_loss" else value
    try:
        return MoE1DConfig(**kwargs)
    except NamedMeshError as e:
        for key, value in hparams.items():
            target = HPARAMS_V1.get(key)
            if target is None:
                continue
            try:
                MoE1DConfig(**{target: value})
            except NamedMeshError as e1:
                raise ConfigError("%s: %s (in %s)" % (sources.get(key, where), e1,
                                                      where)) from None
        raise ConfigError("%s: %s" % (where, e)) from None


def read_gpt_neo(path: str, code: str = "33f69b9", mode: str = "train") -> PortedConfig:
    """Port a GPT-Neo model config as ``models/gpt2/gpt2.py`` builds it (``code``: the
    GPT-Neo code generation, ``33f69b9`` and later or ``before-33f69b9``)."""
    if code not in GPT_NEO_CODES:
        raise ConfigError("GPT-Neo code %r: expected one of %s" % (code, ", ".join(GPT_NEO_CODES)))
    cfg = _Json(path)
    p = PortedConfig(path=path, layers=[], source_format="GPT-Neo JSON")
    get = lambda key, default=None, kind=None, label="": cfg.get(  # noqa: E731
        key, default, kind, p, label or "GPT-Neo's params default (a defaultdict of None)")
    n_layer, n_embd, n_head = get("n_layer", kind=int), get("n_embd", kind=int), get(
        "n_head", kind=int)
    n_ctx, n_vocab = get("n_ctx", kind=int), get("n_vocab", kind=int)
    if n_layer is None or n_embd is None or n_head is None or n_ctx is None:
        raise ConfigError("%s: GPT-Neo configs set n_layer, n_embd, n_head and n_ctx" % path)
    types = get("attention_types", kind=list)
    expanded = []
    try:
        for item in types or []:
            expanded += list(item[0]) * int(item[1])
    except (TypeError, ValueError, IndexError):
        raise ConfigError("%s: attention_types = %r: expected [[[types], repeat], ...]"
                          % (cfg.source("attention_types"), types)) from None
    if len(expanded) != n_layer:
        raise ConfigError("%s: attention_types expands to %d layers, n_layer is %d (GPT-Neo "
                          "asserts they match)" % (cfg.source("attention_types"), len(expanded),
                                                   n_layer))
    moe_layers = get("moe_layers", kind=(list, tuple))
    moe_params = get("moe_params", {}, dict, "GPT-Neo passes no moe_params") or {}
    activation = cfg.get("moe_activation", "relu", str, p,
                         "GPT-Neo's params.get('moe_activation', 'relu')") \
        if code == "33f69b9" else "relu"
    for key in ("mesh_shape", "layout"):
        value = get(key, kind=str)
        setattr(p, key, value)
        p.sources[key] = cfg.source(key)
    hp = dict(MTF_MOE_DEFAULTS)
    sources = {}
    if code == "33f69b9":
        hp.update(moe_min_expert_capacity=1, moe_use_experts_attention=False)
        what = "GPT-Neo sets it (models/gpt2/gpt2.py since 33f69b9)"
    else:
        hp.update(moe_min_expert_capacity=4)
        what = "mtf 0.1.16's transformer_moe_layer_v1 floor (GPT-Neo before 33f69b9)"
    for key, value in moe_params.items():
        if not isinstance(key, str) or not key.startswith("moe_") or key not in HPARAMS_V1:
            p.ignored.append(Ignored(cfg.source("moe_params"), "moe_params[%r] = %r" % (key, value),
                                     "not an hparam mtf's transformer_moe_layer_v1 reads"))
            continue
        hp[key] = value
        sources[key] = cfg.source("moe_params").with_key("moe_params[%r]" % key)
    layers = []
    listed = set(moe_layers or [])
    for extra in sorted(i for i in listed if not (isinstance(i, int) and 0 <= i < n_layer)):
        p.reports.append("moe_layers lists %r, but GPT-Neo numbers its %d blocks 0..%d: no MoE "
                         "layer is built for it (%s)" % (extra, n_layer, n_layer - 1,
                                                         cfg.source("moe_layers")))
    moe_config = _moe1d(hp, sources, activation, "GPT-Neo MoE layer", p) if listed else None
    for layer_num in range(n_layer):
        block = "h%d" % layer_num
        attention = expanded[layer_num]
        if attention in ("global", "local"):
            cls = SelfAttentionConfig if attention == "global" else LocalSelfAttentionConfig
            kw = dict(num_heads=n_head, key_value_size=n_embd // n_head,
                      dropout_rate=get("attn_dropout", 0.0) or 0.0)
            if attention == "local":
                kw["radius"] = cfg.get("local_attention_radius", 256, int, p,
                                       "GPT-Neo's params.get('local_attention_radius', 256)")
            layers.append(LayerSpec("SelfAttention" if attention == "global" else
                                    "LocalSelfAttention", block + "/attn", cls(**kw), {},
                                    "gpt2/%s/attn/" % block, "gpt-neo models/layers.py attn",
                                    attention))
        elif attention != "none":
            layers.append(LayerSpec("Attention_" + str(attention), block + "/attn", None,
                                    {"attention_type": attention}, "gpt2/%s/attn/" % block,
                                    "gpt-neo models/layers.py attn", str(attention)))
        if layer_num in listed:
            layers.append(LayerSpec("MoE1D", block, moe_config, dict(
                (HPARAMS_V1[k], v) for k, v in hp.items() if HPARAMS_V1.get(k)),
                "gpt2/%s/" % block, "mesh_tensorflow.transformer.moe.transformer_moe_layer_v1",
                "moe_layers"))
        else:
            glu = bool(cfg.values.get("mlp_glu"))
            layers.append(LayerSpec("DenseReluDense", block + "/mlp", DenseReluDenseConfig(
                hidden_size=n_embd * 4 * (2 if glu else 1),
                activation=cfg.values.get("activation_function") or "gelu", use_bias=True,
                dropout_rate=cfg.values.get("res_dropout") or 0.0), {},
                "gpt2/%s/mlp/" % block, "gpt-neo models/gpt2/gpt2.py mlp", "mlp"))
    for key in ("mlp_glu", "activation_function", "res_dropout"):
        if key in cfg.values:
            cfg.read.add(key)
    norm = SublayerSpec("true_layer_norm", {"epsilon": 1e-5})
    stack = LayerStackSpec(layers, [SublayerSpec("dropout", {"dropout_rate":
                                                             cfg.values.get("embed_dropout") or 0})],
                           [norm, SublayerSpec("call_layer"), SublayerSpec("residual")],
                           [norm], num_blocks=n_layer, block_scope=False)
    cfg.read.add("embed_dropout")
    unit = UnitransformerSpec("gpt2", stack, d_model=n_embd, input_vocab_size=n_vocab,
                              output_vocab_size=n_vocab, autoregressive=True, max_length=n_ctx,
                              shared_embedding_and_softmax_weights=not cfg.values.get(
                                  "no_weight_tie"), z_loss=None)
    batch = get("train_batch_size", kind=int) if mode == "train" else get("eval_batch_size",
                                                                         kind=int)
    model = ModelSpec("Unitransformer", unit, None, "gpt-neo", mesh_shape=p.mesh_shape or "",
                      layout=p.layout or "", batch_dims=[("batch", batch)] if batch else [],
                      sequence_length={"targets": n_ctx})
    p.model = model
    shape = ("batch:%d;length:%d;d_model:%d" % (batch, n_ctx, n_embd)) if batch else None
    for layer in layers:
        if layer.is_moe:
            kwargs = {HPARAMS_V1[k]: v for k, v in hp.items()
                      if HPARAMS_V1.get(k) and (k in sources or k in (
                          "moe_min_expert_capacity",))}
            p.layers.append(PortedLayer("MoE1D", dict(kwargs, activation=activation), block_of(
                layer.scope), {HPARAMS_V1[k]: s for k, s in sources.items()},
                layer.variable_scope, shape, layer.implementation))
    for key, value in hp.items():
        target = HPARAMS_V1.get(key)
        if target and key not in sources and listed:
            p.values.append(ReadValue("MoE1D." + target, value, None,
                                      what if key in ("moe_min_expert_capacity",
                                                      "moe_use_experts_attention")
                                      else "mtf set_default_moe_hparams"))
    p.ignored += cfg.ignored("not read by GPT-Neo's model code for the model")
    p.check_mesh_and_layout()
    return p


def block_of(scope: str) -> str:
    return scope.split("/")[0]


def read_mtf_bert(path: str, mesh_shape: Optional[str] = None, layout: Optional[str] = None,
                  max_seq_length: Optional[int] = None,
                  train_batch_size: Optional[int] = None) -> PortedConfig:
    """Port an mtf BERT config (``BertConfig.from_json_file``) with ``run_pretraining.py``'s
    flags (their defaults when None)."""
    cfg = _Json(path)
    p = PortedConfig(path=path, layers=[], source_format="mtf BERT JSON")
    renames = {"hidden_size": "d_model", "num_hidden_layers": "num_blocks",
               "num_attention_heads": "attention_num_heads",
               "intermediate_size": "feedforward_intermediate_size",
               "hidden_act": "feedforward_intermediate_act",
               "hidden_dropout_prob": "layer_output_dropout_prob"}
    values = {renames.get(k, k): v for k, v in cfg.values.items()}
    for old in renames:
        if old in cfg.values:
            cfg.read.add(old)
    defaults = {"d_model": 768, "num_blocks": 12, "block_layers": "attention,feedforward",
                "layer_output_dropout_prob": 0.1, "residual_structure": "original",
                "use_bias": True, "attention_num_heads": 12, "attention_head_size": None,
                "attention_probs_dropout_prob": 0.1, "feedforward_intermediate_size": 3072,
                "feedforward_intermediate_act": "gelu",
                "feedforward_intermediate_dropout_prob": 0.0, "moe_num_experts": 32,
                "moe_intermediate_size": 6144, "vocab_size": None,
                "max_position_embeddings": 512, "position_signal": "embedding"}

    optional_ints = ("attention_head_size", "vocab_size")

    def get(key):
        if key in values:
            cfg.read.add(key)
            original = next((o for o, n in renames.items() if n == key and o in cfg.values), key)
            value, default = values[key], defaults[key]
            kind = int if key in optional_ints else type(default)
            kinds = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}[kind]
            if key == "block_layers":
                kinds = (str, list)   # "attention,feedforward" or a list of names
            if not (value is None and key in optional_ints) and (
                    not isinstance(value, kinds) or (kind is not bool and isinstance(value, bool))
                    or (kind is int and value < 1)):
                expected = {int: "a positive integer", float: "a number", str: "a string",
                            bool: "true or false"}[kind]
                if kinds == (str, list):
                    expected += " or a list"
                if key in optional_ints:
                    expected += " or null"
                raise ConfigError("%s: %s = %r: expected %s"
                                  % (cfg.source(original), original, value, expected))
            p.values.append(ReadValue(key, value, cfg.source(original)))
            return value
        p.values.append(ReadValue(key, defaults[key], None, "mtf BertConfig default"))
        return defaults[key]

    d_model, num_blocks = get("d_model"), get("num_blocks")
    block_layers = get("block_layers")
    if isinstance(block_layers, str):
        block_layers = block_layers.split(",")
    heads = get("attention_num_heads")
    head_size = get("attention_head_size") or d_model // heads
    act = get("feedforward_intermediate_act")
    flags = dict(BERT_RUN_PRETRAINING)
    given = {"mesh_shape": mesh_shape, "layout": layout, "max_seq_length": max_seq_length,
             "train_batch_size": train_batch_size}
    for key, value in given.items():
        if value is not None:
            flags[key] = value
            p.values.append(ReadValue("run_pretraining --%s" % key, value, Source("--" + key, 0)))
        else:
            p.values.append(ReadValue("run_pretraining --%s" % key, flags[key], None,
                                      "run_pretraining.py flag default"))
    p.mesh_shape, p.layout = flags["mesh_shape"], flags["layout"]
    p.sources["mesh_shape"] = Source("run_pretraining --mesh_shape", 0)
    p.sources["layout"] = Source("run_pretraining --layout", 0)
    layers = []
    hp = {"moe_gating": "top_2", "moe_num_experts": None, "moe_loss_coef": 1e-3,
          "moe_hidden_size": None, "moe_group_size": 2048, "moe_capacity_factor_train": 1.25,
          "moe_capacity_factor_eval": 8.0, "moe_use_second_place_loss": False,
          "moe_second_policy_train": "random", "moe_second_policy_eval": "random",
          "moe_second_threshold_train": 0.2, "moe_second_threshold_eval": 0.2,
          "moe_min_expert_capacity": 4, "moe_dropout_rate": 0.0}
    moe_config = None
    known = ("attention", "feedforward", "moe")
    for i, kind in enumerate(block_layers):
        if kind not in known:
            raise ConfigError("%s: block_layers[%d] = %r: mtf BERT knows %s (it raises 'unknown "
                              "layer type')" % (cfg.source("block_layers"), i, kind,
                                                ", ".join(known)))
    if "moe" in block_layers:
        hp["moe_num_experts"] = get("moe_num_experts")
        hp["moe_hidden_size"] = get("moe_intermediate_size")
        sources = {"moe_num_experts": cfg.source("moe_num_experts"),
                   "moe_hidden_size": cfg.source("moe_intermediate_size")}
        moe_config = _moe1d(hp, sources, act, "mtf BERT moe layer", p)
        p.reports.append("mtf BERT's moe() passes no moe_min_expert_capacity or moe_dropout_rate, "
                         "which mtf's transformer_moe_layer_v1 reads (AttributeError in mtf since "
                         "August 2020); namedmesh uses 4 and 0.0, as min-xu-ai/mesh@b3df950 "
                         "('make bert moe run') sets them")
        for key in ("min_expert_capacity", "dropout_rate"):
            p.values.append(ReadValue("MoE1D." + key, getattr(moe_config, key), None,
                                      "not in mtf BERT's hparams (mtf raises); min-xu-ai/mesh "
                                      "b3df950's value"))
    dropout = get("layer_output_dropout_prob")
    use_bias = get("use_bias")
    for block in range(num_blocks):
        for i, kind in enumerate(block_layers):
            name = kind + ("_%d" % block_layers[:i].count(kind) if block_layers[:i].count(kind)
                           else "")
            scope = "block_%d/%s" % (block, name)
            vscope = "bert/encoder/%s/" % scope
            if kind == "attention":
                layers.append(LayerSpec("SelfAttention", scope, SelfAttentionConfig(
                    num_heads=heads, key_value_size=head_size,
                    dropout_rate=get("attention_probs_dropout_prob")), {}, vscope,
                    "mesh_tensorflow/bert/bert.py self_attention", kind))
            elif kind == "feedforward":
                layers.append(LayerSpec("DenseReluDense", scope, DenseReluDenseConfig(
                    hidden_size=get("feedforward_intermediate_size"), activation=act,
                    dropout_rate=get("feedforward_intermediate_dropout_prob"),
                    use_bias=bool(use_bias)), {}, vscope,
                    "mesh_tensorflow/bert/bert.py feedforward", kind))
            else:
                layers.append(LayerSpec("MoE1D", scope, moe_config, {
                    HPARAMS_V1[k]: v for k, v in hp.items() if HPARAMS_V1.get(k)}, vscope,
                    "mesh_tensorflow.transformer.moe.transformer_moe_layer_v1", kind))
    direct = get("residual_structure") == "direct"
    norm = SublayerSpec("rms_norm" if not use_bias else "true_layer_norm", {})
    per_layer = [SublayerSpec("call_layer"), SublayerSpec("dropout", {"dropout_rate": dropout}),
                 SublayerSpec("residual")]
    per_layer = [norm] + per_layer if direct else per_layer + [norm]
    stack = LayerStackSpec(layers, [SublayerSpec("dropout", {"dropout_rate": dropout})],
                           per_layer, [norm] if direct else [], num_blocks=num_blocks)
    relative = get("position_signal") == "relative_attention_bias"
    unit = UnitransformerSpec("bert", stack, d_model=d_model,
                              input_vocab_size=get("vocab_size"), output_vocab_size=None,
                              autoregressive=False,
                              max_length=None if relative else get("max_position_embeddings"),
                              positional_embedding=not relative, z_loss=None)
    length, batch = flags["max_seq_length"], flags["train_batch_size"]
    p.model = ModelSpec("Unitransformer", unit, None, "mtf-bert", mesh_shape=p.mesh_shape,
                        layout=p.layout, batch_dims=[("batch", batch)],
                        sequence_length={"inputs": length, "targets": length})
    for layer in layers:
        if layer.is_moe:
            p.layers.append(PortedLayer("MoE1D", {k: v for k, v in layer.kwargs.items()
                                                  if v != MoE1DConfig().to_kwargs()[k]} or {},
                                        "bert/encoder/" + layer.scope,
                                        {"num_experts": cfg.source("moe_num_experts"),
                                         "hidden_size": cfg.source("moe_intermediate_size")},
                                        layer.variable_scope,
                                        "batch:%d;length:%d;d_model:%d" % (batch, length,
                                                                           d_model),
                                        layer.implementation))
            p.layers[-1].kwargs["activation"] = act
    p.ignored += cfg.ignored("not read by mtf BERT's model for its layers")
    p.check_mesh_and_layout()
    return p


def read_json_config(path: str, **options) -> PortedConfig:
    """A GPT-Neo or mtf BERT config, recognised from its keys."""
    cfg = _Json(path)
    flavor = detect_json_flavor(cfg.values)
    if flavor == "gpt-neo":
        return read_gpt_neo(path, **options)
    if flavor == "mtf-bert":
        return read_mtf_bert(path, **options)
    raise ConfigError("%s: not a GPT-Neo config (n_embd, n_layer) nor an mtf BERT config "
                      "(d_model, num_blocks, block_layers)" % path)
