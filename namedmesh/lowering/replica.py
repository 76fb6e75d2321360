"""The tf.distribute executor: the program runs per replica inside ``strategy.run``.

Replica ``i`` is processor ``i`` of the mesh and holds one slice of every
tensor.  Collectives run within the mesh's processor groups:

* MirroredStrategy / MultiWorkerMirroredStrategy (CPU, GPU):
  ``tf.raw_ops.CollectiveAllToAllV2``, ``CollectiveReduceV2`` and
  ``CollectiveGatherV2``, one ``group_key`` per group, an ``instance_key``
  counted per replica in trace order (so every member of a call agrees), and
  an ordering token (the handle of a variable on the replica's own device) so
  that ``tf.function``'s automatic control dependencies do not chain the
  replicas into a deadlock.  They only run inside ``tf.function`` (eagerly,
  MirroredStrategy runs replicas one after another and they would wait
  forever): ``Mesh.run`` wraps the step in one.  These ops have no
  registered gradients; the adjoints are given with ``tf.custom_gradient``.
* TPUStrategy: ``tpu_ops.all_to_all`` and ``tpu_ops.cross_replica_sum`` with
  ``group_assignment`` built from the mesh groups (see docs/tpu.md).

Exported tensors are replicated on every replica; the gradient of an export
is scaled by ``1 / num_replicas`` so that, as tf.distribute expects, the
per-replica gradients *sum* to the gradient of the global program.
"""

import threading
import weakref

import tensorflow as tf

from namedmesh.errors import MeshError
from namedmesh.lowering import trace
from namedmesh.lowering.base import LaidOut, MeshImpl

_keys_lock = threading.Lock()
_group_keys = {}
_next_group_key = [1000]
_graph_instance_base = weakref.WeakKeyDictionary()
_next_instance_base = [1]


def _allocate(table, key, counter, step: int) -> int:
    """The number ``table`` holds for ``key``, taking the next from ``counter`` if new."""
    with _keys_lock:
        value = table.get(key)
        if value is None:
            value = counter[0]
            counter[0] += step
            table[key] = value
        return value


def _group_key(members) -> int:
    """A process-wide key per distinct set of member devices (replica ids)."""
    return _allocate(_group_keys, members, _next_group_key, 1)


def is_tpu_strategy(strategy) -> bool:
    return "TPUStrategy" in type(strategy).__name__


def make_replica_impl(mesh, strategy) -> "ReplicaImpl":
    n = strategy.num_replicas_in_sync
    if n != mesh.size:
        raise MeshError("mesh %s has %d processors but the strategy %s has %d replicas; they must "
                        "be equal (replica i is processor i)"
                        % (mesh.shape.to_string(), mesh.size, type(strategy).__name__, n))
    if is_tpu_strategy(strategy):
        return TpuReplicaImpl(mesh, strategy)
    return CollectiveReplicaImpl(mesh, strategy)


