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
    if n < 1:
        raise MeshError("configure_cpu_devices(%r): need at least one device" % (n,))
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
