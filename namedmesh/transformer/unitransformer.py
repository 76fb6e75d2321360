"""mtf's ``Unitransformer``: embedding, one layer stack, and (optionally) the softmax.

A language model is one Unitransformer named ``transformer`` (what mtf's
``utils.build_model`` makes for ``model_type="lm"``); a Bitransformer has two,
``encoder`` (no softmax) and ``decoder``.  Dims by name:

    inputs, targets   int32 [batch..., length]       (batch... : [batch] or [outer_batch, batch])
    x                 [batch..., length, d_model]
    logits            [batch..., length, vocab]      vocab padded up to vocab_divisor

Variables (mtf's names, under ``<name>/``): ``embedding [vocab, d_model]`` (or the
Bitransformer's ``shared/embedding``), ``positional_embedding [max_length, d_model]``,
the stack's, and ``logits/kernel [d_model, vocab]`` when the softmax is not shared.

What mtf computes, and this does: ``x = embedding[ids] + positional_embedding[pos]``
(no scaling); the stack; shared softmax ``logits = (x * d_model^-0.5) . embedding``,
separate ``logits = x . logits/kernel``; the loss ``sum(weights * (xent + z_loss *
logsumexp^2)) / denominator`` with ``weights = targets > 0`` and ``denominator`` the
number of target positions (padding included), z_loss in training only.
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_sum
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import (cast, equal, greater, logical_not, logical_or, maximum,
                                        mod, to_int32)
from namedmesh.core.gather import gather
from namedmesh.core.nn import cumsum, one_hot
from namedmesh.core.random_ops import dropout
from namedmesh.core.reshape import rename_dimension
from namedmesh.core.shift import shift
from namedmesh.core.slicing import mtf_slice
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, ShapeError
from namedmesh.layers.dense import dense
from namedmesh.layers.embedding import embedding_weights
from namedmesh.layers.losses import softmax_cross_entropy_with_logits
from namedmesh.transformer.context import TRAIN, Context, check_mode


def round_up_to_multiple(n: int, divisor: int) -> int:
    return n + -n % divisor


class VocabEmbedding:
    """The ``[vocab, d_model]`` table: ids -> vectors, and (shared softmax) vectors -> logits."""

    def __init__(self, mesh, vocab_dim: Dimension, output_dim: Dimension, store, name: str,
                 ensemble_dims=()):
        self.vocab_dim, self.output_dim = vocab_dim, output_dim
        self.weights = embedding_weights(mesh, vocab_dim, output_dim, name=name,
                                         ensemble_dim=list(ensemble_dims), store=store)

    def ids_to_embedding(self, ids: Tensor) -> Tensor:
        return gather(self.weights, ids, self.vocab_dim)

    def hidden_to_logits(self, hidden: Tensor) -> Tensor:
        hidden = hidden * (self.output_dim.size ** -0.5)
        return einsum([hidden, self.weights], reduced_dims=[self.output_dim])


def sinusoid_positional_embedding_weights(mesh, max_length_dim: Dimension, model_dim: Dimension,
                                          min_timescale=1.0, max_timescale=1.0e4) -> Tensor:
    """``[max_length, d_model]``: sin and cos of the positions at geometric timescales
    (mtf's ``sinusoid_positional_embedding_weights``, the tensor2tensor timing signal)."""
    import math
    from namedmesh.core.elementwise import cos, exp, sin
    from namedmesh.core.slicing import concat
    if model_dim.size % 2:
        raise ConfigError("sinusoid_positional_embedding needs an even d_model, got %d"
                          % model_dim.size)
    half = Dimension(model_dim.name, model_dim.size // 2)
    increment = math.log(float(max_timescale) / float(min_timescale)) / max(
        float(half.size) - 1, 1)
    inv_timescales = min_timescale * exp(mtf_range(mesh, half, tf.float32) * -increment)
    position = mtf_range(mesh, max_length_dim, tf.float32)
    scaled = einsum([position, inv_timescales], Shape([max_length_dim, half]))
    return concat([sin(scaled), cos(scaled)], model_dim.name)


def delimited_lm_inputs_mask(ids: Tensor, eos_id: int = 1) -> Tensor:
    """True on the inputs part of ``[<inputs>, EOS, <targets>, EOS, ...]`` rows: where the
    number of earlier EOS tokens is even (mtf's ``delimited_lm_inputs_mask``)."""
    length_dim = ids.shape.dims[-1]
    earlier = cumsum(to_int32(equal(ids, eos_id)), length_dim, exclusive=True)
    return equal(mod(earlier, 2), 0)


def autoregressive_inputs(targets: Tensor, sequence_id=None) -> Tensor:
    """The ids an autoregressive model reads: targets shifted right by one along ``length``,
    0 at the first position of each sequence (``sequence_id`` changes there)."""
    from namedmesh.core.elementwise import abs as mtf_abs
    length_dim = targets.shape.dims[-1]
    inputs = mtf_abs(shift(targets, 1, length_dim, wrap=False))
    if sequence_id is not None:
        same = equal(sequence_id, shift(sequence_id, 1, length_dim, wrap=False))
        inputs = inputs * to_int32(same)
    return inputs


class Unitransformer:
    """mtf's ``Unitransformer`` (same constructor arguments, minus ``layout`` and
    ``mesh_shape``: the mesh of the call has them).  ``store`` holds the variables
    (a Bitransformer gives both of its Unitransformers the same one)."""

    def __init__(self, layer_stack, d_model: int = 1024, input_vocab_size: int = None,
                 output_vocab_size: Optional[int] = None, autoregressive: bool = False,
                 max_length: Optional[int] = None,
                 shared_embedding_and_softmax_weights: bool = False,
                 label_smoothing: float = 0.0, z_loss: Optional[float] = 1e-4,
                 name: str = "transformer", vocab_divisor: int = 128,
                 ensemble: Optional[int] = None, positional_embedding: bool = True,
                 sinusoid_positional_embedding: bool = False, input_full_attention: bool = False,
                 loss_on_targets_only: bool = False, loss_denominator: Optional[float] = None,
                 token_dropout_rate: float = 0.0, store=None):
        if input_vocab_size is None:
            raise ConfigError("Unitransformer %r needs input_vocab_size (mtf reads it off the "
                              "run's vocabulary; give it, e.g. build_model(vocab_size=32000))"
                              % name)
        if ensemble:
            raise ConfigError("Unitransformer %r: ensemble=%r is not built by "
                              "namedmesh.transformer" % (name, ensemble))
        self.layer_stack = layer_stack
        self.model_dim = Dimension("d_model", d_model)
        self.input_vocab_size_unpadded = input_vocab_size
        self.input_vocab_dim = Dimension("vocab", round_up_to_multiple(input_vocab_size,
                                                                       vocab_divisor))
        self.output_vocab_size_unpadded = output_vocab_size
        if output_vocab_size:
            self.output_vocab_dim = Dimension("vocab", round_up_to_multiple(output_vocab_size,
                                                                            vocab_divisor))
        else:
            self.output_vocab_dim = None
            if autoregressive:
                raise ConfigError("Unitransformer %r: an autoregressive Transformer needs an "
                                  "output vocabulary" % name)
        self.autoregressive = autoregressive
        if sinusoid_positional_embedding:
            positional_embedding = True
        if positional_embedding and not max_length:
            raise ConfigError("Unitransformer %r: a positional embedding needs max_length" % name)
        self.max_length_dim = Dimension("max_length", max_length) if positional_embedding else None
        self.shared_embedding_and_softmax_weights = shared_embedding_and_softmax_weights
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.name = name
        self.ensemble_dim = None
        self.positional_embedding = positional_embedding
        self.sinusoid_positional_embedding = sinusoid_positional_embedding
        self.input_full_attention = input_full_attention
        if input_full_attention and not autoregressive:
            raise ConfigError("Unitransformer %r: input_full_attention only makes sense with "
                              "autoregressive" % name)
        self.loss_on_targets_only = loss_on_targets_only
        self._loss_denominator = loss_denominator
        self.token_dropout_rate = token_dropout_rate
        if store is None:
            from namedmesh.layers.variables import VariableStore
            store = VariableStore()
        self.store = store

    @property
    def fully_autoregressive(self) -> bool:
        return self.autoregressive and not self.input_full_attention

    @property
    def ensemble_dims(self):
        return [self.ensemble_dim] if self.ensemble_dim else []

    # -- the loss -------------------------------------------------------------------------
    def loss_denominator(self, targets: Tensor) -> float:
        if self._loss_denominator is not None:
            return float(self._loss_denominator)
        return float(targets.shape.size)

    def _compute_loss(self, context: Context, logits: Tensor, targets: Tensor) -> Tensor:
        vocab = self.output_vocab_dim
        off_value = self.label_smoothing / vocab.size
        on_value = 1.0 - self.label_smoothing + off_value
        soft_targets = one_hot(maximum(targets, 0), vocab, on_value=on_value,
                               off_value=off_value, dtype=context.activation_dtype)
        z_loss = (self.z_loss or 0.0) if context.train else 0.0
        loss = softmax_cross_entropy_with_logits(logits, soft_targets, vocab, z_loss=z_loss)
        weights = cast(greater(targets, 0), context.activation_dtype)
        if self.loss_on_targets_only:
            weights = weights * cast(logical_not(delimited_lm_inputs_mask(targets)),
                                     context.activation_dtype)
        denominator = self.loss_denominator(targets)
        total = reduce_sum(loss * weights) / denominator
        if context.loss_parts is not None:
            xent = softmax_cross_entropy_with_logits(logits, soft_targets, vocab, z_loss=0.0)
            context.loss_parts["cross_entropy"] = reduce_sum(xent * weights) / denominator
            context.loss_parts["z_loss"] = total - context.loss_parts["cross_entropy"]
        return total

    # -- the network ----------------------------------------------------------------------
    def _call_internal(self, context: Context, inputs: Tensor, targets: Optional[Tensor] = None):
        """``logits [batch..., length, vocab]`` (the stack's output for an encoder)."""
        mesh = inputs.mesh
        store = context.store
        if "embedding" in context.shared_params:
            vocab_embedding = context.shared_params["embedding"]
        else:
            vocab_embedding = VocabEmbedding(mesh, self.input_vocab_dim, self.model_dim, store,
                                             "embedding", self.ensemble_dims)
        if context.train and self.token_dropout_rate:
            inputs = dropout(inputs, True, rate=self.token_dropout_rate,
                             seed=context.seed_for("token_dropout"))
        x = vocab_embedding.ids_to_embedding(inputs)
        context.input_embeddings = x
        if self.positional_embedding:
            if self.sinusoid_positional_embedding:
                table = sinusoid_positional_embedding_weights(mesh, self.max_length_dim,
                                                              self.model_dim)
            elif "positional_embedding" in context.shared_params:
                table = context.shared_params["positional_embedding"]
            else:
                table = embedding_weights(mesh, self.max_length_dim, self.model_dim,
                                          name="positional_embedding", store=store)
            if context.length_dim is not None and \
                    context.length_dim.size > self.max_length_dim.size and \
                    context.position_is_default:
                raise ShapeError("%s: length %d exceeds the positional embedding's max_length %d"
                                 % (self.name, context.length_dim.size,
                                    self.max_length_dim.size))
            if context.position_is_default:
                pos_emb = rename_dimension(
                    mtf_slice(table, 0, context.length_dim.size, self.max_length_dim.name),
                    self.max_length_dim.name, context.length_dim.name)
            else:
                pos_emb = gather(table, context.position, self.max_length_dim,
                                 output_shape=x.shape)
            x = x + pos_emb
        x = self.layer_stack.call(context, x)
        if self.output_vocab_dim is None:
            return x
        if self.shared_embedding_and_softmax_weights:
            logits = vocab_embedding.hidden_to_logits(x)
        else:
            logits = dense(x, self.output_vocab_dim, reduced_dims=x.shape.dims[-1:],
                           use_bias=False, name="logits", store=store)
        if targets is not None and context.losses is not None:
            context.losses.append(self._compute_loss(context, logits, targets))
        return logits

    def call_simple(self, inputs: Tensor, targets: Optional[Tensor], compute_loss: bool,
                    mode: str = TRAIN, sequence_id=None, position=None, encoder_output=None,
                    encoder_sequence_id=None, shared_params=None, layer_outputs=None,
                    seed=None, loss_parts: bool = False, return_context: bool = False):
        """``(logits, loss)`` of ``inputs [batch..., length]`` (all positions at once), as
        mtf's ``call_simple``; ``loss`` is the model's loss plus every aux loss its layers
        add (MoE), or None without ``compute_loss``.  ``mode``: "train", "eval" or
        "predict".  ``seed``: an int64 scalar for the random draws of training (dropout,
        MoE policies).  ``return_context`` adds the Context (aux losses by scope, layer
        outputs, routing statistics; with ``loss_parts`` the cross-entropy and z-loss)."""
        mode = check_mode(mode)
        batch_dims = list(inputs.shape.dims[:-1])
        length_dim = inputs.shape.dims[-1]
        length_range = mtf_range(inputs.mesh, length_dim, tf.int32)
        if not self.positional_embedding:
            position = None  # relative attention then uses the index in the tensor, as mtf
        position_is_default = position is None
        if position is None:
            position = length_range
        if self.input_full_attention:
            region = delimited_lm_inputs_mask(targets)
            region = logical_or(region, shift(region, 1, length_dim, wrap=False))
            read_priority = write_priority = length_range * to_int32(logical_not(region))
        elif self.autoregressive:
            read_priority = write_priority = length_range
        else:
            read_priority = write_priority = None
        context = Context(
            model=self, mesh=inputs.mesh, batch_dims=batch_dims, length_dim=length_dim,
            store=self.store, mode=mode, losses=[] if compute_loss else None,
            sequence_id=sequence_id, position=position, position_is_default=position_is_default,
            encoder_output=encoder_output, encoder_sequence_id=encoder_sequence_id,
            shared_params=shared_params or {}, layer_outputs=layer_outputs
            if layer_outputs is not None else [], read_priority=read_priority,
            write_priority=write_priority, seed=seed, loss_parts={} if loss_parts else None)
        with self.store.scope(self.name):
            logits = self._call_internal(context, inputs, targets)
        loss = None
        if compute_loss and context.losses:  # mtf's add_n (an encoder may add nothing)
            loss = context.losses[0]
            for extra in context.losses[1:]:
                loss = loss + extra
        return (logits, loss, context) if return_context else (logits, loss)

    def sample_autoregressive(self, partial_sequences: Tensor, **kwargs) -> Tensor:
        """Greedy or sampled decoding; see ``namedmesh.transformer.decoding``."""
        from namedmesh.transformer.decoding import sample_autoregressive
        return sample_autoregressive(self, partial_sequences, **kwargs)

    def __repr__(self):
        return "Unitransformer(%r, d_model=%d, %d layers)" % (self.name, self.model_dim.size,
                                                             self.layer_stack.num_layers)


__all__ = ["Unitransformer", "VocabEmbedding", "autoregressive_inputs",
           "delimited_lm_inputs_mask", "round_up_to_multiple",
           "sinusoid_positional_embedding_weights"]
