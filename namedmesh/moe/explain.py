"""``namedmesh explain``: the annotated cheat sheet of an MoE layer for one config.

It traces the real layer on the mesh (a ``tf.function`` trace: no values are
computed and no weights allocated, so mtf's full-size defaults explain in
seconds) and reads the collective trace and the layer's step marks.  Sizes,
collectives and bytes therefore come from the code that runs, not from a
second model of it.  The sheet shows mtf's one-hot dispatch (its dispatch
tensors are steps of the sheet); the index dispatcher (``dispatch="index"``)
builds no dispatch tensor and makes the same collectives.
"""

import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.tensor import import_tf_tensor
from namedmesh.errors import ConfigError, WrongTypeError
from namedmesh.layers.variables import VariableStore
from namedmesh.lowering.trace import trace_collectives
from namedmesh.mesh.mesh import Mesh, parse_mesh_shape
from namedmesh.moe.dims import moe1d_dims, moe2d_dims
from namedmesh.moe.glossary import MTF_DOCSTRING_NOTE, STEPS, entries


class ShapeOnlyVariableStore(VariableStore):
    """Records variables' shapes; hands out zeros built in the traced graph (never run)."""

    def create(self, full_name, shape, initializer=None, value=None, dtype=tf.float32,
               trainable=True):
        self._shapes[full_name] = convert_to_shape(shape)
        return None

    def get_variable(self, mesh, name, shape, initializer=None, dtype=tf.float32,
                     trainable=True):
        shape = convert_to_shape(shape)
        self._shapes.setdefault(self.full_name(name), shape)
        return import_tf_tensor(mesh, tf.zeros(shape.sizes, dtype), shape)


@dataclass
class LetterInfo:
    letter: str
    what: str
    names: str
    field: str
    size: int
    split_over: Optional[str]
    per_processor: int
    formula: str


@dataclass
class CollectiveInfo:
    kind: str
    mesh_dims: Tuple[str, ...]
    bytes_per_processor: int
    group_size: int
    reduction: Optional[str] = None


@dataclass
class StepInfo:
    name: str
    letters: str
    what: str
    shape: str
    global_sizes: Tuple[int, ...]
    slice_sizes: Tuple[int, ...]
    collectives: List[CollectiveInfo]


@dataclass
class ParameterInfo:
    name: str
    shape: str
    count: int
    bytes_per_processor: int


@dataclass
class Explanation:
    layer: str
    config: Dict[str, object]
    input_shape: str
    mesh_shape: str
    layout: str
    train: bool
    letters: List[LetterInfo]
    steps: List[StepInfo]
    capacity: Dict[str, int]
    padding_share: Dict[str, float]
    parameters: List[ParameterInfo]
    notes: List[str] = field(default_factory=list)

    @property
    def all_to_alls(self) -> List[Tuple[str, CollectiveInfo]]:
        return [(s.name, c) for s in self.steps for c in s.collectives if c.kind == "all_to_all"]

    @property
    def parameter_count(self) -> int:
        return sum(p.count for p in self.parameters)

    @property
    def parameter_bytes_per_processor(self) -> int:
        return sum(p.bytes_per_processor for p in self.parameters)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parameter_count"] = self.parameter_count
        d["parameter_bytes_per_processor"] = self.parameter_bytes_per_processor
        return d


def _assignments_per_token(policy: str, switch: bool = False) -> int:
    return 1 if switch or policy == "none" else 2


