"""Whole transformer models in ordinary TF2: a TransformerModel is a tf.Module (tracked
variables, tf.train.Checkpoint), exports a SavedModel whose signatures take plain int32 ids
(logits and greedy decoding, checked against mtf's own logits and tokens), and a language
model trains as a Keras layer (``namedmesh.keras.TransformerLM``) with model.fit exactly as
namedmesh's own training loop (the demo's train step) trains it.

The models are mtf's ``lm_moe.gin`` / ``bi_moe.gin`` scaled down (tests/data/models/gin) and
the checkpoints mtf 0.1.21 wrote for them (tests/data/models/ckpt_*).
"""
import numpy as np
import pytest
import tensorflow as tf

import keras
import namedmesh as nm
import namedmesh.keras as nmk
from namedmesh.demo.train import make_train_step
from transformer_cases import ATOL, DATA, load

GIN = "tests/data/models/gin/"


def gin_files(case):
    return [GIN + "mtf/defaults.gin", GIN + "mtf/%s.gin" % case, GIN + "cases/ckpt_%s.gin" % case]


def mtf_model(case):
    """The case's model with the weights mtf's training wrote, and mtf's golden arrays."""
    config, arrays = load("ckpt_" + case)
    model = nm.porting.read_gin(gin_files(case)).build_model(vocab_size=32)
    model.load_checkpoint(DATA + "/ckpt_" + case)
    return model, arrays


def logits_of(model, features):
    return nm.export_to_tf_tensor(model(nm.Mesh(), features).logits).numpy()


def test_model_is_a_module_and_a_checkpoint_restores_identical_logits(tmp_path):
    model, arrays = mtf_model("lm_moe")
    assert isinstance(model, tf.Module)
    by_name = model.variables()                       # {mtf name: variable}, as before
    assert len(by_name) == len(model.variables) == len(model.trainable_variables) == 37
    # tf.Module's own walk finds every weight (the store's and the MoE layers')
    assert {id(v) for v in model.trainable_variables} == \
        {id(v) for v in tf.Module.trainable_variables.fget(model)}
    features = {"targets": arrays["targets"], "sequence_id": arrays["sequence_id"]}
    want = logits_of(model, features)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    keys = [n for n, _ in tf.train.list_variables(path)]
    assert "model/store/_variables/transformer.Sembedding/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert any("moe_modules/transformer.Sblock_000.Slayer_001.SMoE1D/store/_variables/wi.Skernel"
               in k for k in keys)
    fresh = nm.porting.read_gin(gin_files("lm_moe")).build_model(vocab_size=32, seed=1).build()
    assert np.abs(logits_of(fresh, features) - want).max() > 1e-3    # other weights
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(logits_of(fresh, features), want)


@pytest.mark.parametrize("case, features, decode_key", [
    ("lm_moe", ("targets", "inputs", "sequence_id"), "prompts"),
    ("bi_moe", None, "inputs")])
def test_saved_model_signatures_give_mtf_logits_and_greedy_tokens(tmp_path, case, features,
                                                                   decode_key):
    model, arrays = mtf_model(case)
    batch, length = arrays["targets"].shape
    served = model.serving(batch, length, features=features)
    names = list(features or ("inputs", "targets"))
    plain = {k: arrays[k] for k in names}
    in_python = served(**plain)["logits"].numpy()
    np.testing.assert_allclose(in_python, logits_of(model, plain), atol=1e-5, rtol=0)
    served.save(str(tmp_path / case))
    loaded = tf.saved_model.load(str(tmp_path / case))
    assert sorted(loaded.signatures) == ["decode", "describe", "serving_default"]
    got = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in plain.items()})
    np.testing.assert_array_equal(got["logits"].numpy(), in_python)      # identical
    np.testing.assert_allclose(got["logits"].numpy(), arrays["eval/logits"], atol=ATOL, rtol=0)
    tokens = loaded.signatures["decode"](**{decode_key: tf.constant(arrays["decode/prompts"])})
    np.testing.assert_array_equal(tokens["tokens"].numpy(), arrays["decode/tokens"])   # mtf's
    docs = loaded.describe()
    first = "%s: int32 [%d, %d] = [batch:%d, length:%d]" % (names[0], batch, length, batch,
                                                            length)
    assert docs["doc"].numpy().decode().splitlines() == served.doc.splitlines()
    assert served.doc.splitlines()[0] == first
    assert served.doc.splitlines()[-1] == \
        "logits: float32 [%d, %d, 128] = [batch:%d, length:%d, vocab:128]" % (
            batch, length, batch, length)
    assert docs["decode"].numpy().decode().splitlines()[-1] == \
        "tokens: int32 [%d, %d] = [batch:%d, length:%d]" % (batch, length, batch, length)


