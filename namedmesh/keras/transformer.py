"""A whole legacy language model as a Keras 3 layer: ids in, logits out.

    lm = namedmesh.keras.TransformerLM(["defaults.gin", "lm_moe.gin"], vocab_size=32)
    logits = lm(ids)                 # ids int32 [batch, length] -> [batch, length, vocab]

The layer wraps a ``namedmesh.transformer.TransformerModel`` (a ``Unitransformer``
built from a ported gin config, mtf's numerics and variable names) whose variables are
this layer's Keras weights (one per mtf variable, float32, never autocast).  ``ids``
are the targets, as in mtf's ``call_simple``: the model reads them shifted right, and
0 is padding.  ``vocab`` is the padded vocabulary (``vocab_divisor``).

Losses (``add_loss``): the model's own loss (cross-entropy + z-loss in training, mtf's
denominator), then each MoE layer's aux loss (already times ``loss_coef``); their sum
is the loss mtf's ``call_simple`` returns, so ``model.compile(loss=None)`` trains the
model as namedmesh's own loop does.  Metrics: per MoE layer (named by its block, e.g.
``lm_block_000_layer_001``) the aux loss and each routing level's ``fraction_dropped``
and ``router_confidence``.  Where it runs (one device, a mesh of devices, a strategy's
replicas) follows ``MeshLayer``.
"""

from typing import List, Optional

import keras
import tensorflow as tf

from namedmesh.errors import ConfigError, WrongTypeError
from namedmesh.keras.layers import ROUTING_METRICS, MeshLayer, MoE1D, MoE2D
from namedmesh.mesh.mesh import Mesh
from namedmesh.transformer.model import check_ids_in_vocab

LEVELS = {"MoE1D": MoE1D.levels, "MoE2D": MoE2D.levels}


def _spec_of(config):
    """The ``ModelSpec`` of ``config``: gin file path(s), a ported config or a spec."""
    from namedmesh.porting import read_gin
    from namedmesh.transformer.spec import ModelSpec
    if isinstance(config, ModelSpec):
        return config
    if isinstance(config, str) or (isinstance(config, (list, tuple)) and config
                                   and all(isinstance(c, str) for c in config)):
        config = read_gin(list([config] if isinstance(config, str) else config))
    model = getattr(config, "model", None)
    if not isinstance(model, ModelSpec):
        raise ConfigError("TransformerLM: config must be gin file path(s), a ported config "
                          "(namedmesh.porting.read_gin) or a namedmesh.transformer.ModelSpec "
                          "describing a whole model, got %r" % (config,))
    return model