class ReplicaImpl(MeshImpl):
    """Common part: the local slice, coordinates from the replica id, export."""

    def __init__(self, mesh, strategy):
        super().__init__(mesh)
        self.strategy = strategy

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
        """This replica's number: a Python int where it is static (MirroredStrategy),
        else an int32 tensor (TPUStrategy)."""
        rid = self._context().replica_id_in_sync_group
        static = tf.get_static_value(rid)
        return int(static) if static is not None else rid

    def should_record(self) -> bool:
        rid = self.replica_id()
        return not isinstance(rid, int) or rid == 0

    def slicewise(self, fn, *args) -> LaidOut:
        return (fn(*[a[0] if isinstance(a, tuple) else a for a in args]),)

    def pcoord(self, mesh_axis: int) -> LaidOut:
        rid = self.replica_id()
        stride = 1
        for n in self.mesh.shape.sizes[mesh_axis + 1:]:
            stride *= n
        size = self.mesh.shape.sizes[mesh_axis]
        return ((rid // stride) % size,)

    def _my_group(self, mesh_axes):
        """This replica's group along ``mesh_axes`` (a tuple), or None if the id is not static."""
        rid = self.replica_id()
        if isinstance(rid, int):
            for g in self.mesh.groups(mesh_axes):
                if rid in g:
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


class CollectiveReplicaImpl(ReplicaImpl):
    """MirroredStrategy / MultiWorkerMirroredStrategy: TF's V2 collective ops."""

    def __init__(self, mesh, strategy):
        super().__init__(mesh, strategy)
        with strategy.scope():
            # one variable per replica device; its handle orders each replica's collectives
            self._token = tf.Variable(0.0, trainable=False, name="namedmesh_ordering_token")
        self._counters = weakref.WeakKeyDictionary()

    def _instance_key(self) -> int:
        """Same number on every replica for the k-th collective of one traced program."""
        if tf.executing_eagerly():
            raise MeshError(
                "collectives of the tf.distribute executor must run inside tf.function "
                "(eagerly MirroredStrategy runs replicas one after another and they would wait "
                "for each other forever); use mesh.run(fn, ...) or wrap strategy.run in tf.function")
        graph = tf.compat.v1.get_default_graph()
        rid = self.replica_id()
        counters = self._counters.setdefault(graph, {})
        seq = counters.get(rid, 0)
        counters[rid] = seq + 1
        return _allocate(_graph_instance_base, graph, _next_instance_base, 1_000_000) + seq

    def _group_args(self, mesh_axes):
        group = self._my_group(mesh_axes)
        if group is None:
            raise MeshError("the replica id is not static under %s; use TPUStrategy's "
                            "collectives there" % type(self.strategy).__name__)
        return dict(group_size=len(group), group_key=_group_key(group),
                    instance_key=self._instance_key(), ordering_token=[self._token.handle])

    def _raw_sum(self, v, mesh_axes):
        return self._reduce(v, mesh_axes, "Add")

    def _raw_extreme(self, v, mesh_axes, reduction):
        return self._reduce(v, mesh_axes, "Max" if reduction == "MAX" else "Min")

    def _reduce(self, v, mesh_axes, merge_op):
        dtype = v.dtype
        if dtype == tf.bool:
            v = tf.cast(v, tf.int32)
        out = tf.raw_ops.CollectiveReduceV2(input=v, merge_op=merge_op, final_op="Id",
                                            **self._group_args(mesh_axes))
        return tf.cast(out, dtype) if dtype == tf.bool else out

    def _raw_alltoall(self, v, mesh_axis, split_axis, concat_axis):
        n = self.mesh.shape.dims[mesh_axis].size
        pieces = tf.stack(tf.split(v, n, axis=split_axis), axis=0)
        out = tf.raw_ops.CollectiveAllToAllV2(input=pieces, **self._group_args([mesh_axis]))
        return tf.concat(tf.unstack(out, num=n, axis=0), axis=concat_axis)

    def _raw_allconcat(self, v, mesh_axis, concat_axis, n):
        stacked = tf.raw_ops.CollectiveGatherV2(input=tf.expand_dims(v, 0),
                                                **self._group_args([mesh_axis]))
        return tf.concat(tf.unstack(stacked, num=n, axis=0), axis=concat_axis)

    def _raw_receive(self, v, mesh_axis, sources):
        """Neighbour exchange as one all-to-all: TF has no grouped permute collective for
        CPU/GPU outside XLA, so each member sends its slice in the piece of the member that
        receives it and zeros elsewhere (group_size times the data of a true permute)."""
        n = self.mesh.shape.dims[mesh_axis].size
        me = self.pcoord(mesh_axis)[0]
        zeros = tf.zeros_like(v)
        pieces = tf.stack([v if sources[k] == me else zeros for k in range(n)], axis=0)
        out = tf.raw_ops.CollectiveAllToAllV2(input=pieces, **self._group_args([mesh_axis]))
        source = sources[me]
        return zeros if source is None else out[source]


def tpu_group_assignment(mesh, mesh_axes):
    """TPU ``group_assignment`` for collectives along ``mesh_axes``: the mesh groups,
    members in increasing processor (= replica) number."""
    return [list(g) for g in mesh.groups(mesh_axes)]


class TpuReplicaImpl(ReplicaImpl):
    """TPUStrategy: TPU collectives with group assignments (runs on Cloud TPU only).

    all-to-all keeps its dtype (mtf casts float32 to bfloat16 here, a lossy
    workaround not copied); max/min and all-gather go through an all-to-all of
    a tiled slice, since TPU has no grouped max or gather op.
    """

    def _raw_sum(self, v, mesh_axes):
        from tensorflow.python.tpu.ops import tpu_ops
        return tpu_ops.cross_replica_sum(v, tpu_group_assignment(self.mesh, mesh_axes))

    def _gather_all(self, v, mesh_axes):
        """[group_size, *v.shape]: every member's slice, via one all-to-all."""
        from tensorflow.python.tpu.ops import tpu_ops
        groups = tpu_group_assignment(self.mesh, mesh_axes)
        n = len(groups[0])
        tiled = tf.tile(tf.expand_dims(v, 0), [n] + [1] * v.shape.rank)
        return tpu_ops.all_to_all(tiled, concat_dimension=0, split_dimension=0, split_count=n,
                                  group_assignment=groups)

    def _raw_extreme(self, v, mesh_axes, reduction):
        every = self._gather_all(v, mesh_axes)
        return tf.reduce_max(every, 0) if reduction == "MAX" else tf.reduce_min(every, 0)

    def _raw_alltoall(self, v, mesh_axis, split_axis, concat_axis):
        from tensorflow.python.tpu.ops import tpu_ops
        groups = tpu_group_assignment(self.mesh, [mesh_axis])
        return tpu_ops.all_to_all(v, concat_dimension=concat_axis, split_dimension=split_axis,
                                  split_count=len(groups[0]), group_assignment=groups)

    def _raw_allconcat(self, v, mesh_axis, concat_axis, n):
        every = self._gather_all(v, [mesh_axis])
        return tf.concat(tf.unstack(every, num=n, axis=0), axis=concat_axis)

    def _raw_receive(self, v, mesh_axis, sources):
        from tensorflow.python.tpu.ops import tpu_ops
        pairs = [[g[s], g[k]] for g in tpu_group_assignment(self.mesh, [mesh_axis])
                 for k, s in enumerate(sources) if s is not None]
        return tpu_ops.collective_permute(v, pairs)  # members no pair targets get zeros
