"""Routers: mtf's top-2 gating and Switch (top-1) gating, op for op.

Both take ``inputs [..., group_size, d_model]`` and return a ``Gating``: each
token's ``routes`` (expert, slot, weight; from which mtf's dispatch and combine
tensors ``[..., group_size, experts, capacity]`` are built on demand), the
load-balancing ``loss`` (not yet times ``loss_coef``) and ``stats``.

Router math runs in float32 whatever the activations' dtype (mtf does the same:
bfloat16 routing reduces quality; Switch's "selective precision"); the combine
weights come back in the inputs' dtype.  Like mtf, which reads every variable in
the activation dtype, a bfloat16 layer reads the router kernel rounded to bfloat16
and then computes with it in float32.

Differences from mtf 0.1.21 (its crashes, fixed):
* train mode without ``importance`` (nonpadding) works (mtf casts ``None``);
* the router z-loss works without ``importance`` and without microbatches
  (mtf divides by ``None``);
* random policies draw from a seed (mtf's draws are unseeded).
"""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_mean, reduce_sum
from namedmesh.core.creation import ones_like, random_uniform, zeros_like
from namedmesh.core.dims import Dimension
from namedmesh.core.elementwise import (cast, equal, greater, less, log, square, stop_gradient,
                                        to_float, to_int32)
from namedmesh.core.nn import cumsum, one_hot, reduce_logsumexp, softmax, top_1
from namedmesh.core.packed import reduce_sums
from namedmesh.core.random_ops import stateless_dropout
from namedmesh.core.tensor import Tensor
from namedmesh.layers.dense import dense
from namedmesh.layers.variables import VariableDType
from namedmesh.moe.stats import RoutingStats, routing_stats, stats_requests


@dataclass
class Route:
    """One choice (first or second) of every token of a group: dims ``[..., group_size]``.

    expert: int32, the chosen expert's index along the experts dim.
    position: float32, the capacity slot the token asked for (mtf's
      ``position_in_expert``; ``>= capacity`` when it did not fit).
    gate: float32, the combine weight; 0.0 when the token was not routed or dropped.
    kept: float32, 1.0 when the token got its slot (mtf's ``mask_flat``).
    """

    expert: Tensor
    position: Tensor
    gate: Tensor
    kept: Tensor


@dataclass
class Gating:
    """A router's decisions for inputs ``[..., group_size, d_model]``.

    routes: one ``Route`` per choice (two for top-2, one for Switch).
    experts_dim / capacity_dim: the dims of the expert slots.
    dtype: the activations' dtype (the combine weights are rounded to it, as in mtf).
    loss: the load-balancing loss (not yet times ``loss_coef``); stats: ``RoutingStats``.
    """

    routes: Tuple[Route, ...]
    experts_dim: Dimension
    capacity_dim: Dimension
    dtype: tf.DType
    loss: Tensor
    stats: RoutingStats
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def combine_tensor(self) -> Tensor:
        """mtf's combine tensor ``[..., group_size, experts, capacity]``: the weight of
        each token in each expert slot (at most one slot per expert, zero elsewhere).
        Built on first use, then kept (``cache``, where dispatchers keep what they derive)."""
        if "combine" not in self.cache:
            combine = None
            for r in self.routes:
                term = (r.gate * r.kept * one_hot(r.expert, self.experts_dim)
                        * one_hot(to_int32(r.position), self.capacity_dim))
                combine = term if combine is None else combine + term
            self.cache["combine"] = cast(combine, self.dtype)
        return self.cache["combine"]

    def weights(self):
        """Each route's combine weight ``[..., group_size]`` in the activations' dtype
        (the value its slot holds in the combine tensor)."""
        return [cast(r.gate * r.kept, self.dtype) for r in self.routes]

    def dispatch_tensor(self, combine: Optional[Tensor] = None) -> Tensor:
        """mtf's dispatch tensor: 1 where the combine weight is not zero, else 0."""
        combine = self.combine_tensor() if combine is None else combine
        return cast(cast(combine, tf.bool), combine.dtype)


class Seeds:
    """Distinct stateless seeds ``[base, k]`` for the random draws of one call."""

    def __init__(self, base):
        self.base = tf.cast(tf.convert_to_tensor(base if base is not None else 0), tf.int64)
        self.count = 0

    def next(self):
        self.count += 1
        return tf.stack([self.base, tf.constant(self.count, tf.int64)])


def _logits(gate_inputs, outer_expert_dims, experts_dim, store, name, activation_dtype):
    """The router logits in float32; the kernel is read in the activations' dtype first
    (mtf reads every variable in the activation dtype, and its router casts it back)."""
    return dense(gate_inputs, experts_dim, reduced_dims=gate_inputs.shape.dims[-1:],
                 expert_dims=outer_expert_dims, use_bias=False, name=name, store=store,
                 variable_dtype=VariableDType(tf.float32, tf.float32, activation_dtype))


def _z_loss_requests(logits, experts_dim, importance=None):
    """The sums of the router z-loss (ST-MoE): ``logsumexp(logits)^2`` over real tokens
    and, with ``importance``, the count of real tokens."""
    z = square(reduce_logsumexp(logits, experts_dim))
    if importance is None:
        return {"z_loss": z}
    real = to_float(equal(importance, 1.0))
    return {"z_loss": z * real, "z_loss_tokens": real}


def _z_loss(sums, shape_size, num_microbatches=None):
    """mean over real tokens of ``logsumexp(logits)^2`` from the sums above."""
    denom = sums["z_loss_tokens"] if "z_loss_tokens" in sums else float(shape_size)
    return sums["z_loss"] / (denom * float(num_microbatches or 1))