def padding_shares(layer_kind: str, config, dims, train: bool) -> Dict[str, float]:
    """Share of capacity slots left empty if every expert got exactly its share of tokens.

    One level: each group's S tokens make k assignments each (k = 2 for top-2 with a
    second-place policy, 1 for Switch or policy "none"), spread over E experts with C
    slots: padding = max(0, 1 - k·S / (E·C)).  MoE2D's second level receives the first
    level's real slots (a fraction 1 - padding_x of t), half of them first choices
    (importance 1.0: up to k assignments) when k = 2, the rest second choices (one).
    """
    policy = config.second_policy_train if train else config.second_policy_eval
    if layer_kind == "MoE1D":
        k = _assignments_per_token(policy, config.moe_gating == "switch")
        slots = dims.experts.size * dims.capacity.size
        return {"experts": max(0.0, 1.0 - k * dims.group_size.size / slots)}
    k = _assignments_per_token(policy)
    pad_x = max(0.0, 1.0 - k * dims.group_size_x.size / (dims.experts_x.size * dims.capacity_x.size))
    real = dims.group_size_y.size * (1.0 - pad_x)
    per_slot = (1.0 / k) * k + (1.0 - 1.0 / k) * 1.0
    pad_y = max(0.0, 1.0 - real * per_slot / (dims.experts_y.size * dims.capacity_y.size))
    return {"outer": pad_x, "inner": pad_y}


def explain(layer, input_shape, mesh_shape, layout, train: bool = False) -> Explanation:
    """Trace ``layer`` on inputs of ``input_shape`` on the mesh; return the annotated sheet."""
    from namedmesh.moe.layers import MoE1D, MoE2D
    if not isinstance(layer, (MoE1D, MoE2D)):
        raise WrongTypeError("explain: expected an MoE1D or MoE2D layer, got %r (%s)"
                             % (layer, type(layer).__name__))
    shape = convert_to_shape(input_shape)
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = Mesh(mesh_shape, layout, devices=[""] * parse_mesh_shape(mesh_shape).size)
    notes += [str(w.message) for w in caught]
    kind = "MoE1D" if isinstance(layer, MoE1D) else "MoE2D"
    dims = (moe1d_dims if kind == "MoE1D" else moe2d_dims)(layer.config, shape, probe, train)
    probe.tensor_layout(shape)  # an input the mesh cannot lay out is an error here

    # mtf's one-hot dispatch, whose dispatch tensors are the cheat sheet's steps; the
    # index dispatcher moves the same tensors between the same collectives
    traced = type(layer).__new__(type(layer))
    traced._setup(layer.config.replace(dispatch="einsum"))
    traced.store = ShapeOnlyVariableStore()

    captured = {}

    def forward(x):
        t = import_tf_tensor(probe, x, shape)
        with trace_collectives() as trace:
            traced(t, train=train, seed=0)
        captured["trace"] = trace
        return tf.constant(0.0)

    tf.function(forward, autograph=False).get_concrete_function(
        tf.TensorSpec(shape.sizes, tf.float32))
    trace = captured["trace"]

    sheet = STEPS["v1" if kind == "MoE1D" else "v2"]
    letters_of = {name: (dims_, what) for name, dims_, what in sheet}
    steps = []
    for step, collectives in trace.collectives_of_steps():
        letters, what = letters_of.get(step.name, ("", ""))
        steps.append(StepInfo(
            name=step.name, letters=letters, what=what, shape=step.shape,
            global_sizes=tuple(step.sizes), slice_sizes=tuple(step.slice_sizes),
            collectives=[CollectiveInfo(c.kind, tuple(c.mesh_dims), c.bytes_per_processor,
                                        c.group_size, c.reduction) for c in collectives]))

    letters = []
    dim_of = dims.as_dict()
    for e in entries("v1" if kind == "MoE1D" else "v2"):
        d = dim_of[e.field]
        twin = dim_of.get(e.field + "_unsplit")
        names = d.name + (" / " + twin.name if twin is not None else "")
        layout_ = probe.tensor_layout(Shape([d]))
        axis = layout_.mesh_axes[0]
        letters.append(LetterInfo(e.letter, e.short, names, e.field, d.size,
                                  None if axis is None else probe.shape.dims[axis].name,
                                  layout_.slice_sizes[0], e.size))
    capacity = ({"experts": dims.capacity.size} if kind == "MoE1D" else
                {"outer": dims.capacity_x.size, "inner": dims.capacity_y.size})
    parameters = []
    for name, var_shape in layer.variable_shapes(shape.dims[-1]).items():
        sl = probe.tensor_layout(var_shape).slice_sizes
        parameters.append(ParameterInfo(name, str(var_shape), var_shape.size,
                                        int(np.prod(sl)) * 4))
    if kind == "MoE2D":
        notes.append(MTF_DOCSTRING_NOTE)
    return Explanation(
        layer=kind, config=layer.config.to_kwargs(), input_shape=shape.to_string(),
        mesh_shape=probe.shape.to_string(), layout=probe.layout_rules.to_string(), train=train,
        letters=letters, steps=steps, capacity=capacity,
        padding_share=padding_shares(kind, layer.config, dims, train), parameters=parameters,
        notes=notes)


