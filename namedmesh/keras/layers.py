"""Keras 3 layers over namedmesh: plain tensors in and out, axes named once.

    layer = namedmesh.keras.MoE2D(input_dims=("batch", "length", "d_model"), mesh=mesh,
                                  expert_x=2, expert_y=2, hidden_size=64, group_size=32)
    y = layer(x)                    # x, y: [batch, length, d_model]; aux loss via add_loss

Each layer wraps a namedmesh module (``namedmesh.moe.MoE1D`` / ``MoE2D``,
``namedmesh.layers.Dense``) whose variables are this layer's Keras weights
(``add_weight``, float32 master copies, never autocast: namedmesh casts them,
and keeps the router in float32 under mixed precision).  The call runs on the
layer's mesh in the context it finds (``namedmesh.plain.call``): on one device
or the mesh's devices with the whole batch; inside the mesh strategy's
``strategy.run`` (``fit``, ``evaluate``, ``predict``, a custom loop) on the
replica's own shard of the batch, which is its processor's slice.  See
docs/keras.md for how gradients are scaled under a strategy.
"""

import contextlib
import re
from typing import Dict, Optional

import keras
import tensorflow as tf

# Keras runs ``call`` on placeholders for shape inference inside this scope (no public API)
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

from namedmesh.core.dims import Dimension, Shape
from namedmesh.errors import ConfigError, ShapeError
from namedmesh.layers.dense_module import Dense as DenseModule
from namedmesh.mesh.mesh import Mesh
from namedmesh.moe import layers as moe_layers
from namedmesh.moe.dims import mesh_dim_size_of
from namedmesh.plain.axes import PlainAxes
from namedmesh.plain.call import PlainCall

ROUTING_METRICS = ("fraction_dropped", "router_confidence")
"""Routing statistics each MoE layer reports as Keras metrics, per routing level."""


