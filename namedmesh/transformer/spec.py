"""The typed description of a whole mtf-style transformer model.

A legacy config (gin files, tensor2tensor hparams, GPT-Neo or mtf BERT JSON)
describes a model in its own vocabulary; ``namedmesh.porting`` converts it,
once, into a ``ModelSpec``.  Everything downstream (the ``port`` report,
checkpoint pairing, and model building) reads this spec, never the legacy
names.  The concepts are mtf's (``mesh_tensorflow/transformer/transformer.py``,
``transformer_layers.py``, ``moe.py`` of release 0.1.21):

    ModelSpec                         kind "Unitransformer" or "Bitransformer"
      encoder: UnitransformerSpec     (Bitransformer only) name "encoder"
      decoder: UnitransformerSpec     name "decoder" (or "transformer" for an LM)
        d_model, vocab sizes, max_length, shared embedding/softmax, ...
        layer_stack: LayerStackSpec
          sublayers_initial / sublayers_per_layer / sublayers_final: [SublayerSpec]
          dropout_rate, norm_epsilon  (legacy mode when set)
          layers: [LayerSpec]         in the order the stack calls them
            kind        "SelfAttention", "EncDecAttention", "LocalSelfAttention",
                        "DenseReluDense", "MoE1D", "MoE2D", ... (mtf's class name)
            scope       name inside the stack, e.g. "block_002/layer_001"
            config      typed kwargs (SelfAttentionConfig, MoE1DConfig, ...)
            variable_scope  where the source model keeps its variables,
                        e.g. "decoder/block_002/layer_001/MoE1D/"

Shapes flowing through a stack are ``[batch..., length, d_model]``; an MoE
layer's input and output are ``[outer_batch?, batch, length, d_model]``.
"""

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from namedmesh.errors import ConfigError
from namedmesh.moe.config import MoE1DConfig, MoE2DConfig


