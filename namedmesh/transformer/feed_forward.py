"""mtf's ``DenseReluDense``: the feed-forward layer of a transformer stack, and its gated
variants (T5.1.1's ``activation=["gelu", "linear"]``).

    x [batch..., length, d_model]
    h = prod_i act_i(x . wi_i)      wi/kernel [d_model, d_ff] (wi_0, wi_1 ... for a list)
    h = dropout(h) in training      mask broadcast along length
    y = h . wo                      wo/kernel [d_ff, d_model]   (+ biases with use_bias)
"""

from namedmesh.core.dims import Dimension
from namedmesh.core.random_ops import dropout
from namedmesh.layers.dense import dense, dense_product
from namedmesh.transformer.stack_layer import TransformerLayer


class DenseReluDense(TransformerLayer):
    kind = "DenseReluDense"

    def __init__(self, name: str, config):
        super().__init__(name)
        self.config = config

    def call(self, context, x):
        c = self.config
        io_channels = x.shape.dims[-1]
        hidden = Dimension("d_ff", c.hidden_size)
        experts = list(context.model.ensemble_dims)
        h = dense_product(x, reduced_dims=x.shape.dims[-1:], new_dims=hidden,
                          activation_functions=c.activation, use_bias=c.use_bias, name="wi",
                          expert_dims=experts, store=context.store)
        if context.train and c.dropout_rate != 0.0:
            noise = h.shape - context.length_dim if context.length_dim in h.shape else h.shape
            h = dropout(h, True, rate=c.dropout_rate, noise_shape=noise,
                        seed=context.seed_for(self.name + "/dense_relu_dense"))
        return dense(h, io_channels, reduced_dims=h.shape.dims[-1:], use_bias=c.use_bias,
                     name="wo", expert_dims=experts, store=context.store)


__all__ = ["DenseReluDense"]
