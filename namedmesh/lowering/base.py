"""The interface every executor implements: slices, coordinates and collectives.

A namedmesh ``Tensor`` holds its value *laid out*: a tuple of TensorFlow
tensors, one per processor that this Python process drives (every processor
for the placement executor, this replica's for the tf.distribute executor).
Ops are written once, SPMD style, against this interface:

* ``slicewise(fn, *args)``: run ``fn`` on each processor's slices;
* ``pcoord(axis)``: each processor's coordinate along a mesh axis;
* ``allreduce`` / ``alltoall`` / ``allconcat`` over the groups of one or more
  mesh axes, and ``receive`` (a neighbour exchange along one mesh axis, as
  mtf's ``receive`` / ``shift_by_n_processors``), with gradients that are their
  exact adjoints.

Gradients follow the *joint* convention: TensorFlow differentiates the
program that all processors run together, each copy of a replicated value
being its own input.  The adjoint of a group sum is the group sum, of an
all-to-all the reverse all-to-all, of an all-concat a group sum followed by
taking one's own piece.  Exporting a replicated tensor reads one copy, so the
gradient summed over copies is the gradient of the global program.
"""

import abc
import numbers
from typing import Callable, Sequence, Tuple

import tensorflow as tf

from namedmesh.lowering import trace

LaidOut = Tuple[tf.Tensor, ...]

REDUCTIONS = ("SUM", "MAX", "MIN")


def take_block(t, begin, sizes):
    """The block of ``t`` that starts at ``begin`` with ``sizes`` (-1: to the end) along
    each axis.  ``begin`` holds ints (a processor id known while tracing: an index) or,
    where the processor id is a tensor, scalar tensors (one ``tf.slice``)."""
    if all(isinstance(b, numbers.Integral) for b in begin):
        return t[tuple(slice(b, None if n == -1 else b + n) for b, n in zip(begin, sizes))]
    return tf.slice(t, tf.stack([tf.cast(b, tf.int32) for b in begin]), sizes)


