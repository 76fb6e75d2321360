"""Benchmarks: prints figures (no assertions). Run with `make bench`.

1. The MoE reshape (split moves groups -> experts) on 4 processors: one all-to-all, on the
   placement executor and on the tf.distribute executor (CollectiveAllToAllV2), per call.
2. An MoE2D forward + backward step on a 2x4 mesh, both executors, per step after tracing.
"""
import time

import numpy as np
import tensorflow as tf

import namedmesh as nm

nm.configure_cpu_devices(8)


def timed(fn, *args, repeat=20):
    fn(*args)  # trace / warm up
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return (time.perf_counter() - start) / repeat


def bench_alltoall():
    old = nm.convert_to_shape("experts_unsplit:4;groups:4;capacity:256;d_model:512")
    new = nm.convert_to_shape("experts:4;groups_unsplit:4;capacity:256;d_model:512")
    x = tf.random.normal(old.sizes)
    rows = []
    for executor in ("placement", "strategy"):
        if executor == "placement":
            mesh = nm.Mesh("b1:4", "groups:b1;experts:b1")
        else:
            mesh = nm.Mesh("b1:4", "groups:b1;experts:b1", strategy=tf.distribute.MirroredStrategy(
                ["/cpu:%d" % i for i in range(4)]))

        def program(x, mesh=mesh):
            y = nm.reshape(nm.import_tf_tensor(mesh, x, old), new)
            return [tf.reduce_sum(s) for s in y.slices]  # every processor's slice is used

        fn = tf.function(program, autograph=False) if mesh.strategy is None else (
            lambda x, mesh=mesh, program=program: mesh.run(program, x))
        seconds = timed(fn, x)
        rows.append((executor, seconds))
    mb = old.size * 4 / 1e6
    print("MoE reshape = one all-to-all over 4 processors, %.1f MB global f32:" % mb)
    for executor, seconds in rows:
        print("  %-9s executor: %7.2f ms per call (incl. import slicing)" % (executor,
                                                                             1e3 * seconds))


def bench_moe2d_step():
    shape = nm.convert_to_shape("outer_batch:2;batch:8;length:64;d_model:64")
    x = tf.random.normal(shape.sizes)
    print("MoE2D (4x2 experts, hidden 128, group 64) forward+backward, input %s:" % shape)
    for executor in ("placement", "strategy"):
        layout = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"
        strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(8)]) \
            if executor == "strategy" else None
        mesh = nm.Mesh("b0:2;b1:4", layout, strategy=strategy)
        layer = nm.moe.MoE2D(expert_x=4, expert_y=2, hidden_size=128, group_size=64)
        layer.build(shape, mesh)

        def step(x, mesh=mesh, layer=layer):
            with tf.GradientTape() as tape:
                y, aux = layer(nm.import_tf_tensor(mesh, x, shape), train=True, seed=1)
                loss = nm.export_to_tf_tensor(nm.reduce_mean(y * y) + aux)
            return tape.gradient(loss, layer.trainable_variables)

        fn = tf.function(step, autograph=False) if strategy is None else (
            lambda x, mesh=mesh, step=step: mesh.run(step, x, reduce="sum"))
        print("  %-9s executor: %7.2f ms per step" % (executor, 1e3 * timed(fn, x, repeat=10)))


if __name__ == "__main__":
    bench_alltoall()
    bench_moe2d_step()
