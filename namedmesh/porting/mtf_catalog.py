"""The gin configurables of mesh-tensorflow 0.1.21 that define a model, as data.

gin resolves a selector such as ``moe.MoE1D`` or ``transformer.LayerStack``
against the complete names of the configurables a program has imported
(``mesh_tensorflow.transformer.moe.MoE1D``).  This catalog lists the ones
namedmesh reads, with their parameters and mtf's defaults, so the reader can
resolve selectors with gin's own ``SelectorMap``, reject a parameter mtf does
not have (as gin does), and say which values came from a default.

Layer classes take their parameters from the typed configs of
``namedmesh.transformer.spec``; the other layer classes of mtf are known by
name only (their bindings are read, the layer is reported as one namedmesh
cannot describe).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from gin.selector_map import SelectorMap

from namedmesh.transformer.spec import LAYER_CONFIGS, config_fields

REQUIRED = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

TRANSFORMER = "mesh_tensorflow.transformer.transformer"
LAYERS = "mesh_tensorflow.transformer.transformer_layers"
MOE = "mesh_tensorflow.transformer.moe"
UTILS = "mesh_tensorflow.transformer.utils"


@dataclass(frozen=True)
class Configurable:
    """A gin configurable: complete name, parameters (``{name: default}``; None when any
    parameter is accepted), and for a layer class that calls its parent's ``__init__``
    (where gin applies the parent's bindings too) the parent and the parameters it
    always passes explicitly."""

    name: str
    params: Optional[Dict[str, Any]]
    kind: str                       # "layer", "stack", "model", "sublayer", "run", "other"
    accepts_kwargs: bool = False
    parent: Optional[str] = None
    passes_to_parent: Tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]


def _layer(module, cls, parent=None, passes=(), accepts_kwargs=False, params=None):
    if params is None and cls in LAYER_CONFIGS:
        params = config_fields(LAYER_CONFIGS[cls])
    return Configurable("%s.%s" % (module, cls), params, "layer", accepts_kwargs,
                        parent and "%s.%s" % (module, parent), tuple(passes))


_SA_POSITIONAL = ("num_heads", "num_memory_heads", "key_value_size", "shared_kv",
                  "dropout_rate", "attention_kwargs")

_ENTRIES = [
    _layer(LAYERS, "SelfAttention"),
    # EncDecAttention(relative_attention_type=None, **kwargs) -> SelfAttention.__init__
    _layer(LAYERS, "EncDecAttention", "SelfAttention", ("relative_attention_type",),
           accepts_kwargs=True, params={"relative_attention_type": None}),
    # LocalSelfAttention(radius, <six SelfAttention params>) passes those six positionally
    _layer(LAYERS, "LocalSelfAttention", "SelfAttention", _SA_POSITIONAL,
           params=dict({"radius": 128}, **{k: config_fields(LAYER_CONFIGS["SelfAttention"])[k]
                                            for k in _SA_POSITIONAL})),
    _layer(LAYERS, "DenseReluDense"),
    _layer(MOE, "MoE1D"),
    _layer(MOE, "MoE2D"),
    Configurable(TRANSFORMER + ".LayerStack",
                 {"layers": REQUIRED, "sublayers_initial": None, "sublayers_per_layer": None,
                  "sublayers_final": None, "dropout_rate": None, "norm_epsilon": None,
                  "recompute_grads": False}, "stack"),
    Configurable(TRANSFORMER + ".make_layer_stack",
                 {"layers": REQUIRED, "layer_stack_cls": "LayerStack", "num_layers": 6,
                  "block_scope": True}, "stack"),
    Configurable(TRANSFORMER + ".make_bitransformer",
                 {"input_vocab_size": REQUIRED, "output_vocab_size": REQUIRED, "layout": None,
                  "mesh_shape": None, "encoder_name": "encoder", "decoder_name": "decoder",
                  "bitransformer_cls": "Bitransformer"}, "model"),
    Configurable(TRANSFORMER + ".Unitransformer",
                 {"layer_stack": REQUIRED, "d_model": 1024, "input_vocab_size": REQUIRED,
                  "output_vocab_size": REQUIRED, "autoregressive": REQUIRED,
                  "max_length": REQUIRED, "shared_embedding_and_softmax_weights": False,
                  "label_smoothing": 0.0, "z_loss": 1e-4, "name": "transformer", "layout": None,
                  "mesh_shape": None, "vocab_divisor": 128, "ensemble": None, "loss_fn": None,
                  "positional_embedding": True, "sinusoid_positional_embedding": False,
                  "input_full_attention": False, "loss_on_targets_only": False,
                  "loss_denominator": None, "token_dropout_rate": 0.0}, "model"),
    Configurable(TRANSFORMER + ".Bitransformer",
                 {"encoder": REQUIRED, "decoder": REQUIRED, "shared_embedding": True}, "model"),
    Configurable(UTILS + ".run",
                 {"tpu_job_name": REQUIRED, "tpu": REQUIRED, "gcp_project": REQUIRED,
                  "tpu_zone": REQUIRED, "model_dir": REQUIRED, "model_type": "bitransformer",
                  "vocabulary": None, "train_dataset_fn": None, "eval_dataset_fn": None,
                  "dataset_split": "train", "autostack": True, "eval_checkpoint_step": None,
                  "export_checkpoint_step": None, "export_path": "", "mode": "train",
                  "iterations_per_loop": 100, "save_checkpoints_steps": 5000,
                  "keep_checkpoint_max": None, "eval_summary_dir": None,
                  "batch_size": ("tokens_per_replica", 2048), "train_steps": "auto_train_steps",
                  "total_run_steps": None, "sequence_length": None, "mesh_shape": REQUIRED,
                  "mesh_devices": None, "layout_rules": REQUIRED, "learning_rate_schedule": None,
                  "optimizer": None, "predict_fn": None, "variable_filter": None,
                  "perplexity_eval_steps": 100, "init_checkpoint": None, "ensemble_inputs": None,
                  "train_model_fn": "train_model", "skip_seen_data": False,
                  "seen_data_init_step": 0, "output_eval_examples": True,
                  "checkpoint_input_pipeline": False, "eval_dir_suffix": None}, "run"),
    Configurable(UTILS + ".tpu_mesh_shape",
                 {"tpu_topology": REQUIRED, "model_parallelism": REQUIRED,
                  "ensemble_parallelism": None}, "run"),
    Configurable(UTILS + ".tpu_estimator_model_fn",
                 {"outer_batch_size": 1, "tpu_summaries": False, "init_variable_filter": "",
                  "hierarchical_tiling_spec": None, "model_info_file": None,
                  "weight_decay_checkpoint": None, "learning_rate_schedule": None,
                  "optimizer": None, "predict_fn": None, "score_in_predict_mode": False,
                  "variable_filter": None, "init_checkpoint": None, "ensemble_inputs": None,
                  "mesh_devices": None}, "run"),
]

# mtf's sublayer functions: transformer.sublayer_<name>(x, layer_stack, context, **params)
SUBLAYERS = {
    "call_layer": {}, "mask_padding": {}, "residual": {}, "legacy_rms_norm": {},
    "legacy_final_rms_norm": {}, "legacy_dropout": {},
    "rms_norm": {"epsilon": 1e-6, "name": "rms_norm"},
    "rms_norm_subsampled": {"percentage": 100.0, "epsilon": 1e-6},
    "scale_norm": {"epsilon": 1e-6, "name": "scale_norm"},
    "dropout": {"dropout_rate": 0.0},
    "annealed_dropout": {"init_dropout_rate": 0.0, "start_step": None, "end_step": None},
    "clip_activation_gradient": {"rms_norm": 1.0},
    "rezero": {"initial_value": 0.0},
    "true_layer_norm": {"epsilon": 1e-6},
}
_ENTRIES += [Configurable("%s.sublayer_%s" % (TRANSFORMER, n), dict(p), "sublayer")
             for n, p in SUBLAYERS.items()]

# mtf layer classes namedmesh knows by name only (no typed config): reported, not built
OTHER_LAYERS = {
    LAYERS: ["ExpertsSelfAttention", "ExpertsEncDecAttention", "Synthesizer",
             "TransparentEncDecAttention", "TalkingHeadsSelfAttention",
             "TalkingHeadsEncDecAttention", "GeneralBilinearSelfAttention",
             "GeneralBilinearEncDecAttention", "BranchedSelfAttention",
             "BranchedEncDecAttention", "Conv1DLayer", "SeparableConv1DLayer",
             "Conv1DLocalAttn", "LightweightConv1DLocalAttn", "DynamicConv1DLocalAttn",
             "LocalConvAttnBlock", "ParallelLayer"],
    "mesh_tensorflow.transformer.memory_layers": ["ProductKeyValueMemory"],
    "mesh_tensorflow.transformer.heterogeneous_moe": ["HeterogeneousMoE"],
    "mesh_tensorflow.transformer.funnel_transformer": ["FunnelTransformerLayerStack"],
}
_ENTRIES += [Configurable("%s.%s" % (m, c), None, "layer") for m, cs in OTHER_LAYERS.items()
             for c in cs]


@dataclass
class Catalog:
    """Complete names -> ``Configurable``, with gin's partial-selector matching."""

    entries: Dict[str, Configurable] = field(default_factory=dict)

    def __post_init__(self):
        self._map = SelectorMap()
        for name, entry in self.entries.items():
            self._map[name] = entry

    def resolve(self, selector: str) -> Tuple[Optional[Configurable], list]:
        """The configurable a (partial) selector names, as gin matches it; with every
        match when it is ambiguous (then the first item is None)."""
        matches = self._map.matching_selectors(selector)
        if len(matches) == 1:
            return self.entries[matches[0]], matches
        return None, sorted(matches)

    def __getitem__(self, name: str) -> Configurable:
        return self.entries[name]


MTF = Catalog({e.name: e for e in _ENTRIES})


def sublayer_name(configurable: Configurable) -> Optional[str]:
    short = configurable.short
    return short[len("sublayer_"):] if configurable.kind == "sublayer" else None


__all__ = ["MTF", "Catalog", "Configurable", "REQUIRED", "SUBLAYERS", "TRANSFORMER", "LAYERS",
           "MOE", "UTILS"]
