"""Dispatch and combine: moving tokens into expert slots and back.

Two implementations of one interface, chosen by the layers' ``dispatch`` option:

* ``OneHotEinsumDispatcher`` (mtf's): einsums with the one-hot dispatch tensor and
  the weighted combine tensor ``[..., group_size, experts, capacity]``.  Each costs
  ``O(S·E·C·M)`` per group (S tokens, E experts, C slots, M features), which grows
  with the group size; it is what TPUs run well (dense matmuls, static shapes).
* ``IndexDispatcher``: a gather of each slot's token and a gather of each token's
  slots (flaxformer's scatter router, Tutel's fast encode/decode), ``O(E·C·M + S·M)``
  per group; their gradients are gathers too.  The default on CPU and GPU.

Both take the router's ``Gating`` and produce tensors of the same named shape, so
the layout, and with it every all-to-all, is the same.  The index dispatcher's
dispatched tensor, slot weights and slot gradients equal the einsum's bit for bit
(each slot holds one token); a combine adds a token's two weighted expert outputs,
which the einsum's matmul may fuse into one FMA (a float32 rounding apart).

Index dispatch works per processor and needs the group, expert and capacity dims
unsplit (the standard MoE layouts never split them); if a layout splits one, it
falls back to the einsum for that call.
"""

import tensorflow as tf

from namedmesh.core.contraction import einsum, reduce_sum
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.elementwise import align_local
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError
from namedmesh.lowering.trace import mark_step
from namedmesh.moe.config import DISPATCHERS


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


class _Plan:
    """One processor's routing tables for a group batch ``nb`` of ``S`` tokens and ``E·C``
    slots (index ``E·C`` is the empty slot, a zero row):

    slots: per route, ``[nb, S]`` int32, the slot each token's assignment holds (or E·C);
    weights: per route, ``[nb, S]``, its combine weight in the activations' dtype;
    source: ``[nb, E·C]`` int32, the token each slot holds (or S, a zero row);
    slot_weights: ``[nb, E·C]`` float32, the combine weight each slot holds (or 0).
    """

    def __init__(self, slots, weights, source, slot_weights):
        self.slots, self.weights = slots, weights
        self.source, self.slot_weights = source, slot_weights


def _no_variable_gradients(grads, variables):
    """In graph mode TF sees the router's variables behind the routing tables (integer
    indices, no gradient path) and asks for their gradients: there are none."""
    return (grads, [None] * len(variables)) if variables else grads


def _backward_scope():
    """A name scope for a custom gradient's ops: the forward's scope under ``gradient_tape/``,
    as TF names the gradients it derives (profiles group op time by these names)."""
    scope = tf.get_current_name_scope()
    return lambda: tf.name_scope("gradient_tape/%s/" % scope if scope else "gradient_tape/")


def _append_zero_row(v):
    """``v [nb, n, ...] -> [nb, n + 1, ...]``, the new row zeros (one Pad op)."""
    return tf.pad(v, [[0, 0], [0, 1]] + [[0, 0]] * (v.shape.rank - 2))


def _to_slots(x, plan: _Plan):
    """``x [nb, S, f] -> [nb, E·C, f]``: each slot's token (zeros for an empty slot).
    Its adjoint is also a gather: a token's gradient adds up the gradients of its slots."""

    backward_scope = _backward_scope()

    @tf.custom_gradient
    def move(x):
        def grad(d, variables=None):
            with backward_scope():
                padded = _append_zero_row(d)
                parts = [tf.gather(padded, slot, batch_dims=1) for slot in plan.slots]
                total = parts[0] if len(parts) == 1 else tf.add_n(parts)
            return _no_variable_gradients(total, variables)
        return tf.gather(_append_zero_row(x), plan.source, batch_dims=1), grad

    return move(x)


