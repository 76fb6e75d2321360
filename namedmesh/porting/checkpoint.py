"""MoE weights in TF1 mtf checkpoints: find the layers, read them, write them back.

mtf saves variables by name, with the layer's scope as a prefix, e.g.
``decoder/block_003/layer_002/top_2_gating/kernel`` next to optimizer slots
(``.../kernel_slot_vc``) and everything else of the model.  A scope holding a
gating kernel is one MoE layer; its variables are the mtf names of
``layer.mtf_variables()`` under that scope.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import tensorflow as tf

from namedmesh.errors import ConfigError

_GATING = re.compile(r"^(.*?)(top_2_gating|switch_gating|outer_gating)/kernel$")
_LAYER_VARIABLE = re.compile(
    r"^(top_2_gating|switch_gating|outer_gating|inner_gating|wi|wi_\d+|wo)/kernel$")


@dataclass
class CheckpointLayer:
    """An MoE layer found in a checkpoint: its scope and ``{mtf_name: shape}``."""

    scope: str
    kind: str
    shapes: Dict[str, List[int]] = field(default_factory=dict)

    def full_name(self, mtf_name: str) -> str:
        return self.scope + mtf_name


def _variables(prefix: str) -> Dict[str, List[int]]:
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise ConfigError("checkpoint %r cannot be read: %s" % (
            prefix, str(e).splitlines()[0] if str(e) else type(e).__name__)) from None


def normalize_scope(scope: str) -> str:
    scope = scope or ""
    return scope if not scope or scope.endswith("/") else scope + "/"


def find_moe_layers(prefix: str) -> List[CheckpointLayer]:
    """The MoE layers of a checkpoint, in scope order."""
    variables = _variables(prefix)
    layers = {}
    for name in variables:
        m = _GATING.match(name)
        if m:
            scope = m.group(1)
            kind = "MoE2D" if m.group(2) == "outer_gating" else "MoE1D"
            layers[scope] = CheckpointLayer(scope, kind)
    for name, shape in variables.items():
        for scope, layer in layers.items():
            if name.startswith(scope) and _LAYER_VARIABLE.match(name[len(scope):]):
                layer.shapes[name[len(scope):]] = shape
    return [layers[s] for s in sorted(layers)]


def read_moe_variables(prefix: str, scope: str = "") -> Dict[str, np.ndarray]:
    """``{mtf_name: array}`` of the MoE layer under ``scope`` (``""``: the root)."""
    scope = normalize_scope(scope)
    found = {layer.scope: layer for layer in find_moe_layers(prefix)}
    if scope not in found:
        raise ConfigError("checkpoint %r has no MoE layer under scope %r (MoE scopes: %s)"
                          % (prefix, scope, [s or "<root>" for s in found] or "none"))
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(scope + name) for name in found[scope].shapes}


def load_layer_from_checkpoint(layer, prefix: str, scope: str = ""):
    """Load ``layer``'s weights from the checkpoint; errors name the checkpoint variable."""
    scope = normalize_scope(scope)
    arrays = read_moe_variables(prefix, scope)
    try:
        layer.load_mtf_variables(arrays)
    except ConfigError as e:
        raise ConfigError("checkpoint %r, scope %r: %s" % (prefix, scope or "<root>", e)) from None
    return layer


def write_checkpoint(prefix: str, tensors: Dict[str, object]) -> str:
    """Write ``{name: value}`` as a TF name-based checkpoint (readable by mtf/TF1 savers)."""
    names = sorted(tensors)
    values = [tf.convert_to_tensor(tensors[n]) for n in names]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=values)
    return prefix


def save_layer_to_checkpoint(layer, prefix: str, scope: str = "") -> str:
    """Write the layer's weights under mtf's names (``scope`` + ``wi/kernel`` ...)."""
    scope = normalize_scope(scope)
    return write_checkpoint(prefix, {scope + name: var for name, var in
                                     layer.mtf_variables().items()})
