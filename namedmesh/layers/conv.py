"""Convolutions of mtf's layers.py: conv1d/2d/3d and the transposed 2d/3d ones.

Data format is mtf's: ``x`` is ``[*batch, (D,) H, W, in]``, the last dims
spatial then channels; the output keeps the spatial dims' names with their new
sizes and ends with ``output_dim``.  The kernel variable ``<name>/kernel`` has
mtf's dims: ``[fh, fw, in, out]`` (conv2d), ``[fd, fh, fw, in, out]`` (conv3d),
with ``out`` and ``in`` swapped for the transposed convolutions.

Lowering (as mtf's ``Conv*Operation.lower``): each processor convolves its
slices; spatial and filter dims must not be split; batch and output channels
may be; a split input-channel dim leaves partial sums that one all-reduce
completes.  Output sizes are TensorFlow's (``ceil(n / stride)`` for SAME,
``ceil((n - f + 1) / stride)`` for VALID; ``n * stride`` transposed); mtf
0.1.21's own formula differs only where its lowering fails.
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor
from namedmesh.core.reshape import reshape
from namedmesh.core.tensor import Tensor
from namedmesh.errors import LayoutError, ShapeError
from namedmesh.layers.variables import (VariableStore, current_store, glorot_uniform_initializer,
                                        variable_dtypes)

_FILTER_NAMES = {2: ("fh", "fw"), 3: ("fd", "fh", "fw")}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _output_size(n: int, f: int, stride: int, padding: str, transpose: bool) -> int:
    if transpose:
        return n * stride
    return _ceil_div(n, stride) if padding == "SAME" else _ceil_div(n - f + 1, stride)


def _convolve(x: Tensor, kernel: Tensor, strides, padding: str, rank: int, transpose: bool,
              op: str) -> Tensor:
    """Lower one convolution of ``x [*batch, *spatial, in]`` with ``kernel [*filter, a, b]``."""
    mesh = x.mesh
    spatial = list(x.shape.dims[-rank - 1:-1])
    in_dim = x.shape.dims[-1]
    out_dim = kernel.shape.dims[-2] if transpose else kernel.shape.dims[-1]
    filter_dims = kernel.shape.dims[:rank]
    new_spatial = []
    for d, f, s in zip(spatial, filter_dims, strides):
        size = _output_size(d.size, f.size, s, padding, transpose)
        if size < 1:
            raise ShapeError("%s: spatial dim %s is smaller than its filter %s (padding %s)"
                             % (op, d, f, padding))
        new_spatial.append(Dimension(d.name, size))
    batch = list(x.shape.dims[:-rank - 1])
    out_shape = Shape(batch + new_spatial + [out_dim])
    for t in (x, kernel):
        for d, axis in zip(t.shape.dims, t.layout.mesh_axes):
            if axis is not None and (d in spatial or d in filter_dims):
                raise LayoutError("%s: dim %s of %s is split over mesh dim %r; spatial and "
                                  "filter dims cannot be split (use the *_with_blocks form)"
                                  % (op, d, t.shape, mesh.shape.dims[axis].name))
    full_strides = [1] + list(strides) + [1]
    out_slice = list(mesh.tensor_layout(out_shape).slice_sizes)
    n_batch = len(batch)

    def local(xs, ks):
        lead = xs.shape.as_list()[:n_batch]
        flat = tf.reshape(xs, [-1] + xs.shape.as_list()[n_batch:])
        if transpose:
            shape = [flat.shape[0]] + out_slice[n_batch:]
            conv = tf.nn.conv2d_transpose if rank == 2 else tf.nn.conv3d_transpose
            y = conv(flat, ks, shape, full_strides, padding)
        else:
            conv = tf.nn.conv2d if rank == 2 else tf.nn.conv3d
            y = conv(flat, ks, full_strides, padding)
        return tf.reshape(y, lead + y.shape.as_list()[1:])

    slices = mesh.impl.slicewise(local, x.slices, kernel.slices)
    in_axis = x.layout.mesh_axes[-1]
    if in_axis is not None:
        slices = mesh.impl.allreduce(slices, [in_axis], "SUM", shape=out_shape)
    return Tensor(mesh, out_shape, slices, x.dtype)


def _conv(x, output_dim, filter_size, strides, padding, filter_initializer, variable_dtype,
          name, store, rank: int, transpose: bool, op: str) -> Tensor:
    check_tensor(x, op)
    if padding not in ("SAME", "VALID"):
        raise ShapeError("%s: padding must be 'SAME' or 'VALID', got %r" % (op, padding))
    filter_size, strides = tuple(filter_size), tuple(strides)
    if len(filter_size) != rank or len(strides) != rank:
        raise ShapeError("%s: filter_size %s and strides %s must have %d entries"
                         % (op, filter_size, strides, rank))
    if x.shape.ndims < rank + 1:
        raise ShapeError("%s: input %s needs %d spatial dims and a channel dim" % (op, x.shape, rank))
    output_dim = convert_to_dimension(output_dim)
    in_dim = x.shape.dims[-1]
    filters = [Dimension(n, k) for n, k in zip(_FILTER_NAMES[rank], filter_size)]
    channels = [output_dim, in_dim] if transpose else [in_dim, output_dim]
    store = current_store(store, op)
    master, _ = variable_dtypes(variable_dtype)
    with store.scope(name or op):
        kernel = store.get_variable(x.mesh, "kernel", Shape(filters + channels),
                                    initializer=filter_initializer or glorot_uniform_initializer,
                                    dtype=master)
    if kernel.dtype != x.dtype:
        kernel = cast(kernel, x.dtype)
    return _convolve(x, kernel, strides, padding, rank, transpose, op)


def conv2d(x: Tensor, output_dim, filter_size=(3, 3), strides=(1, 1), padding: str = "SAME",
           filter_initializer=None, variable_dtype=None, name: str = None,
           store: Optional[VariableStore] = None) -> Tensor:
    """2-D convolution of ``[*batch, H, W, in]``; returns ``[*batch, H', W', output_dim]``.

    Kernel ``<name or conv2d>/kernel`` ``[fh, fw, in, out]``; default init
    Glorot uniform (TensorFlow's default for ``tf.get_variable``, which mtf uses).
    """
    return _conv(x, output_dim, filter_size, strides, padding, filter_initializer,
                 variable_dtype, name, store, 2, False, "conv2d")


def conv3d(x: Tensor, output_dim, filter_size=(3, 3, 3), strides=(1, 1, 1),
           padding: str = "SAME", filter_initializer=None, variable_dtype=None,
           name: str = None, store: Optional[VariableStore] = None) -> Tensor:
    """3-D convolution of ``[*batch, D, H, W, in]``; kernel ``[fd, fh, fw, in, out]``."""
    return _conv(x, output_dim, filter_size, strides, padding, filter_initializer,
                 variable_dtype, name, store, 3, False, "conv3d")


def conv2d_transpose(x: Tensor, output_dim, filter_size=(2, 2), strides=(2, 2),
                     padding: str = "SAME", filter_initializer=None, variable_dtype=None,
                     name: str = None, store: Optional[VariableStore] = None) -> Tensor:
    """Transposed 2-D convolution: ``[*batch, H, W, in]`` -> ``[*batch, H*sh, W*sw, out]``;
    kernel ``[fh, fw, out, in]``."""
    return _conv(x, output_dim, filter_size, strides, padding, filter_initializer,
                 variable_dtype, name, store, 2, True, "conv2d_transpose")


def conv3d_transpose(x: Tensor, output_dim, filter_size=(2, 2, 2), strides=(2, 2, 2),
                     padding: str = "SAME", filter_initializer=None, variable_dtype=None,
                     name: str = None, store: Optional[VariableStore] = None) -> Tensor:
    """Transposed 3-D convolution; kernel ``[fd, fh, fw, out, in]``."""
    return _conv(x, output_dim, filter_size, strides, padding, filter_initializer,
                 variable_dtype, name, store, 3, True, "conv3d_transpose")


def conv1d(x: Tensor, output_dim, filter_size: int = 3, stride: int = 1, **kwargs) -> Tensor:
    """1-D convolution of ``[*batch, length, in]`` -> ``[*batch, length', output_dim]``.

    As mtf: a ``fake_height:1`` dim is inserted and ``conv2d`` runs with filter
    ``(1, filter_size)`` and strides ``(1, stride)``; ``kwargs`` go to conv2d
    (``padding``, ``filter_initializer``, ``name`` ...), so the kernel is
    ``conv2d/kernel`` ``[fh:1, fw, in, out]``.
    """
    check_tensor(x, "conv1d")
    if x.shape.ndims < 2:
        raise ShapeError("conv1d: input %s needs a length dim and a channel dim" % (x.shape,))
    dims = list(x.shape.dims)
    fake_height = Dimension("fake_height", 1)
    x = reshape(x, Shape(dims[:-2] + [fake_height] + dims[-2:]))
    y = conv2d(x, output_dim, filter_size=(1, filter_size), strides=(1, stride), **kwargs)
    out = list(y.shape.dims)
    return reshape(y, Shape(out[:-3] + out[-2:]))

