"""A whole model to hold, run, train, decode and save: ``TransformerModel``.

It wraps the network (a ``Unitransformer`` language model, or a ``Bitransformer``)
and owns its variables, by mtf's names: the model's ``VariableStore`` and the MoE
layers' own (``transformer/block_000/layer_001/MoE1D/wi/kernel``).  Batches are
NumPy arrays (or tf values) by mtf's feature names:

    language model   targets [batch..., length] (0 = padding); optional inputs (default:
                     the targets shifted right), sequence_id, position
    Bitransformer    inputs [batch..., length], targets [batch..., length]; optional
                     encoder_sequence_id, decoder_sequence_id, encoder_position,
                     decoder_position

``batch...`` is ``[batch]`` for 2-D arrays and ``[outer_batch, batch]`` for 3-D
arrays (or the names given as ``batch_dims``).

A ``TransformerModel`` is a ``tf.Module``: ``model.variables`` and
``model.trainable_variables`` list its variables (``model.variables()`` is
``{mtf name: tf.Variable}``), ``tf.train.Checkpoint(model=model)`` saves them and
``model.serving(...)`` exports a SavedModel whose signatures take plain int32 ids.
"""

import contextlib
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import check_number
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.module import Module
from namedmesh.core.tensor import Tensor, import_tf_tensor
from namedmesh.errors import ConfigError, ShapeError, WrongTypeError
from namedmesh.layers.variables import StoreVariables, variance_scaling_initializer
from namedmesh.transformer.bitransformer import Bitransformer
from namedmesh.transformer.context import EVAL, check_mode
from namedmesh.transformer.unitransformer import Unitransformer, autoregressive_inputs

LM_FEATURES = ("targets", "inputs", "sequence_id", "position")
BI_FEATURES = ("inputs", "targets", "encoder_sequence_id", "decoder_sequence_id",
               "encoder_position", "decoder_position")


@dataclass
class ModelOutput:
    """What one call computes (named Tensors; ``export_to_tf_tensor`` for values).

    ``logits`` ``[batch..., length, vocab]``; ``loss`` the scalar mtf's ``call_simple``
    returns (cross-entropy + z-loss + every MoE aux loss); ``cross_entropy`` and
    ``z_loss`` its parts; ``moe_losses`` and ``moe_stats`` by the MoE layer's variable
    scope; ``layer_outputs`` per Unitransformer (what mtf appends to
    ``context.layer_outputs``)."""

    logits: Tensor
    loss: Optional[Tensor]
    cross_entropy: Optional[Tensor] = None
    z_loss: Optional[Tensor] = None
    moe_losses: Dict[str, Tensor] = field(default_factory=dict)
    moe_stats: Dict[str, object] = field(default_factory=dict)
    layer_outputs: Dict[str, List[Tensor]] = field(default_factory=dict)


def default_batch_names(ndims: int) -> List[str]:
    if ndims == 2:
        return ["batch"]
    if ndims == 3:
        return ["outer_batch", "batch"]
    raise ShapeError("a batch of ids must be 2-D [batch, length] or 3-D [outer_batch, batch, "
                     "length], got %d dims" % ndims)


def import_ids(mesh, key: str, value, batch_dims=None) -> Tensor:
    """Integer ids ``[batch..., length]`` (array or tf value) as a named int32 Tensor."""
    if isinstance(value, Tensor):
        return value
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_integer:
        raise WrongTypeError("feature %r must hold integer ids, got %s" % (key, value.dtype.name))
    value = tf.cast(value, tf.int32)
    sizes = value.shape.as_list()
    names = list(batch_dims) if batch_dims is not None else default_batch_names(len(sizes))
    if len(names) + 1 != len(sizes):
        raise ShapeError("feature %r has shape %s; expected [%s, length]"
                         % (key, sizes, ", ".join(names)))
    shape = Shape([Dimension(n, s) for n, s in zip(names, sizes[:-1])]
                  + [Dimension("length", sizes[-1])])
    return import_tf_tensor(mesh, value, shape)


