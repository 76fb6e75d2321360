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

import contextlib
import threading
from dataclasses import dataclass
from typing import Optional, Tuple

import tensorflow as tf

from namedmesh.errors import MeshError
from namedmesh.lowering import collective_keys, spmd, trace
from namedmesh.lowering.base import LaidOut, MeshImpl, take_block
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

    # -- collectives: custom-gradient wrappers around the per-backend primitives -------
    def _allreduce(self, x, mesh_axes, reduction) -> LaidOut:
        v = x[0]
        if reduction == "SUM":
            @tf.custom_gradient
            def summed(v):
                scope = tf.get_current_name_scope()

                def grad(dy):
                    with _backward_of(scope):
                        self.record_collective("all_reduce", mesh_axes, (dy,), None, reduction="SUM")
                        return self._raw_sum(dy, mesh_axes)
                return self._raw_sum(v, mesh_axes), grad
            return (summed(v),)

        @tf.custom_gradient
        def extreme(v):
            y = self._raw_extreme(v, mesh_axes, reduction)
            scope = tf.get_current_name_scope()

            def grad(dy):
                with _backward_of(scope):
                    self.record_collective("all_reduce", mesh_axes, (dy,), None, reduction="SUM")
                    total = self._raw_sum(dy, mesh_axes)
                return tf.cast(tf.equal(v, y), dy.dtype) * total

            return y, grad

        return (extreme(v),)

    def _alltoall(self, x, mesh_axis, split_axis, concat_axis) -> LaidOut:
        @tf.custom_gradient
        def moved(v):
            scope = tf.get_current_name_scope()

            def grad(dy):
                with _backward_of(scope):
                    self.record_collective("all_to_all", [mesh_axis], (dy,), None,
                                           split_axis=concat_axis, concat_axis=split_axis)
                    return self._raw_alltoall(dy, mesh_axis, concat_axis, split_axis)
            return self._raw_alltoall(v, mesh_axis, split_axis, concat_axis), grad
        return (moved(x[0]),)

    def _allconcat(self, x, mesh_axis, concat_axis) -> LaidOut:
        n = self.mesh.shape.dims[mesh_axis].size

        @tf.custom_gradient
        def gathered(v):
            scope = tf.get_current_name_scope()

            def grad(dy):
                with _backward_of(scope):
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
            scope = tf.get_current_name_scope()

            def grad(dy):  # each slice went to at most one member: send the gradient back
                with _backward_of(scope):
                    self.record_collective("permute", [mesh_axis], (dy,), None, sources=inverse)
                    return self._raw_receive(dy, mesh_axis, inverse)
            return self._raw_receive(v, mesh_axis, sources), grad
        return (received(x[0]),)

    # -- import / export -----------------------------------------------------------
    def import_tf_tensor(self, value, layout) -> LaidOut:
        """This replica's slice of ``value``, cut along every split axis by one slice op:
        its gradient (a whole-size tensor per replica, as a mirrored variable's gradient
        must be) is then one pad, not one per split axis."""
        self._context()
        split = [(t, a) for t, a in enumerate(layout.mesh_axes) if a is not None]
        if not split:
            return (tf.identity(value),)
        sizes = list(layout.slice_sizes)
        begin = [0] * len(sizes)
        for tensor_axis, mesh_axis in split:
            begin[tensor_axis] = self.pcoord(mesh_axis)[0] * sizes[tensor_axis]
        return (tf.identity(take_block(value, begin, sizes)),)

    def export_to_tf_tensor(self, x, layout) -> tf.Tensor:
        out = x[0]
        for tensor_axis, mesh_axis in enumerate(layout.mesh_axes):
            if mesh_axis is not None:
                out = self.allconcat((out,), mesh_axis, tensor_axis, shape=layout.shape)[0]
        return _scale_gradient(out, 1.0 / self.mesh.size)