class MeshImpl(abc.ABC):
    """Executes laid-out slices for one Mesh.  Subclasses: one per executor."""

    def __init__(self, mesh):
        self.mesh = mesh

    @property
    def num_local_slices(self) -> int:
        """How many processors' slices this process holds."""
        raise NotImplementedError

    # -- local work ---------------------------------------------------------
    @abc.abstractmethod
    def slicewise(self, fn: Callable, *args) -> LaidOut:
        """``fn`` applied per processor; laid-out args are indexed per slice,
        anything else is passed unchanged.  ``fn`` may return a tuple, in which
        case a tuple of laid-out values is returned."""

    @abc.abstractmethod
    def pcoord(self, mesh_axis: int) -> LaidOut:
        """Each processor's coordinate along ``mesh_axis`` (int32 scalars or ints)."""

    def pcoord_or_none(self) -> LaidOut:
        """One ``None`` per local slice: drives ``slicewise`` for ops with no inputs."""
        return (None,) * self.num_local_slices

    # -- collectives: size-1 mesh axes are skipped and every call is traced here;
    #    executors implement only the data movement (_allreduce, _alltoall, _allconcat)
    def allreduce(self, x: LaidOut, mesh_axes: Sequence[int], reduction: str,
                  shape=None) -> LaidOut:
        """Combine ``x`` over the groups of ``mesh_axes`` with SUM, MAX or MIN."""
        mesh_axes = [a for a in mesh_axes if self.mesh.shape.dims[a].size > 1]
        if not mesh_axes:
            return x
        self.record_collective("all_reduce", mesh_axes, x, shape, reduction=reduction)
        return self._allreduce(x, mesh_axes, reduction)

    def alltoall(self, x: LaidOut, mesh_axis: int, split_axis: int, concat_axis: int,
                 shape=None, new_shape=None) -> LaidOut:
        """Split each slice on ``split_axis`` into one piece per group member,
        send piece k to member k, and concatenate what arrives on ``concat_axis``
        (in member order)."""
        if self.mesh.shape.dims[mesh_axis].size == 1:
            return x
        narrow = getattr(self.mesh, "alltoall_in_bfloat16", False) and x[0].dtype == tf.float32
        if narrow:  # mtf on TPU (simd_mesh_impl.py alltoall): float32 travels as bfloat16
            x = self.slicewise(lambda t: tf.cast(t, tf.bfloat16), x)
        self.record_collective("all_to_all", [mesh_axis], x, shape, split_axis=split_axis,
                               concat_axis=concat_axis, new_shape=new_shape)
        out = self._alltoall(x, mesh_axis, split_axis, concat_axis)
        return self.slicewise(lambda t: tf.cast(t, tf.float32), out) if narrow else out

    def allconcat(self, x: LaidOut, mesh_axis: int, concat_axis: int, shape=None) -> LaidOut:
        """Concatenate the group's slices on ``concat_axis``; every member gets all."""
        if self.mesh.shape.dims[mesh_axis].size == 1:
            return x
        self.record_collective("all_gather", [mesh_axis], x, shape, concat_axis=concat_axis)
        return self._allconcat(x, mesh_axis, concat_axis)

    def receive(self, x: LaidOut, mesh_axis: int, source_pcoord, shape=None) -> LaidOut:
        """Neighbour exchange within the groups along ``mesh_axis`` (mtf's ``receive``).

        The member at coordinate ``k`` of each group gets the slice of the member
        at ``source_pcoord[k]``, or zeros where that is None.  Sources must be
        distinct (each slice goes to at most one member).  The identity map moves
        nothing and is not a collective.
        """
        n = self.mesh.shape.dims[mesh_axis].size
        sources = tuple(None if s is None else int(s) for s in source_pcoord)
        if len(sources) != n or any(s is not None and not 0 <= s < n for s in sources):
            raise ValueError("receive: source_pcoord %r must give, for each of the %d members "
                             "along mesh dim %r, a member coordinate or None"
                             % (list(source_pcoord), n, self.mesh.shape.dims[mesh_axis].name))
        used = [s for s in sources if s is not None]
        if len(set(used)) != len(used):
            raise ValueError("receive: source_pcoord %r sends one slice to two members"
                             % (list(source_pcoord),))
        if sources == tuple(range(n)):
            return x
        self.record_collective("permute", [mesh_axis], x, shape, sources=sources)
        return self._receive(x, mesh_axis, sources)

    def shift_by_n_processors(self, x: LaidOut, mesh_axis: int, offset: int, wrap: bool,
                              shape=None) -> LaidOut:
        """Each processor receives the slice of the member ``offset`` places before it
        along ``mesh_axis``; past the ends: wrap around, or zeros (mtf's method)."""
        n = self.mesh.shape.dims[mesh_axis].size
        sources = []
        for k in range(n):
            c = k - offset
            if c != c % n:
                c = c % n if wrap else None
            sources.append(c)
        return self.receive(x, mesh_axis, sources, shape=shape)

    def _receive(self, x: LaidOut, mesh_axis: int, sources) -> LaidOut:
        """receive along a mesh axis (a map that is not the identity)."""
        raise NotImplementedError("%s has no neighbour exchange" % type(self).__name__)

    @abc.abstractmethod
    def _allreduce(self, x: LaidOut, mesh_axes: Sequence[int], reduction: str) -> LaidOut:
        """allreduce over mesh axes of size > 1."""

    @abc.abstractmethod
    def _alltoall(self, x: LaidOut, mesh_axis: int, split_axis: int, concat_axis: int) -> LaidOut:
        """alltoall along a mesh axis of size > 1."""

    @abc.abstractmethod
    def _allconcat(self, x: LaidOut, mesh_axis: int, concat_axis: int) -> LaidOut:
        """allconcat along a mesh axis of size > 1."""

    # -- the collective trace -------------------------------------------------------
    def should_record(self) -> bool:
        """Whether this process records trace entries (one replica does, under a strategy)."""
        return True

    def record_collective(self, kind, mesh_axes, x, shape=None, reduction=None, split_axis=None,
                          concat_axis=None, new_shape=None, sources=None):
        if not trace.active() or not self.should_record():
            return
        mesh = self.mesh
        first = x[0]
        size = first.dtype.size
        for n in first.shape.as_list():
            size *= n if n is not None else 1
        group_size = 1
        for a in mesh_axes:
            group_size *= mesh.shape.dims[a].size
        trace.record(
            kind=kind,
            mesh_dims=tuple(mesh.shape.dims[a].name for a in mesh_axes),
            shape=mesh.describe_layout(shape) if shape is not None else str(first.shape),
            group_size=group_size,
            num_groups=mesh.size // group_size,
            bytes_per_processor=int(size),
            dtype=first.dtype.name,
            reduction=reduction,
            split_axis=split_axis,
            concat_axis=concat_axis,
            new_shape=mesh.describe_layout(new_shape) if new_shape is not None else None,
            **({"sources": tuple(sources)} if sources is not None else {}),
        )

    def allsplit(self, x: LaidOut, mesh_axis: int, split_axis: int) -> LaidOut:
        """Keep this processor's piece of ``split_axis`` (no communication)."""
        n = self.mesh.shape.dims[mesh_axis].size

        def take(t, coord):
            size = t.shape[split_axis] // n
            begin = [0] * t.shape.rank
            sizes = [-1] * t.shape.rank
            begin[split_axis] = coord * size
            sizes[split_axis] = size
            return take_block(t, begin, sizes)

        return self.slicewise(take, x, self.pcoord(mesh_axis))

    # -- moving whole tensors in and out --------------------------------------
    @abc.abstractmethod
    def import_tf_tensor(self, value: tf.Tensor, layout) -> LaidOut:
        """Slices of a full (global) tensor, according to ``layout``."""

    @abc.abstractmethod
    def export_to_tf_tensor(self, x: LaidOut, layout) -> tf.Tensor:
        """The full (global) tensor assembled from slices."""