def test_serving_refuses_bad_ids_with_errors_naming_the_input(tmp_path):
    model = nm.porting.read_gin(gin_files("lm_moe")).build_model(vocab_size=32)
    served = model.serving(2, 8, decode=False)
    ids = np.random.RandomState(0).randint(2, 32, size=(2, 8)).astype(np.int32)
    with pytest.raises(nm.WrongTypeError, match="input 'targets' must be int32, got float32"):
        served(targets=ids.astype(np.float32))
    with pytest.raises(nm.ShapeError, match=r"'targets' has shape \[16\]; expected \[2, 8\] = "
                                            r"\[batch:2, length:8\]"):
        served(targets=ids.reshape(16))
    with pytest.raises(nm.ShapeError, match="input 'targets' missing"):
        served()
    with pytest.raises(nm.ShapeError, match="unknown input 'inputs'"):
        served(targets=ids, inputs=ids)
    np.testing.assert_array_equal(served(ids.astype(np.int64))["logits"].numpy(),
                                  served(targets=ids)["logits"].numpy())   # ints are cast
    served.save(str(tmp_path / "lm"))
    signature = tf.saved_model.load(str(tmp_path / "lm")).signatures["serving_default"]
    # a loaded signature is TensorFlow's: its errors are TensorFlow's, the graph checks shapes
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32"):
        signature(targets=tf.constant(ids.astype(np.float32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"targets \[16\] is not compatible"):
        signature(targets=tf.constant(ids.reshape(16)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"targets.* holds an id outside the vocabulary \[0, 128\)"):
        signature(targets=tf.constant(ids + 200))
    for kwargs, message in [
            (dict(batch_size=0, length=8), "batch_size: must be >= 1, got 0"),
            (dict(batch_size=2, length=8, inputs_length=4), "inputs_length is for a Bitransf"),
            (dict(batch_size=2, length=8, features=("sequence_id",)), r"\['targets'\] missing"),
            (dict(batch_size=2, length=8, features=("targets", "encoder_position")),
             r"unknown \['encoder_position'\]")]:
        with pytest.raises(nm.ConfigError, match=message):
            model.serving(**kwargs)


# -- Keras: a whole language model in model.fit -------------------------------------------
STEPS, BATCH, LENGTH, LEARNING_RATE = 30, 4, 8, 3e-3


def counting_rows(steps, seed=0):
    """The toy task: rows counting up by a stride (1-3) mod 30 from a random start, as ids
    2..31 (0 and 1 are mtf's padding and EOS)."""
    rng = np.random.RandomState(seed)
    start = rng.randint(0, 30, size=(steps * BATCH, 1))
    stride = rng.randint(1, 4, size=(steps * BATCH, 1))
    return (2 + (start + stride * np.arange(LENGTH)) % 30).astype(np.int32)


def keras_lm(**kwargs):
    ids = keras.Input((LENGTH,), batch_size=BATCH, dtype="int32")
    lm = nmk.TransformerLM(gin_files("lm_moe"), vocab_size=32, name="lm", **kwargs)
    model = keras.Model(ids, lm(ids))
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))   # the layer's own losses
    return model, lm


class RunningMean(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.loss, self.logs = [], None

    def on_train_batch_end(self, batch, logs=None):
        self.loss.append(logs["loss"])
        self.logs = logs


def test_keras_fit_trains_the_model_as_its_own_training_loop():
    rows = counting_rows(STEPS)
    model, lm = keras_lm()
    own = nm.porting.read_gin(gin_files("lm_moe")).build_model(vocab_size=32).build()
    assert len(model.trainable_weights) == 37 and sorted(lm.mtf_variables()) == sorted(
        own.variables())
    for name, value in own.values().items():         # the same seed draws the same weights
        np.testing.assert_array_equal(lm.mtf_variables()[name].numpy(), value)
    record = RunningMean()
    model.fit(tf.data.Dataset.from_tensor_slices(rows).batch(BATCH, drop_remainder=True),
              epochs=1, verbose=0, shuffle=False, callbacks=[record])
    assert len(model.losses) == 3            # the model's loss, then each MoE layer's aux loss
    assert sorted(record.logs) == ["lm_block_000_layer_001_aux_loss",
                                   "lm_block_000_layer_001_experts_fraction_dropped",
                                   "lm_block_000_layer_001_experts_router_confidence",
                                   "lm_block_001_layer_001_aux_loss",
                                   "lm_block_001_layer_001_experts_fraction_dropped",
                                   "lm_block_001_layer_001_experts_router_confidence", "loss"]
    # namedmesh's own loop: the demo's compiled train step (mtf's call_simple loss, its
    # gradient, Adam), seeds 1, 2, ... as the Keras layer counts them
    step = make_train_step(own, nm.Mesh(), keras.optimizers.Adam(LEARNING_RATE), None)
    losses = []
    for i in range(STEPS):
        loss, aux = step(tf.constant(rows[i * BATCH:(i + 1) * BATCH]),
                         tf.constant(i + 1, tf.int64))[:2]
        losses.append(float(loss) + float(aux))
    own_curve = np.cumsum(losses) / np.arange(1, STEPS + 1)    # Keras logs the running mean
    np.testing.assert_allclose(record.loss, own_curve, atol=1e-5, rtol=0)
    assert own_curve[-1] < own_curve[0] - 0.2                   # it learns
    for name, value in own.values().items():
        np.testing.assert_allclose(lm.mtf_variables()[name].numpy(), value, atol=1e-5, rtol=0)
    # inference: the layer's logits are the model's
    ids = rows[:BATCH]
    np.testing.assert_allclose(model(ids).numpy(), logits_of(own, {"targets": ids}),
                               atol=1e-5, rtol=0)


def test_keras_lm_config_clone_and_errors():
    model, lm = keras_lm()
    clone = keras.models.clone_model(model)              # from the layer's config: gin files
    clone.set_weights(model.get_weights())
    ids = counting_rows(1)
    np.testing.assert_array_equal(clone(ids).numpy(), model(ids).numpy())
    with pytest.raises(nm.ConfigError,
                       match=r"'targets' holds id \d+, outside the vocabulary \[0, 128\)"):
        model(ids + 198)
    with pytest.raises(nm.WrongTypeError, match="must hold integer ids, got float32"):
        lm(ids.astype(np.float32))
    with pytest.raises(nm.ConfigError, match="describes a Bitransformer; this layer takes a "
                                             "language model"):
        nmk.TransformerLM(gin_files("bi_moe"), vocab_size=32)
    with pytest.raises(nm.ConfigError, match="compute in float32"):
        nmk.TransformerLM(gin_files("lm_moe"), vocab_size=32, dtype="mixed_bfloat16")
    with pytest.raises(nm.ConfigError, match="config must be gin file path"):
        nmk.TransformerLM(42, vocab_size=32)
    with pytest.raises(nm.ShapeError, match="the input has 3 axes"):
        nmk.TransformerLM(gin_files("lm_moe"), vocab_size=32)(
            keras.Input((LENGTH, 2), batch_size=BATCH, dtype="int32"))
