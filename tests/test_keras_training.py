"""Keras training of namedmesh layers equals namedmesh's own training loop.

The model is ``namedmesh.keras.example``'s: ``logits = Dense(x + MoE2D(x))`` on its
toy task.  ``model.fit`` (one device, and MirroredStrategy over 4 logical CPUs on
mesh b0:2;b1:2, each replica on its own shard of the batch) is compared with a
loop written with namedmesh's modules, ``tf.GradientTape`` and the same optimizer
(on one device, and through ``mesh.run`` with every replica on the whole batch).
"""
import numpy as np
import pytest
import tensorflow as tf

import keras
import namedmesh as nm
from helpers import strategy as mirrored
from namedmesh.keras.example import LAYOUT, MESH_SHAPE, MOE2D_CONFIG, ToyTask, build_model

STEPS = 200
TASK = ToyTask()
LEARNING_RATE = 3e-3


def strategy_mesh():
    return nm.Mesh(MESH_SHAPE, LAYOUT, strategy=mirrored(4), collective_timeout=None)


def keras_model(mesh=None, **kwargs):
    if mesh is None:
        return build_model(TASK, learning_rate=LEARNING_RATE, **kwargs)
    with mesh.strategy.scope():
        return build_model(TASK, mesh, learning_rate=LEARNING_RATE, **kwargs)


class LossPerStep(keras.callbacks.Callback):
    """Keras logs the epoch's running mean after each batch: keep it."""

    def __init__(self):
        super().__init__()
        self.running_mean = []

    def on_train_batch_end(self, batch, logs=None):
        self.running_mean.append(logs["loss"])


def fit_curve(model, steps=STEPS, validation=False):
    """The running-mean loss after each step (and, with ``validation``, the epoch-end
    model.evaluate loss on held-out batches)."""
    record = LossPerStep()
    history = model.fit(TASK.dataset(steps), epochs=1, verbose=0, shuffle=False,
                        callbacks=[record],
                        validation_data=TASK.dataset(2, seed=5) if validation else None)
    curve = np.array(record.running_mean)
    return (curve, history.history["val_loss"][0]) if validation else curve


# -- namedmesh's own loop ------------------------------------------------------------------
class OwnLoop:
    """The same model with namedmesh's modules; weights copied from a Keras model."""

    def __init__(self, model, mesh=None):
        self.mesh = mesh if mesh is not None else nm.Mesh()
        b = TASK.batch
        self.shape = nm.convert_to_shape("outer_batch:2;batch:%d;length:%d;d_model:%d"
                                         % (b // 2, TASK.length, TASK.d_model))
        self.moe = nm.moe.MoE2D(**MOE2D_CONFIG)
        self.logits = nm.layers.Dense("vocab:%d" % TASK.vocab, name="logits")
        self.moe.build(self.shape, self.mesh)
        self.logits.build(self.shape, self.mesh)
        for mine, keras_layer in ((self.moe, "moe"), (self.logits, "logits")):
            theirs = model.get_layer(keras_layer).mtf_variables()
            for name, var in mine.mtf_variables().items():
                var.assign(theirs[name].numpy())
        self.variables = self.moe.trainable_variables + self.logits.trainable_variables
        scope = self.mesh.strategy.scope() if self.mesh.strategy else _null()
        with scope:
            self.optimizer = keras.optimizers.Adam(LEARNING_RATE)
            self.optimizer.build(self.variables)

    def loss(self, x, y, seed):
        """The whole batch's loss as every processor holds it (exports: the namedmesh
        convention, gradients scaled by 1 / replicas)."""
        t = nm.import_tf_tensor(self.mesh, tf.reshape(x, self.shape.sizes), self.shape)
        h, aux = self.moe(t, train=True, seed=seed)
        logits = tf.reshape(nm.export_to_tf_tensor(self.logits(t + h)),
                            [TASK.batch, TASK.length, TASK.vocab])
        ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        ce = tf.math.divide_no_nan(tf.reduce_sum(ce), tf.cast(tf.size(ce), ce.dtype))
        return ce + nm.export_to_tf_tensor(aux)

    def _step(self, x, y, seed):
        with tf.GradientTape() as tape:
            loss = self.loss(x, y, seed)
        grads = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables))  # sums over replicas
        return loss

    def curve(self, steps=STEPS):
        """Per-step losses as Keras reports them: the running mean."""
        if self.mesh.strategy is None:
            step = tf.function(self._step, autograph=False)
        else:
            def step(x, y, seed):
                return self.mesh.run(self._step, x, y, seed)   # replica 0's loss
        losses = []
        for i, (x, y) in enumerate(TASK.dataset(steps), start=1):
            losses.append(float(step(x, y, tf.constant(i, tf.int64))))
        return np.cumsum(losses) / np.arange(1, len(losses) + 1)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def one_device_curves():
    """(Keras curve, own-loop curve, Keras held-out loss) on one device."""
    model = keras_model()
    own = OwnLoop(model).curve()
    curve, held_out = fit_curve(model, validation=True)
    return curve, own, held_out


def test_fit_on_one_device_equals_own_loop(one_device_curves):
    keras_curve, own_curve, _ = one_device_curves
    assert len(keras_curve) == STEPS
    np.testing.assert_allclose(keras_curve, own_curve, rtol=1e-5, atol=1e-6)
    assert keras_curve[-1] < 0.75 * keras_curve[0]   # it learns


