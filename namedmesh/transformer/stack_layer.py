"""The base of the layers a ``LayerStack`` calls (mtf's ``transformer.TransformerLayer``).

A layer has a ``name`` (its scope in the stack, ``block_002/layer_001``) and a
``call(context, x)`` from ``[batch..., length, d_model]`` to the same dims.  The
stack calls it through ``call_scoped``, which opens the variable scope of its class
name, as mtf's ``sublayer_call_layer`` does: the variables of layer
``block_000/layer_001`` of the model ``transformer`` are
``transformer/block_000/layer_001/<Kind>/...``.
"""

from typing import Dict

import numpy as np


class TransformerLayer:
    kind = ""

    def __init__(self, name: str):
        self.name = name

    def call(self, context, x):
        raise NotImplementedError

    def call_scoped(self, context, x):
        with context.store.scope(self.kind):
            return self.call(context, x)

    # layers whose variables live outside the model's store (the MoE layers) override these
    def own_variables(self) -> Dict[str, object]:
        """``{name relative to the layer's scope: tf.Variable}`` kept by the layer itself."""
        return {}

    def load_own_variables(self, arrays: Dict[str, np.ndarray]):
        raise NotImplementedError

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.name)


__all__ = ["TransformerLayer"]
