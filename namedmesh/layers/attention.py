"""Multi-head attention of mtf's layers.py (and T5's ``attention`` core), on named dims.

Dims by name: queries ``[batch..., heads, length, d_kv]``, keys and values
``[batch..., heads, memory_length, d_kv]``; masks are additive biases with any
subset of the logits' dims (see ``masks.py``).  Splitting ``heads`` or
``batch`` on the mesh needs no communication; a split ``d_kv`` costs the
all-reduce of the logits' einsum, a split ``memory_length`` those of the softmax.

Variables as mtf names them: ``<name>/qkvo`` ``[qkvo:4, heads, io_channels, d_kv]``
(the combined form every layer here uses), or ``q``, ``k``, ``v``, ``o``
``[heads, io_channels, d_kv]`` each (``multihead_attention_params(combine=False)``).
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_mean
from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor, greater, multiply
from namedmesh.core.nn import one_hot, softmax
from namedmesh.core.reshape import reshape
from namedmesh.core.slicing import unstack
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.dense import us_einsum
from namedmesh.layers.masks import NEG_INF, rename_length_to_memory_length
from namedmesh.layers.noise import layer_dropout
from namedmesh.layers.variables import (VariableStore, current_store, random_normal_initializer,
                                        variable_dtypes)


def _stddevs(heads: Dimension, io_channels: Dimension, kv_channels: Dimension):
    """mtf's init scales of q, k, v, o (o's is mtf's, noted there as a TODO to change)."""
    qk = (io_channels.size ** -0.5) * (kv_channels.size ** -0.25)
    v = io_channels.size ** -0.5
    o = (io_channels.size * heads.size) ** -0.5
    return qk, qk, v, o


def _qkvo_initializer(stddevs):
    normal = random_normal_initializer(1.0)

    def init(shape: Shape, dtype, seed: int):
        scale = tf.reshape(tf.cast(stddevs, dtype), [4, 1, 1, 1])
        return normal(shape, dtype, seed) * scale

    init.namedmesh_initializer = True
    return init


def multihead_attention_params(mesh, heads, io_channels, kv_channels, variable_dtype=None,
                               combine: bool = False, store: Optional[VariableStore] = None):
    """``[wq, wk, wv, wo]``, each with dims ``[heads, io_channels, kv_channels]``.

    ``combine``: one variable ``qkvo`` ``[qkvo:4, heads, io, kv]`` unstacked
    along ``qkvo``; else four variables ``q``, ``k``, ``v``, ``o``.  Init:
    normal with stddev ``io^-0.5 * kv^-0.25`` (q, k), ``io^-0.5`` (v),
    ``(io * heads)^-0.5`` (o).  Names are relative to the current scope
    (``with store.scope(name)``).  ``variable_dtype``: see ``variable_dtypes``.
    """
    master, activation = variable_dtypes(variable_dtype)
    return _attention_weights(mesh, heads, io_channels, kv_channels, master, activation, combine,
                              store)


def multihead_attention_vars(mesh, heads, io_channels, kv_channels, master_dtype=None,
                             slice_dtype=None, activation_dtype=None,
                             store: Optional[VariableStore] = None):
    """``multihead_attention_params(..., combine=True)`` (mtf's deprecated form)."""
    del slice_dtype  # one copy per processor slice: there is no separate slice dtype
    master, activation = variable_dtypes(master_dtype=master_dtype,
                                         activation_dtype=activation_dtype)
    return _attention_weights(mesh, heads, io_channels, kv_channels, master, activation, True,
                              store)


