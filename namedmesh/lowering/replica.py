"""The tf.distribute executor: the program runs per replica inside ``strategy.run``.

Each replica runs one mesh processor and holds its slice of every tensor.
Which processor a replica runs, and on which device, is the mesh's processor
map (``namedmesh.mesh.processor_map``); by default replica ``i`` is processor
``i``.  Collectives run within the mesh's processor groups:

* MirroredStrategy / MultiWorkerMirroredStrategy (CPU, GPU):
  ``tf.raw_ops.CollectiveAllToAllV2``, ``CollectiveReduceV2`` and
  ``CollectiveGatherV2``.  Their keys come from ``collective_keys`` (group key
  from the group's devices and mesh dims, instance key from the program and
  the call's position in it), so every process agrees whatever order it built
  things in.  TensorFlow ranks a group's members by its own rule, not by mesh
  order: pieces are sent and received by that rank order
  (``ProcessorMap.rank_order``).  Every op has the mesh's
  ``collective_timeout``; each replica passes an ordering token (a variable on
  its own device) so that ``tf.function``'s automatic control dependencies do
  not chain the replicas into a deadlock.  They run only inside
  ``tf.function`` (eagerly, MirroredStrategy runs replicas one after another):
  ``Mesh.run`` wraps the step in one.  These ops have no registered
  gradients; the adjoints are given with ``tf.custom_gradient``.
* TPUStrategy: ``tpu_ops.all_to_all`` and ``tpu_ops.cross_replica_sum`` with
  ``group_assignment`` = the mesh groups in replica ids (see docs/tpu.md).

Exported tensors are replicated on every replica; the gradient of an export
is scaled by ``1 / num_replicas`` so that, as tf.distribute expects, the
per-replica gradients *sum* to the gradient of the global program.
"""

import threading

import tensorflow as tf

from namedmesh.errors import MeshError
from namedmesh.lowering import collective_keys, trace
from namedmesh.lowering.base import LaidOut, MeshImpl
from namedmesh.mesh.processor_map import processor_map_for_strategy, strategy_kind


def is_tpu_strategy(strategy) -> bool:
    return "TPUStrategy" in type(strategy).__name__


def make_replica_impl(mesh, strategy) -> "ReplicaImpl":
    """The executor of ``mesh`` on ``strategy``, with its checked processor map."""
    processor_map = processor_map_for_strategy(mesh.shape, strategy, mesh.logical_to_physical)
    if strategy_kind(strategy) == "tpu":
        return TpuReplicaImpl(mesh, strategy, processor_map)
    return CollectiveReplicaImpl(mesh, strategy, processor_map)