def _check_int(kind: str, key: str, value, minimum: int = 0, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError("%s.%s: expected an integer >= %d, got %r" % (kind, key, minimum, value))


def _check_rate(kind: str, key: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError("%s.%s: expected a number in [0, 1], got %r" % (kind, key, value))


def _check_bool(kind: str, key: str, value):
    if not isinstance(value, (bool, int)):
        raise ConfigError("%s.%s: expected a boolean, got %r" % (kind, key, value))


@dataclass
class SelfAttentionConfig:
    """mtf's ``transformer_layers.SelfAttention`` keywords and defaults.

    Input and output ``[batch..., length, d_model]``; q/k/v/o kernels
    ``[d_model, heads, d_kv]`` (``heads = num_heads``, ``d_kv = key_value_size``).
    """

    num_heads: int = 8
    num_memory_heads: int = 0
    key_value_size: int = 128
    shared_kv: bool = False
    dropout_rate: float = 0.0
    attention_kwargs: Optional[Dict[str, Any]] = None
    relative_attention_type: Optional[str] = None
    relative_attention_num_buckets: int = 32
    attention_func: Optional[str] = None
    combine_dims: bool = True
    keep_query_heads_dims: bool = False
    fold_scaling_into_initializer: bool = True
    z_loss_coeff: Optional[float] = None
    use_hyperprompt: bool = False
    hyperprompt_mtlshare: bool = False
    hyperprompt_length_encoder: Optional[int] = None
    hyperprompt_length_decoder: Optional[int] = None
    hyperprompt_hidden_dim: Optional[int] = None
    hyperprompt_task_num: int = 8

    def __post_init__(self):
        kind = type(self).__name__.replace("Config", "")
        _check_int(kind, "num_heads", self.num_heads, 1)
        _check_int(kind, "num_memory_heads", self.num_memory_heads, 0)
        _check_int(kind, "key_value_size", self.key_value_size, 1)
        _check_int(kind, "relative_attention_num_buckets", self.relative_attention_num_buckets, 1)
        _check_rate(kind, "dropout_rate", self.dropout_rate)
        for key in ("shared_kv", "combine_dims", "keep_query_heads_dims",
                    "fold_scaling_into_initializer"):
            _check_bool(kind, key, getattr(self, key))
        if self.relative_attention_type not in (None, "bias", "bias_shared", "contextual"):
            raise ConfigError("%s.relative_attention_type: expected None, 'bias', 'bias_shared' "
                              "or 'contextual', got %r" % (kind, self.relative_attention_type))


@dataclass
class EncDecAttentionConfig(SelfAttentionConfig):
    """mtf's ``EncDecAttention``: SelfAttention's keywords, attending over the encoder
    output ``[batch..., memory_length, d_model]``."""


@dataclass
class LocalSelfAttentionConfig(SelfAttentionConfig):
    """mtf's ``LocalSelfAttention``: each position attends to ``radius`` positions back."""

    radius: int = 128

    def __post_init__(self):
        super().__post_init__()
        _check_int("LocalSelfAttention", "radius", self.radius, 1)


@dataclass
class DenseReluDenseConfig:
    """mtf's ``DenseReluDense``: ``wi [d_model, d_ff]`` (one per activation when
    ``activation`` is a list, e.g. T5.1.1's ``["gelu", "linear"]``) and ``wo [d_ff, d_model]``."""

    hidden_size: int = 4096
    dropout_rate: float = 0.0
    activation: Union[str, List[str]] = "relu"
    use_bias: bool = False

    def __post_init__(self):
        _check_int("DenseReluDense", "hidden_size", self.hidden_size, 1)
        _check_rate("DenseReluDense", "dropout_rate", self.dropout_rate)
        _check_bool("DenseReluDense", "use_bias", self.use_bias)
        acts = self.activation if isinstance(self.activation, (list, tuple)) else [
            self.activation]
        if not acts or not all(isinstance(a, str) for a in acts):
            raise ConfigError("DenseReluDense.activation: expected a name or a list of names, "
                              "got %r" % (self.activation,))


# mtf class name -> typed config (the layers namedmesh can describe completely)
LAYER_CONFIGS = {
    "SelfAttention": SelfAttentionConfig,
    "EncDecAttention": EncDecAttentionConfig,
    "LocalSelfAttention": LocalSelfAttentionConfig,
    "DenseReluDense": DenseReluDenseConfig,
    "MoE1D": MoE1DConfig,
    "MoE2D": MoE2DConfig,
}
MOE_KINDS = ("MoE1D", "MoE2D")


def config_fields(config_cls) -> Dict[str, Any]:
    """``{keyword: default}`` of a typed layer config."""
    out = {}
    for f in fields(config_cls):
        out[f.name] = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else f.default)
    return out


@dataclass
class LayerSpec:
    """One layer of a stack, in the order the stack calls it.

    ``kind`` is mtf's class name; ``config`` its typed keywords (None for a kind
    namedmesh cannot describe, whose raw keywords stay in ``kwargs``).
    ``implementation`` names the source code that computes the layer (e.g.
    ``mesh_tensorflow.transformer.moe.MoE1D`` or
    ``tensor2tensor.models.research.moe.transformer_moe_layer_v2``): two
    implementations of one kind can name their variables differently.
    """

    kind: str
    scope: str
    config: Any = None
    kwargs: Dict[str, Any] = field(default_factory=dict)
    variable_scope: str = ""
    implementation: str = ""
    source_name: str = ""   # how the source named it: "@moe.MoE1D", "hmoe", "moe" ...

    @property
    def supported(self) -> bool:
        return self.config is not None

    @property
    def is_moe(self) -> bool:
        return self.kind in MOE_KINDS

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "variable_scope": self.variable_scope,
                "implementation": self.implementation, "source_name": self.source_name,
                "supported": self.supported,
                "kwargs": dataclasses.asdict(self.config) if self.config is not None
                else dict(self.kwargs)}


