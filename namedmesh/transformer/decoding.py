"""Autoregressive decoding as mtf decodes: ``Unitransformer.sample_autoregressive`` and
``Bitransformer.decode`` (``beam_size=1``).

    partial_sequences  int32 [batch..., length]: each row a prompt, then zeros to fill
    returns            int32 [batch..., length]: the prompts with the zeros filled

One "first_part" call runs the model over the whole shifted prompt (every position at
once; its attention layers record their keys and values, an encoder-decoder
attention the encoder's), then a loop of "incremental" calls, one position per step
and per row: the step at position ``p`` reads the id at ``p - 1``, attends to the
positions ``<= p`` of the recorded keys and values (updating position ``p``), and
writes its token at ``p`` where the row holds 0.  Rows start at their own position
(the number of nonzero prompt ids).  Temperature 0 takes the argmax over the padded
vocab (as mtf does, a padded id can come out); otherwise a Gumbel sample, seeded.
The loop ends when every row has produced one more ``stop_at_token`` than its prompt
holds, or has reached the length (or ``max_steps``).  It is ``nm.while_loop``: a
``tf.while_loop`` on the placement executor, unrolled under MirroredStrategy.
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.contraction import reduce_all, reduce_sum
from namedmesh.core.control import while_loop
from namedmesh.core.creation import constant, mtf_range, ones_like, zeros, zeros_like
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import (cast, equal, greater, greater_equal, less_equal,
                                        logical_not, logical_or, minimum, not_equal, to_int32,
                                        where)
from namedmesh.core.gather import gather
from namedmesh.core.nn import one_hot
from namedmesh.core.shift import dynamic_shift
from namedmesh.core.tensor import export_to_tf_tensor
from namedmesh.core.topk import nth_largest_element, sample_with_temperature
from namedmesh.errors import ConfigError
from namedmesh.layers.masks import rename_length_to_memory_length
from namedmesh.transformer.context import FIRST_PART, INCREMENTAL, PREDICT, Context
from namedmesh.transformer.unitransformer import autoregressive_inputs


def sample_autoregressive(unit, partial_sequences, stop_at_token: Optional[int] = 1,
                          max_steps: Optional[int] = None, temperature: float = 0.0,
                          encoder_output=None, encoder_sequence_id=None, shared_params=None,
                          has_partial_sequences: bool = True, never_end: bool = False,
                          remove_partial_sequences: bool = False, sampling_keep_top_k: int = -1,
                          bos_id: int = 0, seed=None):
    """Continue each row of ``partial_sequences`` ``[batch..., length]`` (see the module).

    ``seed``: an int (or int64 scalar tensor) for ``temperature > 0``; each step draws
    from ``[seed, step]``.  Returns int32 ``[batch..., length]``.
    """
    if not unit.autoregressive:
        raise ConfigError("sample_autoregressive: Unitransformer %r is not autoregressive"
                          % unit.name)
    if sampling_keep_top_k != -1 and sampling_keep_top_k <= 0:
        raise ConfigError("sampling_keep_top_k must be -1 or positive, got %r"
                          % (sampling_keep_top_k,))
    inputs = partial_sequences
    mesh = inputs.mesh
    batch_dims = list(inputs.shape.dims[:-1])
    length_dim = inputs.shape.dims[-1]
    vocab = unit.output_vocab_dim
    initial_position = reduce_sum(to_int32(not_equal(inputs, 0)), reduced_dim=length_dim)
    sequence_id = 1 if encoder_sequence_id is not None else None
    length_range = mtf_range(mesh, length_dim, tf.int32)
    if unit.input_full_attention:
        read_priority = write_priority = length_range * to_int32(
            greater(length_range, initial_position))
    else:
        read_priority = write_priority = length_range
    shared_params = shared_params or {}

    first = Context(model=unit, mesh=mesh, batch_dims=batch_dims, length_dim=length_dim,
                    store=unit.store, mode=FIRST_PART, position=length_range,
                    position_is_default=True, new_states=[], initial_position=initial_position,
                    sequence_id=sequence_id, encoder_output=encoder_output,
                    encoder_sequence_id=encoder_sequence_id, constant_states=[],
                    shared_params=shared_params, write_priority=write_priority,
                    read_priority=read_priority)
    with unit.store.scope(unit.name):
        unit._call_internal(first, autoregressive_inputs(inputs))
    constant_states = first.constant_states
    if not has_partial_sequences:
        initial_states = [zeros_like(t) for t in first.new_states]
        prompt_eos = 0
    else:
        initial_states = list(first.new_states)
        prompt_eos = reduce_sum(to_int32(equal(partial_sequences, stop_at_token)),
                                reduced_dim=length_dim) if stop_at_token is not None else 0

    def cond_fn(position, ids, step, *unused_states):
        past_end = greater_equal(position, length_dim.size)
        if max_steps:
            past_end = logical_or(past_end,
                                  greater_equal(position - initial_position, max_steps))
        is_done = past_end
        if stop_at_token is not None:
            eos_count = reduce_sum(to_int32(equal(ids, stop_at_token)), reduced_dim=length_dim)
            is_done = logical_or(is_done, greater(eos_count, prompt_eos))
        return logical_not(reduce_all(is_done))

    def body_fn(position, ids, step, *states):
        this_step = gather(ids, position - 1, length_dim)
        if bos_id:
            this_step = this_step + bos_id * ones_like(this_step) * cast(equal(position, 0),
                                                                         tf.int32)
        context = Context(model=unit, mesh=mesh, batch_dims=batch_dims, length_dim=length_dim,
                          store=unit.store, mode=INCREMENTAL, position=position,
                          states=list(states), new_states=[], sequence_id=sequence_id,
                          encoder_output=encoder_output,
                          encoder_sequence_id=encoder_sequence_id,
                          constant_states=constant_states, shared_params=shared_params,
                          write_priority=write_priority, read_priority=position)
        with unit.store.scope(unit.name):
            logits = unit._call_internal(context, this_step)
        if never_end:
            logits = logits + one_hot(constant(mesh, stop_at_token, dtype=tf.int32), vocab,
                                      on_value=-1e9, off_value=0.0, dtype=logits.dtype)
        if sampling_keep_top_k != -1:
            kth = nth_largest_element(logits, sampling_keep_top_k, vocab)
            logits = where(less_equal(logits, kth), ones_like(logits) * -1e6, logits)
        draw_seed = None
        if temperature != 0.0:
            if seed is None and mesh.strategy is not None:
                raise ConfigError("sampling at temperature %r under a tf.distribute strategy "
                                  "needs seed=" % (temperature,))
            if seed is not None:
                draw_seed = tf.stack([tf.cast(seed, tf.int64),
                                      tf.cast(export_to_tf_tensor(step), tf.int64)])
        ids_this_step = sample_with_temperature(logits, vocab, temperature, seed=draw_seed)
        new_ids = ids + ids_this_step * one_hot(position, length_dim, dtype=tf.int32)
        return [position + 1, new_ids, step + 1] + context.new_states

    step0 = constant(mesh, 0, Shape([]), dtype=tf.int32)
    outputs = while_loop(cond_fn, body_fn, [initial_position, inputs, step0] + initial_states,
                         maximum_iterations=length_dim.size)[1]
    if has_partial_sequences and remove_partial_sequences:
        partial_length = reduce_sum(to_int32(not_equal(partial_sequences, 0)),
                                    reduced_dim=length_dim)
        outputs = dynamic_shift(outputs, -partial_length, length_dim, wrap=False)
    return outputs


def decode(bitransformer, inputs, beam_size: int = 1, temperature: float = 0.0,
           sampling_keep_top_k: int = -1, max_decode_length: Optional[int] = None, seed=None,
           **unused_beam_options):
    """mtf's ``Bitransformer.decode`` with ``beam_size=1``: encode ``inputs [batch...,
    length]`` (predict mode, padding from the zeros), then sample the decoder from
    nothing.  Returns int32 ``[batch..., length]`` (or ``max_decode_length``)."""
    if beam_size != 1:
        raise ConfigError("Bitransformer.decode: beam_size=%r; namedmesh decodes greedily or by "
                          "sampling (beam_size=1); mtf's beam search is not built" % beam_size)
    mesh = inputs.mesh
    shared = bitransformer.shared_params(mesh)
    encoder_sequence_id = minimum(inputs, 1)
    encoder_output, _ = bitransformer.encoder.call_simple(
        inputs, None, False, mode=PREDICT, sequence_id=encoder_sequence_id,
        shared_params=shared)
    encoder_output = rename_length_to_memory_length(encoder_output)
    encoder_sequence_id = rename_length_to_memory_length(encoder_sequence_id)
    length_dim = inputs.shape.dims[-1]
    if max_decode_length is not None:
        length_dim = Dimension("length", max_decode_length)
    partial = zeros(mesh, Shape(list(inputs.shape.dims[:-1]) + [length_dim]), tf.int32)
    return sample_autoregressive(
        bitransformer.decoder, partial, temperature=temperature,
        sampling_keep_top_k=sampling_keep_top_k, encoder_output=encoder_output,
        encoder_sequence_id=encoder_sequence_id, shared_params=shared,
        has_partial_sequences=False, seed=seed)


__all__ = ["sample_autoregressive", "decode"]
