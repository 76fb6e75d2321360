"""Random layers of mtf's layers.py: dropout as layers call it, multiplicative jitter,
annealed dropout.  Draws are stateless: pass ``seed`` (see ``namedmesh.random_uniform``)."""

import tensorflow as tf

from namedmesh.core.dims import convert_to_shape
from namedmesh.core.checks import check_float_tensor
from namedmesh.core.elementwise import cast, check_tensor, less
from namedmesh.core.random_ops import dropout, random_uniform
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError


def layer_dropout(x: Tensor, is_training: bool, rate: float, broadcast_dims=None,
                  seed=None) -> Tensor:
    """mtf layers' ``dropout(x, is_training, 1 - rate, noise_shape=x.shape - broadcast_dims)``:
    the identity unless training with ``rate > 0``; the mask is constant along
    ``broadcast_dims``."""
    if not is_training or not rate:
        return x
    noise_shape = x.shape - convert_to_shape(list(broadcast_dims or []))
    return dropout(x, is_training, rate=rate, noise_shape=noise_shape, seed=seed)


def multiplicative_jitter(x: Tensor, epsilon: float = 1e-2, seed=None) -> Tensor:
    """``x`` times uniform noise in ``[1 - epsilon, 1 + epsilon)`` (dims and dtype of x).

    Makes a model robust to bfloat16 rounding (mtf uses it on router logits).
    ``epsilon == 0`` returns x unchanged.
    """
    check_float_tensor(check_tensor(x, "multiplicative_jitter"), "multiplicative_jitter")
    if epsilon == 0:
        return x
    return x * random_uniform(x.mesh, x.shape, seed, minval=1.0 - epsilon,
                              maxval=1.0 + epsilon, dtype=x.dtype)


def annealed_dropout(x: Tensor, is_training: bool, start_step, end_step, init_rate: float = None,
                     noise_shape=None, name: str = None, step=None, seed=None) -> Tensor:
    """Dropout whose rate falls linearly from ``init_rate`` at ``start_step`` to 0 at ``end_step``.

    ``keep_prob = min(1, (1 - init_rate) + init_rate * (step - start) / (end - start))``,
    as mtf computes it (before ``start_step`` the rate exceeds ``init_rate``).
    mtf reads the global step from the TF1 graph; namedmesh takes ``step=`` (an
    int or scalar tensor).  Kept float values are scaled by ``1 / keep_prob``.
    """
    check_tensor(x, "annealed_dropout")
    if init_rate is None:
        raise ConfigError("annealed_dropout: init_rate is required (mtf computes 1.0 - None)")
    if step is None:
        raise ConfigError("annealed_dropout: pass step= (the training step; mtf reads the TF1 "
                          "global step, which TF2 programs do not have)")
    noise_shape = convert_to_shape(noise_shape) if noise_shape is not None else x.shape
    if not is_training:
        return x
    step = tf.cast(step, tf.float32)
    start, end = tf.cast(start_step, tf.float32), tf.cast(end_step, tf.float32)
    keep_prob = tf.minimum((1.0 - init_rate) + (step - start) / (end - start) * init_rate, 1.0)
    keep_prob = tf.cast(keep_prob, x.dtype if x.dtype.is_floating else tf.float32)
    draw_dtype = x.dtype if x.dtype.is_floating else tf.float32
    noise = cast(less(random_uniform(x.mesh, noise_shape, seed, dtype=draw_dtype), keep_prob),
                 x.dtype)
    if x.dtype.is_floating:
        noise = noise / keep_prob
    return x * noise