def _attention_weights(mesh, heads, io_channels, kv_channels, master, activation, combine,
                       store):
    heads, io_channels, kv_channels = (convert_to_dimension(d)
                                       for d in (heads, io_channels, kv_channels))
    store = current_store(store, "multihead_attention_params")
    stddevs = _stddevs(heads, io_channels, kv_channels)
    if combine:
        shape = Shape([Dimension("qkvo", 4), heads, io_channels, kv_channels])
        var = store.get_variable(mesh, "qkvo", shape, initializer=_qkvo_initializer(stddevs),
                                 dtype=master)
        weights = unstack(var, "qkvo")
    else:
        shape = Shape([heads, io_channels, kv_channels])
        weights = [store.get_variable(mesh, n, shape, initializer=random_normal_initializer(s),
                                      dtype=master) for n, s in zip("qkvo", stddevs)]
    if activation is not None:
        weights = [cast(w, activation) if w.dtype != activation else w for w in weights]
    return weights


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor],
                          is_training: bool, dropout: float = 0.0, dropout_broadcast_dims=None,
                          extra_logit=None, seed=None) -> Tensor:
    """``softmax(q . k + mask) . v`` over the keys' length dim.

    ``q``: ``[..., length_q, depth_k]``; ``k``: ``[..., length_kv, depth_k]``;
    ``v``: ``[..., length_kv, depth_v]`` (the *last* two dims have these roles,
    as in mtf).  No scaling by ``depth_k^-0.5`` (mtf folds it into the init of
    ``wq``).  ``extra_logit``: a logit with value 0 (or the given one) added to
    the softmax (attention may attend to nothing).  ``dropout`` on the weights
    when training.  Returns ``[..., length_q, depth_v]``.
    """
    for t in (q, k, v):
        check_tensor(t, "dot_product_attention")
    length_kv = k.shape.dims[-2]
    logits = einsum([q, k], Shape(list(q.shape.dims[:-1]) + [length_kv]))
    if mask is not None:
        logits = logits + mask
    weights = softmax(logits, length_kv, extra_logit=extra_logit)
    weights = layer_dropout(weights, is_training, dropout, dropout_broadcast_dims, seed)
    depth_v = v.shape.dims[-1]
    return einsum([weights, v], Shape(list(q.shape.dims[:-1]) + [depth_v]))


def multihead_attention(query_antecedent: Tensor, memory_antecedent: Optional[Tensor], mask,
                        kv_channels, heads, is_training: bool, dropout: float = 0.0,
                        dropout_broadcast_dims=None, master_dtype=None, slice_dtype=None,
                        name: str = "multihead_attention", store: Optional[VariableStore] = None,
                        seed=None) -> Tensor:
    """Multi-head attention with input and output projections.

    ``query_antecedent``: ``[batch..., length, io_channels]``;
    ``memory_antecedent``: ``[batch..., memory_length, io_channels]`` or None
    (self-attention: the query renamed ``length -> memory_length``).
    Variable ``<name>/qkvo``.  Returns ``[batch..., length, io_channels]``.
    """
    check_tensor(query_antecedent, "multihead_attention")
    kv_channels, heads = convert_to_dimension(kv_channels), convert_to_dimension(heads)
    batch_dims = list(query_antecedent.shape.dims[:-2])
    query_length, io_channels = query_antecedent.shape.dims[-2:]
    store = current_store(store, "multihead_attention")
    with store.scope(name or "multihead_attention"):
        wq, wk, wv, wo = multihead_attention_vars(query_antecedent.mesh, heads, io_channels,
                                                  kv_channels, master_dtype, slice_dtype,
                                                  query_antecedent.dtype, store=store)
    if memory_antecedent is None:
        memory_antecedent = rename_length_to_memory_length(query_antecedent, query_length.name)
    check_tensor(memory_antecedent, "multihead_attention")
    memory_length, memory_channels = memory_antecedent.shape.dims[-2:]
    if list(memory_antecedent.shape.dims[:-2]) != batch_dims:
        raise ShapeError("multihead_attention: memory batch dims %s must equal the query's %s"
                         % (memory_antecedent.shape, query_antecedent.shape))
    if memory_channels != io_channels:
        raise ShapeError("multihead_attention: memory channels %s must equal query channels %s"
                         % (memory_channels, io_channels))
    q = einsum([query_antecedent, wq], Shape(batch_dims + [heads, query_length, kv_channels]))
    k = einsum([memory_antecedent, wk], Shape(batch_dims + [heads, memory_length, kv_channels]))
    v = einsum([memory_antecedent, wv], Shape(batch_dims + [heads, memory_length, kv_channels]))
    o = dot_product_attention(q, k, v, mask, is_training, dropout, dropout_broadcast_dims,
                              seed=seed)
    return einsum([o, wo], Shape(batch_dims + [query_length, io_channels]))