class ReplicaImpl(MeshImpl):
    """Common part: the local slice, coordinates from the processor id, export."""

    def __init__(self, mesh, strategy, processor_map):
        super().__init__(mesh)
        self.strategy = strategy
        self.processor_map = processor_map

    @property
    def num_local_slices(self) -> int:
        return 1

    # -- where am I ------------------------------------------------------------
    def _context(self):
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync != self.mesh.size or \
                not tf.distribute.has_strategy() or tf.distribute.get_strategy() is not self.strategy:
            raise MeshError(
                "mesh %s runs on a tf.distribute strategy: build its tensors inside "
                "strategy.run (or mesh.run(fn, ...)), not outside" % self.mesh.shape.to_string())
        return ctx

    def replica_id(self):
        """This replica's id in the strategy: a Python int where it is static
        (MirroredStrategy), else an int32 tensor (TPUStrategy)."""
        rid = self._context().replica_id_in_sync_group
        static = tf.get_static_value(rid)
        return int(static) if static is not None else rid

    def processor_id(self):
        """The mesh processor this replica runs (int, or int32 tensor under TPUStrategy)."""
        rid = self.replica_id()
        table = self.processor_map.processor_of_replica
        if isinstance(rid, int):
            return table[rid]
        if self.processor_map.is_identity:
            return rid
        return tf.gather(tf.constant(table, tf.int32), rid)

    def should_record(self) -> bool:
        """The first replica this process runs records the trace (one per worker)."""
        rid = self.replica_id()
        local = self.processor_map.local_replicas
        return not isinstance(rid, int) or rid == (local[0] if local else 0)

    def slicewise(self, fn, *args) -> LaidOut:
        return (fn(*[a[0] if isinstance(a, tuple) else a for a in args]),)

    def pcoord(self, mesh_axis: int) -> LaidOut:
        p = self.processor_id()
        stride = 1
        for n in self.mesh.shape.sizes[mesh_axis + 1:]:
            stride *= n
        size = self.mesh.shape.sizes[mesh_axis]
        return ((p // stride) % size,)

    def _my_group(self, mesh_axes):
        """This processor's group along ``mesh_axes`` (processors, mesh order), or None
        if the processor id is not static."""
        p = self.processor_id()
        if isinstance(p, int):
            for g in self.mesh.groups(mesh_axes):
                if p in g:
                    return tuple(g)
        return None

    # -- collectives: custom-gradient wrappers around the per-backend primitives -------
    def _allreduce(self, x, mesh_axes, reduction) -> LaidOut:
        v = x[0]
        if reduction == "SUM":
            @tf.custom_gradient
            def summed(v):
                def grad(dy):
                    with trace.backward_phase():
                        self.record_collective("all_reduce", mesh_axes, (dy,), None, reduction="SUM")
                        return self._raw_sum(dy, mesh_axes)
                return self._raw_sum(v, mesh_axes), grad
            return (summed(v),)

        @tf.custom_gradient
        def extreme(v):
            y = self._raw_extreme(v, mesh_axes, reduction)

            def grad(dy):
                with trace.backward_phase():
                    self.record_collective("all_reduce", mesh_axes, (dy,), None, reduction="SUM")
                    total = self._raw_sum(dy, mesh_axes)
                return tf.cast(tf.equal(v, y), dy.dtype) * total

            return y, grad

        return (extreme(v),)

    def _alltoall(self, x, mesh_axis, split_axis, concat_axis) -> LaidOut:
        @tf.custom_gradient
        def moved(v):
            def grad(dy):
                with trace.backward_phase():
                    self.record_collective("all_to_all", [mesh_axis], (dy,), None,
                                           split_axis=concat_axis, concat_axis=split_axis)
                    return self._raw_alltoall(dy, mesh_axis, concat_axis, split_axis)
            return self._raw_alltoall(v, mesh_axis, split_axis, concat_axis), grad
        return (moved(x[0]),)

    def _allconcat(self, x, mesh_axis, concat_axis) -> LaidOut:
        n = self.mesh.shape.dims[mesh_axis].size

        @tf.custom_gradient
        def gathered(v):
            def grad(dy):
                with trace.backward_phase():
                    self.record_collective("all_reduce", [mesh_axis], (dy,), None, reduction="SUM")
                    total = self._raw_sum(dy, [mesh_axis])
                return self.allsplit((total,), mesh_axis, concat_axis)[0]  # own piece
            return self._raw_allconcat(v, mesh_axis, concat_axis, n), grad
        return (gathered(x[0]),)

    def _receive(self, x, mesh_axis, sources) -> LaidOut:
        inverse = [None] * len(sources)
        for k, s in enumerate(sources):
            if s is not None:
                inverse[s] = k
        inverse = tuple(inverse)

        @tf.custom_gradient
        def received(v):
            def grad(dy):  # each slice went to at most one member: send the gradient back
                with trace.backward_phase():
                    self.record_collective("permute", [mesh_axis], (dy,), None, sources=inverse)
                    return self._raw_receive(dy, mesh_axis, inverse)
            return self._raw_receive(v, mesh_axis, sources), grad
        return (received(x[0]),)

    # -- import / export -----------------------------------------------------------
    def import_tf_tensor(self, value, layout) -> LaidOut:
        self._context()
        out = value
        for tensor_axis, mesh_axis in enumerate(layout.mesh_axes):
            if mesh_axis is not None:
                out = self.allsplit((out,), mesh_axis, tensor_axis)[0]
        return (tf.identity(out),)

    def export_to_tf_tensor(self, x, layout) -> tf.Tensor:
        out = x[0]
        for tensor_axis, mesh_axis in enumerate(layout.mesh_axes):
            if mesh_axis is not None:
                out = self.allconcat((out,), mesh_axis, tensor_axis, shape=layout.shape)[0]
        return _scale_gradient(out, 1.0 / self.mesh.size)


@tf.custom_gradient
def _scale_gradient_impl(v, scale):
    def grad(dy):
        return dy * tf.cast(scale, dy.dtype), None
    return tf.identity(v), grad


def _scale_gradient(v, scale):
    if not v.dtype.is_floating:
        return v
    return _scale_gradient_impl(v, tf.constant(scale, tf.float32))


ALL_TO_ALL_MAX_GROUP = 11
"""Largest group ``CollectiveAllToAllV2`` exchanges correctly (TF 2.21, generic
implementation, as on CPU): it names the buffer of each (sender, receiver) pair by
writing the two ranks one after the other, so with 12 or more members pairs
(1, 10) and (11, 0) share a name, and pieces are lost or swapped (measured:
"BufRendezvous::ProvideBuf already called", or wrong values).  Larger groups
move their pieces with one all-gather instead."""


# -- ordering tokens ---------------------------------------------------------------------------
_tokens = {}
_tokens_lock = threading.Lock()


def ordering_tokens(devices):
    """One plain resource variable per local device (shared by every mesh on it).

    Made in a helper thread: outside any strategy scope the caller may be in,
    so that no strategy turns it into a distributed variable (which
    MultiWorkerMirroredStrategy would create with a collective broadcast).
    """
    missing = [d for d in devices if d not in _tokens]
    if missing:
        made = {}

        def make():
            with tf.init_scope():
                for d in missing:
                    with tf.device(d):
                        made[d] = tf.Variable(0.0, trainable=False, name="namedmesh_ordering_token")

        thread = threading.Thread(target=make, name="namedmesh-ordering-tokens")
        thread.start()
        thread.join()
        with _tokens_lock:
            for d, v in made.items():
                _tokens.setdefault(d, v)
    return {d: _tokens[d] for d in devices}


class CollectiveReplicaImpl(ReplicaImpl):
    """MirroredStrategy / MultiWorkerMirroredStrategy: TF's V2 collective ops."""

    def __init__(self, mesh, strategy, processor_map):
        super().__init__(mesh, strategy, processor_map)
        local = [str(processor_map.devices[r]) for r in processor_map.local_replicas]
        self._tokens = ordering_tokens(local)

    def _group_args(self, kind, mesh_axes, v, detail=""):
        """Keyword arguments of the collective op for this replica's group along
        ``mesh_axes``, and the group's rank order (positions in mesh order by rank)."""
        rid = self.replica_id()
        group = self._my_group(mesh_axes)
        if group is None:
            raise MeshError("the replica id is not static under %s; use TPUStrategy's "
                            "collectives there" % type(self.strategy).__name__)
        pmap = self.processor_map
        devices = pmap.group_devices(group)
        dims = [self.mesh.shape.dims[a].name for a in mesh_axes]
        program, position = collective_keys.next_position(rid)
        signature = (kind, v.dtype.name, v.shape.as_list(), detail)
        description = "%s over mesh dim(s) %s in group of processors %s on devices %s " \
                      "(program %r, collective #%d)" % (
                          kind, ",".join(dims), list(group), [str(d) for d in devices],
                          program, position)
        keys = collective_keys.collective_keys(devices, dims, program, position, signature,
                                               description)
        token = self._tokens[str(pmap.devices[rid])]
        args = dict(group_size=len(group), group_key=keys.group_key,
                    instance_key=keys.instance_key, ordering_token=[token.handle],
                    timeout_seconds=float(self.mesh.collective_timeout or 0.0),
                    name=keys.op_name)
        return args, pmap.rank_order(group)

    def _raw_sum(self, v, mesh_axes):
        return self._reduce(v, mesh_axes, "Add")

    def _raw_extreme(self, v, mesh_axes, reduction):
        return self._reduce(v, mesh_axes, "Max" if reduction == "MAX" else "Min")

    def _reduce(self, v, mesh_axes, merge_op):
        dtype = v.dtype
        if dtype == tf.bool:
            v = tf.cast(v, tf.int32)
        args, _ = self._group_args("all_reduce", mesh_axes, v, merge_op)
        out = tf.raw_ops.CollectiveReduceV2(input=v, merge_op=merge_op, final_op="Id", **args)
        return tf.cast(out, dtype) if dtype == tf.bool else out

    def _raw_alltoall(self, v, mesh_axis, split_axis, concat_axis):
        n = self.mesh.shape.dims[mesh_axis].size
        pieces = tf.split(v, n, axis=split_axis)          # piece j goes to member j
        stacked = tf.stack(pieces, axis=0)
        if n > ALL_TO_ALL_MAX_GROUP:
            return self._alltoall_by_gather(stacked, mesh_axis, concat_axis, n)
        args, order = self._group_args("all_to_all", [mesh_axis], stacked)
        if list(order) != list(range(n)):
            stacked = tf.stack([pieces[j] for j in order], axis=0)  # slot k: rank k's piece
        out = tf.raw_ops.CollectiveAllToAllV2(input=stacked, **args)
        received = tf.unstack(out, num=n, axis=0)          # slot k: from rank k
        return tf.concat(_to_member_order(received, order), axis=concat_axis)

    def _alltoall_by_gather(self, stacked, mesh_axis, concat_axis, n):
        """An all-to-all of a group larger than ``ALL_TO_ALL_MAX_GROUP``: every member
        gathers every member's ``n`` pieces and keeps its own (``n`` times the data)."""
        args, order = self._group_args("all_to_all_by_gather", [mesh_axis], stacked)
        gathered = tf.raw_ops.CollectiveGatherV2(input=stacked, **args)   # [n * n, ...] by rank
        blocks = tf.reshape(gathered, tf.concat([[n, n], tf.shape(stacked)[1:]], 0))
        me = self._my_group([mesh_axis]).index(self.processor_id())
        received = tf.unstack(blocks[:, me], num=n, axis=0)               # slot k: from rank k
        return tf.concat(_to_member_order(received, order), axis=concat_axis)

    def _raw_allconcat(self, v, mesh_axis, concat_axis, n):
        piece = tf.expand_dims(v, 0)
        args, order = self._group_args("all_gather", [mesh_axis], piece)
        stacked = tf.raw_ops.CollectiveGatherV2(input=piece, **args)
        received = tf.unstack(stacked, num=n, axis=0)
        return tf.concat(_to_member_order(received, order), axis=concat_axis)

    def _raw_receive(self, v, mesh_axis, sources):
        """Neighbour exchange as one all-to-all: TF has no grouped permute collective for
        CPU/GPU outside XLA, so each member sends its slice in the piece of the member that
        receives it and zeros elsewhere (group_size times the data of a true permute)."""
        n = self.mesh.shape.dims[mesh_axis].size
        me = self.pcoord(mesh_axis)[0]
        zeros = tf.zeros_like(v)
        pieces = [v if sources[k] == me else zeros for k in range(n)]   # piece k: member k's
        source = sources[me]
        if n > ALL_TO_ALL_MAX_GROUP:
            stacked = tf.stack([tf.expand_dims(piece, 0) for piece in pieces], axis=0)
            received = self._alltoall_by_gather(stacked, mesh_axis, 0, n)  # [n, ...] by member
            return zeros if source is None else received[source]
        stacked = tf.stack(pieces, axis=0)
        args, order = self._group_args("permute", [mesh_axis], stacked, str(tuple(sources)))
        if list(order) != list(range(n)):
            stacked = tf.stack([pieces[j] for j in order], axis=0)  # slot k: rank k's piece
        out = tf.raw_ops.CollectiveAllToAllV2(input=stacked, **args)
        received = _to_member_order(tf.unstack(out, num=n, axis=0), order)
        return zeros if source is None else received[source]


def _to_member_order(by_rank, order):
    """``by_rank[k]`` came from member ``order[k]``; return them by member."""
    out = [None] * len(by_rank)
    for k, j in enumerate(order):
        out[j] = by_rank[k]
    return out


def tpu_group_assignment(mesh, mesh_axes):
    """TPU ``group_assignment`` for collectives along ``mesh_axes``: the mesh
    groups (members in increasing processor number) in replica ids."""
    return mesh.processor_map.replica_groups(mesh.groups(mesh_axes))


class TpuReplicaImpl(ReplicaImpl):
    """TPUStrategy: TPU collectives with group assignments (runs on Cloud TPU only).

    all-to-all keeps its dtype (mtf casts float32 to bfloat16 here, a lossy
    workaround not copied); max/min and all-gather go through an all-to-all of
    a tiled slice, since TPU has no grouped max or gather op.
    """

    def _groups(self, mesh_axes):
        return self.processor_map.replica_groups(self.mesh.groups(mesh_axes))

    def _raw_sum(self, v, mesh_axes):
        from tensorflow.python.tpu.ops import tpu_ops
        return tpu_ops.cross_replica_sum(v, self._groups(mesh_axes))

    def _gather_all(self, v, mesh_axes):
        """[group_size, *v.shape]: every member's slice, via one all-to-all."""
        from tensorflow.python.tpu.ops import tpu_ops
        groups = self._groups(mesh_axes)
        n = len(groups[0])
        tiled = tf.tile(tf.expand_dims(v, 0), [n] + [1] * v.shape.rank)
        return tpu_ops.all_to_all(tiled, concat_dimension=0, split_dimension=0, split_count=n,
                                  group_assignment=groups)

    def _raw_extreme(self, v, mesh_axes, reduction):
        every = self._gather_all(v, mesh_axes)
        return tf.reduce_max(every, 0) if reduction == "MAX" else tf.reduce_min(every, 0)

    def _raw_alltoall(self, v, mesh_axis, split_axis, concat_axis):
        from tensorflow.python.tpu.ops import tpu_ops
        groups = self._groups([mesh_axis])
        return tpu_ops.all_to_all(v, concat_dimension=concat_axis, split_dimension=split_axis,
                                  split_count=len(groups[0]), group_assignment=groups)

    def _raw_allconcat(self, v, mesh_axis, concat_axis, n):
        every = self._gather_all(v, [mesh_axis])
        return tf.concat(tf.unstack(every, num=n, axis=0), axis=concat_axis)

    def _raw_receive(self, v, mesh_axis, sources):
        from tensorflow.python.tpu.ops import tpu_ops
        pairs = [[g[s], g[k]] for g in self._groups([mesh_axis])
                 for k, s in enumerate(sources) if s is not None]
        return tpu_ops.collective_permute(v, pairs)  # members no pair targets get zeros


__all__ = ["CollectiveReplicaImpl", "ReplicaImpl", "TpuReplicaImpl",
           "is_tpu_strategy", "make_replica_impl", "ordering_tokens", "tpu_group_assignment"]
