"""Routing statistics: what the router did with every token, on every call.

Counts are *assignments*: a token routed to its first and second choice makes
two.  ``assigned = routed + dropped`` holds by construction of the masks, and
the tests check it from independent counts (dropped is counted from the
positions that overflow capacity, not as a difference).
"""

from dataclasses import dataclass, field
from typing import Dict

import numpy as np
import tensorflow as tf

from namedmesh.core.creation import mtf_range
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import equal, greater_equal, to_float
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
    nonfinite_tokens: tokens left out of routing because their input held NaN or infinity
      (``nonfinite_tokens="mask"``, see ``namedmesh.moe.nonfinite``; counted at the first
      routing level, 0 elsewhere).
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
    nonfinite_tokens: object = 0.0

    def numpy(self) -> Dict[str, object]:
        out = {}
        for k in ("first_choice_per_expert", "second_choice_per_expert", "requested_per_expert",
                  "assigned", "assigned_first", "routed",
                  "dropped", "fraction_dropped", "router_confidence", "nonfinite_tokens"):
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
            if s["nonfinite_tokens"]:
                lines[-1] += "  non-finite tokens masked %d" % s["nonfinite_tokens"]
        return "\n".join(lines)


def _replicated_counts(mask: Tensor, expert_dims):
    """A request (for ``reduce_sums``) of the per-expert sums of ``mask``, replicated on
    every processor.

    An expert dim that the layout splits is mapped onto an unsplit copy
    (``<name>_all``) by an identity matrix before the sum, so the count table is
    completed by the same all-reduce as the other sums; an export of the split
    table would all-gather it instead.
    """
    out = []
    for d in expert_dims:
        if mask.layout.mesh_axis_of(d.name) is not None:
            whole = Dimension(d.name + "_all", d.size)
            mask = mask * to_float(equal(mtf_range(mask.mesh, d), mtf_range(mask.mesh, whole)))
            out.append(whole)
        else:
            out.append(d)
    return mask, Shape(out)


def stats_requests(masks_before, masks_after, positions, capacity: float, top_gate: Tensor,
                   real: Tensor, expert_dims, nonfinite: Tensor = None) -> Dict[str, object]:
    """The sums behind ``RoutingStats``, as requests for ``namedmesh.core.packed.reduce_sums``
    (the router adds its loss to them, so that all share one all-reduce).

    masks_before / masks_after / positions: pairs (first, second) of tensors
      [..., group_size, experts] (positions: slot index each assignment asked for).
    top_gate: [..., group_size] raw top-1 probability; real: [..., group_size] 1.0 for
      tokens that count (importance == 1), else 0.0.  nonfinite: optional [..., group_size],
      1.0 for tokens masked for holding NaN or infinity.
    """
    extra = {} if nonfinite is None else {"nonfinite_tokens": nonfinite}
    return dict(extra, **{
        "first_choice_per_expert": _replicated_counts(masks_after[0], expert_dims),
        "second_choice_per_expert": _replicated_counts(masks_after[1], expert_dims),
        "requested_per_expert": _replicated_counts(masks_before[0] + masks_before[1],
                                                   expert_dims),
        "assigned_first": masks_before[0],
        "assigned_second": masks_before[1],
        "routed_first": masks_after[0],
        "routed_second": masks_after[1],
        "dropped_first": masks_before[0] * to_float(greater_equal(positions[0], capacity)),
        "dropped_second": masks_before[1] * to_float(greater_equal(positions[1], capacity)),
        "confidence_sum": top_gate * real,
        "real_tokens": real,
    })


def routing_stats(sums, expert_dims) -> RoutingStats:
    """``RoutingStats`` from the results of ``stats_requests`` (``{name: Tensor}``)."""
    ex = export_to_tf_tensor
    assigned_first = sums["assigned_first"]
    assigned = ex(assigned_first + sums["assigned_second"])
    dropped = ex(sums["dropped_first"] + sums["dropped_second"])
    return RoutingStats(
        first_choice_per_expert=ex(sums["first_choice_per_expert"]),
        second_choice_per_expert=ex(sums["second_choice_per_expert"]),
        requested_per_expert=ex(sums["requested_per_expert"]),
        assigned=assigned, assigned_first=ex(assigned_first),
        routed=ex(sums["routed_first"] + sums["routed_second"]),
        dropped=dropped, fraction_dropped=dropped / (assigned + 1e-9),
        router_confidence=ex(sums["confidence_sum"] / (sums["real_tokens"] + 1e-9)),
        expert_dims=tuple(d.name for d in expert_dims),
        nonfinite_tokens=ex(sums["nonfinite_tokens"]) if "nonfinite_tokens" in sums else
        tf.zeros([], tf.float32))


__all__ = ["RoutingStats", "MoEStats", "routing_stats", "stats_requests"]
