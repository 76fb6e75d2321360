"""Lowering of convolutions and their gradients (mtf's Conv*Operation classes).

Each processor convolves its slices.  Channels summed over that are split on the
mesh leave partial sums: one all-reduce (SUM) over that mesh dim completes them,
as in mtf (input channels for the forward op, output channels for the input
gradient, batch dims for the filter gradient).  Spatial dims (and the filter's)
must be whole for a local convolution: mtf refuses to split them ("can't slice
along dimension h"); namedmesh all-gathers them first and keeps each processor's
piece of the result.
"""

import tensorflow as tf
from tensorflow.python.ops.gen_nn_ops import conv3d_backprop_input_v2
from tensorflow.python.ops.nn_ops import conv3d_backprop_filter_v2

from namedmesh.core.function_tables import flatten_batch_dims, restore_batch_dims
from namedmesh.core.tensor import Tensor


def _whole(x: Tensor, names):
    """Slices of ``x`` with the dims called ``names`` gathered whole."""
    slices = x.slices
    for axis, (d, mesh_axis) in enumerate(zip(x.shape.dims, x.layout.mesh_axes)):
        if mesh_axis is not None and d.name in names:
            slices = x.mesh.impl.allconcat(slices, mesh_axis, axis, shape=x.shape)
    return slices


def _finish(mesh, slices, shape, whole_names, sum_over, dtype) -> Tensor:
    """All-reduce over the mesh axes ``sum_over``, then keep each processor's piece of the
    dims in ``whole_names`` that ``shape``'s layout splits."""
    axes = sorted(set(a for a in sum_over if a is not None))
    if axes:
        slices = mesh.impl.allreduce(slices, axes, "SUM", shape=shape)
    layout = mesh.tensor_layout(shape)
    for axis, (d, mesh_axis) in enumerate(zip(shape.dims, layout.mesh_axes)):
        if mesh_axis is not None and d.name in whole_names:
            slices = mesh.impl.allsplit(slices, mesh_axis, axis)
    return Tensor(mesh, shape, slices, dtype)


def _transposed_forward(spatial, out_sizes):
    """conv_transpose of a local slice: the input gradient of a conv with that output."""
    backprop = tf.compat.v1.nn.conv2d_backprop_input if spatial == 2 else conv3d_backprop_input_v2

    def fn(v, f, strides, padding):
        batch = 1
        for n in v.shape.as_list()[:-(spatial + 1)]:
            batch *= n
        out = backprop([batch] + out_sizes + [f.shape[spatial]], f,
                       flatten_batch_dims(v, spatial + 1), strides, padding)
        return restore_batch_dims(out, spatial + 1, v)
    return fn


def lower_conv(x: Tensor, f: Tensor, out_shape, strides, padding, spatial: int,
               transpose: bool) -> Tensor:
    """Forward conv (or conv_transpose) of ``x`` [batch..., spatial..., in] with ``f``
    [spatial..., in, out] ([spatial..., out, in] for transpose)."""
    mesh = x.mesh
    spatial_names = set(x.shape.names[-(spatial + 1):-1]) | set(f.shape.names[:spatial])
    xs, fs = _whole(x, spatial_names), _whole(f, spatial_names)
    if transpose:
        local = _transposed_forward(spatial, list(out_shape.sizes[-(spatial + 1):-1]))
    else:
        conv = tf.nn.conv2d if spatial == 2 else tf.nn.conv3d

        def local(v, w, strides, padding):
            out = conv(flatten_batch_dims(v, spatial + 1), w, strides, padding)
            return restore_batch_dims(out, spatial + 1, v)
    out = mesh.impl.slicewise(lambda v, w: local(v, w, strides, padding), xs, fs)
    in_axis = x.layout.mesh_axes[-1]
    return _finish(mesh, out, out_shape, spatial_names, [in_axis], x.dtype)


def lower_conv_backprop_input(input_shape, f: Tensor, dy: Tensor, strides, padding, spatial: int,
                              transpose: bool) -> Tensor:
    mesh = dy.mesh
    spatial_names = set(dy.shape.names[-(spatial + 1):-1]) | set(f.shape.names[:spatial])
    spatial_names |= set(input_shape.names[-(spatial + 1):-1])
    dys, fs = _whole(dy, spatial_names), _whole(f, spatial_names)
    layout = mesh.tensor_layout(input_shape)
    sizes = [d.size if (m is None or d.name in spatial_names) else n
             for d, m, n in zip(input_shape.dims, layout.mesh_axes, layout.slice_sizes)]
    lead = 1
    for n in sizes[:-(spatial + 1)]:
        lead *= n
    flat_sizes = [lead] + sizes[-(spatial + 1):]

    def local(g, w):
        flat = flatten_batch_dims(g, spatial + 1)
        if transpose:
            conv = tf.nn.conv2d if spatial == 2 else tf.nn.conv3d
            out = conv(flat, w, strides, padding)
        else:
            backprop = (tf.compat.v1.nn.conv2d_backprop_input if spatial == 2
                        else conv3d_backprop_input_v2)
            out = backprop(flat_sizes, w, flat, strides, padding)
        return tf.reshape(out, sizes)

    out = mesh.impl.slicewise(local, dys, fs)
    return _finish(mesh, out, input_shape, spatial_names, [dy.layout.mesh_axes[-1]], dy.dtype)


def lower_conv_backprop_filter(x: Tensor, filter_shape, dy: Tensor, strides, padding,
                               spatial: int, transpose: bool) -> Tensor:
    mesh = dy.mesh
    spatial_names = set(dy.shape.names[-(spatial + 1):-1]) | set(x.shape.names[-(spatial + 1):-1])
    spatial_names |= set(filter_shape.names[:spatial])
    xs, dys = _whole(x, spatial_names), _whole(dy, spatial_names)
    layout = mesh.tensor_layout(filter_shape)
    sizes = [d.size if (m is None or d.name in spatial_names) else n
             for d, m, n in zip(filter_shape.dims, layout.mesh_axes, layout.slice_sizes)]
    backprop = tf.compat.v1.nn.conv2d_backprop_filter if spatial == 2 else conv3d_backprop_filter_v2

    def local(v, g):
        if transpose:
            v, g = g, v
        return backprop(flatten_batch_dims(v, spatial + 1), sizes,
                        flatten_batch_dims(g, spatial + 1), strides, padding)

    out = mesh.impl.slicewise(local, xs, dys)
    batch_axes = dy.layout.mesh_axes[:-(spatial + 1)]
    return _finish(mesh, out, filter_shape, spatial_names, batch_axes, dy.dtype)