# -- rendering --------------------------------------------------------------------------
def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0
    return str(n)


def _collectives_text(step: StepInfo) -> str:
    """All-to-alls and all-gathers one by one; the router's small all-reduces (loss,
    statistics) summed up."""
    parts = []
    for c in step.collectives:
        if c.kind != "all_reduce":
            parts.append("%s over %s, %s/processor" % (c.kind, ",".join(c.mesh_dims),
                                                       _fmt_bytes(c.bytes_per_processor)))
    reduces = [c for c in step.collectives if c.kind == "all_reduce"]
    if reduces:
        parts.append("%d all_reduce (router loss, statistics), %s/processor" % (
            len(reduces), _fmt_bytes(sum(c.bytes_per_processor for c in reduces))))
    return "; ".join(parts) or "-"


def render(ex: Explanation, fmt: str = "text") -> str:
    if fmt not in ("text", "markdown", "json"):
        raise ConfigError("render: format %r: expected 'text', 'markdown' or 'json'" % (fmt,))
    if fmt == "json":
        return json.dumps(ex.to_dict(), indent=2)
    md = fmt == "markdown"
    lines = []

    def table(header, rows):
        if md:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            for r in rows:
                lines.append("| " + " | ".join(str(c) for c in r) + " |")
        else:
            widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows])
                      for i, h in enumerate(header)]
            lines.append("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
            for r in rows:
                lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        lines.append("")

    head = "%s on mesh %s, layout %s, input %s (%s)" % (
        ex.layer, ex.mesh_shape, ex.layout or "''", ex.input_shape,
        "train" if ex.train else "eval")
    lines += ["# " + head if md else head, ""]
    lines.append(("## " if md else "") + "Dimensions")
    lines.append("")
    table(["letter", "what", "mtf name", "size", "split over", "per processor", "formula"],
          [(e.letter, e.what, e.names, e.size, e.split_over or "-", e.per_processor, e.formula)
           for e in ex.letters])
    lines.append(("## " if md else "") + "Steps (global shape; split dims marked with their "
                 "mesh dim)")
    lines.append("")
    table(["step", "dims", "global shape", "slice per processor", "collectives"],
          [(s.name, s.letters, s.shape, "x".join(str(n) for n in s.slice_sizes),
            _collectives_text(s)) for s in ex.steps])
    lines.append(("## " if md else "") + "Capacity and parameters")
    lines.append("")
    for level, cap in ex.capacity.items():
        lines.append("- expert capacity (%s): %d slots per expert per group; %.1f%% of slots "
                     "would be padding under perfect balance"
                     % (level, cap, 100 * ex.padding_share[level]))
    a2a = ex.all_to_alls
    lines.append("- all-to-alls in the forward pass: %d, %s per processor in all"
                 % (len(a2a), _fmt_bytes(sum(c.bytes_per_processor for _, c in a2a))))
    lines.append("")
    table(["variable", "dims", "parameters", "bytes per processor"],
          [(p.name, p.shape, "{:,}".format(p.count), _fmt_bytes(p.bytes_per_processor))
           for p in ex.parameters]
          + [("total", "", "{:,}".format(ex.parameter_count),
              _fmt_bytes(ex.parameter_bytes_per_processor))])
    for note in ex.notes:
        lines.append(("> " if md else "note: ") + note)
    return "\n".join(lines).rstrip() + "\n"
