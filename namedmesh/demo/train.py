"""Training the demo model on a mesh, with either executor, and recording its routing."""

import sys
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np
import tensorflow as tf

import namedmesh as nm


@dataclass
class History:
    steps: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    aux: List[float] = field(default_factory=list)
    dropped: List[float] = field(default_factory=list)
    # per step, layer 0, second level, per expert (expert_x * expert_y, flattened):
    load: List[np.ndarray] = field(default_factory=list)     # routed assignments
    demand: List[np.ndarray] = field(default_factory=list)   # requested (before capacity)
    seconds: float = 0.0


def _step_outputs(model, mesh, windows, targets, positions, seed, scale):
    """Forward and backward of one batch; values scaled by ``scale`` (1/replicas under a
    strategy, whose per-replica results are summed)."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss, aux, stats, _ = model(mesh, windows, targets, positions, train=True, seed=seed)
        total = nm.export_to_tf_tensor(loss + aux)
    grads = tape.gradient(total, variables)
    inner = stats[0]["inner"]
    load = tf.reshape(inner.first_choice_per_expert + inner.second_choice_per_expert, [-1])
    demand = tf.reshape(inner.requested_per_expert, [-1])
    dropped = tf.add_n([s[level].dropped for s in stats for level in ("outer", "inner")])
    assigned = tf.add_n([s[level].assigned for s in stats for level in ("outer", "inner")])
    return ([nm.export_to_tf_tensor(loss) * scale, nm.export_to_tf_tensor(aux) * scale,
             dropped / (assigned + 1e-9) * scale, load * scale, demand * scale], grads)


def make_train_step(model, mesh, positions, optimizer):
    """A compiled step ``step(windows, targets, seed) -> (loss, aux, dropped, load, demand)``."""
    variables = model.trainable_variables
    if mesh.strategy is None:
        @tf.function(autograph=False)
        def step(windows, targets, seed):
            values, grads = _step_outputs(model, mesh, windows, targets, positions, seed, 1.0)
            optimizer.apply_gradients(zip(grads, variables))
            return values
        return step

    scale = 1.0 / mesh.size

    def replica(windows, targets, seed):
        values, grads = _step_outputs(model, mesh, windows, targets, positions, seed, scale)
        # in replica context the optimizer sums the per-replica gradients, which is the
        # gradient of the global program (see docs/concepts.md)
        optimizer.apply_gradients(zip(grads, variables))
        return values

    def step(windows, targets, seed):
        return mesh.run(replica, windows, targets, seed, reduce="sum")
    return step


def train(model, mesh, corpus, positions, steps: int, learning_rate: float = 3e-3,
          seed: int = 0, progress=True) -> History:
    """Train for ``steps`` steps; a progress line shows step, loss, aux loss and dropped share."""
    positions = nm.convert_to_shape(positions)
    model.build(positions, mesh)
    if mesh.strategy is not None:
        with mesh.strategy.scope():
            optimizer = tf.keras.optimizers.Adam(learning_rate)
            optimizer.build(model.trainable_variables)  # slots before strategy.run
    else:
        optimizer = tf.keras.optimizers.Adam(learning_rate)
    step_fn = make_train_step(model, mesh, positions, optimizer)
    rng = np.random.RandomState(seed)
    history = History()
    start = time.time()
    for i in range(1, steps + 1):
        windows, targets = corpus.batch(rng, positions.sizes, model.context)
        loss, aux, dropped, load, demand = step_fn(tf.constant(windows), tf.constant(targets),
                                                   tf.constant(i, tf.int64))
        history.steps.append(i)
        history.loss.append(float(loss))
        history.aux.append(float(aux))
        history.dropped.append(float(dropped))
        history.load.append(np.asarray(load))
        history.demand.append(np.asarray(demand))
        if progress:
            _progress(i, steps, history, time.time() - start)
    history.seconds = time.time() - start
    if progress:
        sys.stdout.write("\n")
    return history


def _progress(i, steps, h, elapsed):
    width = 24
    done = int(width * i / steps)
    line = "\r[%s%s] step %4d/%d  loss %.3f  aux %.4f  dropped %4.1f%%  %5.1fs" % (
        "#" * done, "." * (width - done), i, steps, h.loss[-1], h.aux[-1],
        100 * h.dropped[-1], elapsed)
    if sys.stdout.isatty() or i == steps or i % max(1, steps // 10) == 0:
        sys.stdout.write(line if sys.stdout.isatty() else line.lstrip("\r") + "\n")
        sys.stdout.flush()
