"""Start N real TensorFlow worker processes on loopback and run one scenario in each.

    python tests/workers/launcher.py --workers 4 --cpus 1 --scenario rank_probe --out DIR

This process picks free localhost ports, then forks one process per worker
*before* importing TensorFlow: each worker imports it itself.  (Forking after
the import shared its ~3 s, but importing TensorFlow starts a native thread,
and a fork taken while that thread held a lock left the child blocked on it
or crashing: a worker died with SIGSEGV in about one run in ten.)  Each worker builds a
``MultiWorkerMirroredStrategy`` over the cluster (gRPC on 127.0.0.1), runs
``scenarios.SCENARIOS[name](strategy, task_id, args)`` and writes
``DIR/worker<i>.npz`` (or ``DIR/worker<i>.error``); its stdout and stderr go to
``DIR/worker<i>.log``.  A worker then waits (up to 30 s) until every worker has
reported before it exits: TensorFlow may crash a worker whose collective
leader (worker 0) exits while it still waits.  Workers still running at
``--deadline`` seconds are killed.  The last line on stdout is a JSON summary: exit code per worker
(``null``: killed), wall seconds.

MultiWorkerMirroredStrategy gives a CPU-only worker one device.  With
``--cpus 2`` each worker is a host with two devices (as with two GPUs): its
CPU is split into two logical devices and the strategy's choice of local
devices (``CollectiveAllReduceExtended._initialize_local_devices``) is
replaced, in the worker process only, by those two.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/: workers.scenarios, moe_cases, helpers
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# TensorFlow, NumPy and the scenarios (namedmesh) are imported in each worker, after the
# fork (see the module doc); the launcher itself only needs the scenario names.
SCENARIO_NAMES = ("keras_loop", "mismatch", "moe2d", "rank_probe")


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("", 0))  # TensorFlow's server listens on every interface
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def use_local_cpus(n):
    """Split the CPU into ``n`` logical devices and make them this worker's replicas."""
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    if n > 1:
        from tensorflow.python.distribute import collective_all_reduce_strategy as cars

        def local_devices(self, cluster_resolver, worker_device):
            return tuple("%s/device:CPU:%d" % (worker_device, i) for i in range(n)), "CPU"

        cars.CollectiveAllReduceExtended._initialize_local_devices = local_devices


def run_worker(task_id, args, cluster):
    import numpy as np
    import tensorflow as tf
    from workers import scenarios   # imports namedmesh
    use_local_cpus(args.cpus)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type="worker", task_id=task_id, rpc_layer="grpc")
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    result = scenarios.SCENARIOS[args.scenario](strategy, task_id, args)
    np.savez(os.path.join(args.out, "worker%d.npz" % task_id), **result)


def wait_for_all(args, task_id, seconds=30.0):
    """A file barrier: every worker has saved its result (or error)."""
    open(os.path.join(args.out, "worker%d.done" % task_id), "w").close()
    end = time.time() + seconds
    while time.time() < end:
        if all(os.path.exists(os.path.join(args.out, "worker%d.done" % i))
               for i in range(args.workers)):
            return
        time.sleep(0.05)


def fork_worker(task_id, args, cluster):
    pid = os.fork()
    if pid:
        return pid
    code = 1
    signal.alarm(int(args.deadline) + 30)  # never outlive the launcher's deadline by much
    try:
        log = os.open(os.path.join(args.out, "worker%d.log" % task_id),
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        run_worker(task_id, args, cluster)
        code = 0
    except BaseException:  # noqa: BLE001 - the test reads the error file
        with open(os.path.join(args.out, "worker%d.error" % task_id), "w") as f:
            f.write(traceback.format_exc())
    finally:
        wait_for_all(args, task_id)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--cpus", type=int, default=1, help="devices (replicas) per worker")
    parser.add_argument("--scenario", required=True, choices=SCENARIO_NAMES)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="Mesh collective_timeout")
    parser.add_argument("--mesh", default="", help="mesh shape for the rank probe")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    cluster = {"worker": ["127.0.0.1:%d" % p for p in free_ports(args.workers)]}
    pids = {fork_worker(i, args, cluster): i for i in range(args.workers)}
    codes = {}
    while pids and time.time() - start < args.deadline:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.05)
            continue
        codes[pids.pop(pid)] = os.waitstatus_to_exitcode(status)
    for pid, task_id in pids.items():  # stragglers
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        codes[task_id] = None
    summary = {"exit_codes": [codes[i] for i in range(args.workers)],
               "seconds": round(time.time() - start, 2)}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
