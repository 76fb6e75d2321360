"""Normalization layers: mtf's ``layer_norm`` and ``batch_norm``, and T5's ``rms_norm``.

Statistics are means over named dims; a normalized dim that is split on the
mesh costs one all-reduce per mean.
"""

from dataclasses import dataclass
from typing import List, Optional

import tensorflow as tf

from namedmesh.core.checks import check_float_tensor
from namedmesh.core.contraction import reduce_mean
from namedmesh.core.dims import Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor, rsqrt, square
from namedmesh.core.tensor import Tensor, export_to_tf_tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.variables import (VariableStore, current_store, ones_initializer,
                                        random_normal_initializer, variable_dtypes,
                                        zeros_initializer)


def _require(x: Tensor, dim, op: str):
    dim = convert_to_dimension(dim)
    if dim not in x.shape:
        raise ShapeError("%s: dim %s is not a dim of the input %s" % (op, dim, x.shape))
    return dim


def _activation(v: Tensor, dtype) -> Tensor:
    return cast(v, dtype) if v.dtype != dtype else v


def layer_norm(x: Tensor, dim, epsilon: float = 1e-6, name: str = "layer_prepostprocess",
               store: Optional[VariableStore] = None) -> Tensor:
    """``(x - mean) * rsqrt(variance + epsilon) * scale + bias``, statistics over ``dim``.

    Variables ``<name>/layer_norm/layer_norm_scale`` (ones) and
    ``<name>/layer_norm/layer_norm_bias`` (zeros), dims ``[dim]``.
    Output dims = x's dims.
    """
    check_float_tensor(check_tensor(x, "layer_norm"), "layer_norm")
    dim = _require(x, dim, "layer_norm")
    store = current_store(store, "layer_norm")
    with store.scope(name), store.scope("layer_norm"):
        scale = store.get_variable(x.mesh, "layer_norm_scale", Shape([dim]),
                                   initializer=ones_initializer)
        bias = store.get_variable(x.mesh, "layer_norm_bias", Shape([dim]),
                                  initializer=zeros_initializer)
    reduced_shape = x.shape - dim
    mean = reduce_mean(x, output_shape=reduced_shape)
    variance = reduce_mean(square(x - mean), output_shape=reduced_shape)
    norm_x = (x - mean) * rsqrt(variance + epsilon)
    return norm_x * _activation(scale, x.dtype) + _activation(bias, x.dtype)


def rms_norm(x: Tensor, dim, epsilon: float = 1e-6, name: str = "rms_norm",
             ensemble_dims=None, variable_dtype=None,
             store: Optional[VariableStore] = None) -> Tensor:
    """T5's RMS norm: ``x * rsqrt(mean(x^2) + eps) * scale`` (mtf's ``sublayer_rms_norm``).

    The mean is over ``dim`` (the model dim); the variable ``<name>/scale``
    (ones) has dims ``ensemble_dims + [dim]``.  mtf's legacy names are
    ``layer_norm`` (``sublayer_legacy_rms_norm``) and ``final_layer_norm``.
    Output dims = x's dims.
    """
    check_float_tensor(check_tensor(x, "rms_norm"), "rms_norm")
    dim = _require(x, dim, "rms_norm")
    store = current_store(store, "rms_norm")
    master, activation = variable_dtypes(variable_dtype)
    ensemble = [convert_to_dimension(d) for d in (ensemble_dims or [])]
    with store.scope(name):
        scale = store.get_variable(x.mesh, "scale", Shape(ensemble + [dim]),
                                   initializer=ones_initializer, dtype=master)
    scale = _activation(scale, activation or x.dtype)
    variance = reduce_mean(square(x), reduced_dim=dim)
    return x * rsqrt(variance + epsilon) * scale


@dataclass
class MovingAverageUpdate:
    """A new value for one of batch_norm's moving statistics (mtf returns an assign op).

    ``assign()`` writes it to the variable; ``value`` is the named Tensor.
    """
    name: str
    variable: tf.Variable
    value: Tensor

    def assign(self):
        return self.variable.assign(tf.cast(export_to_tf_tensor(self.value), self.variable.dtype))


def batch_norm(x: Tensor, is_training: bool, momentum: float, epsilon: float = 1e-9,
               dims_idx_start: int = 0, dims_idx_end: int = -1, init_zero: bool = False,
               name: str = None, store: Optional[VariableStore] = None):
    """mtf's batch normalization: ``(y, updates)``.

    The dims ``x.shape.dims[dims_idx_start:dims_idx_end]`` are normalized over;
    the others (``reduced_shape``) each get a scale, bias and moving statistics:
    variables ``<name>/batch_norm_scale`` (ones, or zeros with ``init_zero``),
    ``batch_norm_bias`` (zeros), ``bn_moving_mean`` (random normal, as mtf) and
    ``bn_moving_variance`` (ones), all with dims ``reduced_shape``.

    Training: normalize with the batch statistics and return two
    ``MovingAverageUpdate``s (``momentum * moving + (1 - momentum) * batch``)
    whose ``assign()`` applies them.  Eval: normalize with the moving
    statistics; no updates.  Output dims = x's dims.
    """
    check_float_tensor(check_tensor(x, "batch_norm"), "batch_norm")
    store = current_store(store, "batch_norm")
    norm_dims = x.shape.dims[dims_idx_start:dims_idx_end]
    if not norm_dims:
        raise ShapeError("batch_norm: dims_idx_start=%d, dims_idx_end=%d select no dims of %s"
                         % (dims_idx_start, dims_idx_end, x.shape))
    reduced_shape = x.shape - norm_dims
    with store.scope(name or "batch_norm"):
        scale = store.get_variable(x.mesh, "batch_norm_scale", reduced_shape,
                                   initializer=zeros_initializer if init_zero else ones_initializer)
        bias = store.get_variable(x.mesh, "batch_norm_bias", reduced_shape,
                                  initializer=zeros_initializer)
        moving_mean = store.get_variable(x.mesh, "bn_moving_mean", reduced_shape,
                                         initializer=random_normal_initializer(1.0),
                                         trainable=False)
        moving_variance = store.get_variable(x.mesh, "bn_moving_variance", reduced_shape,
                                             initializer=ones_initializer, trainable=False)
        prefix = store.full_name("")
    scale, bias = _activation(scale, x.dtype), _activation(bias, x.dtype)
    moving_mean = _activation(moving_mean, x.dtype)
    moving_variance = _activation(moving_variance, x.dtype)
    updates: List[MovingAverageUpdate] = []
    if is_training:
        mean = reduce_mean(x, output_shape=reduced_shape)
        variance = reduce_mean(square(x - mean), output_shape=reduced_shape)
        norm_x = (x - mean) * rsqrt(variance + epsilon)
        variables = store.variables()
        for var_name, moving, batch in (("bn_moving_mean", moving_mean, mean),
                                        ("bn_moving_variance", moving_variance, variance)):
            full = prefix + var_name
            updates.append(MovingAverageUpdate(
                full, variables[full], momentum * moving + (1 - momentum) * batch))
    else:
        norm_x = (x - moving_mean) * rsqrt(moving_variance + epsilon)
    return norm_x * scale + bias, updates
