"""One SPMD program for the tf.distribute executor: traced once, called by every replica.

Under MirroredStrategy and MultiWorkerMirroredStrategy, ``strategy.run(fn)`` calls
``fn`` once per replica: the program is built op by op in Python once per replica,
so its first call costs N traces.  ``mesh.run`` instead runs ``SpmdProgram(mesh, fn)``
on every replica: the first replica traces ``fn`` once, as a ``tf.function`` whose
first argument is the replica id (an int32 tensor, as under TPUStrategy), and every
replica calls that one concrete function:

* while it is traced, the replica context's ``replica_id_in_sync_group`` is that
  tensor: namedmesh computes mesh coordinates from it and looks up each collective's
  group key and rank order in tables indexed by it (``replica.GroupTable``; instance
  keys do not depend on the replica), and the program's own use of the replica id
  is right for every replica;
* what the trace captured for the tracing replica is replaced, when a replica calls
  the function, by that replica's own (``ConcreteFunction.
  replace_capture_with_deferred_capture``): the component of a distributed
  (mirrored) variable becomes the calling replica's component, and the ordering
  token of the tracing replica's device that of the calling replica's device.

A program that synchronises through tf.distribute itself (``merge_call``: an
optimizer's ``apply_gradients`` in replica context, ``ReplicaContext.all_reduce`` /
``all_gather``), that writes a variable every replica shares, or that fails to trace
as one program, runs as ``strategy.run`` runs it, traced per replica;
``SpmdProgram.fallback`` (and ``mesh.spmd_fallback``) says why.
"""

import threading
from typing import Optional

import tensorflow as tf

from namedmesh.lowering import collective_keys, trace

SPMD_REPLICA = "spmd"
"""The replica key under which the SPMD program counts its collectives' positions."""

_state = threading.local()   # the static id of the replica tracing an SPMD program


class PerReplicaOnly(Exception):
    """Raised inside an SPMD trace by what needs the per-replica traces of strategy.run."""


def tracing_replica() -> int:
    """The (static) replica id of the replica that traces the current SPMD program."""
    replica = getattr(_state, "replica", None)
    if replica is None:
        raise RuntimeError("namedmesh: a replica-id tensor outside an SPMD program trace")
    return replica


class SpmdProgram:
    """``fn`` as one SPMD program on ``mesh`` (a tf.distribute mesh): call it inside
    ``strategy.run`` (in a ``tf.function``); see the module doc.

    traces: how many times ``fn`` was traced (1, or one per replica after a fallback).
    fallback: None, or why the program runs traced per replica.
    """

    def __init__(self, mesh, fn, name: str):
        self.mesh = mesh
        self.fn = fn
        self.name = name
        self.concrete = None
        self.fallback: Optional[str] = None
        self.traces = 0
        self._lock = threading.Lock()

    def __call__(self, *args):
        rid = _static_replica_id()
        with self._lock:
            if self.concrete is None and self.fallback is None:
                self._trace(rid, args)
        if self.fallback is not None:
            self.traces += 1
            return self.fn(*args)
        return self.concrete(tf.constant(rid, tf.int32), *args)

    # -- tracing ------------------------------------------------------------------------
    def _trace(self, rid, args):
        ctx = tf.distribute.get_replica_context()
        name = self.name

        def program(replica_id, *a):
            collective_keys.set_program_name(tf.compat.v1.get_default_graph(), name)
            self.traces += 1
            with _replica_id_as(ctx, replica_id, rid):
                return self.fn(*a)

        program.__name__ = name
        rollback = trace.checkpoint()
        try:
            # not inlined: one function body that each replica device instantiates, rather
            # than N copies of it pasted into the step's graph (graph optimisation of that
            # N-fold graph made the first call grow faster than the replica count)
            concrete = tf.function(program, autograph=False,
                                   experimental_attributes={"_noinline": True}
                                   ).get_concrete_function(
                tf.TensorSpec([], tf.int32, name="replica_id"), *args)
            self._per_replica_captures(concrete)
        except Exception as e:  # noqa: BLE001 -- any failure: run it as strategy.run does
            rollback()
            self.traces = 0
            self.fallback = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return
        self.concrete = concrete

    def _per_replica_captures(self, concrete):
        """Captured per-replica resources become the calling replica's, at each call."""
        impl = self.mesh.impl
        local = self.mesh.processor_map.local_replicas or range(self.mesh.size)
        tokens = {id(impl.ordering_token(r).handle) for r in local}
        spec = tf.TensorSpec([], tf.resource)
        replaced, shared = [], []
        for index, (external, internal) in enumerate(concrete.graph.captures):
            if external.dtype != tf.resource or tf.is_symbolic_tensor(external):
                continue
            container = getattr(external, "_distributed_container", None)
            if container is not None and container() is not None:
                replaced.append((external, internal, _component_of(container())))
            elif id(external) in tokens:
                replaced.append((external, internal, _token_of(impl)))
            else:
                shared.append((index, external))
        # which shared resources the program writes: asked before any capture is replaced
        # (a deferred capture moves the function's inputs, and with them the indices)
        written = _written_captures(concrete, [i for i, _ in shared])
        if written:
            raise PerReplicaOnly("the program writes resource(s) every replica shares (%s); "
                                 "one program called by every replica would serialise the "
                                 "replicas" % ", ".join(str(shared[i][1].device) for i in written))
        for external, internal, closure in replaced:
            concrete.replace_capture_with_deferred_capture(external, closure, spec=spec,
                                                           placeholder=internal)