@dataclass
class SublayerSpec:
    """One of mtf's sublayer functions (``transformer.sublayer_<name>``) with its keywords,
    e.g. ``SublayerSpec("rms_norm", {"epsilon": 1e-6, "name": "rms_norm"})``."""

    name: str
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self):
        return {"name": self.name, "kwargs": dict(self.kwargs)}


LEGACY_SUBLAYERS = (
    [SublayerSpec("legacy_dropout")],
    [SublayerSpec("legacy_rms_norm"), SublayerSpec("call_layer"),
     SublayerSpec("legacy_dropout"), SublayerSpec("residual")],
    [SublayerSpec("legacy_final_rms_norm"), SublayerSpec("legacy_dropout")],
)


@dataclass
class LayerStackSpec:
    """mtf's ``LayerStack``: the layers, and the sublayers run around them.

    ``dropout_rate`` and ``norm_epsilon`` are mtf's deprecated legacy mode: when set
    (both must be), mtf ignores custom sublayers and runs the ``legacy_*`` ones,
    which the reader has already put in the three sublayer lists.
    ``num_blocks`` and ``block_scope`` are ``make_layer_stack``'s (the layer list
    repeated ``num_blocks`` times, scoped ``block_000/layer_001``).
    """

    layers: List[LayerSpec]
    sublayers_initial: List[SublayerSpec] = field(default_factory=list)
    sublayers_per_layer: List[SublayerSpec] = field(default_factory=list)
    sublayers_final: List[SublayerSpec] = field(default_factory=list)
    dropout_rate: Optional[float] = None
    norm_epsilon: Optional[float] = None
    recompute_grads: bool = False
    num_blocks: int = 1
    block_scope: bool = True

    def __post_init__(self):
        if (self.dropout_rate is None) != (self.norm_epsilon is None):
            raise ConfigError("LayerStack.dropout_rate and LayerStack.norm_epsilon must both be "
                              "set (legacy mode) or both be None, got %r and %r"
                              % (self.dropout_rate, self.norm_epsilon))

    @property
    def legacy(self) -> bool:
        return self.dropout_rate is not None

    def to_dict(self):
        return {"num_blocks": self.num_blocks, "block_scope": self.block_scope,
                "dropout_rate": self.dropout_rate, "norm_epsilon": self.norm_epsilon,
                "recompute_grads": self.recompute_grads,
                "sublayers_initial": [s.to_dict() for s in self.sublayers_initial],
                "sublayers_per_layer": [s.to_dict() for s in self.sublayers_per_layer],
                "sublayers_final": [s.to_dict() for s in self.sublayers_final],
                "layers": [layer.to_dict() for layer in self.layers]}


@dataclass
class UnitransformerSpec:
    """mtf's ``Unitransformer``: embedding, one layer stack, (optional) softmax.

    ``name`` is its variable scope (``encoder``, ``decoder``, or mtf's default
    ``transformer`` for a language model).  Vocab sizes are None when the config
    leaves them to the run's vocabulary (mtf reads them off it at run time);
    mtf pads them up to a multiple of ``vocab_divisor``.
    """

    name: str
    layer_stack: LayerStackSpec
    d_model: int = 1024
    input_vocab_size: Optional[int] = None
    output_vocab_size: Optional[int] = None
    autoregressive: bool = False
    max_length: Optional[int] = None
    shared_embedding_and_softmax_weights: bool = False
    label_smoothing: float = 0.0
    z_loss: Optional[float] = 1e-4
    vocab_divisor: int = 128
    positional_embedding: bool = True
    sinusoid_positional_embedding: bool = False
    ensemble: Optional[int] = None
    input_full_attention: bool = False
    loss_on_targets_only: bool = False
    loss_denominator: Optional[float] = None
    token_dropout_rate: float = 0.0

    def __post_init__(self):
        _check_int("Unitransformer", "d_model", self.d_model, 1)
        _check_int("Unitransformer", "max_length", self.max_length, 1, allow_none=True)
        _check_int("Unitransformer", "input_vocab_size", self.input_vocab_size, 1,
                   allow_none=True)
        _check_int("Unitransformer", "output_vocab_size", self.output_vocab_size, 1,
                   allow_none=True)
        _check_int("Unitransformer", "vocab_divisor", self.vocab_divisor, 1)

    def to_dict(self):
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layer_stack"}
        out["layer_stack"] = self.layer_stack.to_dict()
        return out


