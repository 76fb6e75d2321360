"""Collective keys: the two numbers by which TensorFlow's collective ops find each other.

TensorFlow's V2 collective ops (``CollectiveAllToAllV2``, ``CollectiveReduceV2``,
``CollectiveGatherV2``) take

* a **group key**: names a set of devices.  The first ``group_size`` distinct
  devices that use a key form the group; one more device fails with "joining
  a group that is already full".
* an **instance key**: names one call within a group.  The members of one call
  must agree on it; a key used with one shape or dtype must never be used in
  the group with another (TensorFlow then aborts every collective of the
  process).

Both must therefore be the same in every process whatever order it builds
things in, and differ wherever the collectives differ.  namedmesh derives them
from what the collective *is*, in one function, ``collective_keys``:

    group key    = H(member devices in mesh order, mesh dims)         in [2**24, 2**31)
    instance key = H(program, position, kind, dtype, slice shape, op) in [1, 2**31)

``H`` is BLAKE2b (stable across processes, unlike Python's ``hash``).  The
*program* is the name of the traced function (a ``tf.function``'s name, its
trace counter digits removed, or the name ``set_program_name`` gave its graph);
the *position* counts this replica's collectives in that trace.  A function
graph nested in another (a ``tf.cond`` branch, a ``while_loop`` body, a
``tf.function`` called inside) is a program of its own whose name is its
path: ``step/cond_true@0`` is the first nested graph of ``step`` (that ran a
collective) named ``cond_true``, ``step/cond_true@1`` the second; so two
branches named alike never share keys.  Keys below 2**24 are left to
tf.distribute's own collectives, which count up from 1.

A collision (two different groups, or two different calls in one group, with
one key) is detected within the process and reported as a ``CollectiveError``
naming both; renaming the program or a mesh dim changes the keys.

Every op is named ``namedmesh_g<group key>_i<instance key>`` and described in
a process-wide table, so a TensorFlow error that names the op (a timeout) can
be turned into one that names the collective kind, mesh dims and group
(``describe_op_names``).

The keys depend on the replica only through its group's devices: the
single-trace SPMD program (``namedmesh.lowering.spmd``) precomputes, for each
set of mesh dims, the table ``[group key of replica r]`` and ``tf.gather``s it
with its replica-id tensor; instance keys do not depend on the replica at all.
Such a collective is registered once for its *family* of groups
(``spmd_collective_keys``): its op is named ``namedmesh_g<family key>_i<instance
key>`` and described with all the groups.
"""

import hashlib
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from namedmesh.errors import CollectiveError

GROUP_KEY_MIN = 1 << 24
KEY_LIMIT = (1 << 31) - 1

_lock = threading.Lock()
_groups: Dict[int, Tuple] = {}        # group key -> (devices, mesh dims)
_instances: Dict[Tuple[int, int], Tuple] = {}   # (group key, instance key) -> signature
_descriptions: Dict[Tuple[int, int], str] = {}
_positions = weakref.WeakKeyDictionary()  # graph -> {replica: next position}

OP_NAME = re.compile(r"namedmesh_g(\d+)_i(\d+)")


@dataclass(frozen=True)
class CollectiveKeys:
    """The keys of one collective call, and the name its op gets."""

    group_key: int
    instance_key: int

    @property
    def op_name(self) -> str:
        return "namedmesh_g%d_i%d" % (self.group_key, self.instance_key)


def _stable_hash(text: str, low: int, high: int) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return low + int.from_bytes(digest, "big") % (high - low)


