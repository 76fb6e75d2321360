"""mtf's ``layers.dense`` family with named dims: ``reduced_dims`` in, ``new_dims`` out, per expert.

Variables carry mtf's names and axis order: ``<name>/kernel`` with dims
``expert_dims + reduced_dims + new_dims`` and ``<name>/bias`` with dims
``expert_dims + new_dims``.
"""

import functools
import math
from typing import Optional

from namedmesh.core import elementwise
from namedmesh.core.checks import check_float_tensor
from namedmesh.core.contraction import einsum
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor, multiply
from namedmesh.core.reshape import rename_dimension
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, ShapeError, WrongTypeError
from namedmesh.layers.initializers import (DenseInitializer, VarianceScalingInitializer,
                                           unit_scaling_convention)
from namedmesh.layers.variables import (VariableStore, current_store, variable_dtypes,
                                        zeros_initializer)


def dims_list(x) -> list:
    """A list of Dimensions from None, one dim (Dimension or ``"name:size"``), a Shape or a list."""
    if x is None:
        return []
    if isinstance(x, (Dimension, str)):
        return [convert_to_dimension(x)]
    if isinstance(x, Shape):
        return list(x.dims)
    if not isinstance(x, (list, tuple)):
        raise WrongTypeError("expected a dim ('name:size' or a Dimension) or a list of dims, got "
                             "%r (%s)" % (x, type(x).__name__))
    return [convert_to_dimension(d) for d in x]


def us_einsum(xs, output_shape=None, reduced_dims=None, name=None) -> Tensor:
    """``einsum``, divided by ``sqrt(size of the contracted dims)`` under the unit-scaling
    convention (mtf's ``layers.us_einsum``)."""
    xs = list(xs)
    y = einsum(xs, output_shape, reduced_dims)
    if unit_scaling_convention():
        names = {d.name for x in xs for d in x.shape.dims}
        reduced = [n for n in names if n not in y.shape]
        size = math.prod(next(d.size for x in xs for d in x.shape.dims if d.name == n)
                         for n in reduced)
        y = y * (size ** -0.5)
    return y


def get_dense_kernel_weights(x: Tensor, new_dims, reduced_dims, expert_dims=None,
                             kernel_initializer=None, name=None, variable_dtype=None,
                             master_dtype=None, slice_dtype=None,
                             store: Optional[VariableStore] = None) -> Tensor:
    """The kernel variable ``<name>/kernel`` with dims ``expert_dims + reduced_dims + new_dims``,
    cast to ``x``'s dtype.  Default init: ``VarianceScalingInitializer()`` (fan-in)."""
    del slice_dtype  # one copy per processor slice: there is no separate slice dtype
    store = current_store(store, "dense")
    new_dims, reduced_dims, expert_dims = dims_list(new_dims), dims_list(reduced_dims), dims_list(
        expert_dims)
    master, read_dtype = variable_dtypes(variable_dtype, master_dtype)
    if not master.is_floating:
        raise WrongTypeError("dense(%r): variables must have a floating dtype, got %s"
                             % (name or "dense", master.name))
    if kernel_initializer is None:
        kernel_initializer = VarianceScalingInitializer()
    if isinstance(kernel_initializer, DenseInitializer):
        kernel_initializer = kernel_initializer(reduced_dims, new_dims)
    with store.scope(name or "dense"):
        w = store.get_variable(x.mesh, "kernel", Shape(expert_dims + reduced_dims + new_dims),
                               initializer=kernel_initializer, dtype=master)
    return _read_as(w, read_dtype, x.dtype)


def _read_as(variable: Tensor, activation_dtype, dtype) -> Tensor:
    """A variable read as mtf reads it: in its activation dtype (``VariableDType``),
    then cast to the dtype of the computation.  A bfloat16 activation dtype rounds
    the float32 master copy even where the computation is float32 (mtf's router)."""
    if activation_dtype is not None and variable.dtype != activation_dtype:
        variable = cast(variable, activation_dtype)
    return cast(variable, dtype) if variable.dtype != dtype else variable


