"""``Dense``: mtf's ``layers.dense`` as a ``tf.Module`` that owns its variables.

    proj = namedmesh.layers.Dense("d_ff:64", name="wi")
    h = proj(x)                     # x: [..., d_model] -> h: [..., d_ff]

The variables are ``dense``'s, with mtf's names and axis order (``<name>/kernel``
``[*expert_dims, *reduced_dims, *new_dims]``, ``<name>/bias`` ``[*expert_dims,
*new_dims]``), kept in the module's own ``VariableStore``; being a ``tf.Module``
they are tracked (``proj.trainable_variables``, ``tf.train.Checkpoint(proj=proj)``).
"""

import contextlib

import tensorflow as tf

from namedmesh.core.creation import zeros
from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.module import Module
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError
from namedmesh.layers.dense import _activation, dense, dims_list
from namedmesh.layers.variables import VariableStore


class Dense(Module):
    """``activation(x[..., reduced] @ kernel[expert, reduced, new] + bias[expert, new])``.

    Args:
      new_dims: the output dims replacing ``reduced_dims`` (``"d_ff:64"``, a
        Dimension or a list).
      reduced_dims: dim names (or dims) of the input summed over; default: the
        input's last dim.
      expert_dims: input dims along which each slice gets its own weights.
      use_bias: add ``<name>/bias``.
      activation: None, ``"linear"``, a namedmesh elementwise function name
        (``"relu"``, ``"gelu"``) or a function of a namedmesh Tensor.
      kernel_initializer: as ``dense``'s (default mtf's fan-in variance scaling).
      name: the variable scope (``<name>/kernel``) and the module's name.
      seed: the store's seed (initial values are drawn from it and the name).
      variable_factory: who makes the variables (see ``VariableStore``).

    Calling it with ``x [..., *reduced_dims]`` returns ``[..., *new_dims]``.
    """

    _UNTRACKED = frozenset(["new_dims", "reduced_names", "expert_names", "use_bias",
                            "activation", "kernel_initializer", "_built_for"])

    def __init__(self, new_dims, reduced_dims=None, expert_dims=None, use_bias: bool = True,
                 activation=None, kernel_initializer=None, name: str = "dense", seed: int = 0,
                 variable_factory=None):
        super().__init__(name=name)
        self.new_dims = dims_list(new_dims)
        if not self.new_dims:
            raise ShapeError("Dense(%r): new_dims must name at least one output dim, got %r"
                             % (name, new_dims))
        self.reduced_names = None if reduced_dims is None else [_name(d)
                                                                for d in _as_list(reduced_dims)]
        self.expert_names = [_name(d) for d in _as_list(expert_dims)]
        self.use_bias = bool(use_bias)
        self.activation = _activation(activation)
        self.kernel_initializer = kernel_initializer
        self.store = VariableStore(seed=seed, variable_factory=variable_factory,
                                   name=name + "_store")
        self._built_for = None

    def _dims_of(self, shape: Shape):
        """(reduced dims, expert dims) of an input of dims ``shape``, named errors."""
        names = self.reduced_names if self.reduced_names is not None else [shape.dims[-1].name]
        for n in names + self.expert_names:
            if n not in shape.names:
                raise ShapeError("Dense(%r): dim %r is not a dim of the input %s"
                                 % (self.name, n, shape))
        return ([shape.get(n) for n in names], [shape.get(n) for n in self.expert_names])

    def build(self, input_shape, mesh=None):
        """Create the variables for inputs with dims ``input_shape`` (only its reduced and
        expert dims matter).  Needed before running under a tf.distribute strategy (pass
        its mesh: the variables are then mirrored); otherwise the first call builds."""
        shape = convert_to_shape(input_shape)
        reduced, experts = self._dims_of(shape)
        key = tuple(experts + reduced)
        if self._built_for is not None:
            if self._built_for != key:
                raise ShapeError("Dense(%r) was built for input dims %s, called with %s"
                                 % (self.name, list(self._built_for), shape))
            return
        # run dense once, on one device, on a zero input holding just the dims that
        # decide the variables: it creates them exactly as the call will look them up
        from namedmesh.mesh.mesh import Mesh
        strategy = getattr(mesh, "strategy", None)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope, tf.init_scope():
            self._apply(zeros(Mesh(), Shape(experts + reduced)), reduced, experts)
        self._built_for = key

    def _apply(self, x: Tensor, reduced, experts) -> Tensor:
        return dense(x, self.new_dims, reduced_dims=reduced, expert_dims=experts,
                     use_bias=self.use_bias, activation=self.activation,
                     kernel_initializer=self.kernel_initializer, name=self.name,
                     store=self.store)

    def __call__(self, x: Tensor) -> Tensor:
        """``x [..., *reduced_dims]`` -> ``[..., *new_dims]``."""
        check_tensor(x, "Dense(%r)" % self.name)
        self.build(x.shape, x.mesh)
        reduced, experts = self._dims_of(x.shape)
        return self._apply(x, reduced, experts)

    def mtf_variables(self):
        """``{mtf_name: tf.Variable}``: ``<name>/kernel`` and ``<name>/bias``."""
        return self.store.variables()

    @property
    def trainable_variables(self):
        return self.store.trainable_variables


def _as_list(dims) -> list:
    """None, one dim (a name, ``"name:size"`` or a Dimension), a Shape, or a list of them."""
    if dims is None:
        return []
    if isinstance(dims, (str, Dimension)):
        return [dims]
    if isinstance(dims, Shape):
        return list(dims.dims)
    return list(dims)


def _name(d) -> str:
    if isinstance(d, str):
        return d.split(":")[0]
    name = getattr(d, "name", None)
    if not isinstance(name, str):
        raise ShapeError("Dense: expected a dim name or Dimension, got %r" % (d,))
    return name


__all__ = ["Dense"]
