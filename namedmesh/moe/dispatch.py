"""Dispatch and combine: moving tokens into expert slots and back.

Two implementations of one interface, chosen by the layers' ``dispatch`` option:

* ``OneHotEinsumDispatcher`` (mtf's): einsums with the one-hot dispatch tensor and
  the weighted combine tensor ``[..., group_size, experts, capacity]``.  Each costs
  ``O(S·E·C·M)`` per group (S tokens, E experts, C slots, M features), which grows
  with the group size; it is what TPUs run well (dense matmuls, static shapes).
* ``IndexDispatcher``: a gather of each slot's token and a gather of each token's
  slots (flaxformer's scatter router, Tutel's fast encode/decode), ``O(E·C·M + S·M)``
  per group.  The default on CPU and GPU.

Both take the router's ``Gating`` and produce tensors of the same named shape, so
the layout, and with it every all-to-all, is the same.  The index dispatcher's
dispatched tensor and slot weights equal the einsum's bit for bit (each slot
holds one token); a combine adds a token's two weighted expert outputs, which the
einsum's matmul may round in another order (differences of a float32 ulp).

Index dispatch works per processor and needs the group, expert and capacity dims
unsplit (the standard MoE layouts never split them); if a layout splits one, it
falls back to the einsum for that call.
"""

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_sum
from namedmesh.core.dims import Shape
from namedmesh.core.elementwise import align_local
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError
from namedmesh.lowering.trace import mark_step

DISPATCH_CHOICES = ("auto", "einsum", "index")


class OneHotEinsumDispatcher:
    """mtf's dispatch: ``einsum`` with the 0/1 dispatch and the weighted combine tensors.

    dispatch: ``inputs[..., group_size, d_model] x dispatch[..., group_size, experts,
    capacity] -> output_shape`` (which names the expert, group and capacity dims).
    combine: ``expert_output[..., experts, capacity, n] x combine[..., group_size, experts,
    capacity] -> output_shape``.
    """

    name = "einsum"

    def dispatch(self, inputs, gating, output_shape, step=None) -> Tensor:
        dispatch_tensor = gating.dispatch_tensor(gating.combine_tensor())
        if step:
            mark_step(step, dispatch_tensor)
        return einsum([inputs, dispatch_tensor], output_shape)

    def combine(self, expert_output, gating, output_shape) -> Tensor:
        return einsum([expert_output, gating.combine_tensor()], output_shape)

    def slot_weights(self, gating, output_shape) -> Tensor:
        """Each slot's combine weight (0 for an empty slot): dims ``output_shape``,
        the experts and capacity dims and the route dims without the group size."""
        return reduce_sum(gating.combine_tensor(), output_shape=output_shape)


