"""Routing statistics: what the router did with every token, on every call.

Counts are *assignments*: a token routed to its first and second choice makes
two.  ``assigned = routed + dropped`` holds by construction of the masks, and
the tests check it from independent counts (dropped is counted from the
positions that overflow capacity, not as a difference).
"""

from dataclasses import dataclass, field
from typing import Dict

import numpy as np

from namedmesh.core.contraction import reduce_sum
from namedmesh.core.elementwise import greater_equal, to_float
from namedmesh.core.tensor import Tensor, export_to_tf_tensor


@dataclass
class RoutingStats:
    """One routing level's statistics (TF values; ``.numpy()`` for numbers).

    first_choice_per_expert / second_choice_per_expert: tokens each expert received
      as first / second choice, after capacity (dims: the expert dims, e.g. [experts]).
    requested_per_expert: assignments each expert was asked to take (first and second
      choices, before capacity): the router's demand, which capacity then caps.
    assigned: assignments the router made (first choices of real tokens plus the
      second choices its policy kept), before capacity.
    assigned_first: the first-choice part of ``assigned`` (one per real token).
    routed: assignments that got a capacity slot.
    dropped: assignments that found their expert full (the token's output lacks it).
    fraction_dropped: dropped / assigned.
    router_confidence: mean top-1 router probability over real tokens.
    expert_dims: names of the per-expert axes.
    """

    first_choice_per_expert: object
    second_choice_per_expert: object
    requested_per_expert: object
    assigned: object
    assigned_first: object
    routed: object
    dropped: object
    fraction_dropped: object
    router_confidence: object
    expert_dims: tuple = field(default=())

    def numpy(self) -> Dict[str, object]:
        out = {}
        for k in ("first_choice_per_expert", "second_choice_per_expert", "requested_per_expert",
                  "assigned", "assigned_first", "routed",
                  "dropped", "fraction_dropped", "router_confidence"):
            v = getattr(self, k)
            out[k] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        return out


@dataclass
class MoEStats:
    """Statistics of one MoE call: one ``RoutingStats`` per routing level
    (``"experts"`` for v1; ``"outer"`` and ``"inner"`` for v2)."""

    levels: Dict[str, RoutingStats]

    def __getitem__(self, level) -> RoutingStats:
        return self.levels[level]

    def numpy(self) -> Dict[str, Dict[str, object]]:
        return {k: v.numpy() for k, v in self.levels.items()}

    def summary(self) -> str:
        lines = []
        for name, s in self.numpy().items():
            lines.append("%-7s assigned %6d  routed %6d  dropped %5d (%.1f%%)  confidence %.3f" % (
                name, s["assigned"], s["routed"], s["dropped"], 100 * s["fraction_dropped"],
                s["router_confidence"]))
        return "\n".join(lines)


def _replicated_counts(mask: Tensor, expert_dims) -> Tensor:
    """Per-expert sums of ``mask``, replicated on every processor.

    An expert dim that the layout splits is mapped onto an unsplit copy by an
    identity einsum, which costs an all-reduce of the small count table; an export
    of the split table would all-gather it instead.
    """
    from namedmesh.core.contraction import einsum
    from namedmesh.core.creation import mtf_range
    from namedmesh.core.dims import Dimension
    from namedmesh.core.elementwise import equal
    counts = reduce_sum(mask, output_shape=expert_dims)
    for d in expert_dims:
        if counts.layout.mesh_axis_of(d.name) is not None:
            whole = Dimension(d.name + "_all", d.size)
            eye = to_float(equal(mtf_range(mask.mesh, d), mtf_range(mask.mesh, whole)))
            out = [whole if e.name == d.name else e for e in counts.shape.dims]
            counts = einsum([counts, eye], output_shape=out)
    return counts


def routing_stats(masks_before, masks_after, positions, capacity: float, top_gate: Tensor,
                  real: Tensor, expert_dims) -> RoutingStats:
    """Statistics from the first/second-choice masks before and after capacity.

    masks_before / masks_after / positions: pairs (first, second) of tensors
      [..., group_size, experts] (positions: slot index each assignment asked for).
    top_gate: [..., group_size] raw top-1 probability; real: [..., group_size] 1.0 for
      tokens that count (importance == 1), else 0.0.
    """
    per_expert = [_replicated_counts(m, expert_dims) for m in masks_after]
    requested = _replicated_counts(masks_before[0] + masks_before[1], expert_dims)
    assigned_first = reduce_sum(masks_before[0])
    assigned = assigned_first + reduce_sum(masks_before[1])
    routed = reduce_sum(masks_after[0]) + reduce_sum(masks_after[1])
    dropped = reduce_sum(masks_before[0] * to_float(greater_equal(positions[0], capacity))) + \
        reduce_sum(masks_before[1] * to_float(greater_equal(positions[1], capacity)))
    confidence = reduce_sum(top_gate * real) / (reduce_sum(real) + 1e-9)
    ex = export_to_tf_tensor
    assigned_v, dropped_v = ex(assigned), ex(dropped)
    return RoutingStats(
        first_choice_per_expert=ex(per_expert[0]), second_choice_per_expert=ex(per_expert[1]),
        requested_per_expert=ex(requested),
        assigned=assigned_v, assigned_first=ex(assigned_first), routed=ex(routed),
        dropped=dropped_v,
        fraction_dropped=dropped_v / (assigned_v + 1e-9), router_confidence=ex(confidence),
        expert_dims=tuple(d.name for d in expert_dims))


__all__ = ["RoutingStats", "MoEStats", "routing_stats"]
