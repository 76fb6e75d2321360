"""mtf's attention layers of a transformer stack: ``SelfAttention`` and ``EncDecAttention``.

Dims by name (mtf's): the input ``x`` is ``[batch..., length, d_model]``; queries
``[batch..., length, heads, d_kv]``; keys and values ``[batch..., memory_length,
heads, d_kv]`` (self-attention renames ``length`` to ``memory_length``; an
encoder-decoder attention reads the encoder output, ``[batch..., memory_length,
d_model]``); logits ``[batch..., length, heads, memory_length]``.

Variables (``combine_dims=True``, mtf's default): ``q``, ``k``, ``v`` ``[d_model,
heads]`` and ``o`` ``[heads, d_model]`` where ``heads`` is the combined dim of size
``num_heads * d_kv`` (heads-major; named ``d_kv`` when ``num_heads`` is 1).  With
``combine_dims=False``: ``q [d_model, heads, d_kv]`` ... ``o [heads, d_kv, d_model]``.

As mtf computes it: ``q . k`` summed over ``d_kv`` with no ``d_kv^-0.5`` (folded
into ``q``'s initializer), plus the biases (-1e9 per mask: ``read_priority >=
write_priority``, equal ``sequence_id``; T5's relative position bias), softmax over
``memory_length`` in float32, the weights times ``v``, then ``o``.
"""

import math
from typing import List, Optional

import tensorflow as tf

from namedmesh.core.contraction import einsum
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import (abs as mtf_abs, cast, equal, greater_equal, less,
                                        less_equal, log, maximum, minimum, square, to_float,
                                        to_int32, where)
from namedmesh.core.gather import gather
from namedmesh.core.nn import one_hot, reduce_logsumexp, softmax
from namedmesh.core.random_ops import dropout
from namedmesh.core.reshape import replace_dimensions, transpose
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError
from namedmesh.layers.dense import dense, us_einsum
from namedmesh.layers.initializers import unit_scaling_convention
from namedmesh.layers.masks import visibility_mask_to_attention_bias
from namedmesh.layers.variables import glorot_uniform_initializer, random_normal_initializer
from namedmesh.transformer.context import FIRST_PART, INCREMENTAL
from namedmesh.transformer.stack_layer import TransformerLayer


def _combined_dim(dims: List[Dimension]) -> Dimension:
    size = 1
    for d in dims:
        size *= d.size
    return Dimension(dims[0].name, size)


