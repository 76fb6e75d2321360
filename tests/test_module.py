"""namedmesh's layers are tf.Modules: tracked variables, checkpoints, SavedModel serving."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy as mirrored
from namedmesh.plain.serving import ServingModule

SHAPE = nm.convert_to_shape("outer_batch:2;batch:4;length:4;d_model:8")
MOE2D = dict(expert_x=2, expert_y=2, hidden_size=16, group_size=8, second_policy_eval="all")


def _x(seed=0):
    return np.random.RandomState(seed).randn(*SHAPE.sizes).astype(np.float32)


def _model(seed=0):
    """MoE2D then a Dense projection, both tf.Modules; ``seed`` varies the weights."""
    moe = nm.moe.MoE2D(**MOE2D)
    proj = nm.layers.Dense("vocab:5", name="logits", seed=seed)
    return moe, proj


def _forward(moe, proj, x, mesh=None):
    mesh = mesh or nm.Mesh()
    y, aux = moe(nm.import_tf_tensor(mesh, x, SHAPE))
    return nm.export_to_tf_tensor(proj(y)).numpy(), nm.export_to_tf_tensor(aux).numpy()


def test_layers_are_modules_with_tracked_variables():
    moe, proj = _model()
    _forward(moe, proj, _x())
    assert isinstance(moe, tf.Module) and isinstance(proj, tf.Module)
    assert isinstance(moe.store, tf.Module)
    assert sorted(moe.mtf_variables()) == ["inner_gating/kernel", "outer_gating/kernel",
                                           "wi/kernel", "wo/kernel"]
    # tf.Module's own walk finds the weights (and the random policies' step counter)
    assert {id(v) for v in moe.trainable_variables} == \
        {id(v) for v in tf.Module.trainable_variables.fget(moe)}
    assert len(moe.variables) == 5 and len(moe.trainable_variables) == 4
    assert sorted(proj.mtf_variables()) == ["logits/bias", "logits/kernel"]
    store = proj.store
    assert isinstance(store.variables, tuple) and len(store.variables) == 2
    assert sorted(store.variables()) == ["logits/bias", "logits/kernel"]   # mtf-style lookup


def test_checkpoint_restores_identical_outputs(tmp_path):
    moe, proj = _model(seed=0)
    x = _x()
    want = _forward(moe, proj, x)
    path = tf.train.Checkpoint(moe=moe, proj=proj).write(str(tmp_path / "ckpt"))
    names = [n for n, _ in tf.train.list_variables(path)]
    assert any("wi.Skernel" in n for n in names) and any("logits.Sbias" in n for n in names)
    other_moe, other_proj = _model(seed=1)
    _forward(other_moe, other_proj, x)                  # built, with other weights
    assert not np.array_equal(_forward(other_moe, other_proj, x)[0], want[0])
    tf.train.Checkpoint(moe=other_moe, proj=other_proj).read(path).assert_consumed()
    got = _forward(other_moe, other_proj, x)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_saved_model_serving_signature_gives_identical_outputs(tmp_path):
    moe, proj = _model()

    def program(x):
        y, aux = moe(x)
        return {"logits": proj(y), "aux_loss": aux}

    served = ServingModule(program, [moe, proj],
                           input_dims=(("outer_batch:2", "batch"), "length", "d_model"),
                           input_shape=[8, 4, 8])
    plain = _x().reshape(8, 4, 8)
    want = served.serve(plain)
    np.testing.assert_array_equal(want["logits"].numpy().reshape(2, 4, 4, 5),
                                  _forward(moe, proj, _x())[0])
    served.save(str(tmp_path / "saved"))
    del served
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    got = loaded.signatures["serving_default"](x=tf.constant(plain))
    assert sorted(got) == ["aux_loss", "logits"]
    for k in got:
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy())
    doc = loaded.signatures["describe"]()["doc"].numpy().decode()
    assert doc.splitlines() == [
        "x: float32 [8, 4, 8] = [outer_batch:2 x batch:4, length:4, d_model:8]",
        "logits: float32 [8, 4, 5] = [outer_batch:2 x batch:4, length:4, vocab:5]",
        "aux_loss: float32 [] = a scalar"]
    assert loaded.describe()["doc"].numpy().decode() == doc


def test_serving_a_layer_and_what_a_serving_module_refuses(tmp_path):
    layer = nm.moe.MoE1D(num_experts=4, hidden_size=8, group_size=8, second_policy_eval="all")
    served = ServingModule.for_layer(layer, ("batch", "length", "d_model"), [4, 8, 8])
    assert served.doc.splitlines()[1].startswith("y: float32 [4, 8, 8] = [batch:4, length:8")
    x = np.random.RandomState(3).randn(4, 8, 8).astype(np.float32)
    want = served.serve(x)["y"].numpy()
    served.save(str(tmp_path / "moe1d"))
    loaded = tf.saved_model.load(str(tmp_path / "moe1d"))
    np.testing.assert_array_equal(loaded.signatures["serving_default"](x=tf.constant(x))["y"],
                                  want)
    mesh = nm.Mesh("b:2", "batch:b", strategy=mirrored(2))
    with pytest.raises(nm.MeshError, match="export with a placement mesh"):
        ServingModule.for_layer(layer, ("batch", "length", "d_model"), [4, 8, 8], mesh=mesh)
    with pytest.raises(nm.ShapeError, match="input has 2 axes"):
        ServingModule.for_layer(layer, ("batch", "length", "d_model"), [4, 8]).doc


def test_dense_module_matches_dense_and_builds_mirrored_variables():
    """Dense(...)(x) is dense(x) with a store; built on a strategy mesh its variables are
    mirrored and the mesh run equals one device."""
    x = np.random.RandomState(1).randn(4, 6).astype(np.float32)
    module = nm.layers.Dense("hidden:3", name="ff", activation="relu")
    mesh = nm.Mesh()
    t = nm.import_tf_tensor(mesh, x, "batch:4;d_model:6")
    store = nm.VariableStore()
    want = nm.export_to_tf_tensor(nm.layers.dense(t, "hidden:3", name="ff", store=store,
                                                  activation=nm.relu)).numpy()
    np.testing.assert_array_equal(nm.export_to_tf_tensor(module(t)).numpy(), want)
    strategy = mirrored(2)
    on_mesh = nm.Mesh("b:2", "batch:b", strategy=strategy)
    mirrored_module = nm.layers.Dense("hidden:3", name="ff", activation="relu")
    mirrored_module.build("batch:4;d_model:6", on_mesh)
    kernel = mirrored_module.mtf_variables()["ff/kernel"]
    assert type(kernel).__name__ == "MirroredVariable"

    def program(v):
        return nm.export_to_tf_tensor(mirrored_module(nm.import_tf_tensor(on_mesh, v,
                                                                          "batch:4;d_model:6")))
    np.testing.assert_allclose(on_mesh.run(program, tf.constant(x)).numpy(), want, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(new_dims=[]), nm.ShapeError, "new_dims must name at least one output dim"),
    (dict(new_dims="h:3", reduced_dims="nope"), nm.ShapeError, "dim 'nope' is not a dim"),
    (dict(new_dims="h:3", activation="nope"), nm.ConfigError, "unknown activation 'nope'"),
])
def test_dense_module_errors_name_the_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        module = nm.layers.Dense(**kwargs)
        module(nm.import_tf_tensor(nm.Mesh(), tf.ones([2, 4]), "batch:2;d_model:4"))


def test_dense_module_called_with_other_dims_is_named():
    module = nm.layers.Dense("h:3")
    module(nm.import_tf_tensor(nm.Mesh(), tf.ones([2, 4]), "batch:2;d_model:4"))
    with pytest.raises(nm.ShapeError, match="was built for input dims"):
        module(nm.import_tf_tensor(nm.Mesh(), tf.ones([2, 5]), "batch:2;d_model:5"))
