"""Dispatch and combine: moving tokens into expert slots and back.

One class owns both directions, so that a faster index-based implementation
(scatter/gather by position, as flaxformer does on CPU/GPU) can replace mtf's
one-hot einsum without touching the layers.
"""

from namedmesh.core.contraction import einsum


class OneHotEinsumDispatcher:
    """mtf's dispatch: ``einsum`` with the 0/1 dispatch and the weighted combine tensors.

    dispatch: ``inputs[..., group_size, d_model] x dispatch[..., group_size, experts,
    capacity] -> output_shape`` (which names the expert, group and capacity dims).
    combine: ``expert_output[..., experts, capacity, n] x combine[..., group_size, experts,
    capacity] -> output_shape``.
    """

    name = "one_hot_einsum"

    def dispatch(self, inputs, dispatch_tensor, output_shape):
        return einsum([inputs, dispatch_tensor], output_shape)

    def combine(self, expert_output, combine_tensor, output_shape):
        return einsum([expert_output, combine_tensor], output_shape)


DEFAULT_DISPATCHER = OneHotEinsumDispatcher()
