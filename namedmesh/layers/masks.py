"""Attention masks as mtf makes them: additive biases, ``-1e9`` where attention is not allowed.

Masks are shaped by name: a query dim ``length`` and a memory dim
``memory_length``; adding a mask to attention logits broadcasts it over the
other dims (batch, heads).
"""

import tensorflow as tf

from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor, equal, less, logical_not, not_equal
from namedmesh.core.reshape import rename_dimension
from namedmesh.core.tensor import Tensor

NEG_INF = -1e9


def rename_length_to_memory_length(x: Tensor, length_name: str = "length",
                                   memory_length_name: str = "memory_length") -> Tensor:
    """``x`` with its dim ``length_name`` renamed ``memory_length_name``."""
    return rename_dimension(x, length_name, memory_length_name)


def visibility_mask_to_attention_bias(visible: Tensor, dtype=tf.float32) -> Tensor:
    """``-1e9`` where ``visible`` (bool) is false, else 0; dims = visible's dims."""
    check_tensor(visible, "visibility_mask_to_attention_bias")
    return cast(logical_not(visible), dtype) * NEG_INF


def attention_mask_ignore_padding(inputs: Tensor, dtype=tf.float32) -> Tensor:
    """Bias that hides padding (id 0) of the memory.

    ``inputs``: ids with dims ``[..., length]``.  Returns ``[..., memory_length]``.
    """
    check_tensor(inputs, "attention_mask_ignore_padding")
    inputs = rename_length_to_memory_length(inputs)
    return cast(equal(inputs, 0), dtype) * NEG_INF


def attention_mask_autoregressive(query_pos: Tensor, dtype=tf.float32) -> Tensor:
    """Bias that hides later positions: ``-1e9`` where ``query_pos < memory_pos``.

    ``query_pos``: positions with dims ``[..., length]``.  Returns
    ``[..., length, memory_length]``.
    """
    check_tensor(query_pos, "attention_mask_autoregressive")
    memory_pos = rename_length_to_memory_length(query_pos)
    return cast(less(query_pos, memory_pos), dtype) * NEG_INF


def attention_mask_same_segment(query_segment: Tensor, memory_segment: Tensor = None,
                                dtype=tf.float32) -> Tensor:
    """Bias that hides other segments (packed examples): ``-1e9`` where the segment ids differ.

    ``query_segment``: ``[..., length]``; ``memory_segment``: ``[..., length]``
    (renamed ``memory_length``; default: ``query_segment``).  Returns
    ``[..., length, memory_length]``.
    """
    check_tensor(query_segment, "attention_mask_same_segment")
    memory_segment = rename_length_to_memory_length(
        query_segment if memory_segment is None else memory_segment)
    return cast(not_equal(query_segment, memory_segment), dtype) * NEG_INF


def attention_bias_local_block(mesh, block_length, memory_length, dtype=tf.int32) -> Tensor:
    """Causal bias of a block attending to [previous block, itself].

    Returns ``[block_length, memory_length]`` (float32) where ``memory_length``
    has ``2 * block_length.size`` positions (its given size is ignored, as in
    mtf): the first half (the previous block) is visible, the second half is
    visible where memory position ``<=`` query position.
    """
    block_length = convert_to_dimension(block_length)
    memory_length = Dimension(convert_to_dimension(memory_length).name, 2 * block_length.size)
    # mtf concatenates zeros (previous block) with less(query, memory); equivalently the
    # memory position m in [0, 2b) is hidden where query + b < m.
    query = mtf_range(mesh, block_length, dtype) + block_length.size
    memory = mtf_range(mesh, memory_length, dtype)
    return cast(less(query, memory), tf.float32) * NEG_INF
