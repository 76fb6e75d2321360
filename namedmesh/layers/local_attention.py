"""Local attention of mtf: 1-D windows (layers.py and T5's ``local_attention_1d``), spatial blocks.

The sequence is cut into blocks whose count keeps the length dim's *name*, so
it is split on the mesh like the length was; each block's keys and values are
extended with the end of the previous block(s) by a halo exchange, which is a
neighbour exchange (``shift``) along the mesh when the blocks are split.
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.contraction import einsum
from namedmesh.core.creation import mtf_range, zeros
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import (cast, check_tensor, equal, greater, greater_equal,
                                        less_equal, logical_and, mod, where)
from namedmesh.core.reshape import rename_dimension, replace_dimensions, reshape
from namedmesh.core.shift import halo_exchange, left_halo_exchange
from namedmesh.core.slicing import pad
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, ShapeError
from namedmesh.layers.attention import attention, dot_product_attention, multihead_attention_vars
from namedmesh.layers.masks import (NEG_INF, attention_bias_local_block,
                                    visibility_mask_to_attention_bias)
from namedmesh.layers.variables import VariableStore, current_store


def _block_length(length_per_split: int, window: int) -> int:
    """mtf's choice: the largest divisor of ``length_per_split`` that is ``<= max(window, 128)``."""
    block = max(window, 128)
    while length_per_split % block:
        block -= 1
    return block


def _weights(x: Tensor, heads, io_channels, kv_channels, master_dtype, slice_dtype, params,
             scope: str, store):
    if params is not None:
        return list(params)
    store = current_store(store, scope)
    with store.scope(scope):
        return multihead_attention_vars(x.mesh, heads, io_channels, kv_channels, master_dtype,
                                        slice_dtype, x.dtype, store=store)