def _mean_of_sum(total: Tensor, x: Tensor) -> Tensor:
    """``reduce_mean(x)`` from ``total = reduce_sum(x)`` (the same arithmetic)."""
    return total * (1.0 / x.shape.size)


def top_2_gating(inputs: Tensor, outer_expert_dims, experts_dim: Dimension,
                 capacity_dim: Dimension, config, train: bool, store, name: str,
                 importance: Optional[Tensor] = None, seeds: Optional[Seeds] = None,
                 nonfinite: Optional[Tensor] = None) -> Gating:
    """mtf's ``_top_2_gating``: each token goes to its top expert and, depending on
    the second-place policy, to its second; ``importance`` 1.0 = up to two experts,
    in (0, 1) = at most one, 0 = none (padding).  ``nonfinite``: float ``[..., group_size]``,
    1.0 for tokens masked for holding NaN or infinity (counted in the statistics).

    The loss and the statistics are sums over every group: they share one
    all-reduce (``reduce_sums``), where mtf's loss alone makes one.
    """
    group_size_dim = inputs.shape.dims[-2]
    gate_inputs = to_float(inputs)
    gate_logits = _logits(gate_inputs, outer_expert_dims, experts_dim, store, name,
                          inputs.dtype)
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
    balance = {"balance_1": density_1_proxy * density_1}
    if config.use_second_place_loss:
        density_2 = reduce_mean(mask_2, reduced_dim=group_size_dim)
        normalized = gates_without_top_1 / (
            reduce_sum(gates_without_top_1, reduced_dim=experts_dim) + 1e-9)
        density_2_proxy = reduce_mean(normalized, reduced_dim=group_size_dim)
        balance["balance_2"] = density_2_proxy * density_2
    use_z_loss = train and config.z_loss is not None
    if use_z_loss:
        balance.update(_z_loss_requests(gate_logits, experts_dim, importance))

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

    expert_dims = (outer_expert_dims or []) + [experts_dim]
    requests = dict(balance)
    requests.update(stats_requests(
        (mask_1_before, mask_2_before), (mask_1, mask_2),
        (position_1_per_expert, position_2_per_expert), capacity, raw_top,
        real if real is not None else ones_like(raw_top), expert_dims, nonfinite))
    sums = reduce_sums(requests)

    square_experts = float(experts_dim.size * experts_dim.size)
    loss = _mean_of_sum(sums["balance_1"], balance["balance_1"]) * square_experts
    if config.use_second_place_loss:
        loss_2 = _mean_of_sum(sums["balance_2"], balance["balance_2"]) * square_experts
        loss += loss_2 * 0.5
    if use_z_loss:
        loss += config.z_loss * _z_loss(sums, balance["z_loss"].shape.size)

    routes = (Route(index_1, position_in_expert_1, gate_1, mask_1_flat),
              Route(index_2, position_in_expert_2, gate_2, mask_2_flat))
    return Gating(routes, experts_dim, capacity_dim, inputs.dtype, cast(loss, inputs.dtype),
                  routing_stats(sums, expert_dims))


def switch_gating(inputs: Tensor, outer_expert_dims, experts_dim: Dimension,
                  capacity_dim: Dimension, config, train: bool, store, name: str,
                  importance: Optional[Tensor] = None, seeds: Optional[Seeds] = None,
                  nonfinite: Optional[Tensor] = None) -> Gating:
    """mtf's ``_switch_gating``: each token goes to one expert (argmax of the router,
    optionally with input jitter / input dropout in training, or sampled).  ``nonfinite``:
    as in ``top_2_gating``.
    The loss and the statistics share one all-reduce, as in ``top_2_gating``."""
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
    gate_logits = _logits(gate_inputs, outer_expert_dims, experts_dim, store, name,
                          inputs.dtype)
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
    balance = {"balance_1": density_1_proxy * density_1}
    use_z_loss = train and config.z_loss is not None
    if use_z_loss:
        balance.update(_z_loss_requests(gate_logits, experts_dim, importance))

    mask_before = expert_mask
    position_in_expert = cumsum(expert_mask, group_size_dim, exclusive=True) * expert_mask
    expert_mask *= to_float(less(position_in_expert, float(capacity_dim.size)))
    expert_mask_flat = reduce_sum(expert_mask, reduced_dim=experts_dim)
    expert_gate *= expert_mask_flat

    expert_dims = (outer_expert_dims or []) + [experts_dim]
    zero = zeros_like(mask_before)
    requests = dict(balance)
    requests.update(stats_requests(
        (mask_before, zero), (expert_mask, zero), (position_in_expert, zero),
        float(capacity_dim.size), raw_top,
        real if real is not None else ones_like(raw_top), expert_dims, nonfinite))
    sums = reduce_sums(requests)
    loss = _mean_of_sum(sums["balance_1"], balance["balance_1"]) * float(
        experts_dim.size * experts_dim.size)
    if use_z_loss:
        loss += config.z_loss * _z_loss(sums, balance["z_loss"].shape.size)

    # the slot each token asked for: its position at the chosen expert
    position = reduce_sum(position_in_expert, reduced_dim=experts_dim)
    routes = (Route(expert_index, position, expert_gate, expert_mask_flat),)
    return Gating(routes, experts_dim, capacity_dim, inputs.dtype, cast(loss, inputs.dtype),
                  routing_stats(sums, expert_dims))
