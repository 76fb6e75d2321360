"""Convolution layers of mtf's layers.py: conv1d/2d/3d and the transposed 2d/3d ones.

Data format is mtf's: ``x`` is ``[*batch, (D,) H, W, in]``, the last dims
spatial then channels; the output keeps the spatial dims' names with their new
sizes and ends with ``output_dim``.  The kernel variable ``<name>/kernel`` has
mtf's dims: ``[fh, fw, in, out]`` (conv2d), ``[fd, fh, fw, in, out]`` (conv3d),
with ``out`` and ``in`` swapped for the transposed convolutions.  The
convolution itself is the op of mtf's ops.py (``namedmesh.conv2d_with_filter``
...): a split input-channel dim costs one all-reduce.
"""

from typing import Optional

from namedmesh.core.checks import check_float_tensor
from namedmesh.core.conv import (conv2d_transpose_with_filter, conv2d_with_filter,
                                 conv3d_transpose_with_filter, conv3d_with_filter)
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor
from namedmesh.core.reshape import reshape
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.variables import (VariableStore, current_store, glorot_uniform_initializer,
                                        variable_dtypes)

_FILTER_NAMES = {2: ("fh", "fw"), 3: ("fd", "fh", "fw")}


_OPS = {(2, False): conv2d_with_filter, (3, False): conv3d_with_filter,
        (2, True): conv2d_transpose_with_filter, (3, True): conv3d_transpose_with_filter}


def _conv(x, output_dim, filter_size, strides, padding, filter_initializer, variable_dtype,
          name, store, rank: int, transpose: bool, op: str) -> Tensor:
    check_float_tensor(check_tensor(x, op), op)
    if padding not in ("SAME", "VALID"):
        raise ShapeError("%s: padding must be 'SAME' or 'VALID', got %r" % (op, padding))
    filter_size, strides = tuple(filter_size), tuple(strides)
    if len(filter_size) != rank or len(strides) != rank:
        raise ShapeError("%s: filter_size %s and strides %s must have %d entries"
                         % (op, filter_size, strides, rank))
    if x.shape.ndims < rank + 1:
        raise ShapeError("%s: input %s needs %d spatial dims and a channel dim"
                         % (op, x.shape, rank))
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
    return _OPS[rank, transpose](x, kernel, [1] + list(strides) + [1], padding)


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
    check_float_tensor(check_tensor(x, "conv1d"), "conv1d")
    if x.shape.ndims < 2:
        raise ShapeError("conv1d: input %s needs a length dim and a channel dim" % (x.shape,))
    dims = list(x.shape.dims)
    fake_height = Dimension("fake_height", 1)
    x = reshape(x, Shape(dims[:-2] + [fake_height] + dims[-2:]))
    y = conv2d(x, output_dim, filter_size=(1, filter_size), strides=(1, stride), **kwargs)
    out = list(y.shape.dims)
    return reshape(y, Shape(out[:-3] + out[-2:]))

