"""``MoE1D`` and ``MoE2D`` as layers of a transformer stack (mtf's ``moe.MoE1D.call``).

The experts are ``namedmesh.moe.MoE1D`` / ``MoE2D`` (their public API: build,
call, ``mtf_variables``, ``load_mtf_variables``); this layer gives them what mtf's
``MoE1D.call`` gives ``transformer_moe_layer_v1``:

* the input ``[batch..., length, d_model]``; in "incremental" decoding, where x is
  ``[batch..., d_model]``, a ``length`` dim of 1 is added and removed again;
* ``nonpadding``: ``sequence_id != 0`` when the call has sequence ids (the int 1
  of decoding becomes ones), else None;
* the mesh and layout of the call (the number of groups follows them, as mtf's
  layers read the model's ``mesh_shape`` and ``layout``);
* train or eval (capacity factor, second-place policy, router z-loss), and a seed
  for the random policies derived from the step's seed and the layer;
* the aux loss (already times ``loss_coef``) appended to the context's losses, as
  mtf appends it to ``context.losses``; the routing statistics kept by scope.

The variables are the MoE layer's own (``top_2_gating/kernel``, ``wi/kernel``,
``wo/kernel`` ...), under ``<model>/<layer>/MoE1D/`` in a checkpoint.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from namedmesh.core.creation import ones
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.reshape import reshape
from namedmesh.errors import ConfigError
from namedmesh.transformer.stack_layer import TransformerLayer


class MoEStackLayer(TransformerLayer):
    """A ``namedmesh.moe`` layer (``expert_layer``) called from a LayerStack."""

    def __init__(self, name: str, kind: str, config):
        super().__init__(name)
        from namedmesh import moe
        self.kind = kind
        self.config = config
        self.expert_layer = getattr(moe, kind)(**config.to_kwargs())
        self.index = 0   # the layer's index in its stack (for its random seed)

    def call_scoped(self, context, x):
        return self.call(context, x)

    def call(self, context, x):
        if context.model.ensemble_dims:
            raise ConfigError("%s %s: MoE layers do not run in an ensemble (mtf raises "
                              "NotImplementedError too)" % (self.kind, self.name))
        x_shape = x.shape
        has_length = context.length_dim in x.shape
        if not has_length:
            x = reshape(x, Shape(list(x_shape.dims[:-1]) + [Dimension("length", 1)]
                                 + [x_shape.dims[-1]]))
        nonpadding = context.nonpadding
        if isinstance(nonpadding, int):
            nonpadding = ones(x.mesh, x.shape - x.shape.dims[-1], x.dtype)
        elif nonpadding is not None and not has_length:
            nonpadding = reshape(nonpadding, x.shape - x.shape.dims[-1])
        seed = None
        if context.seed is not None:
            seed = tf.cast(context.seed, tf.int64) * 1024 + context.layer_index
        y, loss, stats = self.expert_layer(x, train=context.train, nonpadding=nonpadding,
                                           seed=seed, return_stats=True)
        scope = context.store.full_name(self.kind)
        if context.losses is not None:
            context.losses.append(loss)
        context.moe_losses[scope] = loss
        context.moe_stats[scope] = stats
        if not has_length:
            y = reshape(y, x_shape)
        return y

    # -- variables: the expert layer keeps its own ----------------------------------------
    def own_variables(self) -> Dict[str, object]:
        return {"%s/%s" % (self.kind, name): var
                for name, var in self.expert_layer.mtf_variables().items()}

    def variable_shapes(self, d_model: Dimension) -> Dict[str, Shape]:
        return {"%s/%s" % (self.kind, name): shape
                for name, shape in self.expert_layer.variable_shapes(d_model).items()}

    def load_own_variables(self, arrays: Dict[str, np.ndarray]):
        prefix = self.kind + "/"
        self.expert_layer.load_mtf_variables({k[len(prefix):]: v for k, v in arrays.items()})


__all__ = ["MoEStackLayer"]
