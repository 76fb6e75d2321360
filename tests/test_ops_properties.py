"""Property test: each of mtf's ops on random meshes and layouts (split dims sliced,
padded, concatenated, split, stacked, shifted, gathered from, top-k'd, halo-exchanged)
gives the one-device values and gradients, on the placement executor and, for a part of
the cases, on the tf.distribute executor."""
import os

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings

import pytest

import namedmesh as nm
from helpers import strategy
from op_cases import OpCase, make_inputs, op_cases, value_and_grads

EXAMPLES = int(os.environ.get("NAMEDMESH_OP_EXAMPLES", "300"))
STRATEGY_EVERY = int(os.environ.get("NAMEDMESH_OP_STRATEGY_EVERY", "8"))
_ONE = []
_COUNT = [0]


def one_device():
    if not _ONE:
        _ONE.append(nm.Mesh())
    return _ONE[0]


def _compare(got, want, what, case):
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=2e-5,
                                   err_msg="%s, result %d, %r" % (what, i, case))


def _check_case(case, executors=("placement", "strategy")):
    values = {k: tf.constant(v) for k, v in make_inputs(case).items()}
    first = value_and_grads(case, one_device(), values, 1.0)
    r = tf.constant(np.random.RandomState(case.seed + 1).randn(*first[0].shape).astype(np.float32))
    want = [v.numpy() for v in value_and_grads(case, one_device(), values, r)]
    if "placement" in executors:
        placement = nm.Mesh(case.mesh_shape, case.layout)
        _compare([v.numpy() for v in value_and_grads(case, placement, values, r)], want,
                 "placement", case)
    if "strategy" not in executors:
        return
    mesh = nm.Mesh(case.mesh_shape, case.layout,
                   strategy=strategy(nm.convert_to_shape(case.mesh_shape).size))

    def replica_fn(vals, r):
        out = value_and_grads(case, mesh, vals, r)
        return [out[0] / mesh.size, tf.cast(out[1], tf.float32) / mesh.size] + out[2:]

    got = [v.numpy() for v in mesh.run(replica_fn, values, r, reduce="sum")]
    got[1] = np.round(got[1]).astype(want[1].dtype)
    _compare(got, want, "strategy", case)


# split dims gathered from, top-k'd, concatenated, sliced, padded and sampled, on tf.distribute
SPLIT_CASES = [
    OpCase("x:2;y:2", {"b": "x", "a": "y"}, "gather",
           {"dim": "b", "batch": True, "count": 2, "indices": [("a", 8), ("i", 2)]}, 3),
    OpCase("x:4", {"b": "x"}, "gather",
           {"dim": "b", "batch": False, "count": 4, "indices": [("i", 4)]}, 4),
    OpCase("x:2;y:2", {"b": "x"}, "top_k", {"dim": "b", "k": 3}, 5),
    OpCase("x:2;y:2", {"b": "x", "c": "y"}, "concat", {"dim": "b", "other": 4}, 6),
    OpCase("x:4", {"b": "x"}, "slice", {"dim": "b", "begin": 2, "size": 4}, 7),
    OpCase("x:2;y:2", {"b": "x"}, "pad", {"dim": "b", "paddings": [1, 1]}, 8),
    OpCase("x:2", {"b": "x"}, "sample", {"dim": "b", "temperature": 1.0}, 9),
]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: "%s-%s" % (c.kind, c.layout))
def test_split_dims_on_both_executors(case):
    _check_case(case)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(op_cases())
def test_op_on_a_mesh_equals_one_device(case):
    _COUNT[0] += 1
    _check_case(case, ("placement", "strategy") if _COUNT[0] % STRATEGY_EVERY == 0 else
                ("placement",))


def test_neighbour_exchange_on_tf_distribute():
    """shift along a split dim under MirroredStrategy: values, gradient, and the permutes of
    the forward pass and of its adjoint (each slice's gradient goes back to its source)."""
    x = np.random.RandomState(3).randn(2, 8).astype(np.float32)
    r = np.random.RandomState(4).randn(2, 8).astype(np.float32)
    want, want_grad = [], []
    for wrap in (True, False):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = nm.export_to_tf_tensor(nm.shift(nm.import_tf_tensor(one_device(), xt, "a:2;b:8"),
                                                3, "b", wrap))
            loss = tf.reduce_sum(y * r)
        want.append(y.numpy())
        want_grad.append(tape.gradient(loss, xt).numpy())
    mesh = nm.Mesh("m:4", "b:m", strategy=strategy(4))

    def replica_fn(x, r):
        out = []
        for wrap in (True, False):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = nm.export_to_tf_tensor(nm.shift(nm.import_tf_tensor(mesh, x, "a:2;b:8"), 3,
                                                    "b", wrap))
                loss = tf.reduce_sum(y * r)
            out += [y / mesh.size, tape.gradient(loss, x)]
        return out

    with nm.trace_collectives() as trace:
        got = [v.numpy() for v in mesh.run(replica_fn, tf.constant(x), tf.constant(r),
                                           reduce="sum")]
    for i in range(2):
        np.testing.assert_allclose(got[2 * i], want[i], atol=1e-6)
        np.testing.assert_allclose(got[2 * i + 1], want_grad[i], atol=1e-6)
    forward = [rec.sources for rec in trace.select("permute")]
    backward = [rec.sources for rec in trace.select("permute", phase="backward")]
    # block 2, offset 3 = one block + 1: two exchanges per shift, by 1 and by 2 members
    assert forward == [(3, 0, 1, 2), (2, 3, 0, 1), (None, 0, 1, 2), (None, None, 0, 1)]
    assert sorted(backward, key=repr) == sorted(
        [(1, 2, 3, 0), (2, 3, 0, 1), (1, 2, 3, None), (2, 3, None, None)], key=repr)