def masked_local_attention_1d(x: Tensor, kv_channels, heads, is_training: bool,
                              window_size: int = 128, master_dtype=None, slice_dtype=None,
                              length_per_split: Optional[int] = None, return_kv=None,
                              params=None, name: str = None,
                              store: Optional[VariableStore] = None) -> Tensor:
    """Causal attention to the ``window_size`` positions before each one (and itself).

    ``x``: ``[batch..., length, io_channels]``.  The length is cut into blocks
    (the largest divisor of ``length_per_split`` up to ``max(window_size, 128)``;
    pass the length per processor when the length dim is split), and each
    block's keys are extended by ``window_size`` positions from the left.
    As in mtf, the first positions also see ``window_size`` zero keys from
    before the sequence.  Variable ``<name or masked_local_attention_1d>/qkvo``
    (or ``params``).  ``return_kv``: a list to append the keys and values to.
    Returns x's dims.
    """
    check_tensor(x, "masked_local_attention_1d")
    kv_channels, heads = convert_to_dimension(kv_channels), convert_to_dimension(heads)
    batch_dims = list(x.shape.dims[:-2])
    length, io_channels = x.shape.dims[-2:]
    wq, wk, wv, wo = _weights(x, heads, io_channels, kv_channels, master_dtype, slice_dtype,
                              params, name or "masked_local_attention_1d", store)
    qkv_shape = Shape(batch_dims + [heads, length, kv_channels])
    q, k, v = (einsum([x, w], qkv_shape) for w in (wq, wk, wv))
    if return_kv is not None:
        return_kv.extend([k, v])
    block = _block_length(length_per_split or length.size, window_size)
    query_block = Dimension("query_block_length", block)
    memory_block = Dimension("memory_block_length", block)
    num_blocks = Dimension(length.name, length.size // block)  # split like the length
    q = reshape(q, Shape(batch_dims + [heads, num_blocks, query_block, kv_channels]))
    kv_shape = Shape(batch_dims + [heads, num_blocks, memory_block, kv_channels])
    k = left_halo_exchange(reshape(k, kv_shape), num_blocks, memory_block, window_size)
    v = left_halo_exchange(reshape(v, kv_shape), num_blocks, memory_block, window_size)
    padded = Dimension("memory_block_length", window_size + block)
    memory_pos = mtf_range(x.mesh, padded, tf.float32)
    query_pos = mtf_range(x.mesh, query_block, tf.float32) + window_size
    mask = cast(greater(memory_pos, query_pos), x.dtype) * NEG_INF          # no looking ahead
    mask = mask + cast(less_equal(memory_pos, query_pos - block), x.dtype) * NEG_INF
    o = dot_product_attention(q, k, v, mask, is_training)
    o = reshape(o, Shape(batch_dims + [heads, length, kv_channels]))
    return einsum([o, wo], Shape(batch_dims + [length, io_channels]))


def masked_local_attention_1d_incremental(x: Tensor, prev_k: Tensor, prev_v: Tensor, step_num,
                                          master_dtype=None, slice_dtype=None, params=None,
                                          name: str = None,
                                          store: Optional[VariableStore] = None):
    """One decoding step of ``masked_local_attention_1d``: ``(y, new_k, new_v)``.

    ``x``: ``[batch..., io_channels]``; ``prev_k`` / ``prev_v``: ``[batch...,
    heads, window_length, d_kv]``, a ring buffer written at ``step_num mod
    window_length``.  Attends to the whole buffer.  ``y`` has x's dims.
    """
    check_tensor(x, "masked_local_attention_1d_incremental")
    batch_dims = list(x.shape.dims[:-1])
    io_channels = x.shape.dims[-1]
    heads, window_length, kv_channels = prev_k.shape.dims[-3:]
    wq, wk, wv, wo = _weights(x, heads, io_channels, kv_channels, master_dtype, slice_dtype,
                              params, name or "masked_local_attention_1d", store)
    step_shape = Shape(batch_dims + [heads, kv_channels])
    q, k, v = (einsum([x, w], step_shape) for w in (wq, wk, wv))
    if not isinstance(step_num, Tensor):
        from namedmesh.core.creation import constant
        step_num = constant(x.mesh, step_num, Shape([]), dtype=tf.int32)
    current = equal(mtf_range(x.mesh, window_length, tf.int32), mod(step_num, window_length.size))
    k = where(current, k, prev_k, output_shape=prev_k.shape)
    v = where(current, v, prev_v, output_shape=prev_v.shape)
    o = dot_product_attention(q, k, v, None, is_training=False)
    return einsum([o, wo], x.shape), k, v


def local_attention_1d(q: Tensor, k: Tensor, v: Optional[Tensor], length_dim, key_dim,
                       value_dim, fully_autoregressive: bool = True,
                       length_dim_num_splits: int = 1, radius: int = 128, sequence_id=1,
                       write_priority: Optional[Tensor] = None,
                       read_priority: Optional[Tensor] = None,
                       attention_kwargs: Optional[dict] = None) -> Tensor:
    """T5's local attention (mtf ``transformer.attention.local_attention_1d``).

    Position p sees memory positions in ``(p - radius, p]`` (``fully_autoregressive``)
    or ``(p - radius, p + radius]``, of the same ``sequence_id`` (an int or a
    Tensor with ``length_dim``), and, with priorities, where
    ``read_priority[p] >= write_priority[m]``.  ``q``, ``k``, ``v`` contain
    ``length_dim`` (``v=None``: ``v = k``).  ``length_dim_num_splits``: how many
    ways the length is split (blocks must not straddle processors).
    ``attention_kwargs`` go to ``attention`` (``is_training``, ``dropout_rate``, ...;
    mtf requires them and crashes without).  Returns ``q.shape - key_dim + value_dim``.
    """
    for t in (q, k):
        check_tensor(t, "local_attention_1d")
    length_dim = convert_to_dimension(length_dim)
    block = _block_length(length_dim.size // length_dim_num_splits, radius)
    query_block = Dimension("query_block_length", block)
    memory_block = Dimension("memory_block_length", block)
    num_blocks = Dimension(length_dim.name, length_dim.size // block)
    exchange = left_halo_exchange if fully_autoregressive else halo_exchange

    def as_query(t):
        return replace_dimensions(t, length_dim, [num_blocks, query_block])

    def as_memory(t):
        return exchange(replace_dimensions(t, length_dim, [num_blocks, memory_block]),
                        num_blocks, memory_block, radius)

    q = as_query(q)
    k = as_memory(k)
    v = k if v is None else as_memory(v)
    if sequence_id is None:
        sequence_id = 1
    if not isinstance(sequence_id, Tensor) or length_dim not in sequence_id.shape:
        sequence_id = sequence_id + zeros(q.mesh, Shape([length_dim]), tf.int32)
    pos = mtf_range(q.mesh, length_dim, tf.int32)
    relative = as_memory(pos) - as_query(pos)
    visible = equal(as_query(sequence_id), as_memory(sequence_id))
    visible = logical_and(visible, greater(relative, -radius))
    visible = logical_and(visible, less_equal(relative, 0 if fully_autoregressive else radius))
    if read_priority is not None:
        visible = logical_and(visible, greater_equal(as_query(read_priority),
                                                     as_memory(write_priority)))
    bias = visibility_mask_to_attention_bias(visible, q.dtype)
    padded = Dimension("memory_block_length",
                       (1 if fully_autoregressive else 2) * radius + block)
    o = attention(q, k, v, padded, key_dim, value_dim, bias, **(attention_kwargs or {}))
    return replace_dimensions(o, [num_blocks, query_block], length_dim)


def local_1d_halo_exchange(k: Tensor, v: Tensor, num_w_blocks, w_dim, mask_right: bool):
    """Keys and values extended by a whole block from the left (``mask_right``) or from both
    sides: a halo exchange along ``num_w_blocks``, or zero padding without blocks.

    (mtf 0.1.21 passes a Dimension as the padding size there, which fails; namedmesh pads
    ``w_dim.size`` zeros.)
    """
    w_dim = convert_to_dimension(w_dim)
    if num_w_blocks is not None:
        exchange = left_halo_exchange if mask_right else halo_exchange
        return (exchange(k, num_w_blocks, w_dim, w_dim.size),
                exchange(v, num_w_blocks, w_dim, w_dim.size))
    paddings = [w_dim.size, 0] if mask_right else [w_dim.size, w_dim.size]
    return pad(k, paddings, w_dim.name), pad(v, paddings, w_dim.name)


def local_2d_halo_exchange(k: Tensor, v: Tensor, num_h_blocks, h_dim, num_w_blocks, w_dim,
                           mask_right: bool):
    """``local_1d_halo_exchange`` along the height blocks, then the width blocks."""
    h_dim, w_dim = convert_to_dimension(h_dim), convert_to_dimension(w_dim)
    for blocks_dim, block_dim in ((num_h_blocks, h_dim), (num_w_blocks, w_dim)):
        halo = block_dim.size
        block_dim = k.shape[block_dim.name]  # grown by the first exchange if the same dim
        if blocks_dim is not None:
            exchange = left_halo_exchange if mask_right else halo_exchange
            k = exchange(k, blocks_dim, block_dim, halo)
            v = exchange(v, blocks_dim, block_dim, halo)
        else:
            paddings = [halo, 0] if mask_right else [halo, halo]
            k, v = pad(k, paddings, block_dim.name), pad(v, paddings, block_dim.name)
    return k, v


def local_self_attention_spatial_blocks(query_antecedent: Tensor, kv_channels, heads,
                                        is_training: bool, memory_w_dim=None,
                                        mask_right: bool = False, master_dtype=None,
                                        slice_dtype=None, name: str = None,
                                        store: Optional[VariableStore] = None) -> Tensor:
    """Attention within a block and its neighbouring blocks (the left one with ``mask_right``).

    ``query_antecedent``: ``[batch, num_w_blocks, w, io_channels]``.  Keys come
    from the block and one block to the left (and right, unless
    ``mask_right``, which also hides later positions).  ``memory_w_dim`` is
    ignored (as in mtf: the memory dim is ``memory_<w>``).  Variable
    ``<name or multihead_attention>/qkvo``.  Returns the input's dims.
    """
    check_tensor(query_antecedent, "local_self_attention_spatial_blocks")
    if query_antecedent.shape.ndims != 4:
        raise ShapeError("local_self_attention_spatial_blocks: expected [batch, num_w_blocks, "
                         "w, io_channels], got %s" % (query_antecedent.shape,))
    kv_channels, heads = convert_to_dimension(kv_channels), convert_to_dimension(heads)
    batch, num_w_blocks, w_dim, io_channels = query_antecedent.shape.dims
    wq, wk, wv, wo = _weights(query_antecedent, heads, io_channels, kv_channels, master_dtype,
                              slice_dtype, None, name or "multihead_attention", store)
    memory = rename_dimension(query_antecedent, w_dim.name, "memory_" + w_dim.name)
    memory_w = memory.shape.dims[-2]
    q = einsum([query_antecedent, wq], Shape([batch, heads, num_w_blocks, w_dim, kv_channels]))
    memory_shape = Shape([batch, heads, num_w_blocks, memory_w, kv_channels])
    k, v = einsum([memory, wk], memory_shape), einsum([memory, wv], memory_shape)
    k, v = local_1d_halo_exchange(k, v, num_w_blocks, memory_w, mask_right)
    mask = attention_bias_local_block(query_antecedent.mesh, w_dim, memory_w) if mask_right \
        else None
    output = dot_product_attention(q, k, v, mask, is_training)
    return einsum([output, wo], Shape([batch, num_w_blocks, w_dim, io_channels]))


def local_2d_self_attention_spatial_blocks(query_antecedent: Tensor, kv_channels, heads,
                                           is_training: bool, memory_h_dim=None,
                                           memory_w_dim=None, mask_right: bool = False,
                                           master_dtype=None, slice_dtype=None,
                                           name: str = None,
                                           store: Optional[VariableStore] = None) -> Tensor:
    """2-D blocks: attention within a block and its 8 neighbours.

    ``query_antecedent``: ``[batch, num_h_blocks, num_w_blocks, h, w, io_channels]``.
    ``mask_right=True`` is not available: mtf 0.1.21's mask for it
    (``attention_bias_local_2d_block``) raises for every input.
    Variable ``<name or multihead_attention>/qkvo``.  Returns the input's dims.
    """
    check_tensor(query_antecedent, "local_2d_self_attention_spatial_blocks")
    if mask_right:
        raise ConfigError("local_2d_self_attention_spatial_blocks: mask_right=True is not "
                          "available; mtf 0.1.21's attention_bias_local_2d_block concatenates "
                          "[w, memory_w] with [memory_h, memory_w] and fails for every input")
    if query_antecedent.shape.ndims != 6:
        raise ShapeError("local_2d_self_attention_spatial_blocks: expected [batch, num_h_blocks,"
                         " num_w_blocks, h, w, io_channels], got %s" % (query_antecedent.shape,))
    kv_channels, heads = convert_to_dimension(kv_channels), convert_to_dimension(heads)
    batch, num_h_blocks, num_w_blocks, h_dim, w_dim, io_channels = query_antecedent.shape.dims
    wq, wk, wv, wo = _weights(query_antecedent, heads, io_channels, kv_channels, master_dtype,
                              slice_dtype, None, name or "multihead_attention", store)
    memory = rename_dimension(query_antecedent, h_dim.name, "memory_" + h_dim.name)
    memory = rename_dimension(memory, w_dim.name, "memory_" + w_dim.name)
    memory_h, memory_w = memory.shape.dims[-3:-1]
    q = einsum([query_antecedent, wq],
               Shape([batch, heads, num_h_blocks, num_w_blocks, h_dim, w_dim, kv_channels]))
    memory_shape = Shape([batch, heads, num_h_blocks, num_w_blocks, memory_h, memory_w,
                          kv_channels])
    k, v = einsum([memory, wk], memory_shape), einsum([memory, wv], memory_shape)
    k, v = local_2d_halo_exchange(k, v, num_h_blocks, memory_h, num_w_blocks, memory_w, False)
    output = dot_product_attention(q, k, v, None, is_training)
    return einsum([output, wo],
                  Shape([batch, num_h_blocks, num_w_blocks, h_dim, w_dim, io_channels]))
