"""The mtf side of namedmesh's MoE2D benchmark: one configuration, in a process of its own.

Runs mesh-tensorflow 0.1.21's ``transformer_moe_layer_v2`` on the benchmark workload
(benchmarks/workload.py), lowered with mtf's PlacementMeshImpl on one logical CPU device per
processor, forward + backward of ``reduce_sum(y) + loss`` w.r.t. the input and every variable
(train mode, nonpadding all ones), in a TF1 session.  Prints one ``BENCH_RESULT {json}``
line: graph build, lowering, the first session run (with session creation and variable
initialisation), the timed steps, their median and peak RSS.  benchmarks/bench.py runs it
with the oracle's interpreter:

    /tmp/mtf-oracle/bin/python tools/oracle/bench_mtf_moe.py --mesh "b0:2;b1:2" --group-size 1024
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))
sys.path.insert(0, HERE)

from workload import (LAYOUT, add_workload_args, emit, hparams, input_sizes,  # noqa: E402
                      median, mesh_size, peak_rss_mb, workload)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(parser)
    args = parser.parse_args(argv)
    w = workload(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from mtf_moe_layer import build_layer, make_hparams, mtf, placement_impl, tf
    tf.get_logger().setLevel("ERROR")

    n = mesh_size(args.mesh)
    mesh_shape = args.mesh if n > 1 else ""
    layout = LAYOUT if n > 1 else ""
    names = ["outer_batch", "batch", "length", "d_model"]
    x_np = np.random.RandomState(args.seed).randn(*input_sizes(w)).astype(np.float32)
    with tf.Graph().as_default():
        start = time.perf_counter()
        hp = make_hparams(**hparams(w, args.group_size))
        graph, mesh, y, loss, objective, variables, grads = build_layer(
            "v2", hp, list(zip(names, input_sizes(w))), mtf.convert_to_shape(mesh_shape),
            mtf.convert_to_layout_rules(layout), True, tf.constant(x_np),
            # mtf 0.1.21's train mode needs nonpadding (it casts a None importance); all
            # ones is namedmesh's no-nonpadding case
            nonpadding=tf.ones(input_sizes(w)[:-1]), input_gradient=True)
        built = time.perf_counter()
        devices = ["/cpu:%d" % i for i in range(n)] if n > 1 else [""]
        lowering = mtf.Lowering(graph, {mesh: placement_impl(mesh_shape, layout, devices)})
        total = lowering.export_to_tf_tensor(objective)
        check = tf.add_n([tf.reduce_sum(t) for g in grads
                          for t in lowering.tensors[g].to_laid_out_tensor().tensor_list])
        lowered = time.perf_counter()
        config = tf.ConfigProto(device_count={"CPU": max(n, 1)})
        with tf.Session(config=config) as session:
            session.run(tf.global_variables_initializer())
            session.run(lowering.copy_masters_to_slices())
            value, _ = session.run([total, check])
            first = time.perf_counter()
            steps = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                value, _ = session.run([total, check])
                steps.append(time.perf_counter() - t0)
    emit({"side": "mtf", "what": "moe2d", "executor": "mtf placement", "mesh": args.mesh or "1",
          "processors": n, "group_size": args.group_size, "dispatch": "einsum",
          "build_s": built - start, "lower_s": lowered - built,
          "build_and_lower_s": lowered - start, "first_call_s": first - start,
          "steps_s": steps, "median_s": median(steps), "peak_rss_mb": peak_rss_mb(),
          "objective": float(value)})


if __name__ == "__main__":
    main()