@pytest.fixture(scope="module")
def mirrored_fit():
    """(model, Keras curve, own-loop curve) on MirroredStrategy over 4 logical CPUs."""
    mesh = strategy_mesh()
    model = keras_model(mesh)
    own = OwnLoop(model, mesh).curve()
    curve, held_out = fit_curve(model, validation=True)
    return model, curve, own, held_out


def test_fit_under_mirrored_strategy_equals_own_loop(mirrored_fit, one_device_curves):
    """4 replicas, each on its shard of the batch (its processor's slice): the Keras curve
    equals namedmesh's own loop on the same mesh (mesh.run, every replica on the whole
    batch) and the one-device curves, to float tolerance; so does model.evaluate's loss."""
    _, keras_curve, own, held_out = mirrored_fit
    np.testing.assert_allclose(keras_curve, own, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras_curve, one_device_curves[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(held_out, one_device_curves[2], rtol=1e-5)


def test_checkpoint_of_a_mirrored_model_restores_on_one_device(mirrored_fit, tmp_path):
    """tf.train.Checkpoint of the model trained on 4 replicas, restored into the same model
    on one device: its outputs equal the trained model's, called outside strategy.run (the
    whole batch through mesh.run, for inference: a gradient there is a clear error)."""
    model = mirrored_fit[0]
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored = keras_model()
    tf.train.Checkpoint(model=restored).read(path).assert_existing_objects_matched()
    x, _ = TASK.data(1, seed=7)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), atol=1e-6, rtol=0)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    with pytest.raises(nm.MeshError, match="no gradient through a strategy mesh called outside"):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x))
        tape.gradient(loss, model.trainable_weights)


def _loss_and_grads(model, x, y):
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        loss = model.compute_loss(x, y, pred, training=True)  # Keras scales it by 1/replicas
    return loss, tape.gradient(loss, model.trainable_weights)


def test_custom_loop_with_strategy_run_gradient_equals_one_device():
    """A custom loop: strategy.run on the distributed dataset, Keras's compute_loss, the
    optimizer summing the replicas' gradients.  Their sum equals the one-device gradient
    to 1e-6 at every step: scaled exactly once."""
    mesh = strategy_mesh()
    strategy = mesh.strategy
    one, four = keras_model(), keras_model(mesh)
    for a, b in zip(one.weights, four.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())   # same names, same seeds
    one.optimizer.build(one.trainable_weights)
    with strategy.scope():
        four.optimizer.build(four.trainable_weights)   # slots before strategy.run

    @tf.function(autograph=False)
    def one_step(x, y):
        loss, grads = _loss_and_grads(one, x, y)
        one.optimizer.apply_gradients(zip(grads, one.trainable_weights))
        return loss, grads

    @tf.function(autograph=False)
    def four_step(batch):
        def replica(x, y):
            loss, grads = _loss_and_grads(four, x, y)
            four.optimizer.apply_gradients(zip(grads, four.trainable_weights))
            return loss, grads
        loss, grads = strategy.run(replica, args=batch)
        return (strategy.reduce("SUM", loss, axis=None),
                [strategy.reduce("SUM", g, axis=None) for g in grads])

    batches = TASK.dataset(3, seed=4)
    shards = iter(strategy.experimental_distribute_dataset(batches))
    for x, y in batches:
        loss_1, grads_1 = one_step(x, y)
        loss_4, grads_4 = four_step(next(shards))
        assert abs(float(loss_1) - float(loss_4)) <= 1e-6
        for w, g1, g4 in zip(one.trainable_weights, grads_1, grads_4):
            np.testing.assert_allclose(g4.numpy(), g1.numpy(), atol=1e-6, rtol=0, err_msg=w.path)


MATMULS = ("Einsum", "MatMul", "BatchMatMulV2", "BatchMatMulV3")


def _matmuls_reading(graph, variable):
    """The contractions a variable's value flows into (through reads, casts, reshapes)."""
    handles = [internal for external, internal in graph.captures
               if external is variable.handle or getattr(external, "_id", None) ==
               getattr(variable.handle, "_id", -1)]
    assert handles, "variable %s is not captured" % variable.name
    frontier = [op for h in handles for op in h.consumers()]
    found, seen = [], set()
    while frontier:
        op = frontier.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in MATMULS:
            found.append(op)
            continue
        frontier += [c for out in op.outputs for c in out.consumers()]
    return found


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_router(policy):
    """Experts compute in the policy's dtype, the routers in float32 (Switch's selective
    precision): asserted on the traced training step's graph.  Training runs and learns."""
    model = keras_model(dtype=policy)
    low = tf.bfloat16 if policy == "mixed_bfloat16" else tf.float16
    moe = model.get_layer("moe")
    assert moe.compute_dtype == low.name and moe.variable_dtype == "float32"
    x, y = TASK.data(1)
    graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(
        tf.TensorSpec(x.shape, tf.float32)).graph
    variables = moe.mtf_variables()
    for name in ("outer_gating/kernel", "inner_gating/kernel"):
        ops = _matmuls_reading(graph, variables[name])
        assert ops and all(op.outputs[0].dtype == tf.float32 for op in ops), (name, ops)
    for name in ("wi/kernel", "wo/kernel"):
        ops = _matmuls_reading(graph, variables[name])
        assert ops and all(op.outputs[0].dtype == low for op in ops), (name, ops)
    curve = fit_curve(model, steps=40)
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0]
