"""mtf's ``gradients(ys, xs, grad_ys)`` inside tf.function: equal to tf.GradientTape on one
device, on placement meshes and under tf.distribute, with replicated and split inputs."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy

RNG = np.random.RandomState(0)
X = RNG.randn(4, 6).astype(np.float32)
W = RNG.randn(6, 8).astype(np.float32)
R = RNG.randn(4, 8).astype(np.float32)


def program(mesh, x, w, r):
    nx, nw = nm.import_tf_tensor(mesh, x, "a:4;k:6"), nm.import_tf_tensor(mesh, w, "k:6;d:8")
    h = nm.tanh(nm.einsum([nx, nw], "a:4;d:8"))
    loss = nm.reduce_sum(h * h) + nm.reduce_sum(nx)
    return nx, nw, h, loss, nm.import_tf_tensor(mesh, r, "a:4;d:8")


def tape_gradients():
    x, w, r = tf.constant(X), tf.constant(W), tf.constant(R)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        _, _, h, loss, _ = program(nm.Mesh(), x, w, r)
        loss, h = nm.export_to_tf_tensor(loss), nm.export_to_tf_tensor(h)
        weighted = tf.reduce_sum(h * r)
    return [g.numpy() for g in tape.gradient(loss, [x, w]) + tape.gradient(weighted, [x, w])]


def graph_gradients(mesh):
    nx, nw, h, loss, nr = program(mesh, tf.constant(X), tf.constant(W), tf.constant(R))
    dx, dw = nm.gradients([loss], [nx, nw])
    hx, hw = nm.gradients([h], [nx, nw], grad_ys=[nr])
    return [nm.export_to_tf_tensor(g) for g in (dx, dw, hx, hw)]


@pytest.mark.parametrize("mesh_shape,layout", [("", ""), ("m:2;n:2", "a:m;d:n"),
                                               ("m:2;n:2", "k:m"), ("m:4", "d:m")])
def test_gradients_equal_the_tape(mesh_shape, layout):
    mesh = nm.Mesh(mesh_shape, layout)
    got = tf.function(lambda: graph_gradients(mesh))()
    for g, w in zip(got, tape_gradients()):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)


def test_gradients_under_tf_distribute():
    mesh = nm.Mesh("m:2;n:2", "a:m;k:n", strategy=strategy(4))
    got = mesh.run(lambda: graph_gradients(mesh))
    for g, w in zip(got, tape_gradients()):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)


def test_mtf_recompute_grad_case_without_recompute():
    """mtf's RecomputeGradTest: y = x^2 + x on a split dim, dy given."""
    mesh = nm.Mesh("processors:2", "two:processors")

    @tf.function
    def f():
        x = nm.import_fully_replicated(mesh, tf.constant([5.0, 10.0]), "two:2")
        dy = nm.import_tf_tensor(mesh, tf.constant([2.0, 3.0]), "two:2")
        y = x * x + x
        dx, = nm.gradients([y], [x], [dy])
        return nm.export_to_tf_tensor(y), nm.export_to_tf_tensor(dx)

    y, dx = f()
    np.testing.assert_array_equal(y.numpy(), [30, 110])
    np.testing.assert_array_equal(dx.numpy(), [22, 63])


def test_gradients_needs_a_graph_and_reports_unconnected_inputs():
    mesh = nm.Mesh()
    x = nm.ones(mesh, "a:2")
    with pytest.raises(nm.MeshError, match="tf.function"):
        nm.gradients([x * 2.0], [x])

    @tf.function
    def f():
        a, b = nm.ones(mesh, "a:2"), nm.ones(mesh, "b:3")
        return nm.gradients([a * 2.0], [a, b])[1]

    assert f() is None
