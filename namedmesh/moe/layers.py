"""``MoE1D`` and ``MoE2D``: mtf's ``transformer_moe_layer_v1`` / ``_v2`` on namedmesh ops.

    layer = namedmesh.moe.MoE2D(expert_x=4, expert_y=4, hidden_size=32, group_size=8)
    y, aux_loss = layer(x, train=False)            # x: [outer_batch, batch, length, d_model]

The dimension names inside are mtf's (``experts``, ``expert_x``, ``expert_y``,
``expert_hidden``, ``expert_capacity_x``, ...; the groups reuse the batch dims'
names), because legacy layout rules name them.  The glossary of these dims is
in ``docs/glossary.md``.
"""

import contextlib
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from namedmesh.core import elementwise as ew
from namedmesh.core.checks import (check_flag, check_float_tensor, check_mesh,
                                   check_number_tensor, check_seed)
from namedmesh.core.creation import zeros
from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.core.module import Module
from namedmesh.core.random_ops import stateless_dropout
from namedmesh.core.reshape import reshape
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, MeshError, ShapeError, WrongTypeError
from namedmesh.layers.dense import dense
from namedmesh.lowering.trace import mark_step
from namedmesh.layers.variables import (VariableStore, checked_array,
                                        variance_scaling_initializer)
from namedmesh.moe.config import MoE1DConfig, MoE2DConfig
from namedmesh.moe.dispatch import make_dispatcher
from namedmesh.moe.gating import Seeds, switch_gating, top_2_gating
from namedmesh.moe.nonfinite import mask_nonfinite_tokens
from namedmesh.moe.dims import mesh_dim_size_of, moe1d_dims, moe2d_dims
from namedmesh.moe.stats import MoEStats

# TF name scopes of the layers' phases (the profile in benchmarks/profile_step.py groups op
# time by them; docs/performance.md)
PHASES = {"router": "moe_router", "dispatch": "moe_dispatch", "all_to_all": "moe_all_to_all",
          "expert_ffn": "moe_expert_ffn", "combine": "moe_combine"}

ACTIVATION_FNS = {"relu": ew.relu, "gelu": ew.gelu, "sigmoid": ew.sigmoid, "tanh": ew.tanh,
                  "swish": ew.silu, "silu": ew.silu, "softplus": ew.softplus,
                  "square": ew.square, "linear": None, None: None}