def check_ids_in_vocab(key: str, value, vocab: Optional[Dimension]):
    """``value`` unchanged if every id is in ``[0, vocab.size)``: a ConfigError naming the
    feature and the first bad id for a concrete value, a runtime assertion (the same
    words) for a symbolic one.  An id outside the embedding would otherwise look up
    nothing and silently give a zero vector."""
    if vocab is None or value is None or isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) or (tf.is_tensor(value) and hasattr(value, "numpy")):
        ids = np.asarray(value)
        if ids.size and np.issubdtype(ids.dtype, np.integer):
            bad = ids[(ids < 0) | (ids >= vocab.size)]
            if bad.size:
                raise ConfigError("feature %r holds id %d, outside the vocabulary [0, %d) "
                                  "(%d ids out of range)" % (key, int(bad.flat[0]), vocab.size,
                                                            bad.size))
        return value
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_integer:
        return value   # import_ids names the dtype
    message = "feature %r holds an id outside the vocabulary [0, %d)" % (key, vocab.size)
    with tf.control_dependencies([
            tf.debugging.assert_non_negative(value, message=message),
            tf.debugging.assert_less(value, tf.cast(vocab.size, value.dtype), message=message)]):
        return tf.identity(value)


def _seed_of(seed: int, name: str) -> int:
    digest = hashlib.sha256(("%d/%s" % (seed, name)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class TransformerModel(Module):
    """A language model or an encoder-decoder, its variables by mtf name, and what to do
    with them (see the module).  ``seed`` draws the initial values.

    A ``tf.Module`` whose tracked children are the model's ``VariableStore`` (``store``)
    and the MoE layers' modules (``moe_modules``, by the layer's mtf scope), so a
    checkpoint's keys carry mtf's names (``model/store/_variables/transformer.Sembedding``).
    """

    # plain Python state a tf.Module must not wrap for tracking
    _UNTRACKED = frozenset(["network", "spec", "seed", "_built", "_moe_loaded"])

    def __init__(self, network, spec=None, seed: int = 0):
        if not isinstance(network, (Unitransformer, Bitransformer)):
            raise ConfigError("TransformerModel wraps a Unitransformer or a Bitransformer, got "
                              "%r" % (network,))
        super().__init__(name="transformer_model")
        self.network = network
        self.spec = spec
        self.seed = seed
        self.store = network.store
        prefixes = [prefix for prefix, _ in self.moe_layers()]
        shared = sorted(p for p in set(prefixes) if prefixes.count(p) > 1)
        if shared:   # mtf would share them by name; the MoE layers keep their own weights
            raise ConfigError("MoE layers %s occur in both stacks under one name (the encoder "
                              "is named like the decoder); namedmesh shares variables by name "
                              "(as mtf does) but not those of MoE layers" % shared)
        self.moe_modules = {prefix + layer.kind: layer.expert_layer
                            for prefix, layer in self.moe_layers()}
        self._built = False
        self._moe_loaded = set()   # MoE layers given values by load_variables

    # -- structure --------------------------------------------------------------------------
    @property
    def is_bitransformer(self) -> bool:
        return isinstance(self.network, Bitransformer)

    @property
    def kind(self) -> str:
        return "Bitransformer" if self.is_bitransformer else "Unitransformer"

    @property
    def unitransformers(self) -> List[Unitransformer]:
        if self.is_bitransformer:
            return [self.network.encoder, self.network.decoder]
        return [self.network]

    @property
    def output_vocab_dim(self) -> Dimension:
        return self.unitransformers[-1].output_vocab_dim

    def layers(self):
        """``[(unitransformer, layer)]`` in the order the model calls them."""
        return [(u, layer) for u in self.unitransformers for layer in u.layer_stack.layers]

    def moe_layers(self) -> List[tuple]:
        """``[(variable scope prefix, MoEStackLayer)]``; a prefix is e.g.
        ``transformer/block_000/layer_001/``."""
        return [("%s/%s/" % (u.name, layer.name), layer) for u, layer in self.layers()
                if hasattr(layer, "expert_layer")]

    # -- variables --------------------------------------------------------------------------
    def _by_mtf_name(self) -> "OrderedDict[str, tf.Variable]":
        out = OrderedDict(self.store.variables())
        for prefix, layer in self.moe_layers():
            for name, var in layer.own_variables().items():
                out[prefix + name] = var
        return out

    @property
    def variables(self) -> StoreVariables:
        """Every model variable (after ``build``): the store's in creation order, then each
        MoE layer's; a tuple, as ``tf.Module.variables``.  ``model.variables()`` is
        ``{mtf name: tf.Variable}``.  (The MoE layers' own step counters, which the model
        does not use, are left out.)"""
        return StoreVariables(self._by_mtf_name())

    @property
    def trainable_variables(self) -> List[tf.Variable]:
        """The trainable variables, in ``variables`` order (a list)."""
        return [v for v in self._by_mtf_name().values() if v.trainable]

    def use_variable_factory(self, factory):
        """Let ``factory`` (a ``namedmesh.layers.variables.VariableFactory``) make every
        variable of the model, e.g. as a framework's weights (``namedmesh.keras``); before
        any variable exists."""
        if self._by_mtf_name():
            raise ConfigError("use_variable_factory: the model already has variables; give the "
                              "factory before build (build_model(..., variable_factory=...))")
        self.store.variable_factory = factory
        for module in self.moe_modules.values():
            module.store.variable_factory = factory

    def variable_shapes(self) -> Dict[str, tuple]:
        return {name: tuple(var.shape.as_list()) for name, var in self.variables().items()}

    def values(self) -> Dict[str, np.ndarray]:
        """``{mtf name: array}`` of the current values."""
        return {name: var.numpy() for name, var in self.variables().items()}

    def _split_by_owner(self, arrays):
        """(arrays for the store, {prefix: (layer, arrays)} for the MoE layers)."""
        moe = {prefix: (layer, {}) for prefix, layer in self.moe_layers()}
        store = {}
        for name, value in arrays.items():
            for prefix, (layer, own) in moe.items():
                if name.startswith(prefix + layer.kind + "/"):
                    own[name[len(prefix):]] = value
                    break
            else:
                store[name] = value
        return store, moe

    def load_variables(self, arrays: Dict[str, np.ndarray]):
        """Set variables by mtf name (before ``build``: their initial values; after: assigned).
        Names the model does not have are kept until built, then reported by
        ``unused_values``; a wrongly shaped value is an error naming the variable."""
        store_arrays, moe = self._split_by_owner(arrays)
        for prefix, (layer, own) in moe.items():
            if not own:
                continue
            try:
                layer.load_own_variables(own)
            except ConfigError as e:
                raise ConfigError("%s%s: %s" % (prefix, layer.kind, e)) from None
        self.store.load_values(store_arrays)
        self._moe_loaded.update(prefix for prefix, (_, own) in moe.items() if own)

    def unused_values(self) -> List[str]:
        return self.store.unused_values()

    def _initial_moe_values(self):
        """Fresh initial values of the MoE layers (distinct per layer, drawn from the
        model's seed and the variable's name; truncated normal, stddev sqrt(1/fan_in), as
        the MoE layers initialise themselves)."""
        for prefix, layer in self.moe_layers():
            if prefix in self._moe_loaded or layer.expert_layer.mtf_variables():
                continue
            unit = next(u for u in self.unitransformers if prefix.startswith(u.name + "/"))
            arrays = {}
            for name, shape in layer.variable_shapes(unit.model_dim).items():
                init = variance_scaling_initializer([shape.dims[-2]])
                arrays[name] = init(shape, tf.float32, _seed_of(self.seed, prefix + name)).numpy()
            layer.load_own_variables(arrays)
            self._moe_loaded.add(prefix)

    def build(self, mesh=None, batch_dims: Optional[Sequence[str]] = None):
        """Create every variable (needed before running under a tf.distribute strategy: give
        its mesh).  Runs the model once, in eval mode, on one device, on a batch of one."""
        if self._built:
            return self
        from namedmesh.mesh.mesh import Mesh
        self._initial_moe_values()
        strategy = getattr(mesh, "strategy", None)
        names = list(batch_dims or ["batch"])
        for prefix, layer in self.moe_layers():
            if strategy is not None:
                unit = next(u for u in self.unitransformers if prefix.startswith(u.name + "/"))
                shape = Shape([Dimension(n, 1) for n in names] + [Dimension("length", 1),
                                                                   unit.model_dim])
                layer.expert_layer.build(shape, mesh)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        ids = np.ones([1] * len(names) + [1], np.int32)
        features = {"inputs": ids, "targets": ids}
        with scope:
            self(Mesh(), features, mode=EVAL, batch_dims=names)
        self._built = True
        return self

    # -- running ----------------------------------------------------------------------------
    def _vocab_of_feature(self, key: str) -> Optional[Dimension]:
        """The (padded) vocabulary a feature's ids index, None for non-id features."""
        if key == "inputs" and self.is_bitransformer:
            return self.network.encoder.input_vocab_dim
        if key in ("inputs", "targets"):
            return self.unitransformers[-1].input_vocab_dim
        return None

    def _import_features(self, mesh, features, batch_dims):
        if not isinstance(features, dict):
            raise WrongTypeError("%s features: expected a dict {feature name: ids}, e.g. "
                                 "{'targets': ids}, got %s" % (self.kind, type(features).__name__))
        features = {key: check_ids_in_vocab(key, value, self._vocab_of_feature(key))
                    for key, value in features.items()}
        allowed = BI_FEATURES if self.is_bitransformer else LM_FEATURES
        unknown = sorted(k for k in features if k not in allowed)
        if unknown:
            raise ConfigError("%s features: unknown %s (expected some of %s)"
                              % (self.kind, unknown, list(allowed)))
        required = ("inputs", "targets") if self.is_bitransformer else ("targets",)
        missing = [k for k in required if features.get(k) is None]
        if missing:
            raise ConfigError("%s features: %s missing" % (self.kind, missing))
        return {key: import_ids(mesh, key, value, batch_dims)
                for key, value in features.items() if value is not None}

    def __call__(self, mesh, features, mode: str = EVAL, seed=None,
                 batch_dims: Optional[Sequence[str]] = None, compute_loss: bool = True,
                 loss_parts: bool = False) -> ModelOutput:
        """Run one batch (all positions at once) on ``mesh``: mtf's ``call_simple``.

        ``mode``: "train" (z-losses, train capacity and policies, dropout) or "eval".
        ``seed``: an int64 scalar for training's random draws (needed under a strategy
        when the model draws any).  Returns a ``ModelOutput``.
        """
        mode = check_mode(mode)
        t = self._import_features(mesh, features, batch_dims)
        seed = None if seed is None else tf.cast(seed, tf.int64)
        if self.is_bitransformer:
            logits, loss, contexts = self.network.call_simple(
                t["inputs"], t["targets"], compute_loss, mode=mode,
                encoder_sequence_id=t.get("encoder_sequence_id"),
                decoder_sequence_id=t.get("decoder_sequence_id"),
                encoder_position=t.get("encoder_position"),
                decoder_position=t.get("decoder_position"), seed=seed,
                loss_parts=loss_parts, return_context=True)
        else:
            inputs = t.get("inputs")
            if inputs is None:
                inputs = autoregressive_inputs(t["targets"], t.get("sequence_id"))
            logits, loss, context = self.network.call_simple(
                inputs, t["targets"], compute_loss, mode=mode, sequence_id=t.get("sequence_id"),
                position=t.get("position"), seed=seed, loss_parts=loss_parts,
                return_context=True)
            contexts = (context,)
        out = ModelOutput(logits, loss)
        for context in contexts:
            out.moe_losses.update(context.moe_losses)
            out.moe_stats.update(context.moe_stats)
            out.layer_outputs[context.model.name] = list(context.layer_outputs)
        parts = contexts[-1].loss_parts
        if parts:
            out.cross_entropy, out.z_loss = parts.get("cross_entropy"), parts.get("z_loss")
        return out

    def decode(self, mesh, ids, temperature: float = 0.0, seed=None,
               batch_dims: Optional[Sequence[str]] = None, **kwargs) -> Tensor:
        """Greedy (temperature 0) or sampled decoding.  Language model: ``ids`` are the
        prompts ``[batch..., length]`` (prompt, then zeros to fill); Bitransformer: the
        encoder inputs.  Returns the int32 tokens as a named Tensor."""
        if not tf.is_tensor(temperature):
            check_number(temperature, "decode: temperature", minimum=0)
        ids = import_ids(mesh, "inputs" if self.is_bitransformer else "prompts", ids, batch_dims)
        if self.is_bitransformer:
            return self.network.decode(ids, temperature=temperature, seed=seed, **kwargs)
        return self.network.sample_autoregressive(ids, temperature=temperature, seed=seed,
                                                  **kwargs)

    # -- SavedModel -------------------------------------------------------------------------
    def serving(self, batch_size: int, length: int, mesh=None, inputs_length: Optional[int] = None,
                outer_batch: Optional[int] = None, features: Optional[Sequence[str]] = None,
                decode: bool = True, **decode_kwargs):
        """A ``namedmesh.plain.serving.ServingModule`` of this model on plain int32 ids
        (``.save(path)`` writes the SavedModel; ``served(targets=ids)`` calls it checked).

        Signatures (shapes fixed: named dims are static):

            serving_default   language model: targets [batch, length] -> logits
                              [batch, length, vocab]; Bitransformer: inputs [batch,
                              inputs_length], targets [batch, length] -> logits
            decode            language model: prompts [batch, length] -> tokens [batch,
                              length] (greedy unless ``decode_kwargs`` say otherwise: they
                              are ``decode``'s); Bitransformer: inputs -> tokens [batch,
                              length]
            describe          {"doc": serving_default's doc, <signature>: its doc}

        ``features``: the inputs of ``serving_default``, mtf's feature names (default
        ``targets``; ``inputs`` and ``targets`` for a Bitransformer), e.g. ``("targets",
        "sequence_id")``; a Bitransformer's ``encoder_*`` features are ``inputs_length``
        long.  The batch axis is ``[outer_batch, batch]`` when ``outer_batch`` is given;
        ``vocab`` is the padded vocabulary.  Ids outside the vocabulary fail at run time
        naming the feature.  ``mesh``: a placement mesh (default: one device).
        """
        from namedmesh.mesh.mesh import Mesh
        from namedmesh.plain.serving import ServedInput, ServingModule
        check_number(batch_size, "serving: batch_size", minimum=1, integer=True)
        check_number(length, "serving: length", minimum=1, integer=True)
        if self.is_bitransformer:
            inputs_length = length if inputs_length is None else inputs_length
            check_number(inputs_length, "serving: inputs_length", minimum=1, integer=True)
        elif inputs_length is not None:
            raise ConfigError("serving: inputs_length is for a Bitransformer; a language "
                              "model's features are all [batch, length]")
        if outer_batch is not None:
            check_number(outer_batch, "serving: outer_batch", minimum=1, integer=True)
        allowed = BI_FEATURES if self.is_bitransformer else LM_FEATURES
        required = ["inputs", "targets"] if self.is_bitransformer else ["targets"]
        features = list(required if features is None else features)
        unknown = [k for k in features if k not in allowed]
        missing = [k for k in required if k not in features]
        if unknown or missing or len(set(features)) != len(features):
            raise ConfigError("serving: features %s: %s (a %s takes some of %s, with %s)"
                              % (features, "unknown %s" % unknown if unknown else
                                 "%s missing" % missing if missing else "repeated",
                                 self.kind, list(allowed), required))
        mesh = mesh if mesh is not None else Mesh()
        self.build()
        rows = batch_size * (outer_batch or 1)
        batch_axis = ("batch",) if outer_batch is None else \
            (("outer_batch:%d" % outer_batch, "batch"),)

        def served_input(key):
            encoder = self.is_bitransformer and (key == "inputs" or key.startswith("encoder_"))
            size = inputs_length if encoder else length
            vocab = self._vocab_of_feature("targets" if key == "prompts" else key)
            return ServedInput(key, batch_axis + ("length",), [rows, size], tf.int32,
                               check=lambda x: check_ids_in_vocab(key, x, vocab))

        def logits(*named):
            out = self(mesh, dict(zip(features, named)), compute_loss=False)
            return {"logits": out.logits}

        served = ServingModule(logits, [self], mesh=mesh, name="serving",
                               inputs=[served_input(k) for k in features])
        if decode:
            key = "inputs" if self.is_bitransformer else "prompts"
            if self.is_bitransformer:
                decode_kwargs.setdefault("max_decode_length", length)
            served.add_signature("decode", lambda ids: {"tokens": self.decode(
                mesh, ids, **decode_kwargs)}, [served_input(key)])
        return served

    # -- checkpoints ------------------------------------------------------------------------
    def load_checkpoint(self, prefix: str, mesh=None, batch_dims=None):
        """Set every variable from a TF1 checkpoint written by mtf (or by ``save_checkpoint``);
        a missing, extra or wrongly shaped variable is an error naming it."""
        from namedmesh.transformer.checkpoint import load_checkpoint
        return load_checkpoint(self, prefix, mesh=mesh, batch_dims=batch_dims)

    def save_checkpoint(self, prefix: str, global_step: Optional[int] = None) -> str:
        """Write every variable by mtf name to a TF1 (name-based) checkpoint mtf reads."""
        from namedmesh.transformer.checkpoint import save_checkpoint
        return save_checkpoint(self, prefix, global_step=global_step)

    def __repr__(self):
        return "TransformerModel(%s: %s)" % (self.kind, ", ".join(
            "%s %d layers" % (u.name, u.layer_stack.num_layers) for u in self.unitransformers))


__all__ = ["TransformerModel", "ModelOutput", "default_batch_names", "import_ids"]
