"""Where a step's time goes: per-op times of one MoE2D training step, grouped by phase.

    python benchmarks/profile_step.py --mesh "b0:2;b1:2" --group-size 1024 --dispatch index

Builds the benchmark step (benchmarks/moe_step.py) on the placement executor as a plain
TF graph, runs it in a session with TensorFlow's step statistics (FULL_TRACE) and
``inter_op_parallelism_threads=1``, so that ops run one at a time and their times add up
to the step, and sums the op times by the layer's phases (the TF name scopes in
``namedmesh.moe.layers.PHASES``), forward and backward (``gradient_tape/...``):

* router: gating, loss and statistics, with their one all-reduce per level;
* dispatch / combine: moving tokens into expert slots and back (one-hot einsums or gathers);
* all-to-alls: the reshapes that move the split (placement: split + concat per processor);
* expert FFN: wi, relu, wo (matmuls);
* variables onto the mesh: slicing the (whole) variables for every processor, and in the
  backward pass summing the processors' gradients back (executor work);
* other: the rest (importing and exporting the input and output, the objective).

The tracing itself slows small ops: use the shares, and the untraced step time printed
beside them, rather than the absolute numbers.

``--executor strategy`` profiles the tf.distribute executor (MirroredStrategy, one replica
per logical CPU) instead: the step runs as ``mesh.run`` runs it, under TensorFlow's
profiler (``tf.profiler.experimental``), and the op events of the compute threads are
summed by the same phases.  Replicas run their ops concurrently, so these are thread
seconds, summed over replicas: more than the step's wall time.
"""
import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import add_workload_args, input_sizes, median, mesh_size, workload  # noqa: E402

CATEGORIES = ("router", "dispatch", "combine", "all-to-alls", "expert FFN",
              "variables onto the mesh", "other")
BOOKKEEPING = ("ThreadpoolListener", "ExecutorState", "CollectiveOpV2Kernel")
"""Profiler events on the compute threads that are not ops (``--executor strategy``)."""
FFN_TYPES = {"Einsum", "BatchMatMulV2", "BatchMatMulV3", "MatMul", "Relu", "ReluGrad"}
SLICING_TYPES = {"StridedSlice", "StridedSliceGrad", "Slice", "Pad", "ReadVariableOp"}


def categorize(name: str, op_type: str, phases) -> str:
    if op_type in SLICING_TYPES and phases["all_to_all"] not in name:
        return "variables onto the mesh"
    if phases["expert_ffn"] in name:
        return "expert FFN" if op_type in FFN_TYPES else "variables onto the mesh"
    for key, label in (("router", "router"), ("dispatch", "dispatch"), ("combine", "combine"),
                       ("all_to_all", "all-to-alls")):
        if phases[key] in name:
            return label
    if op_type == "AddN":   # gradients of the variables' copies, summed over processors
        return "variables onto the mesh"
    return "other"


def profile(args, traced_steps=3):
    import numpy as np
    import tensorflow as tf
    import namedmesh as nm
    import moe_step
    from namedmesh.moe.layers import PHASES
    nm.configure_cpu_devices(max(mesh_size(args.mesh), 1))
    w = workload(args)
    graph = tf.Graph()
    with graph.as_default():
        mesh, layer, shape = moe_step.build_layer(nm, tf, args, w)
        step = moe_step.step_function(nm, tf, mesh, layer, shape)
        x = tf.constant(np.random.RandomState(0).randn(*input_sizes(w)).astype(np.float32))
        seed = tf.compat.v1.placeholder(tf.int64, [])
        fetch = step(x, seed)
        init = tf.compat.v1.global_variables_initializer()
    types = {op.name: op.type for op in graph.get_operations()}
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1,
                                      device_count={"CPU": max(mesh_size(args.mesh), 1)})
    totals = collections.Counter()
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        session.run(init)
        for i in range(2):
            session.run(fetch, {seed: i})
        untraced = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            session.run(fetch, {seed: 10 + i})
            untraced.append(time.perf_counter() - t0)
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for i in range(traced_steps):
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetch, {seed: 100 + i}, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    name = node.node_name.split(":")[0]
                    if name not in types:
                        continue
                    seconds = node.all_end_rel_micros / 1e6 / traced_steps
                    phase = "backward" if name.startswith("gradient_tape/") else "forward"
                    totals[categorize(name, types[name], PHASES), phase] += seconds
    return totals, median(untraced), len(types)