def _from_slots(y, plan: _Plan):
    """``y [nb, E·C, f] -> [nb, S, f]``: each token's slots times their weights, summed.
    Adjoints by gathers: a slot's gradient is its weight times its token's gradient; a
    weight's gradient is the dot product of the token's gradient and the slot's row."""
    narrow = y.dtype in (tf.bfloat16, tf.float16)
    wide = tf.float32 if narrow else y.dtype  # exact products of narrow values, one rounding
    backward_scope = _backward_scope()

    @tf.custom_gradient
    def combine(y, *weights):
        padded = _append_zero_row(y)
        picked = [tf.cast(tf.gather(padded, slot, batch_dims=1), wide) for slot in plan.slots]
        terms = [tf.cast(w, wide)[:, :, None] * p for w, p in zip(weights, picked)]
        out = terms[0] if len(terms) == 1 else tf.add_n(terms)

        def grad(d, variables=None):
            with backward_scope():
                d = tf.cast(d, wide)
                d_y = plan.slot_weights[:, :, None] * tf.gather(_append_zero_row(d),
                                                               plan.source, batch_dims=1)
                d_weights = [tf.cast(tf.reduce_sum(d * p, axis=-1), w.dtype)
                             for w, p in zip(weights, picked)]
            return _no_variable_gradients([tf.cast(d_y, y.dtype)] + d_weights, variables)

        return tf.cast(out, y.dtype), grad

    return combine(y, *plan.weights)


