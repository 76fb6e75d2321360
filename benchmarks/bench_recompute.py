"""What ``recompute_grad`` saves: memory of a stack of feed-forward blocks, with and without it.

Prints, for each case, the memory TensorFlow's CPU allocator holds once the forward pass is done
(eagerly, under a GradientTape: what the tape keeps for the backward pass), the peak of the whole
forward + backward step (eagerly and inside tf.function), the step time, and the largest
difference between the two runs' gradients.
Run: ``.venv/bin/python benchmarks/bench_recompute.py``.
"""
import time

import numpy as np
import tensorflow as tf

import namedmesh as nm

nm.configure_cpu_devices(8)

BATCH, LENGTH, D_MODEL, D_FF, BLOCKS = 16, 64, 256, 1024, 4
SHAPE = "batch:%d;length:%d;d_model:%d" % (BATCH, LENGTH, D_MODEL)


def memory(device="CPU:0"):
    return tf.config.experimental.get_memory_info(device)


def block(store, t, i):
    h = nm.layers.dense(t, "d_ff:%d" % D_FF, reduced_dims=["d_model:%d" % D_MODEL],
                        activation=nm.gelu, name="wi_%d" % i, store=store)
    return nm.layers.dense(h, "d_model:%d" % D_MODEL, reduced_dims=["d_ff:%d" % D_FF],
                           name="wo_%d" % i, store=store)


def model(mesh, store, x, recompute):
    t = nm.import_tf_tensor(mesh, x, SHAPE)
    for i in range(BLOCKS):
        if recompute:
            t = t + nm.recompute_grad(lambda u, i=i: block(store, u, i), [t])
        else:
            t = t + block(store, t, i)
    return nm.export_to_tf_tensor(nm.reduce_sum(t * t))


def eager_step(mesh, store, x, recompute):
    """(MB held after the forward pass, MB peak of the step, gradients)."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    base = memory()["current"]
    with tf.GradientTape() as tape:
        loss = model(mesh, store, x, recompute)
    held = memory()["current"] - base
    grads = tape.gradient(loss, store.trainable_variables)
    peak = memory()["peak"] - base
    return held / 1e6, peak / 1e6, grads


def compiled_peak(mesh, store, x, recompute):
    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = model(mesh, store, x, recompute)
        return tape.gradient(loss, store.trainable_variables)

    step(x)
    tf.config.experimental.reset_memory_stats("CPU:0")
    base = memory()["current"]
    start = time.perf_counter()
    for _ in range(5):
        grads = step(x)
    seconds = (time.perf_counter() - start) / 5
    return (memory()["peak"] - base) / 1e6, seconds, grads


def main():
    mesh = nm.Mesh()
    store = nm.VariableStore(seed=0)
    x = tf.random.normal([BATCH, LENGTH, D_MODEL], seed=1)
    eager_step(mesh, store, x, False)  # creates the variables
    activation_mb = BATCH * LENGTH * D_FF * 4 / 1e6
    print("%d blocks of dense(d_ff=%d, gelu) -> dense, activations [%d, %d, %d] float32 "
          "(%.1f MB each)" % (BLOCKS, D_FF, BATCH, LENGTH, D_FF, activation_mb))
    results = {}
    for recompute in (False, True):
        held, peak, grads = eager_step(mesh, store, x, recompute)
        fn_peak, seconds, fn_grads = compiled_peak(mesh, store, x, recompute)
        results[recompute] = (grads, fn_grads)
        print("%-16s eager: held after forward %7.1f MB, step peak %7.1f MB | tf.function: "
              "step peak %7.1f MB, %6.1f ms/step" % (
                  "recompute_grad" if recompute else "plain", held, peak, fn_peak,
                  seconds * 1e3))
    diff = max(float(np.max(np.abs(a.numpy() - b.numpy())))
               for a, b in zip(results[False][0], results[True][0]))
    print("largest gradient difference (eager): %.3g" % diff)


if __name__ == "__main__":
    main()