@dataclass
class ModelSpec:
    """A whole model: a ``Unitransformer`` (``decoder`` only) or a ``Bitransformer``.

    ``model_type`` is mtf's run mode (``lm``, ``delimited_lm``, ``aligned``,
    ``bitransformer``) or the source's own name.  ``mesh_shape`` and ``layout``
    are namedmesh strings (``"b0:4;b1:8"``); ``batch_dims`` the input batch
    ``[(name, size), ...]`` (e.g. ``[("outer_batch", 4), ("inner_batch", 32)]``);
    ``sequence_length`` per feature (``{"inputs": 512, "targets": 512}``).
    """

    kind: str
    decoder: UnitransformerSpec
    encoder: Optional[UnitransformerSpec] = None
    model_type: str = ""
    shared_embedding: bool = True
    mesh_shape: str = ""
    layout: str = ""
    batch_dims: List[Tuple[str, int]] = field(default_factory=list)
    sequence_length: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("Unitransformer", "Bitransformer"):
            raise ConfigError("ModelSpec.kind: expected 'Unitransformer' or 'Bitransformer', "
                              "got %r" % (self.kind,))
        if (self.kind == "Bitransformer") != (self.encoder is not None):
            raise ConfigError("a Bitransformer has an encoder and a decoder; a Unitransformer "
                              "only a decoder (got kind %r, encoder %s)"
                              % (self.kind, "set" if self.encoder else "None"))

    @property
    def stacks(self) -> List[UnitransformerSpec]:
        """The Unitransformers in the order the model runs them (encoder first)."""
        return ([self.encoder] if self.encoder is not None else []) + [self.decoder]

    def layers(self) -> Iterator[Tuple[UnitransformerSpec, LayerSpec]]:
        """Every layer, in model order, with the Unitransformer it belongs to."""
        for unit in self.stacks:
            for layer in unit.layer_stack.layers:
                yield unit, layer

    def moe_layers(self) -> List[Tuple[UnitransformerSpec, LayerSpec]]:
        return [(u, l) for u, l in self.layers() if l.is_moe]

    def length_of(self, unit: UnitransformerSpec) -> Optional[int]:
        """The sequence length the stack runs at: inputs for an encoder, targets otherwise."""
        key = "inputs" if (self.encoder is unit and unit is not self.decoder) else "targets"
        return self.sequence_length.get(key) or unit.max_length

    def to_dict(self):
        return {"kind": self.kind, "model_type": self.model_type,
                "shared_embedding": self.shared_embedding, "mesh_shape": self.mesh_shape,
                "layout": self.layout, "batch_dims": [list(d) for d in self.batch_dims],
                "sequence_length": dict(self.sequence_length),
                "encoder": self.encoder.to_dict() if self.encoder is not None else None,
                "decoder": self.decoder.to_dict()}


__all__ = ["ModelSpec", "UnitransformerSpec", "LayerStackSpec", "LayerSpec", "SublayerSpec",
           "SelfAttentionConfig", "EncDecAttentionConfig", "LocalSelfAttentionConfig",
           "DenseReluDenseConfig", "MoE1DConfig", "MoE2DConfig", "LAYER_CONFIGS", "MOE_KINDS",
           "LEGACY_SUBLAYERS", "config_fields"]
