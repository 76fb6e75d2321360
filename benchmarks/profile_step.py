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
"""
import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import add_workload_args, input_sizes, median, mesh_size, workload  # noqa: E402

CATEGORIES = ("router", "dispatch", "combine", "all-to-alls", "expert FFN",
              "variables onto the mesh", "other")
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


def render(totals, untraced, num_ops, args) -> str:
    total = sum(totals.values())
    lines = ["MoE2D step on mesh %s (placement executor), dispatch %s, group size %d: %.3f s "
             "per step untraced (one op at a time), %d graph ops; op time by phase, s per step:"
             % (args.mesh or "1", args.dispatch, args.group_size, untraced, num_ops),
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
    args = parser.parse_args(argv)
    args.executor = "placement"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    totals, untraced, num_ops = profile(args)
    print(render(totals, untraced, num_ops, args))


if __name__ == "__main__":
    main()
