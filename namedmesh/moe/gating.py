"""Routers: mtf's top-2 gating and Switch (top-1) gating, op for op.

Both take ``inputs [..., group_size, d_model]`` and return a ``Gating``:
``dispatch`` and ``combine`` tensors ``[..., group_size, experts, capacity]``,
the load-balancing ``loss`` (not yet times ``loss_coef``) and ``stats``.

Router math runs in float32 whatever the activations' dtype (mtf does the same:
bfloat16 routing reduces quality); dispatch/combine come back in the inputs' dtype.

Differences from mtf 0.1.21 (its crashes, fixed):
* train mode without ``importance`` (nonpadding) works (mtf casts ``None``);
* the router z-loss works without ``importance`` and without microbatches
  (mtf divides by ``None``);
* random policies draw from a seed (mtf's draws are unseeded).
"""

from dataclasses import dataclass
from typing import Optional

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_mean, reduce_sum
from namedmesh.core.creation import ones_like, random_uniform, zeros_like
from namedmesh.core.dims import Dimension
from namedmesh.core.elementwise import (cast, equal, greater, less, log, square, stop_gradient,
                                        to_float, to_int32)
from namedmesh.core.nn import cumsum, one_hot, reduce_logsumexp, softmax, top_1
from namedmesh.core.random_ops import stateless_dropout
from namedmesh.core.tensor import Tensor
from namedmesh.layers.dense import dense
from namedmesh.moe.stats import RoutingStats, routing_stats


@dataclass
class Gating:
    dispatch: Tensor
    combine: Tensor
    loss: Tensor
    stats: RoutingStats


class Seeds:
    """Distinct stateless seeds ``[base, k]`` for the random draws of one call."""

    def __init__(self, base):
        self.base = tf.cast(tf.convert_to_tensor(base if base is not None else 0), tf.int64)
        self.count = 0

    def next(self):
        self.count += 1
        return tf.stack([self.base, tf.constant(self.count, tf.int64)])


def _logits(gate_inputs, outer_expert_dims, experts_dim, store, name):
    return dense(gate_inputs, experts_dim, reduced_dims=gate_inputs.shape.dims[-1:],
                 expert_dims=outer_expert_dims, use_bias=False, name=name, store=store)


def router_z_loss(logits, experts_dim, importance=None, num_microbatches=None):
    """mean over real tokens of ``logsumexp(logits)^2`` (ST-MoE's router z-loss)."""
    z = square(reduce_logsumexp(logits, experts_dim))
    if importance is not None:
        real = to_float(equal(importance, 1.0))
        z = z * real
        denom = reduce_sum(real)
    else:
        denom = float(z.shape.size)
    return reduce_sum(z) / (denom * float(num_microbatches or 1))


def top_2_gating(inputs: Tensor, outer_expert_dims, experts_dim: Dimension,
                 capacity_dim: Dimension, config, train: bool, store, name: str,
                 importance: Optional[Tensor] = None, seeds: Optional[Seeds] = None) -> Gating:
    """mtf's ``_top_2_gating``: each token goes to its top expert and, depending on
    the second-place policy, to its second; ``importance`` 1.0 = up to two experts,
    in (0, 1) = at most one, 0 = none (padding)."""
    group_size_dim = inputs.shape.dims[-2]
    gate_inputs = to_float(inputs)
    gate_logits = _logits(gate_inputs, outer_expert_dims, experts_dim, store, name)
    raw_gates = softmax(gate_logits, experts_dim)
    capacity = float(capacity_dim.size)

    gate_1, index_1 = top_1(raw_gates, experts_dim)
    raw_top = gate_1
    mask_1 = one_hot(index_1, experts_dim, dtype=raw_gates.dtype)
    density_1_proxy = raw_gates
    real = None
    if importance is not None:
        real = to_float(equal(importance, 1.0))
        mask_1 *= real
        gate_1 *= real
        density_1_proxy *= real
    gates_without_top_1 = raw_gates * (1.0 - mask_1)
    gate_2, index_2 = top_1(gates_without_top_1, experts_dim)
    mask_2 = one_hot(index_2, experts_dim, dtype=raw_gates.dtype)
    if importance is not None:
        mask_2 *= to_float(greater(importance, 0.0))

    denom = gate_1 + gate_2 + 1e-9
    gate_1 /= denom
    gate_2 /= denom

    density_1 = reduce_mean(mask_1, reduced_dim=group_size_dim)
    density_1_proxy = reduce_mean(density_1_proxy, reduced_dim=group_size_dim)
    loss = reduce_mean(density_1_proxy * density_1) * float(experts_dim.size * experts_dim.size)
    if config.use_second_place_loss:
        density_2 = reduce_mean(mask_2, reduced_dim=group_size_dim)
        normalized = gates_without_top_1 / (
            reduce_sum(gates_without_top_1, reduced_dim=experts_dim) + 1e-9)
        density_2_proxy = reduce_mean(normalized, reduced_dim=group_size_dim)
        loss_2 = reduce_mean(density_2_proxy * density_2) * float(
            experts_dim.size * experts_dim.size)
        loss += loss_2 * 0.5
    if train and config.z_loss is not None:
        loss += config.z_loss * router_z_loss(gate_logits, experts_dim, importance)

    policy = config.second_policy_train if train else config.second_policy_eval
    threshold = config.second_threshold_train if train else config.second_threshold_eval
    if policy == "none":
        mask_2 = zeros_like(mask_2)
    elif policy == "threshold":
        mask_2 *= to_float(greater(gate_2, threshold))
    elif policy == "random":
        seeds = seeds or Seeds(0)
        mask_2 *= to_float(less(random_uniform(gate_2.mesh, gate_2.shape, seeds.next()),
                                gate_2 / max(threshold, 1e-9)))

    mask_1_before, mask_2_before = mask_1, mask_2
    position_in_expert_1 = cumsum(mask_1, group_size_dim, exclusive=True) * mask_1
    mask_1 *= to_float(less(position_in_expert_1, capacity))
    mask_1_count = reduce_sum(mask_1, reduced_dim=group_size_dim)
    mask_1_flat = reduce_sum(mask_1, reduced_dim=experts_dim)
    position_1_per_expert = position_in_expert_1
    position_in_expert_1 = reduce_sum(position_in_expert_1, reduced_dim=experts_dim)
    gate_1 *= mask_1_flat

    position_in_expert_2 = cumsum(mask_2, group_size_dim, exclusive=True) + mask_1_count
    position_in_expert_2 *= mask_2
    mask_2 *= to_float(less(position_in_expert_2, capacity))
    mask_2_flat = reduce_sum(mask_2, reduced_dim=experts_dim)
    gate_2 *= mask_2_flat
    position_2_per_expert = position_in_expert_2
    position_in_expert_2 = reduce_sum(position_in_expert_2, reduced_dim=experts_dim)

    combine = (gate_1 * mask_1_flat * one_hot(index_1, experts_dim)
               * one_hot(to_int32(position_in_expert_1), capacity_dim)
               + gate_2 * mask_2_flat * one_hot(index_2, experts_dim)
               * one_hot(to_int32(position_in_expert_2), capacity_dim))
    combine = cast(combine, inputs.dtype)
    dispatch = cast(cast(combine, tf.bool), combine.dtype)

    stats = routing_stats(
        (mask_1_before, mask_2_before), (mask_1, mask_2),
        (position_1_per_expert, position_2_per_expert), capacity, raw_top,
        real if real is not None else ones_like(raw_top),
        (outer_expert_dims or []) + [experts_dim])
    return Gating(dispatch, combine, cast(loss, inputs.dtype), stats)


