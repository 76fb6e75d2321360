"""Lowering of einsum and reductions: local work plus all-reduces over split summed dims."""

import tensorflow as tf

from namedmesh.core.tensor import Tensor


def _gather_dim(impl, slices, shape, axis_index, mesh_axis):
    """All-gather tensor axis ``axis_index`` (split on ``mesh_axis``) of laid-out slices."""
    return impl.allconcat(slices, mesh_axis, axis_index, shape=shape)


def lower_einsum(mesh, xs, output_shape, reduced, letter) -> Tensor:
    """Local ``tf.einsum`` per processor, then one all-reduce over the mesh axes of
    the summed dims that are split.

    A mesh axis may split only one dim among the operands of a local product:
    if two different dims are split on one mesh axis (say ``b`` in the output
    and a summed ``c`` in another operand), the local blocks would pair wrongly,
    so every such dim except the output's (or the first one) is all-gathered first.
    """
    impl = mesh.impl
    out_layout = mesh.tensor_layout(output_shape)
    keep = {}  # mesh axis -> the dim name allowed to stay split on it
    for axis in out_layout.split_mesh_axes:
        keep[axis] = output_shape.dims[out_layout.mesh_axes.index(axis)].name
    for x in xs:
        for d, axis in zip(x.shape.dims, x.layout.mesh_axes):
            if axis is not None and axis not in keep:
                keep[axis] = d.name
    operands = []
    specs = []
    for x in xs:
        slices = x.slices
        for i, (d, axis) in enumerate(zip(x.shape.dims, x.layout.mesh_axes)):
            if axis is not None and keep[axis] != d.name:
                slices = _gather_dim(impl, slices, x.shape, i, axis)
        operands.append(slices)
        specs.append("".join(letter[d.name] for d in x.shape.dims))
    equation = "%s->%s" % (",".join(specs), "".join(letter[d.name] for d in output_shape.dims))
    reduced_names = {d.name for d in reduced}
    reduce_axes = sorted(axis for axis, name in keep.items() if name in reduced_names)

    def local(*values):
        if len(values) == 1 and specs[0] == equation.split("->")[1]:
            return values[0]
        return tf.einsum(equation, *values)

    out = impl.slicewise(local, *operands)
    if reduce_axes:
        out = impl.allreduce(out, reduce_axes, "SUM", shape=output_shape)
    return Tensor(mesh, output_shape, out, xs[0].dtype)


def _extreme_with_mtf_gradient(reduce_fn):
    """``reduce_fn`` (tf.reduce_max/min) whose gradient, like mtf's, gives dy to
    every position equal to the result (ties are not split)."""

    @tf.custom_gradient
    def fn(value, axes, keepdims_shape):
        y = reduce_fn(value, axes)

        def grad(dy):
            y_b = tf.reshape(y, keepdims_shape)
            mask = tf.cast(tf.equal(value, y_b), dy.dtype)
            return mask * tf.reshape(dy, keepdims_shape), None, None

        return y, grad

    return fn


_local_max = _extreme_with_mtf_gradient(tf.reduce_max)
_local_min = _extreme_with_mtf_gradient(tf.reduce_min)


def _local_reduce(value, axes, reduction):
    if not axes:
        return value
    if reduction == "SUM":
        return tf.reduce_sum(value, axes)
    keep = [1 if i in axes else n for i, n in enumerate(value.shape.as_list())]
    fn = _local_max if reduction == "MAX" else _local_min
    return fn(value, tf.constant(axes, tf.int32), tf.constant(keep, tf.int32))


def lower_reduction(x: Tensor, out_shape, reduction: str) -> Tensor:
    """Reduce local slices over the reduced dims, transpose to ``out_shape``'s
    order, then all-reduce over the mesh axes of reduced dims that are split."""
    mesh = x.mesh
    names = x.shape.names
    axes = [i for i, n in enumerate(names) if n not in out_shape]
    kept = [n for n in names if n in out_shape]
    perm = [kept.index(n) for n in out_shape.names]
    split_axes = sorted(x.layout.mesh_axes[i] for i in axes if x.layout.mesh_axes[i] is not None)

    def local(v):
        r = _local_reduce(v, axes, reduction)
        if perm != sorted(perm):
            r = tf.transpose(r, perm)
        return r

    out = mesh.impl.slicewise(local, x.slices)
    if split_axes:
        out = mesh.impl.allreduce(out, split_axes, reduction, shape=out_shape)
    return Tensor(mesh, out_shape, out, x.dtype)