class MeshLayer(keras.layers.Layer):
    """Base of namedmesh's Keras layers: a named program on plain tensors.

    Args:
      input_dims: the input's axis names, batch axis first (see ``PlainAxes``).
      mesh: a namedmesh ``Mesh`` (devices or a strategy); default: one processor
        on whatever device the call runs (under a strategy: each replica alone).
      outer_batch: the batch axis is ``[outer_batch:k, <first input dim>]``
        (row-major).  Default: the size of the mesh dim the layout splits
        ``outer_batch`` over, if it does (mtf's ``outer_batch_size`` usually is);
        else no outer batch.
      name, dtype, trainable: Keras's (``dtype`` may be a mixed-precision policy).
    """

    def __init__(self, input_dims, mesh: Optional[Mesh] = None,
                 outer_batch: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if mesh is not None and not isinstance(mesh, Mesh):
            raise ConfigError("%s: mesh must be a namedmesh.Mesh, got %r"
                              % (type(self).__name__, mesh))
        self.mesh = mesh if mesh is not None else Mesh(devices=[""])
        self.input_dims = tuple(input_dims) if isinstance(input_dims, (list, tuple)) \
            else input_dims
        self.outer_batch = self._resolve_outer_batch(outer_batch, mesh)
        self.axes = PlainAxes(self._named_axes(self.input_dims, self.outer_batch))
        self.plain_call = PlainCall(self.mesh, self.axes)
        # TF's collective ops and a multi-device placement do not compile with XLA
        self.supports_jit = self.mesh.size == 1 and self.mesh.strategy is None

    def _resolve_outer_batch(self, outer, mesh) -> Optional[int]:
        """The outer batch size (see the class doc); kept in the config, so that a clone
        of the layer without the mesh computes the same function."""
        if outer is None and mesh is not None:
            split = mesh_dim_size_of(mesh, Dimension("outer_batch", 1))
            outer = split if split > 1 else None
        if outer is not None and (isinstance(outer, bool) or not isinstance(outer, int)
                                  or outer < 1):
            raise ConfigError("%s: outer_batch must be a positive integer, got %r"
                              % (type(self).__name__, outer))
        return outer

    def _named_axes(self, input_dims, outer):
        """The ``PlainAxes`` entries: the batch axis merges ``[outer_batch, batch]`` when
        there is an outer batch."""
        if outer is None:
            return input_dims
        first = input_dims[0] if isinstance(input_dims, tuple) and input_dims else None
        if not isinstance(first, str):
            raise ConfigError("%s: with an outer batch the first input dim must be one name, "
                              "got input_dims=%r" % (type(self).__name__, input_dims))
        return (("outer_batch:%d" % outer, first),) + tuple(input_dims[1:])

    def _placeholder(self, inputs):
        """Inside Keras's shape inference (``compute_output_spec``, which the trainers run
        on a batch whose size need not be the real one, e.g. one replica's shard averaged
        over replicas) the program must not run: zeros of the output's spec, or None
        outside it."""
        if not in_symbolic_scope():
            return None
        shape = self.compute_output_shape(tuple(inputs.shape))
        return tf.zeros([1 if s is None else s for s in shape], self.compute_dtype)

    def _make_weight(self, full_name: str, shape: Shape, initial_value, dtype, trainable):
        """The variable factory of the wrapped module's store: a Keras weight, whose
        underlying ``tf.Variable`` the store reads (mirrored under a strategy's scope)."""
        weight = self.add_weight(name=full_name.replace("/", "_"), shape=shape.sizes,
                                 initializer=lambda shape, dtype=None: initial_value,
                                 dtype=dtype.name, trainable=trainable, autocast=False)
        return weight.value

    def _add_seed_step(self, name: str):
        """``seed_step``: the seed of the random draws = the number of training calls so far.
        Every replica counts for itself ("on_read": no merge_call inside the call, which
        would interleave the replicas' calls and mix Keras's add_loss lists), so every
        replica draws the same; a checkpoint keeps the first replica's count."""
        with self.mesh.strategy.scope() if self.mesh.strategy is not None else \
                contextlib.nullcontext():
            self.seed_step = keras.Variable(0, shape=(), dtype="int64", trainable=False,
                                            autocast=False, synchronization="on_read",
                                            aggregation="only_first_replica", name=name)

    def _next_seed(self):
        seed = self.seed_step.value + 1
        self.seed_step.assign(seed)
        return seed

    def _dim_sizes(self, input_shape) -> Dict[str, int]:
        """``{name: size}`` of the non-batch input axes from a Keras input shape."""
        sizes = list(input_shape)
        if len(sizes) != self.axes.ndims:
            raise ShapeError("%s %r: the input has %d axes (shape %s) but input_dims names %d: %r"
                             % (type(self).__name__, self.name, len(sizes), tuple(sizes),
                                self.axes.ndims, self.input_dims))
        names = self.axes.names[self.axes.batch_dims:]
        for n, s in zip(names, sizes[1:]):
            if s is None:
                raise ShapeError("%s %r: axis %r of the input has no static size (shape %s)"
                                 % (type(self).__name__, self.name, n, tuple(sizes)))
        return dict(zip(names, [int(s) for s in sizes[1:]]))

    def get_config(self):
        config = super().get_config()
        config.update(input_dims=self.input_dims, outer_batch=self.outer_batch)
        return config


def _identifier(name: str) -> str:
    """A Keras layer name as a tf.Module name (a Python identifier)."""
    out = re.sub(r"\W", "_", name)
    return out if out and not out[0].isdigit() else "_" + out


class _MoE(MeshLayer):
    module_cls = None
    levels = ()

    def __init__(self, input_dims=("batch", "length", "d_model"), mesh: Optional[Mesh] = None,
                 outer_batch: Optional[int] = None, name: Optional[str] = None, dtype=None,
                 trainable: bool = True, **moe_kwargs):
        super().__init__(input_dims, mesh=mesh, outer_batch=outer_batch, name=name, dtype=dtype,
                         trainable=trainable)
        self.moe = self.module_cls(name=_identifier(self.name),
                                   variable_factory=self._make_weight, **moe_kwargs)
        self.moe.counts_steps = False   # this layer passes the seeds (its seed_step)
        self.moe_kwargs = dict(moe_kwargs)
        self.seed_step = None
        self.routing_metrics = {
            "%s_%s" % (level, stat): keras.metrics.Mean(name="%s_%s_%s" % (self.name, level, stat))
            for level in self.levels for stat in ROUTING_METRICS}
        self.routing_metrics["aux_loss"] = keras.metrics.Mean(name="%s_aux_loss" % self.name)

    @property
    def uses_random_routing(self) -> bool:
        return self.moe._uses_randomness(True)

    def build(self, input_shape):
        sizes = self._dim_sizes(input_shape)
        d_model_name = self.axes.names[-1]
        self.moe.build(Shape([Dimension(d_model_name, sizes[d_model_name])]), self.mesh)
        if self.uses_random_routing:
            self._add_seed_step("moe_step")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self._output_size(input_shape[-1]),)

    def _output_size(self, d_model):
        return d_model

    def call(self, inputs, training=None):
        placeholder = self._placeholder(inputs)
        if placeholder is not None:
            self.add_loss(tf.zeros([], "float32"))   # the aux loss's place in model.losses
            return placeholder
        train = bool(training)
        seed = self._next_seed() if train and self.uses_random_routing else \
            tf.constant(0, tf.int64)

        def program(x, seed):
            y, aux, stats = self.moe(x, train=train, seed=seed, return_stats=True)
            values = {"%s_%s" % (level, stat): getattr(stats[level], stat)
                      for level in self.levels for stat in ROUTING_METRICS}
            return {"y": y, "aux_loss": aux, "stats": values}

        out = self.plain_call(program, inputs, seed, key="train" if train else "infer")
        aux = tf.cast(out["aux_loss"], "float32")
        self.add_loss(aux)
        for key, value in out["stats"].items():
            self.routing_metrics[key].update_state(value)
        self.routing_metrics["aux_loss"].update_state(aux)
        return out["y"]

    def mtf_variables(self):
        """``{mtf_name: tf.Variable}`` of the wrapped module (the weights' variables)."""
        return self.moe.mtf_variables()

    def load_mtf_variables(self, arrays):
        """Set the weights from ``{mtf_name: array}`` in mtf's axis order (an mtf checkpoint)."""
        self.moe.load_mtf_variables(arrays)

    def get_config(self):
        config = super().get_config()
        config.update(self.moe_kwargs)
        return config