class _MoELayer(Module):
    """Common part of the MoE layers.  A ``tf.Module``: its variables (``layer.variables``,
    ``layer.trainable_variables``) are tracked, so ``tf.train.Checkpoint(layer=layer)``
    saves them and ``tf.saved_model.save`` exports them (see ``namedmesh.serving``)."""

    config_cls = None
    layer_name = ""
    # plain Python state a tf.Module must not wrap for tracking (numpy arrays, results)
    _UNTRACKED = frozenset(["config", "_loaded", "_built_dims", "last_stats",
                            "counts_steps"])

    def __init__(self, name: Optional[str] = None, variable_factory=None, **kwargs):
        known = [f for f in self.config_cls.__dataclass_fields__]
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise ConfigError("%s: unknown keyword %s (known: %s)"
                              % (self.layer_name, ", ".join(repr(k) for k in unknown),
                                 ", ".join(known)))
        self._setup(self.config_cls(**kwargs), name, variable_factory)

    def _setup(self, config, name=None, variable_factory=None):
        tf.Module.__init__(self, name=name or self.layer_name.lower())
        self.config = config
        self.store = VariableStore(seed=0, variable_factory=variable_factory)
        self._loaded: Optional[Dict[str, np.ndarray]] = None
        self._built_dims = None
        self._built_strategy = None
        self._step = None
        self.counts_steps = True   # keep a step counter for the random policies' seeds
        self.last_stats: Optional[MoEStats] = None

    @classmethod
    def from_hparams(cls, hparams, name: Optional[str] = None, variable_factory=None):
        """The layer from mtf hparams (a dict or attribute object with ``moe_*`` names)."""
        layer = cls.__new__(cls)
        layer._setup(cls.config_cls.from_hparams(hparams), name, variable_factory)
        return layer

    def __repr__(self):
        return "%s(%s)" % (self.layer_name, ", ".join(
            "%s=%r" % kv for kv in self.config.to_kwargs().items()))

    # -- variables -----------------------------------------------------------------
    def variable_shapes(self, d_model: Dimension) -> Dict[str, Shape]:
        """``{mtf_name: Shape}`` of every variable, dims in mtf's order."""
        raise NotImplementedError

    @staticmethod
    def _fan_in(shape: Shape) -> int:
        """Fan-in of a kernel ``[*experts, reduced, new]``: the reduced dim's size."""
        return shape.dims[-2].size

    def build(self, input_shape, mesh=None):
        """Create the variables for inputs of ``input_shape`` (its last dim is d_model).

        Needed before running under a tf.distribute strategy (pass its mesh, the
        variables are then mirrored); on the placement executor the first call builds.
        """
        shape = convert_to_shape(input_shape)
        if shape is None or shape.ndims == 0:
            raise ShapeError("%s.build: input_shape must end with d_model, got %r"
                             % (self.layer_name, input_shape))
        if mesh is not None:
            check_mesh(mesh, "%s.build" % self.layer_name)
        d_model = shape.dims[-1]
        if self._built_dims is not None:
            if self._built_dims != d_model:
                raise ConfigError("%s was built for d_model %s, called with %s"
                                  % (self.layer_name, self._built_dims, d_model))
            return
        shapes = self.variable_shapes(d_model)
        if self._loaded is not None:
            self._check_arrays(self._loaded, shapes)
        strategy = getattr(mesh, "strategy", None)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            for name, shape in shapes.items():
                fan_in = self._fan_in(shape)
                init = variance_scaling_initializer([Dimension("fan_in", fan_in)])
                value = self._loaded.get(name) if self._loaded is not None else None
                self.store.create(name, shape, initializer=init, value=value)
            if strategy is None and self.counts_steps:
                with tf.init_scope():
                    self._step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="moe_step")
        self._built_dims = d_model
        self._built_strategy = strategy
        self._loaded = None

    def mtf_variables(self) -> Dict[str, tf.Variable]:
        """``{mtf_name: tf.Variable}`` (after build or the first call)."""
        return self.store.variables()

    @property
    def trainable_variables(self):
        """The weights in creation order (mtf's order of ``variable_shapes``)."""
        return self.store.trainable_variables

    def load_mtf_variables(self, arrays: Dict[str, np.ndarray]):
        """Set the weights from ``{mtf_name: array}`` in mtf's axis order.

        A missing, extra or wrongly shaped variable is a ConfigError naming it.
        Works before the first call (d_model is read off the arrays) and after.
        """
        if not isinstance(arrays, dict):
            raise WrongTypeError("%s.load_mtf_variables expects {mtf_name: array}, got %s"
                                 % (self.layer_name, type(arrays).__name__))
        arrays = {k: checked_array(k, v, "%s.load_mtf_variables" % self.layer_name)
                  for k, v in arrays.items()}
        gate = self.gating_variable_names()[0]
        if gate not in arrays:
            self._check_names(arrays, self.expected_names())
        if arrays[gate].ndim != 2:
            raise ConfigError("%s: variable %r has shape %s, expected [d_model, experts]"
                              % (self.layer_name, gate, tuple(arrays[gate].shape)))
        d_model = self._built_dims or Dimension("d_model", int(arrays[gate].shape[0]))
        shapes = self.variable_shapes(d_model)
        self._check_arrays(arrays, shapes)
        if self._built_dims is None:
            self._loaded = arrays
        else:
            for name, var in self.store.variables().items():
                var.assign(arrays[name].astype(var.dtype.as_numpy_dtype))

    def expected_names(self):
        return list(self.variable_shapes(Dimension("d_model", 1)))

    def gating_variable_names(self):
        raise NotImplementedError

    def _check_names(self, arrays, expected):
        missing = [n for n in expected if n not in arrays]
        extra = [n for n in arrays if n not in expected]
        if missing:
            raise ConfigError("%s: variable %s is missing (expected %s)"
                              % (self.layer_name, ", ".join(repr(n) for n in missing), expected))
        if extra:
            raise ConfigError("%s: unexpected variable %s (expected %s)"
                              % (self.layer_name, ", ".join(repr(n) for n in extra), expected))

    def _check_arrays(self, arrays, shapes):
        self._check_names(arrays, list(shapes))
        for name, shape in shapes.items():
            if tuple(arrays[name].shape) != shape.sizes:
                raise ConfigError("%s: variable %r has shape %s, expected %s %s"
                                  % (self.layer_name, name, tuple(arrays[name].shape),
                                     shape.sizes, shape))

    # -- calling ---------------------------------------------------------------------
    def _check_call(self, x, train, nonpadding, seed):
        """The call's arguments, checked before anything is built or run."""
        name = self.layer_name
        if not isinstance(x, Tensor):
            raise WrongTypeError("%s expects a namedmesh.Tensor, got %s" % (name,
                                                                          type(x).__name__))
        check_float_tensor(x, name)
        check_flag(train, "%s: train" % name)
        check_seed(seed, "%s: seed" % name)
        if nonpadding is not None:
            if not isinstance(nonpadding, Tensor):
                raise WrongTypeError("%s: nonpadding must be a namedmesh.Tensor with x's dims "
                                     "without the last (%s), got %s"
                                     % (name, x.shape.dims[:-1], type(nonpadding).__name__))
            if nonpadding.mesh is not x.mesh:
                raise MeshError("%s: nonpadding lives on mesh %s but x on mesh %s"
                                % (name, nonpadding.mesh.describe(), x.mesh.describe()))
            if nonpadding.dtype != tf.bool:
                check_number_tensor(nonpadding, name, "nonpadding")
            expected = Shape(x.shape.dims[:-1])
            if sorted(nonpadding.shape.dims) != sorted(expected.dims):
                raise ConfigError("%s: nonpadding has dims %s, expected x's dims without the "
                                  "last: %s" % (name, nonpadding.shape, expected))
        strategy = getattr(x.mesh, "strategy", None)
        if strategy is None:
            return  # variables of any strategy can be read on a placement mesh
        if self._built_dims is not None and self._built_strategy is not strategy:
            raise MeshError(
                "%s was built %s but is called on mesh %s, whose variables must be created under "
                "its strategy: build the layer with that mesh, layer.build(input_shape, mesh)"
                % (name, "without a tf.distribute strategy" if self._built_strategy is None
                   else "under another %s" % type(self._built_strategy).__name__,
                   x.mesh.describe()))
        if self._built_dims is None and tf.distribute.has_strategy() and \
                tf.distribute.get_replica_context() is not None:
            raise ConfigError("%s is called inside mesh.run before it was built; variables "
                              "cannot be created per replica: call layer.build(%r, mesh) "
                              "before mesh.run" % (name, x.shape.to_string()))

    def _mask_nonfinite(self, inputs, importance):
        """``(inputs, importance, masked)``: with ``nonfinite_tokens="mask"`` the tokens that
        hold NaN or infinity zeroed and made padding (``moe/nonfinite.py``); with ``"mtf"``
        everything as it is."""
        if self.config.nonfinite_tokens == "mtf":
            return inputs, importance, None
        return mask_nonfinite_tokens(inputs, importance)

    def _seeds(self, seed, train):
        if seed is not None:
            return Seeds(seed)
        if train and self._uses_randomness(train):
            if self._step is None:
                raise ConfigError(
                    "%s: train mode with a random policy needs seed=<step> under a "
                    "tf.distribute strategy (the draw must agree on every replica)"
                    % self.layer_name)
            return Seeds(self._step.assign_add(1))
        return Seeds(0)

    def dispatcher_for(self, mesh):
        """The dispatcher this layer uses on ``mesh`` (its ``dispatch`` option; "auto":
        one-hot einsums under a TPUStrategy, index gathers elsewhere)."""
        return make_dispatcher(self.config.dispatch, mesh)

    def _uses_randomness(self, train) -> bool:
        return (self.config.second_policy_train if train else
                self.config.second_policy_eval) == "random"

    def __call__(self, x: Tensor, train: bool = False, nonpadding: Optional[Tensor] = None,
                 seed=None, return_stats: bool = False):
        """``y, aux_loss = layer(x)``; with ``return_stats=True`` also the ``MoEStats``.

        x: the input, ``[..., d_model]`` (see the layer's docstring for the dims).
        nonpadding: optional, x's dims without d_model: 1.0 for real tokens, 0.0 padding.
        seed: int or int tensor for the random policies (default: a step counter).
        Returns y with x's dims, the aux loss (a scalar namedmesh Tensor, already
        times ``loss_coef``), and the stats (also kept as ``layer.last_stats``).
        """
        self._check_call(x, train, nonpadding, seed)
        self.build(x.shape, x.mesh)
        check_flag(return_stats, "%s: return_stats" % self.layer_name)
        y, loss, stats = self._forward(x, train, nonpadding, self._seeds(seed, train))
        self.last_stats = stats
        return (y, loss, stats) if return_stats else (y, loss)

    def _expert_ffn(self, expert_inputs, reduced, hidden_dim, output_dim, expert_dims,
                    activations, train, seeds, dropout_rate=0.0):
        """``wi`` (with activation), optional dropout, ``wo``: mtf's expert feed-forward."""
        acts = activations if isinstance(activations, list) else [activations]
        h = None
        for i, act in enumerate(acts):
            name = "wi_%d" % i if len(acts) > 1 else "wi"
            factor = dense(expert_inputs, hidden_dim, reduced_dims=reduced,
                           expert_dims=expert_dims, use_bias=False, name=name,
                           activation=ACTIVATION_FNS[act], store=self.store)
            h = factor if h is None else h * factor
        if train and dropout_rate:
            h = stateless_dropout(h, dropout_rate, seeds.next())
        mark_step("expert hidden", h)
        return dense(h, output_dim, reduced_dims=[hidden_dim], expert_dims=expert_dims,
                     use_bias=False, name="wo", store=self.store)


