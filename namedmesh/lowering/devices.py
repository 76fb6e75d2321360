"""Default devices: logical CPU devices, configured on first use.

TensorFlow fixes its device list when its runtime starts (at the first op).
A mesh of N processors without explicit devices uses ``/CPU:0 .. /CPU:N-1``;
if the runtime has not started yet, namedmesh splits the CPU into
``max(N, 8)`` logical devices.  Call ``configure_cpu_devices(n)`` before any
TensorFlow op to choose the number yourself.
"""

import tensorflow as tf

from namedmesh.errors import MeshError

DEFAULT_LOGICAL_CPUS = 8


def configure_cpu_devices(n: int) -> int:
    """Split the first physical CPU into ``n`` logical devices if TF has not started.

    Returns the number of logical CPU devices available afterwards.  If TF
    already started, leaves it unchanged (the count may be smaller than ``n``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MeshError("configure_cpu_devices(%r): need a number of devices >= 1" % (n,))
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is None or len(current) < n:
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
        except RuntimeError:
            pass  # the runtime already started: keep what it has
    return len(tf.config.list_logical_devices("CPU"))


def default_devices(n: int):
    """``n`` logical CPU device names, configuring them if TF has not started yet."""
    if n == 1:
        return [""]
    available = configure_cpu_devices(max(n, DEFAULT_LOGICAL_CPUS))
    if available < n:
        raise MeshError(
            "the mesh needs %d devices but TensorFlow was already initialised with %d logical "
            "CPU device(s); call namedmesh.configure_cpu_devices(%d) (or "
            "tf.config.set_logical_device_configuration) before any TensorFlow op runs, "
            "or pass devices=[...] to the Mesh" % (n, available, n))
    return ["/job:localhost/replica:0/task:0/device:CPU:%d" % i for i in range(n)]


def check_devices_exist(devices) -> None:
    """Every named device of a placement mesh must be one TensorFlow has in this process.

    ``""`` (no placement) is always fine.  Devices of another job or task (a remote
    worker) are left to TensorFlow.  Logical CPUs are configured first when the runtime has
    not started, so ``/cpu:5`` exists if it can.
    """
    from namedmesh.mesh.processor_map import parse_device
    named = []
    for d in devices:
        if not isinstance(d, str):
            raise MeshError("devices must be device names (strings), got %r in %r" % (d, devices))
        if d:
            parsed = parse_device(d)   # a MeshError naming a malformed name
            spec = tf.DeviceSpec.from_string(d)
            if spec.job in (None, "localhost") and spec.task in (None, 0):
                named.append((d, parsed))
    if not named:
        return
    cpus = [p.index for _, p in named if p.device_type == "CPU"]
    if cpus:
        configure_cpu_devices(max(max(cpus) + 1, DEFAULT_LOGICAL_CPUS))
    have = [parse_device(x.name) for x in tf.config.list_logical_devices()]
    kinds = {(h.device_type, h.index) for h in have}
    for d, p in named:
        if (p.device_type, p.index) not in kinds:
            counts = {}
            for h in have:
                counts[h.device_type] = counts.get(h.device_type, 0) + 1
            raise MeshError("device %r does not exist: TensorFlow has %s here (set logical "
                            "CPUs with namedmesh.configure_cpu_devices(n) before any TensorFlow "
                            "op runs)" % (d, ", ".join("%d %s" % (n, t) for t, n in
                                                        sorted(counts.items()))))