class IndexDispatcher:
    """Gather-based dispatch and combine by (expert, position) index; see the module doc.

    dispatch: ``inputs [*batch, group_size, *features] -> output_shape`` (``[experts,
    *batch, capacity, *features]`` in any order): slot (e, c) of a group holds the
    token routed there, or zeros.
    combine: ``expert_output [experts, *batch, capacity, *features] -> output_shape``
    (``[*batch, group_size, *features]``): each token's expert outputs times its weights.
    """

    name = "index"

    def __init__(self):
        self._fallback = OneHotEinsumDispatcher()

    # -- the per-processor plan ------------------------------------------------------
    @staticmethod
    def _is_local(gating, *tensors_or_shapes) -> bool:
        """Whether the group, expert and capacity dims are unsplit everywhere."""
        names = (gating.routes[0].expert.shape.dims[-1].name, gating.experts_dim.name,
                 gating.capacity_dim.name)
        mesh = gating.routes[0].expert.mesh
        for t in tensors_or_shapes:
            shape = t.shape if isinstance(t, Tensor) else t
            layout = mesh.tensor_layout(shape)
            for n in names:
                if n in shape and layout.mesh_axis_of(n) is not None:
                    return False
        return True

    @staticmethod
    def _route_slices(gating):
        """Per processor and route: (slot [nb, S] int32, weight [nb, S] in the activations'
        dtype); unfilled assignments point at the extra slot E·C (a zero row)."""
        route_shape = gating.routes[0].expert.shape
        mesh = gating.routes[0].expert.mesh
        sizes = mesh.tensor_layout(route_shape).slice_sizes
        nb = 1
        for n in sizes[:-1]:
            nb *= n
        group = sizes[-1]
        capacity = gating.capacity_dim.size
        empty = gating.experts_dim.size * capacity
        out = []
        for r, weight in zip(gating.routes, gating.weights()):
            def local(expert, position, w):
                slot = expert * capacity + tf.cast(position, tf.int32)
                slot = tf.where(tf.not_equal(w, 0), slot, empty)
                return tf.reshape(slot, [nb, group]), tf.reshape(w, [nb, group])

            out.append(mesh.impl.slicewise(local, r.expert.slices, r.position.slices,
                                           weight.slices))
        return out, nb, group, empty

    # -- the three operations ------------------------------------------------------------
    def dispatch(self, inputs, gating, output_shape, step=None) -> Tensor:
        output_shape = Shape(output_shape)
        if not self._is_local(gating, inputs, output_shape):
            return self._fallback.dispatch(inputs, gating, output_shape, step)
        mesh = inputs.mesh
        route_shape = gating.routes[0].expert.shape
        features = [d for d in inputs.shape.dims if d.name not in route_shape]
        batch = list(route_shape.dims[:-1])
        experts, capacity = gating.experts_dim, gating.capacity_dim
        ordered_in = Shape(list(route_shape.dims) + features)
        ordered_out = Shape(batch + [experts, capacity] + features)
        local_out = list(mesh.tensor_layout(ordered_out).slice_sizes)
        routes, nb, group, empty = self._route_slices(gating)

        def local(x, *route_values):
            x = tf.reshape(align_local(x, inputs.shape, ordered_in), [nb, group, -1])
            token = tf.range(group, dtype=tf.int32)[None, :] + tf.zeros([nb, 1], tf.int32)
            base = tf.range(nb, dtype=tf.int32)[:, None] * (empty + 1)
            tokens, segments = [], []
            for slot, _ in route_values:
                tokens.append(tf.reshape(token, [-1]))
                segments.append(tf.reshape(slot + base, [-1]))
            source = tf.math.unsorted_segment_max(tf.concat(tokens, 0), tf.concat(segments, 0),
                                                  nb * (empty + 1))
            source = tf.reshape(source, [nb, empty + 1])[:, :empty]
            source = tf.where(source < 0, group, source)  # empty slot -> the zero row
            padded = tf.concat([x, tf.zeros_like(x[:, :1])], axis=1)
            moved = tf.gather(padded, source, batch_dims=1)
            return align_local(tf.reshape(moved, local_out), ordered_out, output_shape)

        slices = mesh.impl.slicewise(local, inputs.slices, *routes)
        return Tensor(mesh, output_shape, slices, inputs.dtype)

    def combine(self, expert_output, gating, output_shape) -> Tensor:
        output_shape = Shape(output_shape)
        if not self._is_local(gating, expert_output, output_shape):
            return self._fallback.combine(expert_output, gating, output_shape)
        mesh = expert_output.mesh
        route_shape = gating.routes[0].expert.shape
        experts, capacity = gating.experts_dim, gating.capacity_dim
        batch = list(route_shape.dims[:-1])
        features = [d for d in expert_output.shape.dims
                    if d.name not in route_shape and d.name not in (experts.name, capacity.name)]
        ordered_in = Shape(batch + [experts, capacity] + features)
        ordered_out = Shape(list(route_shape.dims) + features)
        local_out = list(mesh.tensor_layout(ordered_out).slice_sizes)
        routes, nb, group, empty = self._route_slices(gating)
        # bfloat16 / float16: products are exact in float32, the sum is rounded once (as a
        # matmul that accumulates in float32 does)
        wide = tf.float32 if expert_output.dtype in (tf.bfloat16, tf.float16) else \
            expert_output.dtype

        def local(y, *route_values):
            y = tf.reshape(align_local(y, expert_output.shape, ordered_in), [nb, empty, -1])
            padded = tf.concat([y, tf.zeros_like(y[:, :1])], axis=1)
            if len(route_values) == 1:
                slot, weight = route_values[0]
                out = tf.cast(weight[:, :, None], wide) * tf.cast(
                    tf.gather(padded, slot, batch_dims=1), wide)
            else:
                # the einsum's matmul adds along the slot index: the lower slot's product,
                # then the higher one fused into it (one rounding, as an FMA does); float64
                # holds the product exactly, so this rounds as the einsum does
                (slot_a, w_a), (slot_b, w_b) = route_values
                a_first = slot_a <= slot_b
                low = (tf.cast(tf.where(a_first, w_a, w_b)[:, :, None], wide) * tf.cast(
                    tf.gather(padded, tf.minimum(slot_a, slot_b), batch_dims=1), wide))
                high = (tf.cast(tf.where(a_first, w_b, w_a)[:, :, None], tf.float64) * tf.cast(
                    tf.gather(padded, tf.maximum(slot_a, slot_b), batch_dims=1), tf.float64))
                out = tf.cast(high + tf.cast(low, tf.float64), wide)
            out = tf.cast(out, expert_output.dtype)
            return align_local(tf.reshape(out, local_out), ordered_out, output_shape)

        slices = mesh.impl.slicewise(local, expert_output.slices, *routes)
        return Tensor(mesh, output_shape, slices, expert_output.dtype)

    def slot_weights(self, gating, output_shape) -> Tensor:
        """Each slot's combine weight (0 for an empty slot), as the einsum dispatcher's."""
        output_shape = Shape(output_shape)
        if not self._is_local(gating, output_shape):
            return self._fallback.slot_weights(gating, output_shape)
        mesh = gating.routes[0].expert.mesh
        route_shape = gating.routes[0].expert.shape
        ordered = Shape(list(route_shape.dims[:-1]) + [gating.experts_dim, gating.capacity_dim])
        local_out = list(mesh.tensor_layout(ordered).slice_sizes)
        routes, nb, group, empty = self._route_slices(gating)

        def local(*route_values):
            base = tf.range(nb, dtype=tf.int32)[:, None] * (empty + 1)
            weights = tf.concat([tf.reshape(tf.cast(w, tf.float32), [-1])
                                 for _, w in route_values], 0)
            segments = tf.concat([tf.reshape(slot + base, [-1]) for slot, _ in route_values], 0)
            total = tf.math.unsorted_segment_sum(weights, segments, nb * (empty + 1))
            total = tf.reshape(total, [nb, empty + 1])[:, :empty]
            total = tf.cast(tf.reshape(total, local_out), gating.dtype)
            return align_local(total, ordered, output_shape)

        slices = mesh.impl.slicewise(local, *routes)
        return Tensor(mesh, output_shape, slices, gating.dtype)


def make_dispatcher(choice: str, mesh) -> object:
    """The dispatcher for the ``dispatch`` option on ``mesh``: ``"einsum"``, ``"index"``,
    or ``"auto"`` = einsum under a TPUStrategy (dense matmuls suit the TPU), else index."""
    if choice not in DISPATCH_CHOICES:
        raise ConfigError("dispatch: unknown dispatcher %r; expected one of %s"
                          % (choice, ", ".join(repr(c) for c in DISPATCH_CHOICES)))
    if choice == "auto":
        strategy = getattr(mesh, "strategy", None)
        choice = "einsum" if strategy is not None and "TPUStrategy" in type(
            strategy).__name__ else "index"
    return ONE_HOT_EINSUM if choice == "einsum" else INDEX


ONE_HOT_EINSUM = OneHotEinsumDispatcher()
INDEX = IndexDispatcher()
DEFAULT_DISPATCHER = ONE_HOT_EINSUM  # mtf's; the layers choose with make_dispatcher
