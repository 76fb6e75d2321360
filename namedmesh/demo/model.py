"""The demo's language model: character context -> MoE2D feed-forward layers -> next character.

Dims: ``[outer_batch, batch, length]`` token positions, ``d_model``, ``vocab``.
Each position sees its last ``context`` characters through one embedding
table per offset (a small n-gram encoder), then ``h = h + MoE2D(norm(h))`` for
each MoE layer, then a projection to ``vocab``.  Every op is a namedmesh op,
so the same model runs on one device and on any mesh.
"""

import contextlib
from typing import List

import tensorflow as tf

import namedmesh as nm
from namedmesh.layers.variables import VariableStore, variance_scaling_initializer


class CharMoELM:
    def __init__(self, vocab_size: int, d_model: int, context: int, moe_layers: List, seed=0):
        self.vocab = nm.Dimension("vocab", vocab_size)
        self.d_model = nm.Dimension("d_model", d_model)
        self.context = context
        self.moe_layers = moe_layers
        self.store = VariableStore(seed=seed)

    def build(self, input_shape, mesh):
        """Create every variable (under the mesh's strategy, if any)."""
        shape = nm.convert_to_shape(input_shape) + [self.d_model]
        scope = mesh.strategy.scope() if mesh.strategy is not None else contextlib.nullcontext()
        with scope:
            for k in range(self.context):
                self.store.create("embed_%d/kernel" % k, nm.Shape([self.vocab, self.d_model]),
                                  variance_scaling_initializer([self.d_model]))
            self.store.create("logits/kernel", nm.Shape([self.d_model, self.vocab]),
                              variance_scaling_initializer([self.d_model]))
        for layer in self.moe_layers:
            layer.build(shape, mesh)

    @property
    def trainable_variables(self):
        out = list(self.store.trainable_variables)
        for layer in self.moe_layers:
            out += layer.trainable_variables
        return out

    def __call__(self, mesh, windows, targets, positions_shape, train: bool, seed=None):
        """(loss, aux loss, [MoEStats per layer], logits) for one batch.

        windows: int32 ``[*positions, context]``; targets: int32 ``[*positions]``;
        positions_shape: e.g. ``"outer_batch:2;batch:8;length:32"``.
        """
        positions = nm.convert_to_shape(positions_shape)
        h = None
        for k in range(self.context):
            ids = nm.import_tf_tensor(mesh, windows[..., k], positions)
            table = self.store.get_variable(mesh, "embed_%d/kernel" % k,
                                            nm.Shape([self.vocab, self.d_model]))
            e = nm.einsum([nm.one_hot(ids, self.vocab), table], positions + [self.d_model])
            h = e if h is None else h + e
        aux, stats = None, []
        for i, layer in enumerate(self.moe_layers):
            normed = h * nm.rsqrt(nm.reduce_mean(h * h, reduced_dim=self.d_model) + 1e-6)
            layer_seed = None if seed is None else tf.cast(seed, tf.int64) * 16 + i
            y, layer_aux, layer_stats = layer(normed, train=train, seed=layer_seed,
                                              return_stats=True)
            h = h + y
            aux = layer_aux if aux is None else aux + layer_aux
            stats.append(layer_stats)
        kernel = self.store.get_variable(mesh, "logits/kernel",
                                         nm.Shape([self.d_model, self.vocab]))
        logits = nm.einsum([h, kernel], positions + [self.vocab])
        target = nm.one_hot(nm.import_tf_tensor(mesh, targets, positions), self.vocab)
        nll = -nm.reduce_sum(nm.log_softmax(logits, self.vocab) * target, reduced_dim=self.vocab)
        loss = nm.reduce_mean(nll)
        return loss, aux, stats, logits