def _component_of(variable):
    def closure():   # in the calling replica's context: its own component
        return variable.handle
    return closure


def _token_of(impl):
    def closure():
        return impl.ordering_token(_static_replica_id()).handle
    return closure


def _static_replica_id() -> int:
    ctx = tf.distribute.get_replica_context()
    rid = tf.get_static_value(ctx.replica_id_in_sync_group) if ctx is not None else None
    if rid is None:
        raise PerReplicaOnly("the replica id is not static here")
    return int(rid)


def _written_captures(concrete, capture_indices):
    """Which of the captures at ``capture_indices`` the function writes (positions in
    that list); empty if TensorFlow cannot tell."""
    if not capture_indices:
        return []
    try:
        from tensorflow.python.framework import auto_control_deps_utils
        read_only = set(auto_control_deps_utils.get_read_only_resource_input_indices_graph(
            concrete.graph))
    except Exception:  # noqa: BLE001 -- an internal helper: no check without it
        return []
    first = len(concrete.graph.inputs) - len(concrete.graph.captures)
    return [k for k, i in enumerate(capture_indices) if first + i not in read_only]


class _replica_id_as:
    """Inside: the replica context reports ``replica_id`` (a tensor) as its id, and its
    cross-replica synchronisation raises ``PerReplicaOnly``."""

    REFUSED = ("_merge_call", "all_reduce", "all_gather")

    def __init__(self, ctx, replica_id, static_id):
        self.ctx, self.replica_id, self.static_id = ctx, replica_id, static_id

    def __enter__(self):
        self.saved = self.ctx._replica_id_in_sync_group
        self.ctx._replica_id_in_sync_group = self.replica_id
        for name in self.REFUSED:
            setattr(self.ctx, name, _refuse(name))
        self.outer = getattr(_state, "replica", None)
        _state.replica = self.static_id
        return self

    def __exit__(self, *exc):
        self.ctx._replica_id_in_sync_group = self.saved
        for name in self.REFUSED:
            self.ctx.__dict__.pop(name, None)
        _state.replica = self.outer
        return False


def _refuse(name):
    def refused(*args, **kwargs):
        raise PerReplicaOnly("the program calls the replica context's %s" % name.lstrip("_"))
    return refused


__all__ = ["PerReplicaOnly", "SPMD_REPLICA", "SpmdProgram", "tracing_replica"]