class MoE1D(_MoELayer):
    """mtf's ``transformer_moe_layer_v1``: one level of experts, top-2 or Switch gating.

    Input ``[outer_batch?, batch, length, d_model]`` (any number of batch/length
    dims; ``outer_batch`` first replicates experts); ``[batch, d_model]`` gets a
    length dim of 1.  Inside: ``[outer_batch, batch=groups, group, d_model]``,
    dispatch ``[..., group, expert_unsplit, expert_capacity]``, experts
    ``[outer_batch, experts, batch_unsplit, expert_capacity, d_model]``.
    """

    config_cls = MoE1DConfig
    layer_name = "MoE1D"

    def gating_variable_names(self):
        return ["%s/kernel" % ("switch_gating" if self.config.moe_gating == "switch"
                               else "top_2_gating")]

    def _output_dim(self, d_model):
        out = self.config.output_dim
        return d_model if out is None or out == d_model.size else Dimension(d_model.name, out)

    def variable_shapes(self, d_model):
        c = self.config
        experts = Dimension("experts", c.num_experts)
        hidden = Dimension("expert_hidden", c.hidden_size)
        shapes = {self.gating_variable_names()[0]: Shape([d_model, Dimension("expert_unsplit",
                                                                             c.num_experts)])}
        acts = c.activation if isinstance(c.activation, list) else [c.activation]
        for i in range(len(acts)):
            shapes["wi_%d/kernel" % i if len(acts) > 1 else "wi/kernel"] = Shape(
                [experts, d_model, hidden])
        shapes["wo/kernel"] = Shape([experts, hidden, self._output_dim(d_model)])
        return shapes

    def _uses_randomness(self, train):
        c = self.config
        if c.moe_gating == "switch":
            policy = c.switch_policy_train if train else c.switch_policy_eval
            return train and (policy != "argmax" or c.dropout_rate > 0)
        return super()._uses_randomness(train) or (train and c.dropout_rate > 0)

    def _forward(self, x, train, nonpadding, seeds):
        c = self.config
        mesh = x.mesh
        no_length = x.shape.ndims == 2
        x_shape = x.shape
        if no_length:
            x = reshape(x, Shape([x.shape.dims[0], Dimension("length", 1), x.shape.dims[1]]))
            if nonpadding is not None:
                nonpadding = reshape(nonpadding, Shape([nonpadding.shape.dims[0],
                                                        Dimension("length", 1)]))
        mark_step("input", x)
        dims = moe1d_dims(c, x.shape, mesh, train)
        batch_and_length, input_dim = list(x.shape.dims[:-1]), dims.d_model
        output_dim, hidden_dim, experts_dim = dims.output, dims.hidden, dims.experts
        outer_batch_dim, num_groups_dim = dims.outer_batch, dims.groups
        moe_input_dims = [outer_batch_dim, num_groups_dim, dims.group_size, input_dim]
        inputs = reshape(x, Shape(moe_input_dims))
        mark_step("grouped input", inputs)
        capacity_dim = dims.capacity
        experts_dim_unsplit = dims.experts_unsplit
        batch_dim_unsplit = dims.groups_unsplit
        if nonpadding is not None:
            nonpadding = zeros(mesh, Shape(batch_and_length), x.dtype) + ew.cast(nonpadding,
                                                                                 x.dtype)
            nonpadding = reshape(nonpadding, Shape(moe_input_dims[:-1]))
        inputs, nonpadding, nonfinite = self._mask_nonfinite(inputs, nonpadding)
        gating_fn = switch_gating if c.moe_gating == "switch" else top_2_gating
        with tf.name_scope(PHASES["router"]):
            gating = gating_fn(inputs, None, experts_dim_unsplit, capacity_dim, c, train,
                               self.store, self.gating_variable_names()[0].split("/")[0],
                               importance=nonpadding, seeds=seeds, nonfinite=nonfinite)
        dispatcher = self.dispatcher_for(mesh)
        with tf.name_scope(PHASES["dispatch"]):
            expert_inputs = dispatcher.dispatch(inputs, gating, Shape(
                [outer_batch_dim, experts_dim_unsplit, num_groups_dim, capacity_dim, input_dim]),
                step="dispatch tensor")
            mark_step("expert input", expert_inputs)
        d_model_split = Dimension("d_model_split", input_dim.size)
        with tf.name_scope(PHASES["all_to_all"]):
            expert_inputs = reshape(expert_inputs, Shape(
                [outer_batch_dim, experts_dim, batch_dim_unsplit, capacity_dim, d_model_split]))
            expert_inputs = reshape(expert_inputs, Shape(
                [outer_batch_dim, experts_dim, batch_dim_unsplit, capacity_dim, input_dim]))
            mark_step("all-to-all to experts", expert_inputs)
        with tf.name_scope(PHASES["expert_ffn"]):
            expert_output = self._expert_ffn(expert_inputs, [input_dim], hidden_dim, output_dim,
                                             [experts_dim], c.activation, train, seeds,
                                             c.dropout_rate)
            mark_step("expert output", expert_output)
        d_model_split = Dimension("d_model_split", output_dim.size)
        with tf.name_scope(PHASES["all_to_all"]):
            expert_output = reshape(expert_output, Shape(
                [outer_batch_dim, experts_dim_unsplit, num_groups_dim, capacity_dim,
                 d_model_split]))
            expert_output = reshape(expert_output, Shape(
                [outer_batch_dim, experts_dim_unsplit, num_groups_dim, capacity_dim,
                 output_dim]))
            mark_step("all-to-all back from experts", expert_output)
        with tf.name_scope(PHASES["combine"]):
            output = dispatcher.combine(expert_output, gating,
                                        Shape(moe_input_dims[:-1] + [output_dim]))
            mark_step("combine", output)
        output = reshape(output, Shape(batch_and_length + [output_dim]))
        mark_step("output", output)
        if no_length:
            output = reshape(output, Shape(list(x_shape.dims[:-1]) + [output_dim]))
        return output, gating.loss * c.loss_coef, MoEStats({"experts": gating.stats})