class TransformerLM(MeshLayer):
    """A language model (mtf's ``Unitransformer``) from a legacy config, as a Keras layer.

    Args:
      config: gin file paths in mtf's order (kept in the layer's config, so the layer
        can be cloned), a ported config, or a ``ModelSpec``.
      vocab_size: the run's vocabulary size (mtf takes it from the vocabulary).
      seed: draws the initial values (the same as ``build_model(..., seed=seed)``).
      mesh, outer_batch, name, trainable: as ``MeshLayer`` (the input's axes are
        ``("batch", "length")``).

    Input: int ids ``[batch, length]``; output: float32 logits ``[batch, length, vocab]``.
    """

    def __init__(self, config, vocab_size: Optional[int] = None, seed: int = 0,
                 mesh: Optional[Mesh] = None, outer_batch: Optional[int] = None,
                 name: Optional[str] = None, dtype=None, trainable: bool = True):
        super().__init__(("batch", "length"), mesh=mesh, outer_batch=outer_batch, name=name,
                         dtype=dtype, trainable=trainable)
        if self.compute_dtype != "float32":
            raise ConfigError("TransformerLM %r: the transformer models compute in float32 "
                              "(mtf's bfloat16 activations are not built); got dtype policy "
                              "%r" % (self.name, self.dtype_policy.name))
        from namedmesh.transformer.build import build_model
        spec = _spec_of(config)
        if spec.kind != "Unitransformer":
            raise ConfigError("TransformerLM %r: the config describes a %s; this layer takes a "
                              "language model (a Unitransformer)" % (self.name, spec.kind))
        self.config_files = list([config] if isinstance(config, str) else config) \
            if isinstance(config, (str, list, tuple)) else None
        self.vocab_size = vocab_size
        self.init_seed = seed
        self.model = build_model(spec, vocab_size=vocab_size, seed=seed,
                                 variable_factory=self._make_weight)
        for module in self.model.moe_modules.values():
            module.counts_steps = False   # this layer passes the seeds (its seed_step)
        self.moe_scopes = sorted(self.model.moe_modules)
        self.routing_metrics = {}
        for scope in self.moe_scopes:
            short = self._short(scope)
            kind = scope.rsplit("/", 1)[-1]
            keys = ["%s_%s_%s" % (short, level, stat) for level in LEVELS[kind]
                    for stat in ROUTING_METRICS] + ["%s_aux_loss" % short]
            for key in keys:
                self.routing_metrics[key] = keras.metrics.Mean(name="%s_%s" % (self.name, key))
        self.seed_step = None

    @staticmethod
    def _short(scope: str) -> str:
        """``transformer/block_000/layer_001/MoE1D`` -> ``block_000_layer_001``."""
        return "_".join(scope.split("/")[1:-1])

    @property
    def batch_names(self) -> List[str]:
        return list(self.axes.names[:self.axes.batch_dims])

    def build(self, input_shape):
        self._dim_sizes(input_shape)
        self.model.build(self.mesh if self.mesh.strategy is not None else None,
                         self.batch_names)
        self._add_seed_step("lm_step")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.model.output_vocab_dim.size,)

    def call(self, inputs, training=None):
        placeholder = self._placeholder(inputs)
        if placeholder is not None:
            for _ in range(1 + len(self.moe_scopes)):   # the losses' places in model.losses
                self.add_loss(tf.zeros([], "float32"))
            return placeholder
        if not inputs.dtype.is_integer:
            raise WrongTypeError("TransformerLM %r: the input must hold integer ids, got %s"
                              % (self.name, inputs.dtype.name))
        train = bool(training)
        seed = self._next_seed() if train else tf.constant(0, tf.int64)

        def program(ids, seed):
            out = self.model(self.mesh, {"targets": ids}, mode="train" if train else "eval",
                             seed=seed, batch_dims=self.batch_names, loss_parts=True)
            stats = {}
            for scope in self.moe_scopes:
                levels = out.moe_stats[scope]
                kind = scope.rsplit("/", 1)[-1]
                for level in LEVELS[kind]:
                    for stat in ROUTING_METRICS:
                        stats["%s_%s_%s" % (self._short(scope), level, stat)] = \
                            getattr(levels[level], stat)
            return {"logits": out.logits, "model_loss": out.cross_entropy + out.z_loss,
                    "aux": {scope: out.moe_losses[scope] for scope in self.moe_scopes},
                    "stats": stats}

        ids = check_ids_in_vocab("targets", inputs,
                                 self.model.unitransformers[-1].input_vocab_dim)
        out = self.plain_call(program, ids, seed, key="train" if train else "infer")
        self.add_loss(tf.cast(out["model_loss"], "float32"))
        for scope in self.moe_scopes:
            aux = tf.cast(out["aux"][scope], "float32")
            self.add_loss(aux)
            self.routing_metrics["%s_aux_loss" % self._short(scope)].update_state(aux)
        for key, value in out["stats"].items():
            self.routing_metrics[key].update_state(value)
        return out["logits"]

    def mtf_variables(self):
        """``{mtf_name: tf.Variable}`` of the model (the weights' variables)."""
        return self.model.variables()

    def load_mtf_variables(self, arrays):
        """Set the weights from ``{mtf_name: array}`` (an mtf checkpoint's arrays)."""
        self.model.load_variables(arrays)

    def get_config(self):
        if self.config_files is None:
            raise ConfigError("TransformerLM %r: get_config needs the config as gin file "
                              "paths (the layer was built from a %s)"
                              % (self.name, "ported config or ModelSpec"))
        config = super().get_config()
        config.pop("input_dims")
        config.update(config=self.config_files, vocab_size=self.vocab_size, seed=self.init_seed)
        return config


__all__ = ["TransformerLM"]
