"""Training the demo's transformer language model on a mesh, with either executor, and
recording its routing.

Batches are rows of ``length`` characters of the corpus as ids (``char + 2``: mtf keeps 0
for padding and 1 for EOS), the targets of an autoregressive model; the model reads them
shifted right (mtf's ``autoregressive_inputs``).  One step is mtf's ``call_simple`` in
train mode (its loss: cross-entropy + z-loss + the MoE aux losses), its gradients, and an
optimizer update, compiled once (``tf.function`` on the placement executor, ``mesh.run``
under tf.distribute).
"""

import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import tensorflow as tf

import namedmesh as nm

FIRST_ID = 2   # ids 0 (padding) and 1 (EOS) are mtf's


def char_rows(corpus, rng: np.random.RandomState, batch_sizes, length: int) -> np.ndarray:
    """int32 ``[*batch_sizes, length]``: random windows of the corpus as ids (char + 2)."""
    count = int(np.prod(batch_sizes))
    starts = rng.randint(0, len(corpus.ids) - length, size=count)
    rows = np.stack([corpus.ids[s:s + length] for s in starts]) + FIRST_ID
    return rows.reshape(tuple(batch_sizes) + (length,)).astype(np.int32)


def first_moe_level(out):
    """(scope, RoutingStats) of the first MoE layer's last routing level (MoE1D's experts,
    MoE2D's second level), or (None, None) without MoE layers."""
    if not out.moe_stats:
        return None, None
    scope = sorted(out.moe_stats)[0]
    levels = out.moe_stats[scope].levels
    return scope, levels[list(levels)[-1]]


@dataclass
class History:
    steps: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)        # cross-entropy + z-loss
    aux: List[float] = field(default_factory=list)         # the MoE aux losses
    dropped: List[float] = field(default_factory=list)     # share of assignments over capacity
    load: List[np.ndarray] = field(default_factory=list)   # first MoE layer: routed per expert
    demand: List[np.ndarray] = field(default_factory=list)  # requested per expert
    expert_shape: tuple = ()
    moe_scope: Optional[str] = None
    seconds: float = 0.0
    first_step_seconds: float = 0.0


def _step_outputs(model, mesh, targets, seed, scale, batch_dims):
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        out = model(mesh, {"targets": targets}, mode="train", seed=seed, batch_dims=batch_dims)
        total = nm.export_to_tf_tensor(out.loss)
    grads = tape.gradient(total, variables)
    aux = tf.add_n([nm.export_to_tf_tensor(v) for v in out.moe_losses.values()]) \
        if out.moe_losses else tf.constant(0.0)
    _, level = first_moe_level(out)
    if level is not None:
        load = tf.reshape(level.first_choice_per_expert + level.second_choice_per_expert, [-1])
        demand = tf.reshape(level.requested_per_expert, [-1])
        dropped = tf.add_n([s.levels[k].dropped for s in out.moe_stats.values()
                            for k in s.levels])
        assigned = tf.add_n([s.levels[k].assigned for s in out.moe_stats.values()
                             for k in s.levels])
        share = dropped / (assigned + 1e-9)
    else:
        load = demand = tf.zeros([1])
        share = tf.constant(0.0)
    values = [(total - aux) * scale, aux * scale, share * scale, load * scale, demand * scale]
    return values, grads


def make_train_step(model, mesh, optimizer, batch_dims):
    """A compiled ``step(targets, seed) -> (loss, aux, dropped, load, demand)``."""
    variables = model.trainable_variables
    if mesh.strategy is None:
        @tf.function(autograph=False)
        def step(targets, seed):
            values, grads = _step_outputs(model, mesh, targets, seed, 1.0, batch_dims)
            optimizer.apply_gradients(zip(grads, variables))
            return values
        return step

    scale = 1.0 / mesh.size

    def replica(targets, seed):
        values, grads = _step_outputs(model, mesh, targets, seed, scale, batch_dims)
        # in replica context the optimizer sums the per-replica gradients, which is the
        # gradient of the global program (see docs/concepts.md)
        optimizer.apply_gradients(zip(grads, variables))
        return values

    def step(targets, seed):
        return mesh.run(replica, targets, seed, reduce="sum")
    return step


def train(model, mesh, corpus, batch_sizes, length: int, steps: int,
          learning_rate: float = 3e-3, seed: int = 0, batch_dims=None,
          progress: bool = True) -> History:
    """Train for ``steps`` steps with Adam; a progress line shows step, loss, aux loss and
    the dropped share.  The model's variables are built first (on the mesh's strategy)."""
    model.build(mesh, batch_dims)
    if mesh.strategy is not None:
        with mesh.strategy.scope():
            optimizer = tf.keras.optimizers.Adam(learning_rate)
            optimizer.build(model.trainable_variables)  # slots before strategy.run
    else:
        optimizer = tf.keras.optimizers.Adam(learning_rate)
    step_fn = make_train_step(model, mesh, optimizer, batch_dims)
    rng = np.random.RandomState(seed)
    history = History()
    scopes = sorted(prefix + layer.kind for prefix, layer in model.moe_layers())
    history.moe_scope = scopes[0] if scopes else None
    start = time.time()
    for i in range(1, steps + 1):
        targets = char_rows(corpus, rng, batch_sizes, length)
        loss, aux, dropped, load, demand = step_fn(tf.constant(targets),
                                                   tf.constant(seed * 100003 + i, tf.int64))
        if i == 1:
            history.first_step_seconds = time.time() - start
        history.steps.append(i)
        history.loss.append(float(loss))
        history.aux.append(float(aux))
        history.dropped.append(float(dropped))
        history.load.append(np.asarray(load))
        history.demand.append(np.asarray(demand))
        if progress:
            _progress(i, steps, history, time.time() - start)
    history.seconds = time.time() - start
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
    if sys.stdout.isatty() and i == steps:
        sys.stdout.write("\n")


__all__ = ["train", "make_train_step", "History", "char_rows", "first_moe_level", "FIRST_ID"]
