"""A Keras model with a namedmesh MoE2D layer, trained with ``model.fit``.

    python -m namedmesh.keras.example                  # one device
    python -m namedmesh.keras.example --replicas 4     # MirroredStrategy, mesh b0:2;b1:2

The toy task: every token is a random ``d_model`` vector whose class is the
argmax of a fixed random projection of it.  The model is
``logits = Dense(x + MoE2D(x))``; with ``--replicas 4`` both namedmesh layers
run on the mesh ``b0:2;b1:2`` (``outer_batch`` split over ``b0``, ``batch``
and ``expert_x`` over ``b1``, ``expert_y`` over ``b0``), each replica on its
own shard of every batch.  Prints the loss, the routing metrics, and checks
that a SavedModel export gives the model's outputs.
"""

import argparse
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class ToyTask:
    """Sizes of the toy task: tokens ``[batch, length, d_model]``, labels ``[batch, length]``."""

    batch: int = 16
    length: int = 8
    d_model: int = 8
    vocab: int = 4

    def data(self, steps: int, seed: int = 0):
        """``steps`` batches of tokens and their labels, as numpy arrays (float32, int32)."""
        rng = np.random.RandomState(seed)
        projection = rng.randn(self.d_model, self.vocab)
        x = rng.randn(steps * self.batch, self.length, self.d_model).astype(np.float32)
        y = np.argmax(x @ projection, -1).astype(np.int32)
        return x, y

    def dataset(self, steps: int, seed: int = 0) -> tf.data.Dataset:
        """The batches as a dataset (fixed batch size: named dims have static sizes)."""
        x, y = self.data(steps, seed)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(self.batch, drop_remainder=True)


MOE2D_CONFIG = dict(expert_x=2, expert_y=2, hidden_size=16, group_size=8)
"""The MoE2D's keywords (mtf's gin names); the rest are MoE2D's defaults."""

MESH_SHAPE = "b0:2;b1:2"
LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"


def make_mesh(replicas: int):
    """``(strategy, mesh)``: one device (None, None) or MirroredStrategy over 4 CPUs."""
    import namedmesh as nm
    if replicas == 1:
        return None, None
    if replicas != 4:
        raise SystemExit("--replicas must be 1 or 4 (the mesh is %s), got %d"
                         % (MESH_SHAPE, replicas))
    strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(replicas)])
    # no per-collective timeout: TensorFlow keeps a thread per collective execution for the
    # whole timeout, which a long fit would run out of (docs/distributed.md)
    mesh = nm.Mesh(MESH_SHAPE, LAYOUT, strategy=strategy, collective_timeout=None)
    return strategy, mesh


def build_model(task: ToyTask, mesh=None, learning_rate: float = 3e-3, moe_config=None,
                dtype=None):
    """The compiled Keras model ``logits = Dense(x + MoE2D(x))`` on ``mesh`` (build it
    inside the strategy's scope).  The batch axis is ``[outer_batch:2, batch]`` on every
    mesh, so one device computes the same function as the mesh.  ``dtype``: a Keras
    dtype policy for the layers, e.g. ``"mixed_bfloat16"`` (the logits come out float32)."""
    import keras

    import namedmesh.keras as nmk
    dims = ("batch", "length", "d_model")
    tokens = keras.Input((task.length, task.d_model), batch_size=task.batch, name="tokens")
    moe = nmk.MoE2D(input_dims=dims, mesh=mesh, outer_batch=2, name="moe", dtype=dtype,
                    **(moe_config or MOE2D_CONFIG))(tokens)
    h = keras.layers.Add(name="residual", dtype=dtype)([tokens, moe])
    logits = nmk.Dense("vocab:%d" % task.vocab, input_dims=dims, mesh=mesh, outer_batch=2,
                       name="logits", dtype=dtype)(h)
    model = keras.Model(tokens, keras.layers.Activation("linear", dtype="float32")(logits))
    optimizer = keras.optimizers.Adam(learning_rate)
    if dtype == "mixed_float16":   # float16 gradients need loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def for_serving(model):
    """The same model on one device with the trained weights: what a SavedModel should hold
    (a model built on a strategy mesh would carry its multi-device collectives)."""
    import keras
    serving = keras.models.clone_model(model)   # the namedmesh layers' configs have no mesh
    serving.set_weights(model.get_weights())
    return serving


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1, help="1, or 4 (MirroredStrategy)")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    import namedmesh as nm
    nm.configure_cpu_devices(8)
    task = ToyTask()
    strategy, mesh = make_mesh(args.replicas)
    if strategy is not None:
        with strategy.scope():
            model = build_model(task, mesh)
    else:
        model = build_model(task)
    history = model.fit(task.dataset(args.steps), epochs=1, verbose=0, shuffle=False)
    logs = {k: v[-1] for k, v in history.history.items()}
    first = model.evaluate(task.dataset(4, seed=1), verbose=0, return_dict=True)
    print("trained %d steps on %s: loss %.3f (held-out %.3f)" % (
        args.steps, "one device" if mesh is None else mesh.describe(), logs["loss"],
        first["loss"]))
    for name in sorted(logs):
        if name.startswith("moe_"):
            print("  %-32s %.4f" % (name, logs[name]))
    x, _ = task.data(1, seed=2)
    serving = for_serving(model)
    with tempfile.TemporaryDirectory() as path:
        # named dims have static sizes: the serving signature has the batch size fixed
        spec = tf.TensorSpec([task.batch, task.length, task.d_model], tf.float32)
        serving.export(path, format="tf_saved_model", verbose=False, input_signature=[spec])
        loaded = tf.saved_model.load(path)
        served = loaded.serve(tf.constant(x))
    same = np.array_equal(served.numpy(), serving(x).numpy())
    print("SavedModel export gives the model's outputs: %s" % same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