def multihead_self_attention_incremental(query_antecedent: Tensor, prev_k: Tensor, prev_v: Tensor,
                                         step_num, master_dtype=None, slice_dtype=None,
                                         name: str = "multihead_attention",
                                         store: Optional[VariableStore] = None):
    """One decoding step of self-attention: ``(y, new_k, new_v)``.

    ``query_antecedent``: ``[batch..., io_channels]`` (this step's input);
    ``prev_k`` / ``prev_v``: ``[batch..., heads, memory_length, d_kv]``, the
    cache; ``step_num``: an int32 scalar (Tensor or int).  This step's key and
    value are added at position ``step_num`` (the cache is zero there); it
    attends to positions ``<= step_num``.  ``y`` has the query's dims.
    """
    check_tensor(query_antecedent, "multihead_self_attention_incremental")
    batch_dims = list(query_antecedent.shape.dims[:-1])
    io_channels = query_antecedent.shape.dims[-1]
    heads, memory_length, kv_channels = prev_k.shape.dims[-3:]
    mesh = query_antecedent.mesh
    store = current_store(store, "multihead_self_attention_incremental")
    with store.scope(name or "multihead_attention"):
        wq, wk, wv, wo = multihead_attention_vars(mesh, heads, io_channels, kv_channels,
                                                  master_dtype, slice_dtype,
                                                  query_antecedent.dtype, store=store)
    step_num = _scalar(mesh, step_num, "multihead_self_attention_incremental")
    q = einsum([query_antecedent, wq], Shape(batch_dims + [heads, kv_channels]))
    k = einsum([query_antecedent, wk], Shape(batch_dims + [heads, kv_channels]))
    v = einsum([query_antecedent, wv], Shape(batch_dims + [heads, kv_channels]))
    here = one_hot(step_num, memory_length, dtype=prev_k.dtype)
    k = prev_k + multiply(k, here, output_shape=prev_k.shape)
    v = prev_v + multiply(v, here, output_shape=prev_v.shape)
    mask = cast(greater(mtf_range(mesh, memory_length, tf.int32), step_num), q.dtype) * NEG_INF
    o = dot_product_attention(q, k, v, mask, is_training=False)
    return einsum([o, wo], query_antecedent.shape), k, v