def switch_gating(inputs: Tensor, outer_expert_dims, experts_dim: Dimension,
                  capacity_dim: Dimension, config, train: bool, store, name: str,
                  importance: Optional[Tensor] = None, seeds: Optional[Seeds] = None) -> Gating:
    """mtf's ``_switch_gating``: each token goes to one expert (argmax of the router,
    optionally with input jitter / input dropout in training, or sampled)."""
    seeds = seeds or Seeds(0)
    policy = config.switch_policy_train if train else config.switch_policy_eval
    gate_inputs = to_float(inputs)
    if policy == "input_dropout" and train:
        gate_inputs = stateless_dropout(gate_inputs, config.switch_dropout, seeds.next())
    elif train and policy == "input_jitter" and config.switch_jitter:
        eps = config.switch_jitter
        gate_inputs = gate_inputs * random_uniform(gate_inputs.mesh, gate_inputs.shape,
                                                   seeds.next(), minval=1.0 - eps,
                                                   maxval=1.0 + eps)
    gate_logits = _logits(gate_inputs, outer_expert_dims, experts_dim, store, name)
    raw_gates = softmax(gate_logits, experts_dim)
    if policy == "sample":
        noise = random_uniform(gate_logits.mesh, gate_logits.shape, seeds.next(), minval=1e-9,
                               maxval=1.0)
        sampled = stop_gradient(gate_logits) - log(-log(noise)) * config.switch_temperature
        expert_index = top_1(sampled, experts_dim)[1]
        expert_gate = einsum([one_hot(expert_index, experts_dim, dtype=raw_gates.dtype),
                              raw_gates], reduced_dims=[experts_dim])
    else:
        expert_gate, expert_index = top_1(raw_gates, experts_dim)
    raw_top = expert_gate
    expert_mask = one_hot(expert_index, experts_dim, dtype=raw_gates.dtype)

    group_size_dim = inputs.shape.dims[-2]
    density_1 = reduce_mean(expert_mask, reduced_dim=group_size_dim)
    density_1_proxy = reduce_mean(raw_gates, reduced_dim=group_size_dim)
    real = None
    if importance is not None:
        real = cast(equal(importance, 1.0), raw_gates.dtype)
        expert_mask *= real
        expert_gate *= real
        density_1_proxy *= real
    loss = reduce_mean(density_1_proxy * density_1) * float(experts_dim.size * experts_dim.size)
    if train and config.z_loss is not None:
        loss += config.z_loss * router_z_loss(gate_logits, experts_dim, importance)

    mask_before = expert_mask
    position_in_expert = cumsum(expert_mask, group_size_dim, exclusive=True) * expert_mask
    expert_mask *= to_float(less(position_in_expert, float(capacity_dim.size)))
    expert_mask_flat = reduce_sum(expert_mask, reduced_dim=experts_dim)
    expert_gate *= expert_mask_flat
    combine = (expert_gate * expert_mask_flat
               * one_hot(expert_index, experts_dim, dtype=raw_gates.dtype)
               * one_hot(to_int32(position_in_expert), capacity_dim, dtype=raw_gates.dtype))
    combine = cast(combine, inputs.dtype)
    dispatch = cast(cast(combine, tf.bool), combine.dtype)
    zero = zeros_like(mask_before)
    stats = routing_stats(
        (mask_before, zero), (expert_mask, zero), (position_in_expert, zero),
        float(capacity_dim.size), raw_top,
        real if real is not None else ones_like(raw_top),
        (outer_expert_dims or []) + [experts_dim])
    return Gating(dispatch, combine, cast(loss, inputs.dtype), stats)
