"""The collective trace: a record of every collective a program ran.

    with namedmesh.trace_collectives() as trace:
        y = namedmesh.reshape(x, new_shape)
    print(trace.summary())
    trace.count("all_to_all")

Records are made when the op is lowered: every call eagerly, once per trace
inside ``tf.function``; under the tf.distribute executor, for the first replica
of each process only (replica 0 in one process; the program is the same on
every replica).  The tf.distribute executor also
records the collectives of the backward pass (its custom adjoints) with
``phase="backward"``; the placement executor's backward pass is TensorFlow's
own autodiff of the forward ops and is not recorded.

The list of active traces is process-wide (tf.distribute runs replica
functions in threads of its own); the phase flag is per thread.
"""

import contextlib
import threading
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

from namedmesh.errors import ConfigError

_state = threading.local()  # per thread: the phase
_traces = []                # process-wide: the active traces
_lock = threading.Lock()

KINDS = ("all_reduce", "all_to_all", "all_gather", "permute")


@dataclass(frozen=True)
class CollectiveRecord:
    """One collective.

    kind: "all_reduce", "all_to_all", "all_gather" or "permute" (a neighbour
      exchange: each member receives one other member's slice).
    mesh_dims: names of the mesh dims whose groups it runs in.
    shape: the global tensor dims it moves, as a string with split dims marked,
      e.g. ``[experts:4(b1), batch:8, d_model:16]`` (for an all-to-all: before it).
    new_shape: for an all-to-all made by a reshape, the dims after the reshape.
    group_size: processors per group; num_groups: how many groups run it at once.
    bytes_per_processor: bytes of the slice each processor contributes.
    reduction: "SUM"/"MAX"/"MIN" for all-reduces.
    split_axis / concat_axis: tensor axes of the slice (all-to-all / all-gather).
    sources: for a permute, the member each member receives from (None: zeros).
    phase: "forward" or "backward".
    """

    kind: str
    mesh_dims: Tuple[str, ...]
    shape: str
    group_size: int
    num_groups: int
    bytes_per_processor: int
    dtype: str
    reduction: Optional[str] = None
    split_axis: Optional[int] = None
    concat_axis: Optional[int] = None
    new_shape: Optional[str] = None
    phase: str = "forward"
    sources: Optional[Tuple[Optional[int], ...]] = None

    def describe(self) -> str:
        extra = ""
        if self.kind == "all_reduce":
            extra = " %s" % self.reduction
        if self.new_shape:
            extra += " -> %s" % self.new_shape
        if self.sources is not None:
            extra += " from %s" % ",".join("-" if s is None else str(s) for s in self.sources)
        return "%-10s %-9s over %-8s %s%s  %d B/processor (%d groups of %d)" % (
            self.kind, self.phase, ",".join(self.mesh_dims) or "-", self.shape, extra,
            self.bytes_per_processor, self.num_groups, self.group_size)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepRecord:
    """A named step of a layer (``mark_step``): the tensor it produced.

    shape: global dims with split dims marked; sizes / slice_sizes: global and
    per-processor sizes; dims: names; split: {tensor dim: mesh dim};
    first_collective: index in ``records`` of the first collective after the
    previous step (the collectives of this step are records[previous:first_collective]).
    """

    name: str
    shape: str
    dims: Tuple[str, ...]
    sizes: Tuple[int, ...]
    slice_sizes: Tuple[int, ...]
    split: Tuple[Tuple[str, str], ...]
    dtype: str
    collectives_before: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CollectiveTrace:
    """The records of one ``trace_collectives()`` block, in the order they ran."""

    records: List[CollectiveRecord] = field(default_factory=list)
    steps: List[StepRecord] = field(default_factory=list)

    def collectives_of_steps(self):
        """[(StepRecord, [CollectiveRecord, ...])]: each step with the forward
        collectives that ran since the step before it."""
        out, start = [], 0
        forward = [i for i, r in enumerate(self.records) if r.phase == "forward"]
        for step in self.steps:
            mine = [self.records[i] for i in forward if start <= i < step.collectives_before]
            out.append((step, mine))
            start = step.collectives_before
        return out

    def count(self, kind: Optional[str] = None, phase: Optional[str] = "forward",
              mesh_dims: Optional[Tuple[str, ...]] = None) -> int:
        return len(self.select(kind, phase, mesh_dims))

    def select(self, kind=None, phase="forward", mesh_dims=None) -> List[CollectiveRecord]:
        if kind is not None and kind not in KINDS:   # a misspelt kind would count 0, silently
            raise ConfigError("collective kind %r: expected one of %s" % (kind, ", ".join(KINDS)))
        if phase not in (None, "forward", "backward"):
            raise ConfigError("phase %r: expected 'forward', 'backward' or None" % (phase,))
        out = []
        for r in self.records:
            if kind is not None and r.kind != kind:
                continue
            if phase is not None and r.phase != phase:
                continue
            if mesh_dims is not None and tuple(r.mesh_dims) != tuple(mesh_dims):
                continue
            out.append(r)
        return out

    def total_bytes(self, kind=None, phase="forward") -> int:
        return sum(r.bytes_per_processor for r in self.select(kind, phase))

    def summary(self) -> str:
        if not self.records:
            return "(no collectives)"
        return "\n".join(r.describe() for r in self.records)

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


@contextlib.contextmanager
def trace_collectives():
    """Record the collectives run inside the block; yields a ``CollectiveTrace``."""
    trace = CollectiveTrace()
    with _lock:
        _traces.append(trace)
    try:
        yield trace
    finally:
        with _lock:
            _traces.remove(trace)


@contextlib.contextmanager
def backward_phase():
    """Mark records made inside as the backward pass (used by custom gradients)."""
    old = getattr(_state, "phase", "forward")
    _state.phase = "backward"
    try:
        yield
    finally:
        _state.phase = old


@contextlib.contextmanager
def suspended():
    """Record nothing inside the block (for code that is traced but never runs)."""
    old = getattr(_state, "suspended", False)
    _state.suspended = True
    try:
        yield
    finally:
        _state.suspended = old


def checkpoint():
    """A function that removes what the active traces recorded since this call (for a
    program whose trace was abandoned and is made again)."""
    with _lock:
        marks = [(t, len(t.records), len(t.steps)) for t in _traces]

    def rollback():
        with _lock:
            for t, records, steps in marks:
                del t.records[records:]
                del t.steps[steps:]

    return rollback


def record(**fields) -> None:
    """Add a record to every active trace (no-op when none is active)."""
    if getattr(_state, "suspended", False):
        return
    rec = CollectiveRecord(phase=getattr(_state, "phase", "forward"), **fields)
    with _lock:
        for t in _traces:
            t.records.append(rec)


def active() -> bool:
    return bool(_traces)


def mark_step(name: str, tensor) -> None:
    """Note that a layer produced ``tensor`` at step ``name`` (no-op when not tracing)."""
    if not _traces or getattr(_state, "suspended", False) or not tensor.mesh.impl.should_record():
        return
    mesh = tensor.mesh
    layout = tensor.layout
    split = tuple((d.name, mesh.shape.dims[a].name)
                  for d, a in zip(tensor.shape.dims, layout.mesh_axes) if a is not None)
    with _lock:
        for t in _traces:
            t.steps.append(StepRecord(
                name=name, shape=mesh.describe_layout(tensor.shape), dims=tensor.shape.names,
                sizes=tensor.shape.sizes, slice_sizes=layout.slice_sizes, split=split,
                dtype=tensor.dtype.name, collectives_before=len(t.records)))
