"""The processor map: mesh processor <-> replica id <-> device, in one place.

A mesh has processors ``0 .. N-1`` (row-major coordinates, the last mesh dim
fastest).  A tf.distribute strategy has replicas ``0 .. N-1``, each on one
device.  The map says which replica runs which processor, and on which device
(task and index); every executor reads it, nothing else guesses.

    processor p  --replica_of_processor-->  replica r  --devices[r]-->  device

* MirroredStrategy: replica ``r`` runs on ``strategy.extended.worker_devices[r]``,
  in the order the strategy was given its devices (reversed is fine).
* MultiWorkerMirroredStrategy: replica ``r`` is local device ``r % L`` of the
  worker whose id in the cluster is ``r // L`` (``L`` devices per worker; the
  chief, if any, is id 0, then workers by *numeric* task index).
* TPUStrategy: replica ``r`` runs on the core its device assignment gives it
  (``device_assignment.coordinates(r, 0)``, see ``namedmesh.mesh.tpu_topology``).

By default processor ``p`` is replica ``p``.  ``logical_to_physical`` changes
that: processor ``p`` runs on "physical" processor ``logical_to_physical[p]``,
which is a replica id, or on TPU a core in mtf's physical order.

**Collective ranks.**  TensorFlow's collective ops (``CollectiveAllToAllV2``,
``CollectiveGatherV2``) do not order a group's members the way the caller
lists them: the runtime ranks them by its own rule (TF's
``CollectiveParamResolverLocal::CompleteDefaultRanking``): members sorted by
parsed device name (job, then replica, task and device index as numbers),
then grouped by task with the tasks in the *string* order of their names
(``/job:worker/replica:0/task:10`` before ``.../task:2``), the devices of one
task in the sorted order.  ``collective_rank_order`` computes that order, and
the executor sends and receives pieces by it, so any device order the
strategy accepts gives the same answer.  One case cannot be known from names:
a task with three or more GPUs in one group, which TensorFlow may reorder by
interconnect link strength; ``namedmesh check`` (``namedmesh.check_collectives``)
measures the real order on the machine.
"""

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from namedmesh.errors import MeshError


# -- device names ------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceName:
    """A fully specified TensorFlow device: ``/job:J/replica:R/task:T/device:TYPE:I``."""

    job: str
    replica: int
    task: int
    device_type: str
    index: int

    @property
    def task_name(self) -> str:
        """``/job:J/replica:R/task:T``: how TensorFlow names the task of the device."""
        return "/job:%s/replica:%d/task:%d" % (self.job, self.replica, self.task)

    @property
    def full_name(self) -> str:
        return "%s/device:%s:%d" % (self.task_name, self.device_type, self.index)

    @property
    def sort_key(self):
        """TensorFlow's ``DeviceNameUtils::ParsedName`` order: numbers compare as numbers."""
        return (self.job, self.replica, self.task, self.device_type, self.index)

    def __str__(self):
        return self.full_name


def parse_device(name, default_job: str = "localhost", default_task: int = 0) -> DeviceName:
    """A device name as TensorFlow's runtime spells it in full.

    ``"/cpu:3"`` -> ``/job:localhost/replica:0/task:0/device:CPU:3``; a name
    without a device type or index is an error that names it.
    """
    try:
        spec = tf.DeviceSpec.from_string(str(name))
    except (ValueError, TypeError) as e:
        raise MeshError("device %r is not a TensorFlow device name: %s" % (name, e)) from None
    if spec.device_type is None or spec.device_index is None:
        raise MeshError("device %r does not name one device (expected e.g. "
                        "'/job:worker/replica:0/task:1/device:CPU:0' or '/cpu:0')" % (name,))
    return DeviceName(
        job=spec.job if spec.job is not None else default_job,
        replica=spec.replica if spec.replica is not None else 0,
        task=spec.task if spec.task is not None else default_task,
        device_type=spec.device_type.upper(),
        index=int(spec.device_index))