def profile_strategy(args, traced_steps=3):
    """(totals, untraced step time, op events per step) of the step on the tf.distribute
    executor, from TensorFlow's profiler: op events on its compute threads, by phase."""
    import glob
    import shutil
    import tempfile
    import numpy as np
    import tensorflow as tf
    import namedmesh as nm
    import moe_step
    from namedmesh.moe.layers import PHASES
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    nm.configure_cpu_devices(max(mesh_size(args.mesh), 1))
    w = workload(args)
    x = tf.constant(np.random.RandomState(0).randn(*input_sizes(w)).astype(np.float32))
    _, _, _, run = moe_step.build_step(nm, tf, args, w)
    for i in range(2):
        float(run(x, tf.constant(i, tf.int64))[0])
    untraced = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        float(run(x, tf.constant(10 + i, tf.int64))[0])
        untraced.append(time.perf_counter() - t0)
    logdir = tempfile.mkdtemp(prefix="namedmesh-profile-")
    try:
        tf.profiler.experimental.start(logdir)
        for i in range(traced_steps):
            float(run(x, tf.constant(100 + i, tf.int64))[0])
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0],
                  "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    totals, events = collections.Counter(), 0
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name, _, op_type = names.get(event.metadata_id, "").rpartition(":")
                if not name or name.startswith(BOOKKEEPING) or "::" in name:
                    continue            # the executor's and thread pool's own events
                events += 1
                op_type = op_type[len("_Mkl"):] if op_type.startswith("_Mkl") else op_type
                phase = "backward" if name.startswith("gradient_tape/") else "forward"
                totals[categorize(name, op_type, PHASES), phase] += \
                    event.duration_ps / 1e12 / traced_steps
    return totals, median(untraced), events // traced_steps


def render(totals, untraced, num_ops, args) -> str:
    total = sum(totals.values())
    if args.executor == "strategy":
        head = ("MoE2D step on mesh %s (tf.distribute executor), dispatch %s, group size %d: "
                "%.3f s per step untraced, %d op events per traced step; op thread time by "
                "phase, s per step (summed over replicas):"
                % (args.mesh or "1", args.dispatch, args.group_size, untraced, num_ops))
    else:
        head = ("MoE2D step on mesh %s (placement executor), dispatch %s, group size %d: %.3f s "
                "per step untraced (one op at a time), %d graph ops; op time by phase, s per step:"
                % (args.mesh or "1", args.dispatch, args.group_size, untraced, num_ops))
    lines = [head,
             "%-26s %9s %9s %9s %7s" % ("phase", "forward", "backward", "total", "share")]
    for c in CATEGORIES:
        f, b = totals.get((c, "forward"), 0.0), totals.get((c, "backward"), 0.0)
        lines.append("%-26s %9.3f %9.3f %9.3f %6.1f%%" % (c, f, b, f + b,
                                                          100 * (f + b) / total))
    lines.append("%-26s %9s %9s %9.3f" % ("all ops", "", "", total))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(parser)
    parser.add_argument("--dispatch", choices=["auto", "einsum", "index"], default="auto")
    parser.add_argument("--executor", choices=["placement", "strategy"], default="placement")
    parser.add_argument("--json", help="also write the seconds by phase to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.executor == "strategy":
        totals, untraced, num_ops = profile_strategy(args)
    else:
        totals, untraced, num_ops = profile(args)
    print(render(totals, untraced, num_ops, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"executor": args.executor, "step_s": untraced, "ops": num_ops,
                       "seconds": {"%s/%s" % key: value for key, value in totals.items()}},
                      f, indent=1)


if __name__ == "__main__":
    main()
