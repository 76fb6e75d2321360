"""Convolutions on named dims, as mtf's ``Conv2dOperation`` ... ``Conv3dTransposeOperation``
and the eight gradient functions of mtf's ops.py.

Dims (mtf's layout, "NHWC" / "NDHWC"): the input is ``[batch..., h, w, in]``
(``[batch..., d, h, w, in]`` in 3-D) with any number of batch dims; the filter is
``[fh, fw, in, out]`` (``[fh, fw, out, in]`` for the transposed convolution);
the output keeps the batch dims and the names of the spatial dims, with their
new sizes, and ends with the filter's ``out`` dim.  ``strides``: the full
TensorFlow list (``[1, s_h, s_w, 1]``); ``padding``: ``"SAME"`` or ``"VALID"``.
Gradients are TensorFlow's for the forward ops and equal to the backprop
functions below (checked in tests).  The layers that make filters from
variables (``conv2d(x, output_dim, filter_size, ...)``) are in layers.py.
"""

import math

from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.core.elementwise import check_tensor, same_mesh
from namedmesh.core.naming import named_op
from namedmesh.errors import ShapeError, WrongTypeError
from namedmesh.lowering import conv as lowering


def _check(spatial: int, strides, padding, op: str):
    if padding not in ("SAME", "VALID"):
        raise ShapeError("%s: padding must be 'SAME' or 'VALID', got %r" % (op, padding))
    strides = list(strides)
    if len(strides) != spatial + 2 or strides[0] != 1 or strides[-1] != 1 or \
            any(int(s) != s or s < 1 for s in strides):
        raise ShapeError("%s: strides must be a list [1, %s1] of %d positive integers, got %r"
                         % (op, "s, " * spatial, spatial + 2, strides))
    return strides


def _inputs(conv_input, conv_filter, spatial: int, op: str):
    check_tensor(conv_input, op)
    check_tensor(conv_filter, op)
    same_mesh([conv_input, conv_filter], op)
    if conv_input.dtype != conv_filter.dtype:
        raise WrongTypeError("%s: input and filter have dtypes %s and %s"
                             % (op, conv_input.dtype.name, conv_filter.dtype.name))
    if conv_input.shape.ndims < spatial + 1 or conv_filter.shape.ndims != spatial + 2:
        raise ShapeError("%s: the input needs dims [batch..., %d spatial, channels] and the "
                         "filter %d dims [%d spatial, in, out]; got %s and %s"
                         % (op, spatial, spatial + 2, spatial, conv_input.shape,
                            conv_filter.shape))


def _conv_size(size: int, filter_size: int, stride: int, padding: str) -> int:
    if padding == "VALID":
        size -= filter_size - 1
    if size < 1:
        raise ShapeError("a VALID convolution with a filter of %d leaves nothing of %d"
                         % (filter_size, size + filter_size - 1))
    return int(math.ceil(size / stride))


def _forward(conv_input, conv_filter, strides, padding, spatial: int, transpose: bool, op: str):
    _inputs(conv_input, conv_filter, spatial, op)
    strides = _check(spatial, strides, padding, op)
    dims = conv_input.shape.dims
    spatial_dims, in_dim = dims[-(spatial + 1):-1], dims[-1]
    filter_dims = conv_filter.shape.dims
    f_in, out_dim = (filter_dims[-1], filter_dims[-2]) if transpose else (
        filter_dims[-2], filter_dims[-1])
    if f_in != in_dim:
        raise ShapeError("%s: the filter's input channels %s do not match the input's %s "
                         "(input %s, filter %s)" % (op, f_in, in_dim, conv_input.shape,
                                                    conv_filter.shape))
    new_spatial = []
    for d, fd, s in zip(spatial_dims, filter_dims[:spatial], strides[1:-1]):
        if transpose:  # mtf: the transposed convolution multiplies each size by its stride
            size = d.size * s
            if _conv_size(size, fd.size, s, padding) != d.size:
                raise ShapeError("%s: with padding %s, filter %s and stride %d the output size "
                                 "%d of %s does not map back to %d"
                                 % (op, padding, fd, s, size, d.name, d.size))
        else:
            size = _conv_size(d.size, fd.size, s, padding)
        new_spatial.append(Dimension(d.name, size))
    out_shape = Shape(dims[:-(spatial + 1)] + new_spatial + [out_dim])
    return lowering.lower_conv(conv_input, conv_filter, out_shape, strides, padding, spatial,
                               transpose)


@named_op("conv2d")
def conv2d_with_filter(conv_input, conv_filter, strides, padding, name=None):
    """``tf.nn.conv2d`` on named dims (mtf's ``Conv2dOperation``); see the module."""
    return _forward(conv_input, conv_filter, strides, padding, 2, False, "conv2d")