def _scalar(mesh, value, op: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.shape.ndims != 0:
            raise ShapeError("%s: step_num must be a scalar, got dims %s" % (op, value.shape))
        return value
    from namedmesh.core.creation import constant
    return constant(mesh, value, Shape([]), dtype=tf.int32)


def multihead_encdec_attention_incremental(query_antecedent: Tensor, wq: Tensor, wo: Tensor,
                                           k: Tensor, v: Tensor, mask,
                                           name: str = "multihead_attention") -> Tensor:
    """One decoding step of attention over encoder keys and values (no variables).

    ``query_antecedent``: ``query_dims + [io_channels]``; ``wq``, ``wo``:
    ``[heads, io_channels, d_kv]``; ``k``, ``v``: ``memory_dims + [heads,
    memory_length, d_kv]``.  Returns the query's dims.
    """
    check_tensor(query_antecedent, "multihead_encdec_attention_incremental")
    heads, _, kv_channels = k.shape.dims[-3:]
    query_dims = list(query_antecedent.shape.dims[:-1])
    q = einsum([query_antecedent, wq], Shape(query_dims + [heads, kv_channels]))
    o = dot_product_attention(q, k, v, mask, is_training=False)
    return einsum([o, wo], query_antecedent.shape)


def compress_mean(x: Tensor, dim, compression_factor: int) -> Tensor:
    """Means of groups of ``compression_factor`` consecutive positions along ``dim``.

    ``dim`` keeps its name, its size divided by ``compression_factor``.
    """
    check_tensor(x, "compress_mean")
    dim = convert_to_dimension(dim)
    dims = list(x.shape.dims)
    if dim not in x.shape:
        raise ShapeError("compress_mean: dim %s is not a dim of %s" % (dim, x.shape))
    if dim.size % compression_factor:
        raise ShapeError("compress_mean: dim %s is not divisible by compression_factor %d"
                         % (dim, compression_factor))
    pos = dims.index(dim)
    factor = Dimension("compression_factor", compression_factor)
    new_dims = dims[:pos] + [Dimension(dim.name, dim.size // compression_factor),
                             factor] + dims[pos + 1:]
    return reduce_mean(reshape(x, Shape(new_dims)), reduced_dim=factor)


def multihead_self_attention_memory_compressed(x: Tensor, mask_right: bool,
                                               compression_factor: int, kv_channels, heads,
                                               is_training: bool, dropout: float = 0.0,
                                               dropout_broadcast_dims=None, master_dtype=None,
                                               slice_dtype=None,
                                               name: str = "multihead_attention",
                                               store: Optional[VariableStore] = None,
                                               seed=None) -> Tensor:
    """Self-attention to a memory made by averaging ``compression_factor`` positions.

    ``x``: ``[batch..., length, io_channels]``.  ``mask_right``: a query sees a
    memory position only if the whole group has been seen.  The softmax has an
    extra logit 0.  Variable ``<name>/qkvo``.  Returns x's dims.
    """
    check_tensor(x, "multihead_self_attention_memory_compressed")
    kv_channels, heads = convert_to_dimension(kv_channels), convert_to_dimension(heads)
    batch_dims = list(x.shape.dims[:-2])
    length, io_channels = x.shape.dims[-2:]
    store = current_store(store, "multihead_self_attention_memory_compressed")
    with store.scope(name or "compressed_attention"):
        wq, wk, wv, wo = multihead_attention_vars(x.mesh, heads, io_channels, kv_channels,
                                                  master_dtype, slice_dtype, x.dtype, store=store)
    memory = rename_length_to_memory_length(compress_mean(x, length, compression_factor),
                                            length.name)
    memory_length = memory.shape.dims[-2]
    q = einsum([x, wq], Shape(batch_dims + [heads, length, kv_channels]))
    k = einsum([memory, wk], Shape(batch_dims + [heads, memory_length, kv_channels]))
    v = einsum([memory, wv], Shape(batch_dims + [heads, memory_length, kv_channels]))
    mask = None
    if mask_right:
        query_pos = mtf_range(x.mesh, length, tf.int32)
        memory_pos = (mtf_range(x.mesh, memory_length, tf.int32) * compression_factor
                      + (compression_factor - 1))
        mask = cast(greater(memory_pos, query_pos), x.dtype) * NEG_INF
    o = dot_product_attention(q, k, v, mask, is_training, dropout, dropout_broadcast_dims,
                              extra_logit=0.0, seed=seed)
    return einsum([o, wo], Shape(batch_dims + [length, io_channels]))


def attention(q: Tensor, k: Tensor, v: Tensor, memory_length_dim, key_dim, value_dim,
              bias: Optional[Tensor] = None, dropout_rate: float = 0.0,
              dropout_broadcast_dims=None, extra_logit=None, is_training: bool = False,
              float32_logits: bool = True, seed=None) -> Tensor:
    """T5's attention core (mtf ``transformer.attention.attention``), positional dims free.

    ``q``: ``other_query_dims + [key_dim]``; ``k``: ``other_memory_dims +
    [memory_length_dim, key_dim]``; ``v``: ``other_memory_dims +
    [memory_length_dim, value_dim]`` (memory dims a subset of the query's).
    Logits in float32 with ``float32_logits``; ``bias`` added to them; the
    weights are cast to v's dtype.  Returns ``q.shape - key_dim + value_dim``.
    mtf reads ``train`` from a Context; here it is ``is_training``.  (mtf's
    attention z-loss and its 2-D resharding need a model Context: see
    namedmesh.transformer.)
    """
    for t in (q, k, v):
        check_tensor(t, "attention")
    memory_length_dim, key_dim, value_dim = (convert_to_dimension(d) for d in
                                             (memory_length_dim, key_dim, value_dim))
    out_shape = (q.shape - key_dim) + [value_dim]
    if float32_logits:
        k, q = cast(k, tf.float32), cast(q, tf.float32)
    logits = us_einsum([q, k], reduced_dims=[key_dim])
    if bias is not None:
        logits = logits + (cast(bias, logits.dtype) if bias.dtype != logits.dtype else bias)
    weights = softmax(logits, memory_length_dim, extra_logit=extra_logit)
    if weights.dtype != v.dtype:
        weights = cast(weights, v.dtype)
    weights = layer_dropout(weights, is_training, dropout_rate, dropout_broadcast_dims, seed)
    return einsum([weights, v], out_shape)
