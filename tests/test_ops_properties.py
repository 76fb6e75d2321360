"""Property test: each of mtf's ops on random meshes and layouts (split dims sliced,
padded, concatenated, split, stacked, shifted, gathered from, top-k'd, halo-exchanged)
gives the one-device values and gradients, on the placement executor and, for a part of
the cases, on the tf.distribute executor."""
import os

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings

import namedmesh as nm
from helpers import strategy
from op_cases import make_inputs, op_cases, value_and_grads

EXAMPLES = int(os.environ.get("NAMEDMESH_OP_EXAMPLES", "250"))
STRATEGY_EVERY = int(os.environ.get("NAMEDMESH_OP_STRATEGY_EVERY", "12"))
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


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(op_cases())
def test_op_on_a_mesh_equals_one_device(case):
    values = {k: tf.constant(v) for k, v in make_inputs(case).items()}
    first = value_and_grads(case, one_device(), values, 1.0)
    r = tf.constant(np.random.RandomState(case.seed + 1).randn(*first[0].shape).astype(np.float32))
    want = [v.numpy() for v in value_and_grads(case, one_device(), values, r)]

    placement = nm.Mesh(case.mesh_shape, case.layout)
    _compare([v.numpy() for v in value_and_grads(case, placement, values, r)], want,
             "placement", case)

    _COUNT[0] += 1
    if _COUNT[0] % STRATEGY_EVERY:
        return
    mesh = nm.Mesh(case.mesh_shape, case.layout,
                   strategy=strategy(nm.convert_to_shape(case.mesh_shape).size))

    def replica_fn(vals, r):
        out = value_and_grads(case, mesh, vals, r)
        return [out[0] / mesh.size, tf.cast(out[1], tf.float32) / mesh.size] + out[2:]

    got = [v.numpy() for v in mesh.run(replica_fn, values, r, reduce="sum")]
    got[1] = np.round(got[1]).astype(want[1].dtype)
    _compare(got, want, "strategy", case)