def dense(x: Tensor, new_dims, reduced_dims=None, expert_dims=None, use_bias: bool = True,
          activation=None, master_dtype=None, slice_dtype=None, variable_dtype=None,
          kernel_initializer=None, kernel_weights: Optional[Tensor] = None, name: str = None,
          store: Optional[VariableStore] = None) -> Tensor:
    """``activation(x[..., reduced] @ kernel[expert, reduced, new] + bias[expert, new])``.

    Args:
      x: input with dims ``[..., *reduced_dims]`` (and ``expert_dims`` if any).
      new_dims: output dims replacing ``reduced_dims`` (a dim or a list).
      reduced_dims: dims of ``x`` summed over; default: the last dim of ``x``
        (mtf's deprecated form).  A reduced dim named like a new dim is renamed
        ``_<name>`` in the kernel, as mtf does.
      expert_dims: dims of ``x`` along which each slice gets its own weights.
      kernel_weights: a kernel Tensor to use instead of the variable.
      name: the variable scope (default ``"dense"``; mtf would uniquify it).
      store: where the variables live (default: the store of ``store.as_default()``).
    Returns:
      dims ``[x dims without reduced_dims] + new_dims``.
    """
    check_tensor(x, "dense")
    check_float_tensor(x, "dense(%r)" % (name or "dense"))
    activation = _activation(activation, "dense")
    new_dims = dims_list(new_dims)
    reduced_dims = dims_list(reduced_dims) if reduced_dims is not None else [x.shape.dims[-1]]
    expert_dims = dims_list(expert_dims)
    label = name or "dense"
    for d in reduced_dims + expert_dims:
        if d not in x.shape:
            raise ShapeError("dense(%r): dim %s is not a dim of the input %s" % (label, d, x.shape))
    for i, d in enumerate(list(reduced_dims)):
        if any(n.name == d.name for n in new_dims):
            tmp = Dimension("_" + d.name, d.size)
            x = rename_dimension(x, d.name, tmp.name)
            reduced_dims[i] = tmp
    output_shape = Shape([d for d in x.shape.dims if d not in reduced_dims] + new_dims)
    if kernel_weights is not None:
        _check_kernel_weights(kernel_weights, expert_dims + reduced_dims + new_dims, label)
    else:
        kernel_weights = get_dense_kernel_weights(
            x, new_dims, reduced_dims, expert_dims, kernel_initializer, label, variable_dtype,
            master_dtype, store=store)
    y = us_einsum([x, kernel_weights], output_shape)
    if use_bias:
        store = current_store(store, "dense")
        master, read_dtype = variable_dtypes(variable_dtype, master_dtype)
        with store.scope(label):
            b = store.get_variable(x.mesh, "bias", Shape(expert_dims + new_dims),
                                   initializer=zeros_initializer, dtype=master)
        y = y + _read_as(b, read_dtype, y.dtype)
    if activation is not None:
        y = activation(y)
    return y


def _check_kernel_weights(kernel, dims, label: str):
    """A given kernel must hold exactly the dims dense would create (expert, reduced, new):
    anything else would be summed away or broadcast by the einsum without a word."""
    check_tensor(kernel, "dense(%r) kernel_weights" % label)
    expected = Shape(dims)
    if sorted(kernel.shape.dims) != sorted(expected.dims):
        raise ShapeError("dense(%r): kernel_weights has dims %s but the kernel's dims are %s "
                         "(expert_dims + reduced_dims + new_dims)" % (label, kernel.shape,
                                                                      expected))


def _activation(activation, op: str = "dense_product"):
    """None / "linear" / a namedmesh function name (mtf: a name in mtf's namespace) / a callable."""
    if activation is None or activation == "linear":
        return None
    if isinstance(activation, str):
        fn = getattr(elementwise, activation, None)
        if fn is None or not callable(fn) or activation.startswith("_"):
            raise ConfigError("%s: unknown activation %r (a namedmesh elementwise "
                              "function such as 'relu', 'gelu', 'sigmoid', or 'linear')"
                              % (op, activation))
        return fn
    if not callable(activation):
        raise ConfigError("%s: activation %r is neither a name nor a function"
                          % (op, activation))
    return activation


def dense_product(x: Tensor, reduced_dims, new_dims, activation_functions=None,
                  name: str = "dense_product", **kwargs) -> Tensor:
    """The product of one ``dense`` per activation (``["linear", "gelu"]`` is a gated GELU unit).

    Each factor is ``dense(x, new_dims, reduced_dims, activation=a, name="<name>_<i>")``
    (just ``name`` when there is one factor); ``kwargs`` go to ``dense``.
    Output dims: ``[x dims without reduced_dims] + new_dims``.
    """
    if not isinstance(activation_functions, list):
        activation_functions = [activation_functions]
    n = len(activation_functions)
    factors = [dense(x, new_dims, reduced_dims=reduced_dims, activation=_activation(a),
                     name="%s_%d" % (name, i) if n > 1 else name, **kwargs)
               for i, a in enumerate(activation_functions)]
    return functools.reduce(multiply, factors)


def dense_relu_dense(x: Tensor, hidden_channels, is_training: bool, dropout: float = 0.0,
                     dropout_broadcast_dims=None, master_dtype=None, slice_dtype=None,
                     name: str = None, store: Optional[VariableStore] = None,
                     seed=None) -> Tensor:
    """``wo(dropout(relu(wi(x))))`` without biases; output dims = x's dims.

    Variables ``<name>/wi/kernel`` ``[io, hidden]`` and ``<name>/wo/kernel``
    ``[hidden, io]`` where io is x's last dim (default name ``dense_relu_dense``).
    ``dropout`` (a rate) applies when ``is_training``; its mask is constant along
    ``dropout_broadcast_dims`` and drawn from ``seed`` (see ``namedmesh.dropout``).
    """
    from namedmesh.layers.noise import layer_dropout
    check_tensor(x, "dense_relu_dense")
    store = current_store(store, "dense_relu_dense")
    hidden_channels = convert_to_dimension(hidden_channels)
    io_channels = x.shape.dims[-1]
    with store.scope(name or "dense_relu_dense"):
        h = dense(x, hidden_channels, reduced_dims=[io_channels], use_bias=False,
                  activation=elementwise.relu, master_dtype=master_dtype, name="wi", store=store)
        h = layer_dropout(h, is_training, dropout, dropout_broadcast_dims, seed)
        return dense(h, io_channels, reduced_dims=[hidden_channels], use_bias=False,
                     master_dtype=master_dtype, name="wo", store=store)
