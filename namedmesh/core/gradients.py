"""``gradients(ys, xs, grad_ys)``: mtf's symbolic gradients of named Tensors.

mtf differentiates its own graph.  namedmesh Tensors are TensorFlow values, so
this is ``tf.gradients`` over their slices, which needs a graph: call it inside
``tf.function`` (``mesh.run``) or use ``tf.GradientTape`` eagerly.  A replicated
output is seeded on one copy only (so the copies count once), and the gradient of
an input is summed over the copies it has on the mesh dims that do not split it
(one all-reduce over those mesh dims), so the result is mtf's: the gradient of the
program, laid out like the input.
"""

import tensorflow as tf

from namedmesh.core.elementwise import check_tensor
from namedmesh.core.tensor import Tensor
from namedmesh.errors import MeshError, ShapeError


def _replicated_axes(t: Tensor):
    split = set(t.layout.split_mesh_axes)
    return [a for a in range(t.mesh.ndims) if a not in split and t.mesh.shape.dims[a].size > 1]


def _seed(y: Tensor, grad_y):
    """Per-slice seeds: ``grad_y``'s slices (or ones) on the first copy of each replicated
    group of ``y``'s slices, zeros on the others."""
    impl = y.mesh.impl
    if grad_y is None:
        seeds = impl.slicewise(tf.ones_like, y.slices)
    else:
        check_tensor(grad_y, "gradients")
        if grad_y.shape != y.shape:
            raise ShapeError("gradients: grad_ys dims %s differ from ys dims %s"
                             % (grad_y.shape, y.shape))
        seeds = impl.slicewise(lambda g: tf.cast(g, y.dtype), grad_y.slices)
    for axis in _replicated_axes(y):
        seeds = impl.slicewise(lambda s, c: s * tf.cast(tf.equal(c, 0), s.dtype), seeds,
                               impl.pcoord(axis))
    return seeds


def gradients(ys, xs, grad_ys=None, operations=None):
    """``[d sum_i(ys[i] * grad_ys[i]) / d x for x in xs]`` as Tensors laid out like ``xs``
    (``None`` where an ``x`` does not reach any ``y``); ``grad_ys`` default to ones.
    Inside ``tf.function`` only (see the module)."""
    if operations is not None:
        raise ShapeError("gradients: operations= selects ops of mtf's graph; TensorFlow "
                         "differentiates through every op that connects ys to xs")
    if tf.executing_eagerly():
        raise MeshError("gradients(ys, xs) differentiates a graph: call it inside tf.function "
                        "(mesh.run(fn, ...) gives one), or record the computation with "
                        "tf.GradientTape eagerly")
    ys, xs = list(ys), list(xs)
    for t in ys + xs:
        check_tensor(t, "gradients")
    grad_ys = list(grad_ys) if grad_ys else [None] * len(ys)
    flat_ys, flat_seeds = [], []
    for y, g in zip(ys, grad_ys):
        flat_ys.extend(y.slices)
        flat_seeds.extend(_seed(y, g))
    flat_xs = [s for x in xs for s in x.slices]
    flat_grads = tf.gradients(flat_ys, flat_xs, grad_ys=flat_seeds)
    out, i = [], 0
    for x in xs:
        n = len(x.slices)
        grads = flat_grads[i:i + n]
        i += n
        if all(g is None for g in grads):
            out.append(None)
            continue
        grads = tuple(tf.zeros_like(s) if g is None else tf.convert_to_tensor(g)
                      for g, s in zip(grads, x.slices))
        axes = _replicated_axes(x)
        if axes:
            grads = x.mesh.impl.allreduce(grads, axes, "SUM", shape=x.shape)
        out.append(Tensor(x.mesh, x.shape, grads, x.dtype))
    return out
