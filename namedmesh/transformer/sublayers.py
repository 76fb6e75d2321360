"""mtf's sublayer functions: what a ``LayerStack`` runs around (and between) its layers.

Each is ``fn(x, stack, context, **params) -> y`` with ``x`` and ``y``
``[batch..., length, d_model]`` (``[batch..., d_model]`` in "incremental" mode),
named as mtf names them (``transformer.sublayer_<name>``), with mtf's parameters
and variable names:

    rms_norm(epsilon=1e-6, name="rms_norm")   <name>/scale [d_model], ones
    legacy_rms_norm / legacy_final_rms_norm   rms_norm named layer_norm / final_layer_norm
    dropout(dropout_rate=0.0)                 mask over [batch..., d_model] (broadcast on length)
    legacy_dropout                            dropout at the stack's dropout_rate
    call_layer                                mask padding, then the layer (scope: its class)
    residual                                  + the layer's input
    mask_padding                              x * (sequence_id != 0) when sequence ids are given
    true_layer_norm(epsilon=1e-6)             mtf.layers.layer_norm under "true_layer_norm"
    scale_norm(epsilon=1e-6, name=...)        rms norm with one scalar scale
    rms_norm_subsampled(percentage, epsilon)  rms over the first percentage of d_model
    rezero(initial_value=0.0)                 x * rezero_weight (a scalar variable)
    clip_activation_gradient(rms_norm=1.0)    identity; clips the gradient's rms norm

mtf's legacy ``rms_norm`` ignores the stack's ``norm_epsilon`` (it always uses
1e-6); so does this one.
"""

import math
from typing import Callable, Dict

from namedmesh.core.contraction import reduce_mean
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import rsqrt, square
from namedmesh.core.random_ops import dropout as _dropout
from namedmesh.core.slicing import mtf_slice
from namedmesh.errors import ConfigError
from namedmesh.layers.clipping import clip_activation_gradient
from namedmesh.layers.norms import layer_norm
from namedmesh.layers.norms import rms_norm as _rms_norm
from namedmesh.layers.variables import constant_initializer, ones_initializer


def sublayer_call_layer(x, stack, context):
    x = sublayer_mask_padding(x, stack, context)
    layer = context.current_layer
    return layer.call_scoped(context, x)


def sublayer_mask_padding(x, stack, context):
    """Zero the padding positions (only when the call has a sequence_id Tensor)."""
    from namedmesh.core.elementwise import cast, not_equal
    from namedmesh.core.tensor import Tensor
    if isinstance(context.sequence_id, Tensor):
        return x * cast(not_equal(context.sequence_id, 0), context.activation_dtype)
    return x


def sublayer_rms_norm(x, stack, context, epsilon=1e-6, name="rms_norm"):
    model = context.model
    return _rms_norm(x, model.model_dim, epsilon=epsilon, name=name,
                     ensemble_dims=model.ensemble_dims, store=context.store)


def sublayer_legacy_rms_norm(x, stack, context):
    return sublayer_rms_norm(x, stack, context, name="layer_norm")


def sublayer_legacy_final_rms_norm(x, stack, context):
    return sublayer_rms_norm(x, stack, context, name="final_layer_norm")


def sublayer_rms_norm_subsampled(x, stack, context, percentage=100.0, epsilon=1e-6):
    model_dim = context.model.model_dim
    store = context.store
    with store.scope("layer_norm_subsampled"):
        scale = store.get_variable(context.mesh, "scale",
                                   Shape(context.model.ensemble_dims + [model_dim]),
                                   initializer=ones_initializer)
    part = Dimension(model_dim.name, int(math.ceil(model_dim.size * percentage / 100)))
    variance = reduce_mean(square(mtf_slice(x, 0, part.size, part.name)), reduced_dim=part)
    return x * rsqrt(variance + epsilon) * scale


def sublayer_scale_norm(x, stack, context, epsilon=1e-6, name="scale_norm"):
    store = context.store
    with store.scope(name):
        scale = store.get_variable(context.mesh, "scale", Shape(context.model.ensemble_dims),
                                   initializer=ones_initializer)
    variance = reduce_mean(square(x), reduced_dim=context.model.model_dim)
    return x * rsqrt(variance + epsilon) * scale


def sublayer_residual(x, stack, context):
    return x + context.current_layer_input


def sublayer_dropout(x, stack, context, dropout_rate=0.0):
    if context.train and dropout_rate > 0:
        noise = Shape(list(context.batch_dims) + [context.model.model_dim])
        return _dropout(x, True, rate=dropout_rate, noise_shape=noise,
                        seed=context.seed_for("sublayer_dropout"))
    return x


def sublayer_legacy_dropout(x, stack, context):
    return sublayer_dropout(x, stack, context, dropout_rate=stack.dropout_rate)


def sublayer_true_layer_norm(x, stack, context, epsilon=1e-6):
    return layer_norm(x, context.model.model_dim, epsilon, name="true_layer_norm",
                      store=context.store)


def sublayer_rezero(x, stack, context, initial_value=0.0):
    weight = context.store.get_variable(context.mesh, "rezero_weight",
                                        Shape(context.model.ensemble_dims),
                                        initializer=constant_initializer(initial_value))
    return x * weight


def sublayer_clip_activation_gradient(x, stack, context, rms_norm=1.0):
    return clip_activation_gradient(x, rms_norm)


SUBLAYER_FUNCTIONS: Dict[str, Callable] = {
    "call_layer": sublayer_call_layer,
    "mask_padding": sublayer_mask_padding,
    "rms_norm": sublayer_rms_norm,
    "legacy_rms_norm": sublayer_legacy_rms_norm,
    "legacy_final_rms_norm": sublayer_legacy_final_rms_norm,
    "rms_norm_subsampled": sublayer_rms_norm_subsampled,
    "scale_norm": sublayer_scale_norm,
    "residual": sublayer_residual,
    "dropout": sublayer_dropout,
    "legacy_dropout": sublayer_legacy_dropout,
    "true_layer_norm": sublayer_true_layer_norm,
    "rezero": sublayer_rezero,
    "clip_activation_gradient": sublayer_clip_activation_gradient,
}
NOT_BUILT = {
    "annealed_dropout": "its rate follows the global step of mtf's training loop, which a "
                        "namedmesh model does not have",
}


def sublayer(name: str, kwargs=None) -> Callable:
    """``fn(x, stack, context)``: the sublayer ``name`` with its keyword arguments bound."""
    fn = SUBLAYER_FUNCTIONS.get(name)
    if fn is None:
        why = NOT_BUILT.get(name, "namedmesh does not know it")
        raise ConfigError("sublayer %r is not built by namedmesh.transformer (%s); known "
                          "sublayers: %s" % (name, why, ", ".join(sorted(SUBLAYER_FUNCTIONS))))
    kwargs = dict(kwargs or {})
    import inspect
    accepted = list(inspect.signature(fn).parameters)[3:]
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise ConfigError("sublayer %r: unknown parameter %s (it takes %s)"
                          % (name, ", ".join(unknown), ", ".join(accepted) or "none"))

    def bound(x, stack, context):
        return fn(x, stack, context, **kwargs)
    bound.sublayer_name = name
    bound.kwargs = kwargs
    return bound


__all__ = ["SUBLAYER_FUNCTIONS", "sublayer"] + sorted(
    f.__name__ for f in SUBLAYER_FUNCTIONS.values())
