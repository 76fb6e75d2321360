"""mtf's ``clip_activation_gradient``: identity forward, gradient clipped by its RMS norm."""

from typing import Dict, Optional

import tensorflow as tf

from namedmesh.core.contraction import reduce_max, reduce_mean
from namedmesh.core.control import custom_gradient
from namedmesh.core.elementwise import check_tensor, maximum, sqrt, square
from namedmesh.core.tensor import Tensor, export_to_tf_tensor


def summary_for_clip_activation_gradient(t: Tensor, name: str = None,
                                         batch_dims=None) -> Dict[str, tf.Tensor]:
    """mtf's activation summaries: ``mean/``, ``max/`` and, with ``batch_dims``, the mean, max
    and variance over those dims of the RMS over the others (``rms_mean/<name>`` ...).

    Writes them with ``tf.summary.write`` to the default summary writer, if any
    (at ``tf.summary.experimental.get_step()``), and returns ``{tag: scalar}``.
    """
    check_tensor(t, "summary_for_clip_activation_gradient")
    values = {"mean/": reduce_mean(t), "max/": reduce_max(t)}
    if batch_dims:
        rms_batch = sqrt(reduce_mean(square(t), output_shape=batch_dims))
        mean = reduce_mean(rms_batch)
        values["rms_mean/%s" % name] = mean
        values["rms_max/%s" % name] = reduce_max(rms_batch)
        values["rms_var/%s" % name] = reduce_mean(square(rms_batch - mean))
    out = {tag: export_to_tf_tensor(v) for tag, v in values.items()}
    for tag, v in out.items():
        tf.summary.write(tag, v)   # False and nothing written without a default writer
    return out


def clip_activation_gradient(x: Tensor, clip_rms_norm: Optional[float] = None) -> Tensor:
    """``x`` unchanged; its gradient ``g`` becomes ``g / max(1, rms(g) / clip_rms_norm)``.

    ``rms(g)`` is over all of g's elements.  Without ``clip_rms_norm`` the
    gradient passes unchanged.  Output dims = x's dims.
    """
    check_tensor(x, "clip_activation_gradient")

    def forward(t):
        return t * 1.0

    def grad(inputs, outputs, output_grads):
        g = output_grads[0]
        if not clip_rms_norm:
            return [g]
        rms = sqrt(reduce_mean(square(g)))
        return [g / maximum(rms / clip_rms_norm, 1.0)]

    return custom_gradient(forward, grad, [x])