class AttentionParams:
    """The projection variables of one attention layer and the projections (mtf's
    ``attention.AttentionParams``), created or found at the store's current scope."""

    def __init__(self, context, kv_dim: Dimension, num_heads: int, num_memory_heads: int = 0,
                 shared_kv: bool = False, combine_dims: bool = True,
                 fold_scaling_into_initializer: bool = True):
        model = context.model
        self.model_dim = model.model_dim
        self.key_dim = self.value_dim = kv_dim
        if num_heads == 1:
            query_heads, memory_heads = [], []
        elif num_memory_heads == 0:
            query_heads = [Dimension("heads", num_heads)]
            memory_heads = query_heads
        elif num_memory_heads == 1:
            query_heads, memory_heads = [Dimension("heads", num_heads)], []
        else:
            if num_heads % num_memory_heads:
                raise ConfigError("attention: num_memory_heads %d must divide num_heads %d"
                                  % (num_memory_heads, num_heads))
            memory_heads = [Dimension("heads", num_memory_heads)]
            query_heads = memory_heads + [Dimension("query_heads", num_heads // num_memory_heads)]
        self.query_heads_dims, self.memory_heads_dims = query_heads, memory_heads
        self.shared_kv = shared_kv
        self.combine_dims = combine_dims
        self.fold_scaling_into_initializer = fold_scaling_into_initializer
        self.q_dims = query_heads + [kv_dim]
        self.k_dims = memory_heads + [kv_dim]
        self.v_dims = memory_heads + [kv_dim]
        self.o_dims = query_heads + [kv_dim]
        ensemble = list(model.ensemble_dims)
        if combine_dims:
            q_shape = [self.model_dim, _combined_dim(self.q_dims)]
            k_shape = [self.model_dim, _combined_dim(self.k_dims)]
            v_shape = [self.model_dim, _combined_dim(self.v_dims)]
            o_shape = [_combined_dim(self.o_dims), self.model_dim]
        else:
            q_shape = [self.model_dim] + self.q_dims
            k_shape = [self.model_dim] + self.k_dims
            v_shape = [self.model_dim] + self.v_dims
            o_shape = self.o_dims + [self.model_dim]
        if unit_scaling_convention():
            q_std = kv_std = o_std = 1.0
        else:
            q_std = self.model_dim.size ** -0.5
            if fold_scaling_into_initializer:
                q_std *= kv_dim.size ** -0.5
            kv_std = self.model_dim.size ** -0.5
            o_std = Shape(query_heads + [kv_dim]).size ** -0.5
        store, mesh = context.store, context.mesh

        def var(name, shape, stddev):
            return store.get_variable(mesh, name, Shape(ensemble + shape),
                                      initializer=random_normal_initializer(stddev))
        self.wq = var("q", q_shape, q_std)
        if shared_kv:
            self.wkv = var("kv", k_shape, kv_std)
        else:
            self.wk = var("k", k_shape, kv_std)
            self.wv = var("v", v_shape, kv_std)
        self.wo = var("o", o_shape, o_std)

    def _project(self, x: Tensor, w: Tensor, dims) -> Tensor:
        out = us_einsum([x, w], reduced_dims=[self.model_dim])
        if self.combine_dims:
            out = replace_dimensions(out, out.shape.dims[-1], dims)
        return out

    def compute_q(self, x: Tensor) -> Tensor:
        """``[batch..., length, query_heads..., d_kv]``."""
        q = self._project(x, self.wq, self.q_dims)
        if not self.fold_scaling_into_initializer:
            q = q * (self.key_dim.size ** -0.5)
        return q

    def compute_k(self, m: Tensor) -> Tensor:
        return self._project(m, self.wkv if self.shared_kv else self.wk, self.k_dims)

    def compute_v(self, m: Tensor) -> Tensor:
        return self._project(m, self.wkv if self.shared_kv else self.wv, self.v_dims)

    def compute_output(self, o: Tensor, output_shape: Shape) -> Tensor:
        """``o`` ``[..., query_heads..., d_kv]`` -> ``output_shape`` (``[..., d_model]``)."""
        if self.combine_dims:
            o = transpose(o, (o.shape - self.o_dims) + Shape(self.o_dims))
            o = replace_dimensions(o, self.o_dims, self.wo.shape.dims[-2])
            reduced = [self.wo.shape.dims[-2]]
        else:
            reduced = list(self.o_dims)
        return us_einsum([o, self.wo], output_shape=output_shape, reduced_dims=reduced)


def attention(q: Tensor, k: Tensor, v: Tensor, memory_length_dim: Dimension, key_dim, value_dim,
              bias: Optional[Tensor] = None, dropout_rate: float = 0.0,
              dropout_broadcast_dims=None, context=None, z_loss_coeff=None,
              seed=None) -> Tensor:
    """mtf's ``attention.attention``: ``softmax(q . k + bias) . v`` over ``memory_length``.

    ``q``: ``other_query_dims + [key_dim]``; ``k`` / ``v``: ``other_memory_dims +
    [memory_length, key_dim / value_dim]``.  Returns ``q.shape - key_dim + value_dim``.
    With ``z_loss_coeff`` (training), ``z_loss_coeff * mean(logsumexp(logits)^2 *
    nonpadding)`` is appended to ``context.losses``.
    """
    q, k = cast(q, tf.float32), cast(k, tf.float32)
    logits = us_einsum([q, k], reduced_dims=[key_dim])
    if bias is not None:
        logits = logits + cast(bias, logits.dtype)
    if z_loss_coeff is not None and context is not None and context.train:
        from namedmesh.core.contraction import reduce_mean
        log_z = reduce_logsumexp(logits, memory_length_dim)
        z = square(log_z)
        nonpadding = context.nonpadding
        if nonpadding is not None:
            z = z * (nonpadding if isinstance(nonpadding, int) else cast(nonpadding, z.dtype))
        z = reduce_mean(z) * z_loss_coeff
        if context.losses is not None:
            context.losses.append(cast(z, v.dtype))
    weights = cast(softmax(logits, memory_length_dim), v.dtype)
    if context is not None and context.train and dropout_rate:
        noise = weights.shape - Shape(list(dropout_broadcast_dims or []))
        weights = dropout(weights, True, rate=dropout_rate, noise_shape=noise, seed=seed)
    return einsum([weights, v], q.shape - key_dim + value_dim)


def relative_position_bucket(relative_position: Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """T5's bucket of each relative position (memory position - query position), int32 in
    ``[0, num_buckets)``: exact below ``num_buckets / 2`` (per sign when bidirectional),
    log-spaced up to ``max_distance``.  Computed in float32, truncated, as mtf does."""
    n = -relative_position
    ret = None
    if bidirectional:
        num_buckets //= 2
        ret = to_int32(less(n, 0)) * num_buckets
        n = mtf_abs(n)
    else:
        n = maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = less(n, max_exact)
    scaled = (log(to_float(n) / float(max_exact)) / math.log(max_distance / max_exact)
              * float(num_buckets - max_exact))
    large = minimum(max_exact + to_int32(scaled), num_buckets - 1)
    out = where(is_small, n, large)
    return out if ret is None else ret + out


class SelfAttention(TransformerLayer):
    """mtf's ``transformer_layers.SelfAttention``: causal in an autoregressive model,
    bidirectional otherwise; ``relative_attention_type`` ``bias`` / ``bias_shared`` /
    ``contextual`` as T5 uses them.  Input and output ``[batch..., length, d_model]``."""

    kind = "SelfAttention"

    def __init__(self, name: str, config):
        super().__init__(name)
        self.config = config
        c = config
        problems = []
        if c.keep_query_heads_dims:
            problems.append("keep_query_heads_dims=True")
        if c.attention_func not in (None, ""):
            problems.append("attention_func=%r" % c.attention_func)
        if c.use_hyperprompt or c.hyperprompt_length_encoder or c.hyperprompt_length_decoder:
            problems.append("hyperprompts")
        extra = sorted(set(c.attention_kwargs or {}) - {"dropout_broadcast_dims"})
        if extra:
            problems.append("attention_kwargs %s" % extra)
        if problems:
            raise ConfigError("%s %s: %s not built by namedmesh.transformer"
                              % (self.kind, name, ", ".join(problems)))

    @property
    def kv_dim(self) -> Dimension:
        return Dimension("d_kv", self.config.key_value_size)

    def make_params(self, context) -> AttentionParams:
        c = self.config
        return AttentionParams(context, self.kv_dim, c.num_heads, c.num_memory_heads, c.shared_kv,
                               c.combine_dims, c.fold_scaling_into_initializer)

    def memory_length(self, context) -> Dimension:
        return Dimension("memory_length", context.length_dim.size)

    def rename_length_to_memory_length(self, x: Tensor, context) -> Tensor:
        return replace_dimensions(x, context.length_dim, self.memory_length(context))

    def attention_kwargs(self, context):
        c = self.config
        broadcast = (c.attention_kwargs or {}).get("dropout_broadcast_dims")
        return {"dropout_rate": c.dropout_rate if context.train else 0.0,
                "dropout_broadcast_dims": broadcast if broadcast is not None
                else [context.length_dim],
                "seed": context.seed_for(self.name + "/attention_dropout")}

    def call(self, context, x: Tensor) -> Tensor:
        params = self.make_params(context)
        q = params.compute_q(x)
        memory_length = self.memory_length(context)
        m = x if context.mode == INCREMENTAL else replace_dimensions(x, context.length_dim,
                                                                     memory_length)
        k, v = params.compute_k(m), params.compute_v(m)
        if context.mode == INCREMENTAL:
            here = one_hot(context.position, memory_length, dtype=context.activation_dtype)
            elsewhere = 1.0 - here
            if self.config.shared_kv:
                (old_kv,) = context.get_states(1)
                k = v = old_kv * elsewhere + k * here
            else:
                old_k, old_v = context.get_states(2)
                k = old_k * elsewhere + k * here
                v = old_v * elsewhere + v * here
            memory_position = mtf_range(context.mesh, memory_length, tf.int32)
        else:
            memory_position = self.rename_length_to_memory_length(context.position, context)
        if context.mode in (INCREMENTAL, FIRST_PART):
            context.record_new_states([k] if self.config.shared_kv else [k, v])
        bias = self.compute_bias(context, memory_position, x, params.query_heads_dims, q)
        o = attention(q, k, v, memory_length, self.kv_dim, self.kv_dim, bias, context=context,
                      z_loss_coeff=self.config.z_loss_coeff, **self.attention_kwargs(context))
        return params.compute_output(o, output_shape=x.shape)

    def min_relative_position(self, context):
        return None

    def max_relative_position(self, context):
        return None

    def compute_bias(self, context, memory_position: Tensor, x: Tensor, heads_dims,
                     q: Tensor) -> Optional[Tensor]:
        """The sum of the masks (-1e9 where not visible) and the relative position bias."""
        dtype = context.activation_dtype
        min_rel, max_rel = self.min_relative_position(context), self.max_relative_position(
            context)
        biases = []
        relative_position = memory_position - context.position
        if min_rel is not None:
            biases.append(visibility_mask_to_attention_bias(
                greater_equal(relative_position, min_rel), dtype))
        if max_rel is not None:
            biases.append(visibility_mask_to_attention_bias(
                less_equal(relative_position, max_rel), dtype))
        if context.read_priority is not None:
            visible = greater_equal(context.read_priority,
                                    replace_dimensions(context.write_priority,
                                                       context.length_dim,
                                                       self.memory_length(context)))
            biases.append(visibility_mask_to_attention_bias(visible, dtype))
        sequence_id = context.sequence_id
        if isinstance(sequence_id, Tensor) and context.length_dim in sequence_id.shape:
            visible = equal(sequence_id, self.rename_length_to_memory_length(sequence_id,
                                                                             context))
            biases.append(visibility_mask_to_attention_bias(visible, dtype))
        rel_type = self.config.relative_attention_type
        if rel_type is not None:
            buckets = Dimension("buckets", self.config.relative_attention_num_buckets)
            bucket = relative_position_bucket(
                relative_position, bidirectional=not context.model.fully_autoregressive,
                num_buckets=buckets.size)
            if rel_type in ("bias", "bias_shared"):
                key = ("self_attention_bias", min_rel, max_rel, tuple(heads_dims))
                values = context.cache.get(key) if rel_type == "bias_shared" else None
                if values is None:
                    values = context.store.get_variable(
                        context.mesh, "relative_attention_bias",
                        Shape(list(context.model.ensemble_dims) + list(heads_dims) + [buckets]),
                        initializer=glorot_uniform_initializer)
                if rel_type == "bias_shared":
                    context.cache[key] = values
            else:  # contextual: a projection of the queries onto the buckets
                values = dense(q, [buckets], reduced_dims=[self.kv_dim], use_bias=False,
                               expert_dims=list(context.model.ensemble_dims) + list(heads_dims),
                               name="relative_attention_ak", store=context.store)
            biases.append(gather(values, bucket, buckets))
        if not biases:
            return None
        total = biases[0]
        for b in biases[1:]:
            total = total + b
        return total


class EncDecAttention(SelfAttention):
    """mtf's ``EncDecAttention``: attention over the encoder output ``[batch...,
    memory_length, d_model]``; masked by ``decoder sequence_id == encoder sequence_id``."""

    kind = "EncDecAttention"

    def call(self, context, x: Tensor) -> Tensor:
        memory = context.encoder_output
        if memory is None:
            raise ConfigError("%s %s needs the encoder output: it belongs to the decoder of a "
                              "Bitransformer" % (self.kind, self.name))
        params = self.make_params(context)
        q = params.compute_q(x)
        if context.mode == INCREMENTAL:
            k, v, memory_length = context.get_constant_state()
        else:
            k, v = params.compute_k(memory), params.compute_v(memory)
            (memory_length,) = [d for d in memory.shape.dims if d.name == "memory_length"]
            if context.mode == FIRST_PART:
                context.record_constant_state((k, v, memory_length))
        bias = self.enc_dec_bias(context, params.query_heads_dims)
        o = attention(q, k, v, memory_length, self.kv_dim, self.kv_dim, bias, context=context,
                      z_loss_coeff=self.config.z_loss_coeff, **self.attention_kwargs(context))
        return params.compute_output(o, output_shape=x.shape)

    def enc_dec_bias(self, context, heads_dims) -> Optional[Tensor]:
        biases = []
        if context.encoder_sequence_id is not None and context.sequence_id is not None:
            decoder_ids = context.sequence_id
            encoder_ids = context.encoder_sequence_id
            if isinstance(decoder_ids, int):
                visible = equal(encoder_ids, decoder_ids)
            else:
                visible = equal(decoder_ids, encoder_ids)
            biases.append(visibility_mask_to_attention_bias(visible, context.activation_dtype))
        if self.config.relative_attention_type is not None:
            raise ConfigError("%s %s: relative_attention_type %r over the encoder needs mtf's "
                              "relative_position_spans, which namedmesh does not build"
                              % (self.kind, self.name, self.config.relative_attention_type))
        return biases[0] if biases else None


__all__ = ["AttentionParams", "attention", "relative_position_bucket", "SelfAttention",
           "EncDecAttention"]