def collective_keys(member_devices: Sequence[str], mesh_dims: Sequence[str], program: str,
                    position: int, signature: Sequence[str], description: str = ""
                    ) -> CollectiveKeys:
    """The group and instance keys of one collective call (see the module doc).

    member_devices: the group's devices, members in mesh order (full names).
    mesh_dims: names of the mesh dims the group runs along.
    program / position: the traced program's name and this call's place in it.
    signature: what must match within one instance: kind, dtype, slice shape, op.
    description: kept for error messages (``describe_op_names``).
    """
    devices = tuple(str(d) for d in member_devices)
    key = group_key(devices, mesh_dims)
    signature = tuple(str(s) for s in signature)
    instance = instance_key(program, position, signature)
    _register_instance(key, instance, signature, "group %s" % list(devices), program, position,
                       description)
    return CollectiveKeys(key, instance)


def group_key(member_devices: Sequence[str], mesh_dims: Sequence[str]) -> int:
    """The group key of the group of ``member_devices`` (mesh order) along ``mesh_dims``;
    a key derived for two different groups is a ``CollectiveError``."""
    devices = tuple(str(d) for d in member_devices)
    dims = tuple(mesh_dims)
    key = _stable_hash("group|%s|%s" % (",".join(devices), ",".join(dims)),
                       GROUP_KEY_MIN, KEY_LIMIT)
    with _lock:
        known = _groups.setdefault(key, (devices, dims))
    if known != (devices, dims):
        raise CollectiveError(
            "collective group key %d is derived for two different groups: %s along %s and "
            "%s along %s; rename a mesh dim to change the key"
            % (key, list(known[0]), list(known[1]), list(devices), list(dims)))
    return key


def instance_key(program: str, position: int, signature: Sequence[str]) -> int:
    """The instance key of the call at ``position`` of ``program`` with ``signature``."""
    return _stable_hash("instance|%s|%d|%s" % (program, position,
                                               "|".join(str(s) for s in signature)),
                        1, KEY_LIMIT)


def family_key(group_keys: Sequence[int]) -> int:
    """The key naming a family of groups (one per replica, ``group_keys[r]``: the
    group of replica ``r``) in op names and the tables of ``spmd_collective_keys``."""
    return _stable_hash("family|%s" % ",".join(str(k) for k in group_keys),
                        GROUP_KEY_MIN, KEY_LIMIT)


def spmd_collective_keys(group_keys: Sequence[int], program: str, position: int,
                         signature: Sequence[str], description: str = "") -> CollectiveKeys:
    """The keys of one collective traced once for every replica (the SPMD program).

    group_keys: the group key of each replica's group (``group_key``), by replica id.
    Returns ``CollectiveKeys(family key, instance key)``: the instance key is the one
    ``collective_keys`` gives every group; the family key names the op and the
    description (the group key itself is looked up from ``group_keys`` with the
    replica-id tensor).  Collisions are checked for the family as for one group.
    """
    family = family_key(group_keys)
    signature = tuple(str(s) for s in signature)
    instance = instance_key(program, position, signature)
    _register_instance(family, instance, signature, "family of groups %d" % family, program,
                       position, description)
    return CollectiveKeys(family, instance)


def _register_instance(key, instance, signature, what, program, position, description):
    with _lock:
        seen = _instances.setdefault((key, instance), signature)
        if seen == signature and description:
            _descriptions[(key, instance)] = description
    if seen != signature:
        raise CollectiveError(
            "collective instance key %d of %s is derived for two different calls "
            "(%s and %s, program %r position %d); rename the program (its function name) "
            "to change the key" % (instance, what, "/".join(seen), "/".join(signature),
                                   program, position))


# -- the program and the position of a call in it ------------------------------------------
_names = weakref.WeakKeyDictionary()       # graph -> program name given by set_program_name
_identities = weakref.WeakKeyDictionary()  # graph -> its program (nesting path)
_nested = weakref.WeakKeyDictionary()      # graph -> {replica: nested graphs seen}


def program_name(graph) -> str:
    """The name of the traced program, the same in every process: the function
    graph's name without TensorFlow's counters (``__inference_step_68`` -> ``step``)."""
    name = getattr(graph, "name", "") or "program"
    name = re.sub(r"^__(inference|forward|backward)_", "", name)
    while re.search(r"_\d+$", name):
        name = re.sub(r"_\d+$", "", name)
    return name


