"""mtf's string-named TensorFlow functions: reductions and pooling."""

import tensorflow as tf

from namedmesh.errors import ConfigError

_BINARY = {"SUM": tf.add, "MAX": tf.maximum, "MIN": tf.minimum}
_REDUCE = {"SUM": tf.reduce_sum, "MAX": tf.reduce_max, "MIN": tf.reduce_min}


def binary_reduction_fn(reduction_fn_string: str):
    """``"SUM"``/``"MAX"``/``"MIN"`` -> ``tf.add``/``tf.maximum``/``tf.minimum``."""
    if reduction_fn_string not in _BINARY:
        raise ConfigError("unknown reduction %r (expected one of %s)"
                          % (reduction_fn_string, sorted(_BINARY)))
    return _BINARY[reduction_fn_string]


def reduction_fn(reduction_fn_string: str):
    """``"SUM"``/``"MAX"``/``"MIN"`` -> ``tf.reduce_sum``/``tf.reduce_max``/``tf.reduce_min``."""
    if reduction_fn_string not in _REDUCE:
        raise ConfigError("unknown reduction %r (expected one of %s)"
                          % (reduction_fn_string, sorted(_REDUCE)))
    return _REDUCE[reduction_fn_string]


def flatten_batch_dims(x, num_nonbatch_dims: int):
    """``x`` with all but its last ``num_nonbatch_dims`` axes merged into one."""
    sizes = x.shape.as_list()
    lead = 1
    for n in sizes[:-num_nonbatch_dims]:
        lead *= n
    return tf.reshape(x, [lead] + sizes[-num_nonbatch_dims:])


def restore_batch_dims(x, num_nonbatch_dims: int, prototype):
    """Undo ``flatten_batch_dims`` using the leading axes of ``prototype``."""
    return tf.reshape(x, prototype.shape.as_list()[:-num_nonbatch_dims] + x.shape.as_list()[1:])


def _pool(tf_pool, spatial: int):
    def pool(x, ksize, strides, padding):
        flat = flatten_batch_dims(x, spatial + 1)
        return restore_batch_dims(tf_pool(flat, ksize, strides, padding), spatial + 1, x)
    return pool


_POOL = {"AVG_2D": _pool(tf.nn.avg_pool2d, 2), "AVG_3D": _pool(tf.nn.avg_pool3d, 3),
         "MAX_2D": _pool(tf.nn.max_pool2d, 2), "MAX_3D": _pool(tf.nn.max_pool3d, 3)}


def pool_fn(pool_fn_string: str):
    """``"AVG_2D"``, ``"AVG_3D"``, ``"MAX_2D"``, ``"MAX_3D"`` -> a function
    ``(x, ksize, strides, padding)`` pooling the spatial axes before the last (channel)
    axis of a TF tensor, any number of leading batch axes."""
    if pool_fn_string not in _POOL:
        raise ConfigError("unknown pooling %r (expected one of %s)"
                          % (pool_fn_string, sorted(_POOL)))
    return _POOL[pool_fn_string]
