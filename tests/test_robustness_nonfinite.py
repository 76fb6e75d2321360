"""A token whose input holds NaN or infinity, against mtf 0.1.21 (tests/data/nonfinite, made by
tools/oracle/make_moe_nonfinite_goldens.py).

mtf lets that one token make its whole group's outputs NaN and the loss NaN.  namedmesh's
``nonfinite_tokens="mtf"`` reproduces exactly that; the default ``"mask"`` gives every token
what mtf gives when the bad token is padding, the loss and gradients too, and counts it.
"""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy

DATA = os.path.join(os.path.dirname(__file__), "data", "nonfinite")
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DATA, "*.npz")))
ATOL = 2e-5


def _load(name):
    d = np.load(os.path.join(DATA, name + ".npz"))
    data = {k: d[k] for k in d.files}
    return data, json.loads(str(data["mtf_call"])), json.loads(str(data["hparams"])), \
        json.loads(str(data["config"]))


def _layer(call, hparams, data, **options):
    cls = nm.moe.MoE2D if call["function"].endswith("v2") else nm.moe.MoE1D
    layer = cls(**dict(cls.config_cls.from_hparams(hparams).to_kwargs(), **options))
    layer.load_mtf_variables({k[4:]: v for k, v in data.items() if k.startswith("var/")})
    return layer


def _run(name, executor="placement", mesh_shape=None, layout=None, **options):
    """(y, loss, {grad name: array}, first-level stats) of ``reduce_sum(y * r) + loss``
    (on the case's mesh unless ``mesh_shape`` / ``layout`` say otherwise)."""
    data, call, hparams, _ = _load(name)
    layer = _layer(call, hparams, data, **options)
    mesh_shape = mesh_shape or call["mesh_shape"]
    n = nm.convert_to_shape(mesh_shape).size
    mesh = nm.Mesh(mesh_shape, layout or call["layout"],
                   strategy=strategy(n) if executor == "strategy" else None)
    shape = nm.convert_to_shape(call["input_shape"])
    layer.build(shape, mesh)
    variables = layer.mtf_variables()
    names = list(variables)
    level = "outer" if call["function"].endswith("v2") else "experts"

    def program(x, r):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, loss, stats = layer(nm.import_tf_tensor(mesh, x, shape), return_stats=True)
            y, loss = nm.export_to_tf_tensor(y), nm.export_to_tf_tensor(loss)
            objective = tf.reduce_sum(y * r) + loss
        grads = tape.gradient(objective, [x] + [variables[k] for k in names])
        return y, loss, dict(zip(["x"] + names, grads)), stats[level].nonfinite_tokens

    def replica(x, r):  # exports are copies on every replica; gradients add up
        y, loss, grads, count = program(x, r)
        return y / n, loss / n, grads, count / n

    x, r = tf.constant(data["x"]), tf.constant(data["r"])
    if executor == "placement":
        y, loss, grads, count = program(x, r)
    else:
        y, loss, grads, count = mesh.run(replica, x, r, reduce="sum")
    return y.numpy(), float(loss.numpy()), {k: v.numpy() for k, v in grads.items()}, \
        float(count.numpy())


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def test_there_are_nonfinite_goldens_and_mtf_poisons_the_group():
    assert len(CASES) == 4
    for name in CASES:
        data, call, _, config = _load(name)
        poisoned = np.isnan(_rows(data["y_nan"])).any(-1).sum()
        assert poisoned > 1 and np.isnan(data["loss_nan"])   # what mtf does
        assert np.isfinite(data["y_padded"]).all() and np.isfinite(data["loss_padded"])


@pytest.mark.parametrize("name", CASES)
def test_mtf_choice_reproduces_mtf(name):
    """``nonfinite_tokens="mtf"`` with mtf's einsum dispatch: the same tokens NaN as mtf, the
    same values elsewhere, the loss NaN."""
    data = _load(name)[0]
    y, loss, _, count = _run(name, nonfinite_tokens="mtf", dispatch="einsum")
    expected = data["y_nan"]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(y[finite], expected[finite], atol=ATOL, rtol=0)
    assert np.isnan(loss) and count == 0


@pytest.mark.parametrize("dispatch", ["einsum", "index"])
@pytest.mark.parametrize("name", CASES)
def test_mask_gives_what_mtf_gives_with_the_token_as_padding(name, dispatch):
    """The default: every output, the loss and every weight gradient as mtf computes them with
    the bad token zeroed and made padding; the bad token's output is 0, its input gradient 0,
    and the statistics count it."""
    data, _, _, config = _load(name)
    y, loss, grads, count = _run(name, dispatch=dispatch)
    np.testing.assert_allclose(y, data["y_padded"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(loss, data["loss_padded"], atol=ATOL, rtol=0)
    bad = tuple(config["bad_token"])
    assert not y[bad].any()
    for key, value in grads.items():
        expected = data["grad/" + key]
        if key == "x":
            assert not value[bad].any()
            value, expected = value.copy(), expected.copy()
            value[bad] = expected[bad] = 0.0
        np.testing.assert_allclose(value, expected, atol=ATOL, rtol=0, err_msg=key)
    assert count == 1


def test_mask_under_tf_distribute():
    data = _load("v2_nan")[0]
    y, loss, grads, count = _run("v2_nan", executor="strategy")
    np.testing.assert_allclose(y, data["y_padded"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(loss, data["loss_padded"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(grads["wi/kernel"], data["grad/wi/kernel"], atol=ATOL, rtol=0)
    assert count == 1


def test_mask_with_d_model_split_over_the_mesh():
    """A split d_model: the flags come from a sum over the mesh (one all-reduce)."""
    data = _load("v1_top2_nan")[0]
    with nm.trace_collectives() as trace:
        y, loss, grads, count = _run("v1_top2_nan", mesh_shape="b0:2;b1:2",
                                     layout="batch:b0;experts:b0;d_model:b1")
    np.testing.assert_allclose(y, data["y_padded"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(loss, data["loss_padded"], atol=ATOL, rtol=0)
    assert count == 1 and trace.count("all_reduce") > 0


def test_masking_changes_nothing_without_bad_tokens():
    """All-finite input: "mask" and "mtf" give the same outputs, loss and gradients."""
    data, call, hparams, _ = _load("v1_top2_nan")
    x = np.nan_to_num(data["x"], nan=0.5)
    results = []
    for policy in ("mask", "mtf"):
        layer = _layer(call, hparams, data, nonfinite_tokens=policy)
        mesh = nm.Mesh(call["mesh_shape"], call["layout"])
        y, loss, stats = layer(nm.import_tf_tensor(mesh, x, call["input_shape"]),
                               return_stats=True)
        results.append((nm.export_to_tf_tensor(y).numpy(), float(nm.export_to_tf_tensor(loss)),
                        float(stats["experts"].nonfinite_tokens)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] and results[0][2] == results[1][2] == 0


def test_the_count_shows_in_the_summary():
    data, call, hparams, _ = _load("v1_top2_nan")
    layer = _layer(call, hparams, data)
    mesh = nm.Mesh(call["mesh_shape"], call["layout"])
    x = data["x"].copy()
    x[0, 0, 0] = np.inf     # a second bad token, in another group
    _, _, stats = layer(nm.import_tf_tensor(mesh, x, call["input_shape"]), return_stats=True)
    assert "non-finite tokens masked 2" in stats.summary()
    assert stats.numpy()["experts"]["nonfinite_tokens"] == 2