def collective_rank_order(devices: Sequence) -> List[int]:
    """Positions of ``devices`` in the order of the ranks TensorFlow's collective
    runtime gives them: ``out[k]`` is the position of the member with rank ``k``.

    The rule (TensorFlow >= 2.5, ``CompleteDefaultRanking``): sort by parsed
    device name; order tasks by the *string* of their task name; within a task,
    keep the sorted order.  ``["/job:w/replica:0/task:2/...", ".../task:10/..."]``
    gives ``[1, 0]`` ("task:10" < "task:2" as strings).
    """
    parsed = [d if isinstance(d, DeviceName) else parse_device(d) for d in devices]
    if len(set(parsed)) != len(parsed):
        raise MeshError("a collective group lists one device twice: %s"
                        % [p.full_name for p in parsed])
    by_name = sorted(range(len(parsed)), key=lambda i: parsed[i].sort_key)
    order = []
    for task in sorted({p.task_name for p in parsed}):
        order.extend(i for i in by_name if parsed[i].task_name == task)
    return order


def link_ordered_tasks(devices: Sequence) -> List[str]:
    """Tasks where TensorFlow may order the group by GPU link strength instead of
    by name: three or more GPUs of one task in the group."""
    parsed = [d if isinstance(d, DeviceName) else parse_device(d) for d in devices]
    counts: Dict[str, int] = {}
    for p in parsed:
        if p.device_type == "GPU":
            counts[p.task_name] = counts.get(p.task_name, 0) + 1
    return sorted(t for t, n in counts.items() if n >= 3)


# -- the map -----------------------------------------------------------------------------------
def _coordinates(sizes: Sequence[int], pnum: int) -> Tuple[int, ...]:
    coords = []
    for n in reversed(sizes):
        coords.append(pnum % n)
        pnum //= n
    return tuple(reversed(coords))