class MoE2D(_MoELayer):
    """mtf's ``transformer_moe_layer_v2``: two levels of experts (``expert_x`` groups of
    ``expert_y`` experts), hierarchical top-2 gating.

    Input ``[outer_batch, batch, length, d_model]`` (``[batch, length, d_model]``
    gets an outer_batch of 1).  See docs/glossary.md for every dim inside.
    """

    config_cls = MoE2DConfig
    layer_name = "MoE2D"

    def gating_variable_names(self):
        return ["outer_gating/kernel", "inner_gating/kernel"]

    def variable_shapes(self, d_model):
        c = self.config
        x1 = Dimension("expert_x", c.expert_x)
        y0 = Dimension("expert_y", c.expert_y)
        hidden = Dimension("expert_hidden", c.hidden_size)
        return {
            "outer_gating/kernel": Shape([d_model, Dimension("expert_x_unsplit", c.expert_x)]),
            "inner_gating/kernel": Shape([x1, d_model, Dimension("expert_y_unsplit",
                                                                 c.expert_y)]),
            "wi/kernel": Shape([y0, x1, d_model, hidden]),
            "wo/kernel": Shape([y0, x1, hidden, d_model]),
        }

    def _forward(self, inputs, train, nonpadding, seeds):
        c = self.config
        mesh = inputs.mesh
        if nonpadding is not None:
            nonpadding = zeros(mesh, Shape(inputs.shape.dims[:-1]), inputs.dtype) + ew.cast(
                nonpadding, inputs.dtype)
        insert_outer_batch_dim = inputs.shape.ndims == 3
        if insert_outer_batch_dim:
            inputs = reshape(inputs, Shape([Dimension("outer_batch", 1)] + list(inputs.shape.dims)))
            if nonpadding is not None:
                nonpadding = reshape(nonpadding, Shape([Dimension("outer_batch", 1)]
                                                       + list(nonpadding.shape.dims)))
        mark_step("input", inputs)
        dims = moe2d_dims(c, inputs.shape, mesh, train)
        # mtf's cheat-sheet letters, as in transformer_moe_layer_v2 (see moe/glossary.py)
        a0, b1, l, m, n = dims.outer_batch, dims.batch, dims.length, dims.d_model, dims.output
        g1, g, s = dims.groups_x, dims.groups_x_unsplit, dims.group_size_x
        x1, x, cap_x = dims.experts_x, dims.experts_x_unsplit, dims.capacity_x
        h0, h, t = dims.groups_y, dims.groups_y_unsplit, dims.group_size_y
        y0, y, cap_y = dims.experts_y, dims.experts_y_unsplit, dims.capacity_y
        hidden_dim = dims.hidden

        inputs = reshape(inputs, Shape([a0, g1, s, m]))
        mark_step("grouped input", inputs)
        if nonpadding is not None:
            nonpadding = reshape(nonpadding, Shape([a0, g1, s]))
        inputs, nonpadding, nonfinite = self._mask_nonfinite(inputs, nonpadding)
        dispatcher = self.dispatcher_for(mesh)
        with tf.name_scope(PHASES["router"]):
            outer = top_2_gating(inputs, None, x, cap_x, c, train, self.store, "outer_gating",
                                 importance=nonpadding, seeds=seeds, nonfinite=nonfinite)
        with tf.name_scope(PHASES["dispatch"]):
            expert_inputs_x = dispatcher.dispatch(inputs, outer, Shape([x, a0, g1, cap_x, m]),
                                                  step="outer dispatch tensor")
            mark_step("outer expert input", expert_inputs_x)
            # importance for the second level: 1.0 first choice, 0.5 second, 0.0 none
            importance = dispatcher.slot_weights(outer, Shape([x, a0, g1, cap_x]))
            importance = 0.5 * (ew.to_float(ew.greater(importance, 0.5))
                                + ew.to_float(ew.greater(importance, 0.0)))
        with tf.name_scope(PHASES["all_to_all"]):
            # first level all-to-all: the split moves from g1 to x1
            expert_inputs_x = reshape(expert_inputs_x, Shape([x1, a0, g, cap_x, m]))
            mark_step("all-to-all to expert_x", expert_inputs_x)
            importance = reshape(importance, Shape([x1, a0, g, cap_x]))
            mark_step("importance all-to-all to expert_x", importance)
        # second level groups reuse the name of a0: this reshape is free
        inputs_y = reshape(expert_inputs_x, Shape([x1, h0, t, m]))
        mark_step("second-level groups", inputs_y)
        importance = reshape(importance, Shape([x1, h0, t]))
        with tf.name_scope(PHASES["router"]):
            inner = top_2_gating(inputs_y, [x1], y, cap_y, c, train, self.store, "inner_gating",
                                 importance=importance, seeds=seeds)
        with tf.name_scope(PHASES["dispatch"]):
            expert_inputs_y = dispatcher.dispatch(inputs_y, inner, Shape([y, x1, h0, cap_y, m]),
                                                  step="inner dispatch tensor")
            mark_step("inner expert input", expert_inputs_y)
        with tf.name_scope(PHASES["all_to_all"]):
            # second level all-to-all: the split moves from h0 to y0
            expert_inputs_y = reshape(expert_inputs_y, Shape([y0, x1, h, cap_y, m]))
            mark_step("all-to-all to expert_y", expert_inputs_y)
        with tf.name_scope(PHASES["expert_ffn"]):
            expert_output = self._expert_ffn(expert_inputs_y, [m], hidden_dim, n, [y0, x1],
                                             "relu", train, seeds)
            mark_step("expert output", expert_output)
        # and back: all-to-all y0 -> h0, combine, free reshape, all-to-all x1 -> g1, combine
        with tf.name_scope(PHASES["all_to_all"]):
            expert_output = reshape(expert_output, Shape([y, x1, h0, cap_y, n]))
            mark_step("all-to-all back from expert_y", expert_output)
        with tf.name_scope(PHASES["combine"]):
            output_y = dispatcher.combine(expert_output, inner, Shape([x1, h0, t, n]))
            mark_step("inner combine", output_y)
        output = reshape(output_y, Shape([x1, a0, g, cap_x, n]))
        mark_step("first-level layout", output)
        with tf.name_scope(PHASES["all_to_all"]):
            expert_output_x = reshape(output, Shape([x, a0, g1, cap_x, n]))
            mark_step("all-to-all back from expert_x", expert_output_x)
        with tf.name_scope(PHASES["combine"]):
            output_x = dispatcher.combine(expert_output_x, outer, Shape([a0, g1, s, n]))
            mark_step("outer combine", output_x)
        output = reshape(output_x, Shape([a0, b1, l, n]))
        mark_step("output", output)
        if insert_outer_batch_dim:
            output = reshape(output, Shape([b1, l, n]))
        loss = (outer.loss + inner.loss) * c.loss_coef
        return output, loss, MoEStats({"outer": outer.stats, "inner": inner.stats})


__all__ = ["MoE1D", "MoE2D", "mesh_dim_size_of"]