class MoE1D(_MoE):
    """``namedmesh.moe.MoE1D`` (mtf's ``transformer_moe_layer_v1``) as a Keras layer.

    Input and output ``[batch, length, d_model]`` by default (``input_dims``);
    with ``outer_batch=k`` the batch axis is ``[outer_batch:k, batch]``.  The
    other keywords are ``MoE1D``'s (mtf's gin names: ``num_experts``,
    ``hidden_size``, ``group_size``, ``moe_gating``, ...).  Adds the aux loss
    with ``add_loss``; metrics ``<name>_experts_fraction_dropped``,
    ``<name>_experts_router_confidence`` and ``<name>_aux_loss``.
    """

    module_cls = moe_layers.MoE1D
    levels = ("experts",)

    def _output_size(self, d_model):
        out = self.moe.config.output_dim
        return d_model if out is None else out


class MoE2D(_MoE):
    """``namedmesh.moe.MoE2D`` (mtf's ``transformer_moe_layer_v2``) as a Keras layer.

    Input and output ``[batch, length, d_model]`` by default; the batch axis is
    ``[outer_batch, batch]`` when ``outer_batch=k`` is given or the mesh's layout
    splits ``outer_batch`` (then ``k`` is that mesh dim's size).  The other
    keywords are ``MoE2D``'s (``expert_x``, ``expert_y``, ``hidden_size``,
    ``group_size``, ...).  Metrics per level ``outer`` and ``inner``.
    """

    module_cls = moe_layers.MoE2D
    levels = ("outer", "inner")


class Dense(MeshLayer):
    """``namedmesh.layers.Dense`` (mtf's ``layers.dense``) as a Keras layer.

    Args:
      new_dims: the output dims (``"vocab:32"``, or a list), placed last.
      input_dims: the input's axis names, batch axis first.
      reduced_dims: names of input dims summed over (default: the last one).
      use_bias, activation, kernel_initializer: ``namedmesh.layers.Dense``'s.
      mesh, name, dtype: as ``MeshLayer``.

    Output: the input's axes without the reduced ones, then ``new_dims``.
    """

    def __init__(self, new_dims, input_dims, reduced_dims=None, use_bias: bool = True,
                 activation=None, kernel_initializer=None, mesh: Optional[Mesh] = None,
                 outer_batch: Optional[int] = None, name: Optional[str] = None, dtype=None,
                 trainable: bool = True):
        super().__init__(input_dims, mesh=mesh, outer_batch=outer_batch, name=name, dtype=dtype,
                         trainable=trainable)
        batch_names = self.axes.names[:self.axes.batch_dims]
        reduced = [reduced_dims] if isinstance(reduced_dims, str) else reduced_dims
        for n in (reduced or []):
            if n in batch_names:
                raise ConfigError("Dense %r: the batch dim %r cannot be reduced (each "
                                  "replica holds only its shard of it)" % (self.name, n))
        self.dense = DenseModule(new_dims, reduced_dims=reduced, use_bias=use_bias,
                                 activation=activation, kernel_initializer=kernel_initializer,
                                 name=_identifier(self.name), variable_factory=self._make_weight)
        self.new_dims = new_dims
        self.reduced_dims = reduced
        self.use_bias = use_bias
        self.activation_name = activation if activation is None or isinstance(activation, str) \
            else None

    def build(self, input_shape):
        sizes = self._dim_sizes(input_shape)
        self.dense.build(Shape([Dimension(n, s) for n, s in sizes.items()]), self.mesh)
        super().build(input_shape)

    def _reduced_names(self):
        return self.reduced_dims if self.reduced_dims is not None else [self.axes.names[-1]]

    def compute_output_shape(self, input_shape):
        names = self.axes.names[self.axes.batch_dims:]
        kept = [s for n, s in zip(names, input_shape[1:]) if n not in self._reduced_names()]
        return (input_shape[0],) + tuple(kept) + tuple(d.size for d in self.dense.new_dims)

    def call(self, inputs):
        placeholder = self._placeholder(inputs)
        if placeholder is not None:
            return placeholder
        return self.plain_call(lambda x: self.dense(x), inputs, key="dense")

    def mtf_variables(self):
        return self.dense.mtf_variables()

    def get_config(self):
        config = super().get_config()
        config.update(new_dims=self.new_dims, reduced_dims=self.reduced_dims,
                      use_bias=self.use_bias, activation=self.activation_name)
        return config


__all__ = ["Dense", "MeshLayer", "MoE1D", "MoE2D", "ROUTING_METRICS"]