@dataclass(frozen=True)
class ProcessorMap:
    """Mesh processor <-> replica id <-> device.

    mesh_dims: ``((name, size), ...)`` of the mesh.
    replica_of_processor: ``[p] -> r``, a permutation of ``range(N)``.
    devices: ``[r] -> DeviceName`` of replica ``r`` (the placement executor: of processor ``r``).
    executor: the strategy's class name, or ``"placement"``.
    tpu_cores: ``[r] -> (x, y, z, core)`` on TPU, else None.
    local_replicas: the replicas this process runs (all of them in one process).
    """

    mesh_dims: Tuple[Tuple[str, int], ...]
    replica_of_processor: Tuple[int, ...]
    devices: Tuple[DeviceName, ...]
    executor: str
    tpu_cores: Optional[Tuple[Tuple[int, ...], ...]] = None
    local_replicas: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        n = 1
        for _, size in self.mesh_dims:
            n *= size
        if sorted(self.replica_of_processor) != list(range(n)):
            raise MeshError("the processor map of mesh %s must send its %d processors to "
                            "replicas 0..%d, one each; got %s"
                            % (self.mesh_string, n, n - 1, list(self.replica_of_processor)))
        if len(self.devices) != n:
            raise MeshError("mesh %s has %d processors but %d replica devices: %s"
                            % (self.mesh_string, n, len(self.devices),
                               [str(d) for d in self.devices]))
        if len(set(self.devices)) != n:
            twice = sorted({str(d) for d in self.devices if self.devices.count(d) > 1})
            raise MeshError("mesh %s: device(s) %s hold more than one processor; every "
                            "processor needs its own device" % (self.mesh_string, twice))

    # -- lookups -------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.replica_of_processor)

    @property
    def mesh_string(self) -> str:
        return ";".join("%s:%d" % d for d in self.mesh_dims) or "''"

    @functools.cached_property
    def processor_of_replica(self) -> Tuple[int, ...]:
        out = [0] * self.size
        for p, r in enumerate(self.replica_of_processor):
            out[r] = p
        return tuple(out)

    @property
    def is_identity(self) -> bool:
        """Whether processor ``p`` is replica ``p`` for every ``p``."""
        return list(self.replica_of_processor) == list(range(self.size))

    def device_of_processor(self, p: int) -> DeviceName:
        return self.devices[self.replica_of_processor[p]]

    def coordinates(self, p: int) -> Tuple[int, ...]:
        return _coordinates([s for _, s in self.mesh_dims], p)

    def replica_groups(self, processor_groups: Sequence[Sequence[int]]) -> List[List[int]]:
        """The same groups in replica ids (a TPU ``group_assignment``)."""
        return [[self.replica_of_processor[p] for p in g] for g in processor_groups]

    def group_devices(self, group: Sequence[int]) -> Tuple[DeviceName, ...]:
        return tuple(self.device_of_processor(p) for p in group)

    def rank_order(self, group: Sequence[int]) -> Tuple[int, ...]:
        """Positions in ``group`` (processors in mesh order) by collective rank:
        the member at ``group[out[k]]`` has rank ``k`` in TensorFlow's collectives."""
        return _rank_order_cached(self.group_devices(group))

    # -- reading it ------------------------------------------------------------------------
    def describe(self, groups_by_dim: Optional[Dict[str, List[List[int]]]] = None) -> str:
        """A table: processor, mesh coordinates, replica, device (and TPU core),
        then, per mesh dim, the groups whose collective ranks differ from mesh order."""
        names = [n for n, _ in self.mesh_dims]
        lines = ["processor map: mesh %s on %s, %d processor(s)%s" % (
            self.mesh_string, self.executor, self.size,
            "" if self.is_identity else ", placed by logical_to_physical")]
        placement = self.executor == "placement"
        header = ["processor"] + names + ([] if placement else ["replica"]) + ["device"]
        if self.tpu_cores is not None:
            header.append("core (x,y,z,c)")
        rows = []
        for p in range(self.size):
            r = self.replica_of_processor[p]
            row = [str(p)] + [str(c) for c in self.coordinates(p)]
            row += ([] if placement else [str(r)]) + [str(self.devices[r])]
            if self.tpu_cores is not None:
                row.append("(%s)" % ",".join(str(c) for c in self.tpu_cores[r]))
            rows.append(row)
        numeric = len(header) - (2 if self.tpu_cores is not None else 1)
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        for row in [header] + rows:
            lines.append("  " + "  ".join(c.rjust(w) if i < numeric else c.ljust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if groups_by_dim and self.tpu_cores is None and self.executor != "placement":
            lines.append("collective ranks (TensorFlow's order of each group's members; "
                         "namedmesh sends and receives by it):")
            for dim, groups in groups_by_dim.items():
                moved = []
                for g in groups:
                    order = self.rank_order(g)
                    if list(order) != list(range(len(g))):
                        moved.append("%s ranks %s" % (list(g), [g[i] for i in order]))
                    risky = link_ordered_tasks(self.group_devices(g))
                    if risky:
                        moved.append("%s: %s may order its GPUs by link strength; run "
                                     "`namedmesh check` to measure" % (list(g), risky))
                lines.append("  along %s: %s" % (
                    dim, "; ".join(moved) if moved else "every group ranks in mesh order"))
        return "\n".join(lines)


@functools.lru_cache(maxsize=4096)
def _rank_order_cached(devices: Tuple[DeviceName, ...]) -> Tuple[int, ...]:
    return tuple(collective_rank_order(devices))


# -- building it ---------------------------------------------------------------------------
def strategy_kind(strategy) -> str:
    """``"tpu"``, ``"multi_worker"``, ``"mirrored"`` or ``"one_device"``; an error otherwise."""
    name = type(strategy).__name__
    if "TPUStrategy" in name:
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or \
            "CollectiveAllReduceStrategy" in name:
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return "one_device"
    raise MeshError("a Mesh runs on MirroredStrategy, MultiWorkerMirroredStrategy, TPUStrategy "
                    "or OneDeviceStrategy; got %s" % name)


def _worker_tasks(resolver) -> List[Tuple[str, int]]:
    """(job, task) of every worker in MultiWorkerMirroredStrategy's replica order."""
    spec = resolver.cluster_spec()
    jobs = spec.as_dict()
    if resolver.task_type == "evaluator":
        return [("evaluator", i) for i in spec.task_indices("evaluator")]
    tasks = []
    for job in ("chief", "worker"):
        if job in jobs:
            tasks.extend((job, i) for i in spec.task_indices(job))  # numeric order
    return tasks


def _check_local_devices_exist(local: List[DeviceName], strategy) -> None:
    """Every device the strategy runs a replica on here must be one TensorFlow has."""
    have = {parse_device(d.name) for d in tf.config.list_logical_devices()}
    for r, d in enumerate(local):
        if d not in have:
            raise MeshError("%s runs a replica on %s, a device TensorFlow does not have here "
                            "(its devices: %s)" % (type(strategy).__name__, d,
                                                   sorted(str(h) for h in have)))


def strategy_devices(strategy) -> Tuple[List[DeviceName], Tuple[int, ...]]:
    """(device of every replica id, the replica ids this process runs) for a
    Mirrored, MultiWorkerMirrored or OneDevice strategy."""
    local = [parse_device(d) for d in strategy.extended.worker_devices]
    _check_local_devices_exist(local, strategy)
    kind = strategy_kind(strategy)
    n = strategy.num_replicas_in_sync
    if kind != "multi_worker" or n == len(local):
        return local, tuple(range(len(local)))
    resolver = strategy.cluster_resolver
    tasks = _worker_tasks(resolver)
    devices = [DeviceName(job, d.replica, task, d.device_type, d.index)
               for job, task in tasks for d in local]
    if len(devices) != n:
        raise MeshError(
            "MultiWorkerMirroredStrategy has %d replicas but its cluster %s with %d local "
            "device(s) per worker %s gives %d; every worker must have the same devices"
            % (n, resolver.cluster_spec().as_dict(), len(local), [str(d) for d in local],
               len(devices)))
    me = tasks.index((resolver.task_type, resolver.task_id)) if \
        (resolver.task_type, resolver.task_id) in tasks else None
    if me is None or devices[me * len(local):(me + 1) * len(local)] != local:
        raise MeshError(
            "this worker (%s:%s) runs devices %s, which are not replicas %d..%d of the cluster "
            "%s as MultiWorkerMirroredStrategy numbers them"
            % (resolver.task_type, resolver.task_id, [str(d) for d in local],
               (me or 0) * len(local), (me or 0) * len(local) + len(local) - 1,
               resolver.cluster_spec().as_dict()))
    return devices, tuple(range(me * len(local), (me + 1) * len(local)))


def check_permutation(logical_to_physical, n: int, what: str) -> Tuple[int, ...]:
    try:
        perm = tuple(int(v) for v in logical_to_physical)
    except (TypeError, ValueError):
        raise MeshError("logical_to_physical must be a list of %s, got %r"
                        % (what, logical_to_physical)) from None
    if sorted(perm) != list(range(n)):
        raise MeshError("logical_to_physical must be a permutation of 0..%d (one %s per "
                        "processor), got %s" % (n - 1, what, list(perm)))
    return perm


def processor_map_for_devices(mesh_shape, devices: Sequence[str]) -> ProcessorMap:
    """The placement executor's map: processor ``p`` on ``devices[p]`` (``""``: default device)."""
    dims = tuple((d.name, d.size) for d in mesh_shape.dims)
    parsed = []
    for i, d in enumerate(devices):
        if d:
            parsed.append(parse_device(d))
        else:  # unplaced: a label that is unique per processor
            parsed.append(DeviceName("default", 0, 0, "ANY", i))
    return ProcessorMap(dims, tuple(range(len(parsed))), tuple(parsed), "placement")


def processor_map_for_strategy(mesh_shape, strategy, logical_to_physical=None) -> ProcessorMap:
    """The map of a mesh on a strategy, checked: sizes agree, every device named once.

    ``logical_to_physical``: None (processor p is replica p), a permutation
    (processor p runs as replica ``logical_to_physical[p]``; on TPU, at core
    ``logical_to_physical[p]`` in mtf's physical order), or ``"auto"`` on TPU
    (mtf's ``auto_logical_to_physical_tpu`` for the strategy's topology).
    """
    dims = tuple((d.name, d.size) for d in mesh_shape.dims)
    n = mesh_shape.size
    replicas = strategy.num_replicas_in_sync
    name = type(strategy).__name__
    if replicas != n:
        raise MeshError("mesh %s has %d processors but the strategy %s has %d replicas; they "
                        "must be equal (one processor per replica)"
                        % (mesh_shape.to_string(), n, name, replicas))
    if strategy_kind(strategy) == "tpu":
        from namedmesh.mesh import tpu_topology
        return tpu_topology.processor_map_for_tpu_strategy(mesh_shape, strategy,
                                                           logical_to_physical)
    devices, local = strategy_devices(strategy)
    if strategy_kind(strategy) == "multi_worker":
        name = "MultiWorkerMirroredStrategy"
    if isinstance(logical_to_physical, str):
        raise MeshError("logical_to_physical=%r needs a TPU topology; on %s give a "
                        "permutation of replica ids or None" % (logical_to_physical, name))
    order = tuple(range(n)) if logical_to_physical is None else \
        check_permutation(logical_to_physical, n, "replica id")
    return ProcessorMap(dims, order, tuple(devices), name, local_replicas=local)