@named_op("conv3d")
def conv3d_with_filter(conv_input, conv_filter, strides, padding, name=None):
    """``tf.nn.conv3d`` on named dims (mtf's ``Conv3dOperation``)."""
    return _forward(conv_input, conv_filter, strides, padding, 3, False, "conv3d")


@named_op("conv2d_transpose")
def conv2d_transpose_with_filter(conv_input, conv_filter, strides, padding, name=None):
    """``tf.nn.conv2d_transpose`` (mtf's ``Conv2dTransposeOperation``): filter
    ``[fh, fw, out, in]``, each spatial size multiplied by its stride."""
    return _forward(conv_input, conv_filter, strides, padding, 2, True, "conv2d_transpose")


@named_op("conv3d_transpose")
def conv3d_transpose_with_filter(conv_input, conv_filter, strides, padding, name=None):
    """``tf.nn.conv3d_transpose`` (mtf's ``Conv3dTransposeOperation``)."""
    return _forward(conv_input, conv_filter, strides, padding, 3, True, "conv3d_transpose")


def _backprop_input(input_shape, conv_filter, dy, strides, padding, spatial, transpose, op):
    check_tensor(conv_filter, op)
    check_tensor(dy, op)
    same_mesh([conv_filter, dy], op)
    input_shape = convert_to_shape(input_shape)
    strides = _check(spatial, strides, padding, op)
    return lowering.lower_conv_backprop_input(input_shape, conv_filter, dy, strides, padding,
                                              spatial, transpose)


def _backprop_filter(conv_input, filter_shape, dy, strides, padding, spatial, transpose, op):
    check_tensor(conv_input, op)
    check_tensor(dy, op)
    same_mesh([conv_input, dy], op)
    filter_shape = convert_to_shape(filter_shape)
    strides = _check(spatial, strides, padding, op)
    return lowering.lower_conv_backprop_filter(conv_input, filter_shape, dy, strides, padding,
                                               spatial, transpose)


@named_op("conv2d_backprop")
def conv2d_backprop_input(input_shape, conv_filter, dy, strides, padding, name=None):
    """The gradient of ``conv2d_with_filter`` with respect to its input (dims ``input_shape``),
    given ``dy``; a split output-channel dim costs one all-reduce."""
    return _backprop_input(input_shape, conv_filter, dy, strides, padding, 2, False,
                           "conv2d_backprop_input")


@named_op("conv2d_backprop_filter")
def conv2d_backprop_filter(conv_input, filter_shape, dy, strides, padding, name=None):
    """The gradient of ``conv2d_with_filter`` with respect to its filter (dims
    ``filter_shape``); split batch dims cost one all-reduce."""
    return _backprop_filter(conv_input, filter_shape, dy, strides, padding, 2, False,
                            "conv2d_backprop_filter")


@named_op("conv3d_backprop")
def conv3d_backprop_input(input_shape, conv_filter, dy, strides, padding, name=None):
    return _backprop_input(input_shape, conv_filter, dy, strides, padding, 3, False,
                           "conv3d_backprop_input")


@named_op("conv3d_backprop_filter")
def conv3d_backprop_filter(conv_input, filter_shape, dy, strides, padding, name=None):
    return _backprop_filter(conv_input, filter_shape, dy, strides, padding, 3, False,
                            "conv3d_backprop_filter")


@named_op("conv2d_trans_backprop")
def conv2d_transpose_backprop_input(input_shape, conv_filter, dy, strides, padding, name=None):
    """The gradient of ``conv2d_transpose_with_filter`` with respect to its input."""
    return _backprop_input(input_shape, conv_filter, dy, strides, padding, 2, True,
                           "conv2d_transpose_backprop_input")


@named_op("conv2d_trans_backprop_filter")
def conv2d_transpose_backprop_filter(conv_input, filter_shape, dy, strides, padding, name=None):
    """The gradient of ``conv2d_transpose_with_filter`` with respect to its filter."""
    return _backprop_filter(conv_input, filter_shape, dy, strides, padding, 2, True,
                            "conv2d_transpose_backprop_filter")


@named_op("conv3d_trans_backprop")
def conv3d_transpose_backprop_input(input_shape, conv_filter, dy, strides, padding, name=None):
    return _backprop_input(input_shape, conv_filter, dy, strides, padding, 3, True,
                           "conv3d_transpose_backprop_input")


@named_op("conv3d_trans_backprop_filter")
def conv3d_transpose_backprop_filter(conv_input, filter_shape, dy, strides, padding, name=None):
    return _backprop_filter(conv_input, filter_shape, dy, strides, padding, 3, True,
                            "conv3d_transpose_backprop_filter")
