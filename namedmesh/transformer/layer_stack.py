"""mtf's ``LayerStack``: the layers of a transformer, and the sublayers run around them.

    x = sublayers_initial(x)                       (default: dropout)
    for each layer:                                 scope <layer name>, e.g. block_000/layer_001
        x = sublayers_per_layer(x)                  (default: rms_norm, call_layer, dropout,
                                                     residual)
    x = sublayers_final(x)                          (default: rms_norm, dropout)
    x = mask_padding(x)

x is ``[batch..., length, d_model]`` throughout.  ``context.layer_outputs`` gets what
mtf appends: the input after the initial sublayers, each layer's output but the
last, and the stack's output.  With ``recompute_grads`` each layer (with its
sublayers) is recomputed on the backward pass in training (``nm.recompute_grad``);
the aux losses it adds are outputs of the recomputed function, so their gradients
flow.
"""

from typing import Callable, List, Optional

from namedmesh.core.control import recompute_grad
from namedmesh.errors import ShapeError
from namedmesh.transformer.context import Context
from namedmesh.transformer.sublayers import sublayer, sublayer_mask_padding

DEFAULT_SUBLAYERS = (["dropout"], ["rms_norm", "call_layer", "dropout", "residual"],
                     ["rms_norm", "dropout"])
LEGACY_SUBLAYERS = (["legacy_dropout"],
                    ["legacy_rms_norm", "call_layer", "legacy_dropout", "residual"],
                    ["legacy_final_rms_norm", "legacy_dropout"])


def _sublayers(items) -> List[Callable]:
    out = []
    for item in items:
        if callable(item):
            out.append(item)
        elif isinstance(item, str):
            out.append(sublayer(item))
        else:  # a SublayerSpec or a (name, kwargs) pair
            name, kwargs = (item.name, item.kwargs) if hasattr(item, "name") else item
            out.append(sublayer(name, kwargs))
    return out


class LayerStack:
    """The stack of a Unitransformer.  ``sublayers_*`` are sublayer names (``"rms_norm"``),
    ``(name, kwargs)`` pairs, ``SublayerSpec``s or functions ``fn(x, stack, context)``;
    None means mtf's defaults.  ``dropout_rate`` and ``norm_epsilon`` (both or neither)
    select mtf's legacy mode: the ``legacy_*`` sublayers, whose norms are named
    ``layer_norm`` and ``final_layer_norm`` (as released T5 checkpoints name them)."""

    def __init__(self, layers, sublayers_initial=None, sublayers_per_layer=None,
                 sublayers_final=None, dropout_rate: Optional[float] = None,
                 norm_epsilon: Optional[float] = None, recompute_grads: bool = False):
        if (dropout_rate is None) != (norm_epsilon is None):
            raise ShapeError("LayerStack.dropout_rate and LayerStack.norm_epsilon must both be "
                             "set (legacy mode) or both be None, got %r and %r"
                             % (dropout_rate, norm_epsilon))
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            layer.index = i
        self.dropout_rate = dropout_rate
        self.norm_epsilon = norm_epsilon
        self.recompute_grads = recompute_grads
        if dropout_rate is not None:
            initial, per_layer, final = LEGACY_SUBLAYERS
        else:
            initial = sublayers_initial if sublayers_initial is not None else DEFAULT_SUBLAYERS[0]
            per_layer = (sublayers_per_layer if sublayers_per_layer is not None
                         else DEFAULT_SUBLAYERS[1])
            final = sublayers_final if sublayers_final is not None else DEFAULT_SUBLAYERS[2]
        self.sublayers_initial = _sublayers(initial)
        self.sublayers_per_layer = _sublayers(per_layer)
        self.sublayers_final = _sublayers(final)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def call(self, context: Context, x):
        """``x`` ``[batch..., length, d_model]`` -> the same dims."""
        x = self._call_sublayers(self.sublayers_initial, x, context)
        context.layer_outputs.append(x)
        last = len(self.layers) - 1
        for lnum, layer in enumerate(self.layers):
            with context.store.scope(layer.name):
                if self.recompute_grads and context.train:
                    x = self._recomputed_layer(x, layer, context)
                else:
                    x = self._layer_fn(x, layer, context)
            if lnum != last:
                context.layer_outputs.append(x)
            context.layer_index += 1
        x = self._call_sublayers(self.sublayers_final, x, context)
        x = sublayer_mask_padding(x, self, context)
        context.layer_outputs.append(x)
        return x

    def _call_sublayers(self, sublayers, x, context):
        for fn in sublayers:
            x = fn(x, self, context)
        return x

    def _layer_fn(self, x, layer, context):
        context.current_layer = layer
        context.current_layer_input = x
        y = self._call_sublayers(self.sublayers_per_layer, x, context)
        if y.shape != x.shape:
            raise ShapeError("layer %s (%s) returned dims %s for input dims %s"
                             % (layer.name, layer.kind, y.shape, x.shape))
        return y

    def _recomputed_layer(self, x, layer, context):
        """The layer and its sublayers under ``recompute_grad``; its aux losses come out as a
        second output so that their gradients flow through the recomputation."""
        outer_losses = context.losses
        index = context.layer_index   # the backward pass runs later: seeds must not move
        found = {}

        def fn(inp):
            context.losses = [] if outer_losses is not None else None
            moe_losses, moe_stats = dict(context.moe_losses), dict(context.moe_stats)
            later_index, context.layer_index = context.layer_index, index
            try:
                y = self._layer_fn(inp, layer, context)
                losses = context.losses or []
            finally:
                context.losses = outer_losses
                context.layer_index = later_index
            if "n" in found:  # the backward pass: keep what the forward pass recorded
                context.moe_losses, context.moe_stats = moe_losses, moe_stats
            found["n"] = len(losses)
            if not losses:
                return y
            total = losses[0]
            for loss in losses[1:]:
                total = total + loss
            return y, total

        out = recompute_grad(fn, [x])
        if found["n"]:
            y, total = out
            if outer_losses is not None:
                outer_losses.append(total)
            return y
        return out


__all__ = ["LayerStack", "DEFAULT_SUBLAYERS", "LEGACY_SUBLAYERS"]
