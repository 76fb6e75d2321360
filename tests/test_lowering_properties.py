"""Property test: random meshes, layouts and op sequences give the single-device
values and gradients on both executors (placement and tf.distribute)."""
import os

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings

import namedmesh as nm
from helpers import strategy
from programs import make_inputs, programs, value_and_grads

EXAMPLES = int(os.environ.get("NAMEDMESH_PROPERTY_EXAMPLES", "200"))
_SINGLE = []


def single_mesh():
    if not _SINGLE:
        _SINGLE.append(nm.Mesh())
    return _SINGLE[0]


def _check(got, want, what, program):
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5,
                                   err_msg="%s, result %d, %r" % (what, i, program))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_mesh_equals_single_device(program):
    x, ws = make_inputs(program)
    x = tf.constant(x)
    ws = [tf.constant(w) for w in ws]
    want = value_and_grads(program, single_mesh(), x, ws, 1.0)
    r = tf.constant(np.random.RandomState(program.seed + 1).randn(*want[0].shape).astype(np.float32))
    want = [v.numpy() for v in value_and_grads(program, single_mesh(), x, ws, r)]

    placement = nm.Mesh(program.mesh_shape, program.layout)
    got = [v.numpy() for v in value_and_grads(program, placement, x, ws, r)]
    _check(got, want, "placement", program)

    mesh = nm.Mesh(program.mesh_shape, program.layout,
                   strategy=strategy(nm.convert_to_shape(program.mesh_shape).size))

    def replica_fn(x, ws, r):
        out = value_and_grads(program, mesh, x, ws, r)
        return [out[0] / mesh.size] + out[1:]  # summed over replicas below

    got = [v.numpy() for v in mesh.run(replica_fn, x, ws, r, reduce="sum")]
    _check(got, want, "strategy", program)