def set_program_name(graph, name: str) -> None:
    """Call the program traced in ``graph`` ``name`` (instead of the graph's own name)."""
    with _lock:
        _names[graph] = name


def _program(graph, replica) -> str:
    """The program of ``graph`` (``_lock`` held): its name, or for a graph nested in a
    function graph, the path ``parent/name@k`` (its place among the parent's nested
    graphs that ran a collective, counted per replica)."""
    known = _identities.get(graph)
    if known is not None:
        return known
    name = _names.get(graph)
    parent = getattr(graph, "outer_graph", None)
    if name is None and parent is not None and getattr(parent, "building_function", False):
        counters = _nested.setdefault(parent, {})
        slot = counters.get(replica, 0)
        counters[replica] = slot + 1
        name = "%s/%s@%d" % (_program(parent, replica), program_name(graph), slot)
    elif name is None:
        name = program_name(graph)
    _identities[graph] = name
    return name


def next_position(replica) -> Tuple[str, int]:
    """(program, position) of the next collective this replica traces in the current graph."""
    if tf.executing_eagerly():
        raise CollectiveError(
            "collectives of the tf.distribute executor must run inside tf.function "
            "(eagerly MirroredStrategy runs replicas one after another and they would wait "
            "for each other forever); use mesh.run(fn, ...) or wrap strategy.run in tf.function")
    graph = tf.compat.v1.get_default_graph()
    with _lock:
        program = _program(graph, replica)
        counters = _positions.setdefault(graph, {})
        position = counters.get(replica, 0)
        counters[replica] = position + 1
    return program, position


# -- reading errors --------------------------------------------------------------------------
def describe_op_names(text: str) -> List[str]:
    """Descriptions of the namedmesh collectives whose op names appear in ``text``."""
    out = []
    with _lock:
        for g, i in OP_NAME.findall(text or ""):
            d = _descriptions.get((int(g), int(i)))
            if d and d not in out:
                out.append(d)
    return out


def description_of(keys: CollectiveKeys) -> Optional[str]:
    with _lock:
        return _descriptions.get((keys.group_key, keys.instance_key))


_first_failure = []  # the first collective failure of this process (TensorFlow aborts the rest)


def collective_failure(error, timeout: float) -> Optional[CollectiveError]:
    """A ``CollectiveError`` for a TensorFlow error raised by namedmesh collectives,
    or None if the error is not about them.

    A timeout names the collective kind, mesh dims and group; after one,
    TensorFlow aborts every collective of the process, and later calls fail
    with "cancelled" errors, which are reported as such.
    """
    text = str(getattr(error, "message", "") or error)
    described = describe_op_names(text)
    timed_out = isinstance(error, tf.errors.DeadlineExceededError)
    aborted = timed_out or isinstance(error, tf.errors.CancelledError) or "abort" in text.lower()
    with _lock:
        first = _first_failure[0] if _first_failure else None
        if first is None and timed_out and described:
            _first_failure.append(described[0])
    if first is not None and aborted:
        return CollectiveError(
            "collectives of this process were aborted after an earlier failure (%s timed out); "
            "TensorFlow runs no more collectives in this process: restart it" % first)
    if timed_out and described:
        message = (
            "%s timed out after %g s: not every member of its group reached it. Usual causes: "
            "the workers run different programs (a branch on the worker, other shapes, another "
            "number of steps), a worker died, or one is still starting (raise "
            "Mesh(collective_timeout=...)). TensorFlow aborts every collective of this process "
            "after a timeout: restart the processes."
            % (described[0], timeout))
        if len(described) > 1:
            message += " Also waiting: %s." % "; ".join(described[1:3])
        return CollectiveError(message)
    if described and aborted:
        return CollectiveError("%s was aborted: %s" % (described[0], _first_line(text)))
    return None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ")):
            return line
    return text.strip()[:200]
