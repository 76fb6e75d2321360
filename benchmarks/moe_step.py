"""One namedmesh configuration of the MoE2D benchmark, in a process of its own.

    python benchmarks/moe_step.py --mesh "b0:2;b1:2" --executor placement --group-size 1024

Prints one ``BENCH_RESULT {json}`` line: the first call (layer build + trace + first
step, TensorFlow's import excluded) and its three parts (``build_s``: the layer's
variables, initial values drawn; ``trace_s``: the step traced into a TF graph, nothing
run; ``first_step_s``: TensorFlow's instantiation, graph optimisation and the first
run), the timed steps and their median, peak RSS and the dims the layer computed.  ``--floor`` times only the expert FFN (wi, relu, wo;
forward and backward) on the same capacity slots, on one device: the floor a
dispatcher and its collectives add to.  ``bench.py`` runs this once per configuration.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import (LAYOUT, add_workload_args, emit, hparams, input_sizes,  # noqa: E402
                      median, mesh_size, peak_rss_mb, workload)


def _dims_summary(dims) -> dict:
    return {"groups_x": dims.groups_x.size, "group_size_x": dims.group_size_x.size,
            "capacity_x": dims.capacity_x.size, "groups_y": dims.groups_y.size,
            "group_size_y": dims.group_size_y.size, "capacity_y": dims.capacity_y.size,
            "slots": dims.experts_y.size * dims.experts_x.size * dims.groups_y.size
            * dims.capacity_y.size}


def build_layer(nm, tf, args, w):
    """(mesh, layer, shape): the workload's MoE2D layer, built on the configuration's mesh."""
    n = mesh_size(args.mesh)
    strategy = None
    if args.executor == "strategy":
        strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(n)])
    layout = LAYOUT if n > 1 else ""
    mesh = nm.Mesh(args.mesh if n > 1 else "", layout, strategy=strategy)
    kwargs = nm.moe.MoE2DConfig.from_hparams(hparams(w, args.group_size)).to_kwargs()
    kwargs["dispatch"] = args.dispatch
    layer = nm.moe.MoE2D(**kwargs)
    shape = nm.Shape([nm.Dimension(name, size) for name, size in zip(
        ["outer_batch", "batch", "length", "d_model"], input_sizes(w))])
    layer.build(shape, mesh)
    return mesh, layer, shape


def step_function(nm, tf, mesh, layer, shape):
    """step(x, seed) -> (objective, the gradients w.r.t. the input and every variable reduced
    to one number): a layer inside a model needs both; nothing large is copied out."""
    variables = layer.trainable_variables

    def step(x, seed):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, aux = layer(nm.import_tf_tensor(mesh, x, shape), train=True, seed=seed)
            objective = nm.export_to_tf_tensor(nm.reduce_sum(y) + aux)
        grads = tape.gradient(objective, [x] + list(variables))
        return objective, tf.add_n([tf.reduce_sum(g) for g in grads])

    return step


def build_step(nm, tf, args, w):
    """(mesh, layer, shape, run) for the configuration; run(x, seed) runs one traced step
    (``run.function``: the tf.function it calls, to trace it without running)."""
    mesh, layer, shape = build_layer(nm, tf, args, w)
    step = step_function(nm, tf, mesh, layer, shape)
    reduce = "first" if mesh.strategy is None else "sum"

    def run(x, seed):
        return mesh.run(step, x, seed, reduce=reduce, function=True)

    run.function = mesh.function(step, reduce=reduce)
    return mesh, layer, shape, run


def build_floor(tf, dims):
    """The expert FFN alone on the layer's capacity slots (one device), forward + backward."""
    slots = [dims.experts_y.size, dims.experts_x.size, dims.groups_y.size, dims.capacity_y.size]
    m, hidden = dims.d_model.size, dims.hidden.size
    e_in = tf.random.stateless_normal(slots + [m], seed=[1, 2])
    wi = tf.Variable(tf.random.stateless_normal(slots[:2] + [m, hidden], seed=[3, 4]) * 0.04)
    wo = tf.Variable(tf.random.stateless_normal(slots[:2] + [hidden, m], seed=[5, 6]) * 0.02)

    @tf.function(autograph=False)
    def floor(x, seed):
        del seed
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = tf.nn.relu(tf.einsum("yxhcm,yxmf->yxhcf", x, wi))
            out = tf.einsum("yxhcf,yxfm->yxhcm", h, wo)
            objective = tf.reduce_sum(out)
        grads = tape.gradient(objective, [x, wi, wo])
        return objective, tf.add_n([tf.reduce_sum(g) for g in grads])

    return e_in, floor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(parser)
    parser.add_argument("--executor", choices=["placement", "strategy"], default="placement")
    parser.add_argument("--dispatch", choices=["auto", "einsum", "index"], default="auto")
    parser.add_argument("--floor", action="store_true", help="time the expert FFN alone")
    args = parser.parse_args(argv)
    w = workload(args)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import namedmesh as nm
    nm.configure_cpu_devices(max(mesh_size(args.mesh), 1))

    x = tf.constant(np.random.RandomState(args.seed).randn(*input_sizes(w)).astype(np.float32))
    seed = tf.constant(1, tf.int64)
    start = time.perf_counter()
    mesh, layer, shape, run = build_step(nm, tf, args, w)
    dims = nm.moe.dims.moe2d_dims(layer.config, shape, mesh, True)
    if args.floor:
        x, run = build_floor(tf, dims)
        start = time.perf_counter()
    built = time.perf_counter()
    function = getattr(run, "function", run)
    function.get_concrete_function(x, seed)
    traced = time.perf_counter()
    objective, check = run(x, seed)
    float(objective.numpy() + check.numpy())
    first_call = time.perf_counter() - start
    steps = []
    for i in range(args.repeats):
        seed = tf.constant(2 + i, tf.int64)
        t0 = time.perf_counter()
        objective, check = run(x, seed)
        float(objective.numpy() + check.numpy())
        steps.append(time.perf_counter() - t0)
    result = {"side": "namedmesh", "what": "floor" if args.floor else "moe2d",
              "executor": args.executor, "mesh": args.mesh or "1", "processors":
              mesh_size(args.mesh), "group_size": args.group_size,
              "dispatch": layer.dispatcher_for(mesh).name, "first_call_s": first_call,
              "build_s": built - start, "trace_s": traced - built,
              "first_step_s": first_call - (traced - start),
              "spmd_fallback": getattr(mesh, "spmd_fallback", None),
              "steps_s": steps, "median_s": median(steps), "peak_rss_mb": peak_rss_mb(),
              "objective": float(objective.numpy())}
    result.update(_dims_summary(dims))
    emit(result)


if __name__ == "__main__":
    main()