class IndexDispatcher:
    """Gather-based dispatch and combine by (expert, position) index; see the module doc.

    dispatch: ``inputs [*batch, group_size, *features] -> output_shape`` (``[experts,
    *batch, capacity, *features]`` in any order): slot (e, c) of a group holds the
    token routed there, or zeros.
    combine: ``expert_output [experts, *batch, capacity, *features] -> output_shape``
    (``[*batch, group_size, *features]``): each token's expert outputs times its weights.
    Forward and backward are gathers (no scatter-adds): the tables of ``_Plan`` map tokens
    to slots and slots to tokens.
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
    def _sizes(gating):
        """(nb, S, E·C): local group batch, group size and slots per group."""
        route_shape = gating.routes[0].expert.shape
        sizes = gating.routes[0].expert.mesh.tensor_layout(route_shape).slice_sizes
        nb = 1
        for n in sizes[:-1]:
            nb *= n
        return nb, sizes[-1], gating.experts_dim.size * gating.capacity_dim.size

    def _plans(self, gating):
        """One ``_Plan`` per processor, built once per gating."""
        if "index_plans" in gating.cache:
            return gating.cache["index_plans"]
        mesh = gating.routes[0].expert.mesh
        nb, group, empty = self._sizes(gating)
        capacity = gating.capacity_dim.size
        k = len(gating.routes)

        def local(*values):
            experts, positions, weights = values[:k], values[k:2 * k], values[2 * k:]
            slots, flat_weights = [], []
            for expert, position, w in zip(experts, positions, weights):
                w = tf.reshape(w, [nb, group])
                slot = tf.reshape(expert * capacity + tf.cast(position, tf.int32), [nb, group])
                slots.append(tf.where(tf.not_equal(w, 0), slot, empty))
                flat_weights.append(w)
            base = tf.range(nb, dtype=tf.int32)[:, None] * (empty + 1)
            segments = tf.concat([tf.reshape(slot + base, [-1]) for slot in slots], 0)
            token = tf.tile(tf.range(group, dtype=tf.int32)[None, :], [nb, 1])
            source = tf.math.unsorted_segment_max(tf.tile(tf.reshape(token, [-1]), [k]),
                                                  segments, nb * (empty + 1))
            source = tf.reshape(source, [nb, empty + 1])[:, :empty]
            source = tf.where(source < 0, group, source)  # empty slot -> the zero row
            held = tf.math.unsorted_segment_sum(
                tf.concat([tf.reshape(tf.cast(w, tf.float32), [-1]) for w in flat_weights], 0),
                segments, nb * (empty + 1))  # one weight per filled slot: exact
            held = tf.reshape(held, [nb, empty + 1])[:, :empty]
            return _Plan(slots, flat_weights, source, held)

        plans = mesh.impl.slicewise(
            local, *[r.expert.slices for r in gating.routes],
            *[r.position.slices for r in gating.routes],
            *[w.slices for w in gating.weights()])
        gating.cache["index_plans"] = plans
        return plans

    # -- the three operations ------------------------------------------------------------
    def dispatch(self, inputs, gating, output_shape, step=None) -> Tensor:
        output_shape = convert_to_shape(output_shape)
        if not self._is_local(gating, inputs, output_shape):
            return self._fallback.dispatch(inputs, gating, output_shape, step)
        mesh = inputs.mesh
        route_shape = gating.routes[0].expert.shape
        features = [d for d in inputs.shape.dims if d.name not in route_shape]
        ordered_in = Shape(list(route_shape.dims) + features)
        ordered_out = Shape(list(route_shape.dims[:-1]) + [gating.experts_dim,
                                                          gating.capacity_dim] + features)
        local_out = list(mesh.tensor_layout(ordered_out).slice_sizes)
        nb, group, _ = self._sizes(gating)

        def local(x, plan):
            x = tf.reshape(align_local(x, inputs.shape, ordered_in), [nb, group, -1])
            moved = _to_slots(x, plan)
            return align_local(tf.reshape(moved, local_out), ordered_out, output_shape)

        slices = mesh.impl.slicewise(local, inputs.slices, self._plans(gating))
        return Tensor(mesh, output_shape, slices, inputs.dtype)

    def combine(self, expert_output, gating, output_shape) -> Tensor:
        output_shape = convert_to_shape(output_shape)
        if not self._is_local(gating, expert_output, output_shape):
            return self._fallback.combine(expert_output, gating, output_shape)
        mesh = expert_output.mesh
        route_shape = gating.routes[0].expert.shape
        experts, capacity = gating.experts_dim, gating.capacity_dim
        features = [d for d in expert_output.shape.dims
                    if d.name not in route_shape and d.name not in (experts.name, capacity.name)]
        ordered_in = Shape(list(route_shape.dims[:-1]) + [experts, capacity] + features)
        ordered_out = Shape(list(route_shape.dims) + features)
        local_out = list(mesh.tensor_layout(ordered_out).slice_sizes)
        nb, _, empty = self._sizes(gating)

        def local(y, plan):
            y = tf.reshape(align_local(y, expert_output.shape, ordered_in), [nb, empty, -1])
            out = _from_slots(y, plan)
            return align_local(tf.reshape(out, local_out), ordered_out, output_shape)

        slices = mesh.impl.slicewise(local, expert_output.slices, self._plans(gating))
        return Tensor(mesh, output_shape, slices, expert_output.dtype)

    def slot_weights(self, gating, output_shape) -> Tensor:
        """Each slot's combine weight (0 for an empty slot), as the einsum dispatcher's."""
        output_shape = convert_to_shape(output_shape)
        if not self._is_local(gating, output_shape):
            return self._fallback.slot_weights(gating, output_shape)
        mesh = gating.routes[0].expert.mesh
        route_shape = gating.routes[0].expert.shape
        ordered = Shape(list(route_shape.dims[:-1]) + [gating.experts_dim, gating.capacity_dim])
        local_out = list(mesh.tensor_layout(ordered).slice_sizes)

        def local(plan):
            held = tf.cast(tf.reshape(plan.slot_weights, local_out), gating.dtype)
            return align_local(held, ordered, output_shape)

        slices = mesh.impl.slicewise(local, self._plans(gating))
        return Tensor(mesh, output_shape, slices, gating.dtype)


def make_dispatcher(choice: str, mesh) -> object:
    """The dispatcher for the ``dispatch`` option on ``mesh``: ``"einsum"``, ``"index"``,
    or ``"auto"`` = einsum under a TPUStrategy (dense matmuls suit the TPU), else index."""
    if choice not in DISPATCHERS:
        raise ConfigError("dispatch: unknown dispatcher %r; expected one of %s"
                          % (choice, ", ".join(repr(c) for c in DISPATCHERS)))
    if choice == "auto":
        strategy = getattr(mesh, "strategy", None)
        choice = "einsum" if strategy is not None and "TPUStrategy" in type(
            strategy).__name__ else "index"
    return ONE_HOT_EINSUM if choice == "einsum" else INDEX


ONE_HOT_EINSUM = OneHotEinsumDispatcher()
INDEX = IndexDispatcher()