@contextlib.contextmanager
def _backward_of(scope: str):
    """The backward pass of a collective whose forward ran in name scope ``scope``: recorded
    as backward, its ops named ``gradient_tape/<scope>/...`` as TensorFlow names the
    gradients of its own ops (a custom gradient's ops otherwise land in the root scope)."""
    with trace.backward_phase(), tf.name_scope("gradient_tape/%s/" % scope if scope
                                               else "gradient_tape/"):
        yield


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


@dataclass(frozen=True)
class GroupTable:
    """The groups along one set of mesh axes, looked up by replica id: all a collective
    needs to find its group's key and rank order from a replica-id tensor.

    groups: the groups (processors in mesh order); group_of_replica[r]: the index of
    replica r's group; group_keys[r] / orders[r]: its group key and rank order
    (``ProcessorMap.rank_order``); uniform_order: the rank order if every group has
    the same one, else None.
    """

    mesh_dims: Tuple[str, ...]
    groups: Tuple[Tuple[int, ...], ...]
    group_of_replica: Tuple[int, ...]
    group_keys: Tuple[int, ...]
    orders: Tuple[Tuple[int, ...], ...]
    uniform_order: Optional[Tuple[int, ...]]

    @classmethod
    def build(cls, mesh, processor_map, mesh_axes) -> "GroupTable":
        dims = tuple(mesh.shape.dims[a].name for a in mesh_axes)
        groups = tuple(tuple(g) for g in mesh.groups(list(mesh_axes)))
        keys = [collective_keys.group_key(processor_map.group_devices(g), dims) for g in groups]
        orders = [tuple(processor_map.rank_order(g)) for g in groups]
        of_replica = [0] * processor_map.size
        for i, g in enumerate(groups):
            for p in g:
                of_replica[processor_map.replica_of_processor[p]] = i
        return cls(dims, groups, tuple(of_replica), tuple(keys[i] for i in of_replica),
                   tuple(orders[i] for i in of_replica),
                   orders[0] if len(set(orders)) == 1 else None)


class CollectiveReplicaImpl(ReplicaImpl):
    """MirroredStrategy / MultiWorkerMirroredStrategy: TF's V2 collective ops.

    The replica id is a Python int when each replica traces the program
    (``strategy.run`` called directly) and an int32 tensor inside the single-trace
    SPMD program of ``mesh.run`` (``namedmesh.lowering.spmd``); then group keys and
    rank orders are looked up from ``GroupTable``s with it.
    """

    def __init__(self, mesh, strategy, processor_map):
        super().__init__(mesh, strategy, processor_map)
        local = [str(processor_map.devices[r]) for r in processor_map.local_replicas]
        self._tokens = ordering_tokens(local)
        self._tables = {}

    def group_table(self, mesh_axes) -> GroupTable:
        """The ``GroupTable`` of ``mesh_axes`` (built once per set of mesh axes)."""
        key = tuple(mesh_axes)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = GroupTable.build(self.mesh, self.processor_map, key)
        return table

    def ordering_token(self, replica: int):
        """The ordering-token variable of ``replica`` (on its device)."""
        return self._tokens[str(self.processor_map.devices[replica])]

    def _group_args(self, kind, mesh_axes, v, detail=""):
        """Keyword arguments of the collective op for this replica's group along
        ``mesh_axes``, and the group's rank order (positions in mesh order by rank): a
        tuple, or an int32 tensor in the SPMD program if groups rank differently."""
        rid = self.replica_id()
        table = self.group_table(mesh_axes)
        dims = list(table.mesh_dims)
        signature = (kind, v.dtype.name, v.shape.as_list(), detail)
        if isinstance(rid, int):
            pmap = self.processor_map
            group = table.groups[table.group_of_replica[rid]]
            devices = pmap.group_devices(group)
            program, position = collective_keys.next_position(rid)
            description = "%s over mesh dim(s) %s in group of processors %s on devices %s " \
                          "(program %r, collective #%d)" % (
                              kind, ",".join(dims), list(group), [str(d) for d in devices],
                              program, position)
            keys = collective_keys.collective_keys(devices, dims, program, position, signature,
                                                   description)
            group_key, order = keys.group_key, table.orders[rid]
            token = self.ordering_token(rid)
        else:
            # one trace for every replica: the program's tokens are replaced per replica
            # when it is called (spmd.SpmdProgram)
            program, position = collective_keys.next_position(spmd.SPMD_REPLICA)
            if len(table.groups) == 1:
                where = "group of processors %s on devices %s" % (
                    list(table.groups[0]),
                    [str(d) for d in self.processor_map.group_devices(table.groups[0])])
            else:
                where = "groups of processors %s" % [list(g) for g in table.groups]
            description = "%s over mesh dim(s) %s in %s (program %r, collective #%d)" % (
                kind, ",".join(dims), where, program, position)
            keys = collective_keys.spmd_collective_keys(table.group_keys, program, position,
                                                        signature, description)
            group_key = tf.gather(tf.constant(table.group_keys, tf.int32), rid)
            order = table.uniform_order
            if order is None:
                order = tf.gather(tf.constant(table.orders, tf.int32), rid)
            token = self.ordering_token(spmd.tracing_replica())
        args = dict(group_size=len(table.groups[0]), group_key=group_key,
                    instance_key=keys.instance_key, ordering_token=[token.handle],
                    timeout_seconds=float(self.mesh.collective_timeout or 0.0),
                    name=keys.op_name)
        return args, order

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
        stacked = _cut(v, n, split_axis)                  # piece j goes to member j
        if n > ALL_TO_ALL_MAX_GROUP:
            return self._alltoall_by_gather(stacked, mesh_axis, concat_axis, n)
        args, order = self._group_args("all_to_all", [mesh_axis], stacked)
        out = tf.raw_ops.CollectiveAllToAllV2(input=_to_rank_order(stacked, order, n), **args)
        return _joined(_by_member(out, order, n), concat_axis)

    def _alltoall_by_gather(self, stacked, mesh_axis, concat_axis, n):
        """An all-to-all of a group larger than ``ALL_TO_ALL_MAX_GROUP``: every member
        gathers every member's ``n`` pieces and keeps its own (``n`` times the data)."""
        args, order = self._group_args("all_to_all_by_gather", [mesh_axis], stacked)
        gathered = tf.raw_ops.CollectiveGatherV2(input=stacked, **args)   # [n * n, ...] by rank
        blocks = tf.reshape(gathered, tf.concat([[n, n], tf.shape(stacked)[1:]], 0))
        me = self.pcoord(mesh_axis)[0]        # my place in the group (members in mesh order)
        mine = blocks[:, me] if isinstance(me, int) else tf.gather(blocks, me, axis=1)
        mine.set_shape(stacked.shape)           # [n, piece...], as sent
        return _joined(_by_member(mine, order, n), concat_axis)  # slot k: rank k

    def _raw_allconcat(self, v, mesh_axis, concat_axis, n):
        piece = tf.expand_dims(v, 0)
        args, order = self._group_args("all_gather", [mesh_axis], piece)
        stacked = tf.raw_ops.CollectiveGatherV2(input=piece, **args)
        stacked.set_shape([n] + piece.shape.as_list()[1:])   # every member's slice
        return _joined(_by_member(stacked, order, n), concat_axis)

    def _raw_receive(self, v, mesh_axis, sources):
        """Neighbour exchange as one all-to-all: TF has no grouped permute collective for
        CPU/GPU outside XLA, so each member sends its slice in the piece of the member that
        receives it and zeros elsewhere (group_size times the data of a true permute)."""
        n = self.mesh.shape.dims[mesh_axis].size
        me = self.pcoord(mesh_axis)[0]
        zeros = tf.zeros_like(v)
        if isinstance(me, int):
            pieces = [v if sources[k] == me else zeros for k in range(n)]   # piece k: member k's
        else:
            pieces = [zeros if sources[k] is None else tf.where(tf.equal(me, sources[k]), v, zeros)
                      for k in range(n)]
        if n > ALL_TO_ALL_MAX_GROUP:
            stacked = tf.stack([tf.expand_dims(piece, 0) for piece in pieces], axis=0)
            received = self._alltoall_by_gather(stacked, mesh_axis, 0, n)  # [n, ...] by member
            return _from_source(received, sources, me, zeros)
        stacked = tf.stack(pieces, axis=0)
        args, order = self._group_args("permute", [mesh_axis], stacked, str(tuple(sources)))
        out = tf.raw_ops.CollectiveAllToAllV2(input=_to_rank_order(stacked, order, n), **args)
        return _from_source(_by_member(out, order, n), sources, me, zeros)


def _to_rank_order(stacked, order, n):
    """``stacked[j]`` is for member ``j``; slot ``k`` of the result is for rank ``k``
    (member ``order[k]``).  ``order``: a tuple, or an int32 tensor (SPMD program)."""
    if isinstance(order, tuple):
        if order == tuple(range(n)):
            return stacked
        return tf.stack([stacked[j] for j in order], axis=0)
    return tf.gather(stacked, order)


def _by_member(by_rank, order, n):
    """``by_rank[k]`` (``n`` slots) came from member ``order[k]``: the slots in member
    order (``order``: a tuple, or an int32 tensor in an SPMD program)."""
    if isinstance(order, tuple):
        if order == tuple(range(n)):
            return by_rank
        inverse = [0] * n
        for k, j in enumerate(order):
            inverse[j] = k
        return tf.gather(by_rank, inverse)
    return tf.gather(by_rank, tf.math.invert_permutation(order))


def _sizes(t):
    """``t``'s dims: Python ints where static, scalar tensors where not."""
    static, dynamic = t.shape.as_list(), None
    out = []
    for i, size in enumerate(static):
        if size is None:
            dynamic = tf.shape(t) if dynamic is None else dynamic
            size = dynamic[i]
        out.append(size)
    return out


def _cut(v, n, axis):
    """``[n, ...]``: ``v`` cut into ``n`` equal pieces along ``axis``, piece ``j`` at
    ``[j]`` (``tf.stack(tf.split(v, n, axis))`` with one copy, none when ``axis`` is 0)."""
    sizes = _sizes(v)
    pieces = tf.reshape(v, sizes[:axis] + [n, sizes[axis] // n] + sizes[axis + 1:])
    if axis == 0:
        return pieces
    rank = len(sizes) + 1
    return tf.transpose(pieces, [axis] + list(range(axis)) + list(range(axis + 1, rank)))


def _joined(stacked, axis):
    """The ``n`` pieces ``stacked[j]`` joined along ``axis`` (``tf.concat(tf.unstack(
    stacked), axis)`` with one copy, none when ``axis`` is 0)."""
    sizes = _sizes(stacked)
    n, piece = sizes[0], sizes[1:]
    if axis != 0:
        rank = len(sizes)
        stacked = tf.transpose(stacked, list(range(1, axis + 1)) + [0]
                               + list(range(axis + 1, rank)))
    return tf.reshape(stacked, piece[:axis] + [n * piece[axis]] + piece[axis + 1:])


def _from_source(received, sources, me, zeros):
    """``received[sources[me]]`` (by member), or zeros where this member has no source."""
    if isinstance(me, int):
        return zeros if sources[me] is None else received[sources[me]]
    table = tf.constant([-1 if s is None else s for s in sources], tf.int32)
    source = tf.gather(table, me)
    return tf.where(source >= 0, tf.gather(received, tf.maximum(source, 0)), zeros)


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


__all__ = ["CollectiveReplicaImpl", "GroupTable", "ReplicaImpl", "TpuReplicaImpl",
           "is_tpu_strategy", "make_replica_impl", "ordering_tokens", "tpu_group_assignment"]
