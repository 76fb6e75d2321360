"""Variables by mtf name: ``VariableStore`` creates and keeps ``tf.Variable``s.

Variables are held whole (the "master" copy, axes in mtf's dimension order);
each use imports them onto the mesh, where every processor keeps its slice.
Gradients with respect to the master variable sum over all slices and copies.

Layers find their store as ``store=`` or, as mtf code expects (no store
argument), the store made current by ``with store.as_default():``.

A store is a ``tf.Module``: its variables are tracked (``store.variables``,
``tf.train.Checkpoint(store=store)``, ``tf.saved_model.save``), under their
mtf names.  ``variable_factory`` lets a framework own the variables instead
(the Keras wrappers make them Keras weights, see ``namedmesh.keras``).
"""

import dataclasses
import contextlib
import hashlib
import math
import weakref
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import as_dtype, check_seed
from namedmesh.core.control import register_context_capture
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.module import Module
from namedmesh.core.tensor import Tensor, import_tf_tensor
from namedmesh.errors import ConfigError, ShapeError, WrongTypeError

Initializer = Callable[[Shape, tf.DType, int], tf.Tensor]


def _initializer(fn) -> Initializer:
    fn.namedmesh_initializer = True
    return fn


def truncated_normal_initializer(stddev: float, mean: float = 0.0) -> Initializer:
    """Truncated normal (at 2 stddev), as ``tf.truncated_normal_initializer``."""
    @_initializer
    def init(shape: Shape, dtype, seed: int):
        return tf.random.stateless_truncated_normal(shape.sizes, seed=[seed, 0], mean=mean,
                                                    stddev=stddev, dtype=dtype)
    return init


def random_normal_initializer(stddev: float = 1.0, mean: float = 0.0) -> Initializer:
    """Normal values, as ``tf.random_normal_initializer`` (mtf's embedding and attention init)."""
    @_initializer
    def init(shape: Shape, dtype, seed: int):
        return tf.random.stateless_normal(shape.sizes, seed=[seed, 0], mean=mean, stddev=stddev,
                                          dtype=dtype)
    return init


def random_uniform_initializer(minval: float, maxval: float) -> Initializer:
    """Uniform values in ``[minval, maxval)``, as ``tf.random_uniform_initializer``."""
    @_initializer
    def init(shape: Shape, dtype, seed: int):
        return tf.random.stateless_uniform(shape.sizes, seed=[seed, 0], minval=minval,
                                           maxval=maxval, dtype=dtype)
    return init


def constant_initializer(value) -> Initializer:
    """Every element ``value`` (a scalar)."""
    @_initializer
    def init(shape: Shape, dtype, seed: int):
        return tf.fill(shape.sizes, tf.cast(value, dtype))
    return init


def variance_scaling_initializer(reduced_dims, scale: float = 1.0) -> Initializer:
    """mtf's default dense init: truncated normal, stddev ``sqrt(scale / fan_in)``."""
    fan_in = 1
    for d in reduced_dims:
        fan_in *= d.size
    return truncated_normal_initializer(math.sqrt(scale / max(1.0, fan_in)))


@_initializer
def glorot_uniform_initializer(shape: Shape, dtype, seed: int):
    """Uniform in ``[-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``: TensorFlow's
    default for ``tf.get_variable`` (mtf's ``get_variable`` without an initializer).  Fans as
    TF computes them: the last two axes times the product of the others (the receptive field)."""
    sizes = shape.sizes
    if len(sizes) == 0:
        fan_in = fan_out = 1
    elif len(sizes) == 1:
        fan_in = fan_out = sizes[0]
    else:
        receptive = math.prod(sizes[:-2])
        fan_in, fan_out = sizes[-2] * receptive, sizes[-1] * receptive
    limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
    return tf.random.stateless_uniform(sizes, seed=[seed, 0], minval=-limit, maxval=limit,
                                       dtype=dtype)


@_initializer
def zeros_initializer(shape: Shape, dtype, seed: int):
    return tf.zeros(shape.sizes, dtype)


@_initializer
def ones_initializer(shape: Shape, dtype, seed: int):
    return tf.ones(shape.sizes, dtype)


def as_initializer(init, what: str = "initializer") -> Optional[Initializer]:
    """A namedmesh initializer from ``init``.

    Accepts namedmesh initializers, Keras / TF initializer objects and plain
    functions called as ``init(sizes, dtype=dtype)`` (how mtf's code and tests
    write them: ``lambda shape, dtype, **kw: values``).
    """
    if init is None or getattr(init, "namedmesh_initializer", False):
        return init
    if not callable(init):
        raise ConfigError("%s: %r is not callable; pass an initializer such as "
                          "namedmesh.layers.random_normal_initializer(0.02)" % (what, init))

    @_initializer
    def adapted(shape: Shape, dtype, seed: int):
        return tf.convert_to_tensor(init(list(shape.sizes), dtype=dtype), dtype)
    return adapted


def checked_array(name, value, op: str) -> np.ndarray:
    """``value`` as a NumPy array of numbers, for the variable ``name``: strings, objects
    and ragged lists are errors naming the variable, and so are NaN and infinity (a
    diverged checkpoint would otherwise load and poison every output)."""
    if not isinstance(name, str) or not name:
        raise WrongTypeError("%s: variable names must be non-empty strings, got %r" % (op, name))
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise WrongTypeError("%s: the value for variable %r is not an array: %s"
                             % (op, name, str(e).splitlines()[0])) from None
    if array.dtype.kind not in "biuf":
        raise WrongTypeError("%s: the value for variable %r has dtype %s; expected numbers"
                             % (op, name, array.dtype))
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ConfigError("%s: the value for variable %r holds %d NaN or infinite value(s) of "
                          "%d" % (op, name, bad, array.size))
    return array


_DEFAULT_STORES = []
_ALL_STORES = weakref.WeakSet()


def current_store(store: Optional["VariableStore"], op: str) -> "VariableStore":
    """``store`` if given, else the innermost ``with store.as_default():`` store."""
    if store is not None:
        return store
    if _DEFAULT_STORES:
        return _DEFAULT_STORES[-1]
    raise ConfigError("%s: no variable store; pass store=namedmesh.VariableStore() or call it "
                      "inside `with store.as_default():`" % op)


@dataclasses.dataclass(frozen=True)
class VariableDType:
    """mtf's ``VariableDType``: the dtype a variable is stored in (``master_dtype``),
    kept per slice in (``slice_dtype``; namedmesh keeps one copy, in the master dtype)
    and read in (``activation_dtype``)."""

    master_dtype: tf.DType = tf.float32
    slice_dtype: tf.DType = tf.float32
    activation_dtype: tf.DType = tf.float32


def variable_dtypes(variable_dtype=None, master_dtype=None, activation_dtype=None):
    """``(master dtype, activation dtype)`` from mtf's ways of saying them.

    ``variable_dtype``: None, a ``tf.DType`` (the master dtype) or an object
    with ``master_dtype`` and ``activation_dtype`` (mtf's ``VariableDType``).
    The master dtype defaults to float32, the activation dtype to ``activation_dtype``.
    """
    master = as_dtype(master_dtype or tf.float32, "variables", "master_dtype")
    activation = as_dtype(activation_dtype, "variables", "activation_dtype") \
        if activation_dtype is not None else None
    if variable_dtype is not None:
        if hasattr(variable_dtype, "master_dtype"):
            master = as_dtype(variable_dtype.master_dtype, "variables", "master_dtype")
            if getattr(variable_dtype, "activation_dtype", None) is not None:
                activation = as_dtype(variable_dtype.activation_dtype, "variables",
                                      "activation_dtype")
        else:
            master = as_dtype(variable_dtype, "variables", "variable_dtype")
    return master, activation


VariableFactory = Callable[[str, Shape, tf.Tensor, tf.DType, bool], tf.Variable]
"""``factory(mtf_name, shape, initial_value, dtype, trainable) -> tf.Variable``: makes
one variable of a store (called once per variable, in the eager context)."""


def default_variable_factory(full_name: str, shape: Shape, initial_value, dtype,
                             trainable: bool) -> tf.Variable:
    """A plain ``tf.Variable`` (mirrored when created in a strategy's scope)."""
    del shape
    return tf.Variable(initial_value, dtype=dtype, trainable=trainable,
                       name=full_name.replace("/", "_"))


class StoreVariables(tuple):
    """A store's variables in creation order (a tuple, as ``tf.Module.variables``).

    Calling it returns ``{mtf_name: tf.Variable}``: ``store.variables()``, the
    store's lookup by mtf name, keeps working now that the store is a ``tf.Module``.
    """

    def __new__(cls, by_name: Dict[str, tf.Variable]):
        out = super().__new__(cls, tuple(by_name.values()))
        out._by_name = dict(by_name)
        return out

    def __call__(self) -> Dict[str, tf.Variable]:
        return dict(self._by_name)


class VariableStore(Module):
    """Creates variables on first request and returns the same ones afterwards.

    Names are mtf's: ``scope/.../name`` (``with store.scope("wi"):`` then
    ``get_variable(mesh, "kernel", ...)`` makes ``wi/kernel``).  Initial values
    are drawn from ``seed`` and the variable's name, so a store is reproducible;
    ``values`` (``{mtf_name: array}``, e.g. read from an mtf checkpoint) gives
    the initial value of the variables it names instead.

    A ``tf.Module``: ``store.variables`` / ``store.trainable_variables`` list its
    variables in creation order, and ``tf.train.Checkpoint(store=store)`` saves
    them by mtf name.  ``variable_factory`` (see ``VariableFactory``) makes each
    variable; the default is a plain ``tf.Variable``.
    """

    # bookkeeping that must not become checkpoint dependencies (a tf.Module would
    # wrap these lists and dicts for tracking, and refuse to save a list popped from)
    _UNTRACKED = frozenset(["seed", "_shapes", "_scope", "_pending", "variable_factory"])

    def __init__(self, seed: int = 0, values: Optional[Dict[str, np.ndarray]] = None,
                 variable_factory: Optional[VariableFactory] = None, name: str = "store"):
        if seed is None or isinstance(seed, (tf.Tensor, tf.Variable)):
            raise WrongTypeError("VariableStore: seed must be a Python integer, got %r" % (seed,))
        super().__init__(name=name)
        self.seed = int(check_seed(seed, "VariableStore"))
        self.variable_factory = variable_factory or default_variable_factory
        self._variables: Dict[str, tf.Variable] = {}   # tracked: checkpoint keys by mtf name
        self._shapes: Dict[str, Shape] = {}
        self._scope = []
        self._pending: Dict[str, np.ndarray] = {}
        if values:
            self.load_values(values)
        _ALL_STORES.add(self)

    @contextlib.contextmanager
    def scope(self, name: str):
        """Variables created inside are called ``name/...`` (mtf's variable scope)."""
        if not isinstance(name, str) or not name:
            raise ConfigError("variable scope name must be a non-empty string, got %r" % (name,))
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    @contextlib.contextmanager
    def as_default(self):
        """Make this the store of layers called without ``store=`` inside the block."""
        _DEFAULT_STORES.append(self)
        try:
            yield self
        finally:
            _DEFAULT_STORES.pop()

    def load_values(self, values: Dict[str, np.ndarray]):
        """Set variables by mtf name: existing ones are assigned (shapes must agree),
        the others take these values when they are created."""
        if not isinstance(values, dict):
            raise WrongTypeError("load_values expects {mtf_name: array}, got %s"
                                 % type(values).__name__)
        for name, value in values.items():
            value = checked_array(name, value, "load_values")
            var = self._variables.get(name)
            if var is None:
                self._pending[name] = value
                continue
            if tuple(value.shape) != self._shapes[name].sizes:
                raise ShapeError("variable %r has dims %s; the value loaded has shape %s"
                                 % (name, self._shapes[name], tuple(value.shape)))
            var.assign(value.astype(var.dtype.as_numpy_dtype))

    def unused_values(self):
        """Names given to ``load_values`` (or ``values=``) that no variable has taken yet."""
        return sorted(self._pending)

    def full_name(self, name: str) -> str:
        return "/".join(self._scope + [name])

    def _seed_for(self, full_name: str) -> int:
        digest = hashlib.sha256(("%d/%s" % (self.seed, full_name)).encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def create(self, full_name: str, shape, initializer: Optional[Initializer] = None,
               value=None, dtype=tf.float32, trainable: bool = True) -> tf.Variable:
        """Create the variable ``full_name`` (outside any name scope) if it is new.

        ``value`` (an array of the shape's sizes) or ``initializer`` gives its
        initial value.  Runs in the eager context even when called while tracing.
        """
        shape = convert_to_shape(shape)
        var = self._variables.get(full_name)
        if var is not None:
            if self._shapes[full_name] != shape:
                raise ShapeError("variable %r exists with dims %s, requested with %s"
                                 % (full_name, self._shapes[full_name], shape))
            return var
        if value is None and full_name in self._pending:
            value = self._pending.pop(full_name)
            if tuple(value.shape) != shape.sizes:
                raise ShapeError("variable %r is created with dims %s, but the value loaded for "
                                 "it has shape %s" % (full_name, shape, tuple(value.shape)))
        with tf.init_scope():
            if value is None:
                init = as_initializer(initializer) or truncated_normal_initializer(1.0)
                value = init(shape, tf.as_dtype(dtype), self._seed_for(full_name))
            var = self.variable_factory(full_name, shape, tf.cast(value, dtype),
                                        tf.as_dtype(dtype), trainable)
        self._variables[full_name] = var
        self._shapes[full_name] = shape
        return var

    def get_variable(self, mesh, name: str, shape, initializer: Optional[Initializer] = None,
                     dtype=tf.float32, trainable: bool = True) -> Tensor:
        """The variable ``scope/name`` with dims ``shape``, imported onto ``mesh``."""
        shape = convert_to_shape(shape)
        full = self.full_name(name)
        if full not in self._variables and getattr(mesh, "strategy", None) is not None:
            raise ShapeError("variable %r does not exist yet: under a tf.distribute strategy, "
                             "create variables before strategy.run (e.g. layer.build(...))" % full)
        var = self.create(full, shape, initializer, dtype=dtype, trainable=trainable)
        return import_tf_tensor(mesh, var, shape)

    @property
    def variables(self) -> "StoreVariables":
        """Every variable in creation order, a tuple as ``tf.Module.variables``;
        ``store.variables()`` is ``{mtf_name: tf.Variable}``."""
        return StoreVariables(self._variables)

    def shapes(self) -> Dict[str, Shape]:
        return dict(self._shapes)

    @property
    def trainable_variables(self):
        """The trainable variables, in creation order (a list: ``[x] + ...`` works)."""
        return [v for v in self._variables.values() if v.trainable]


def _capture_stores():
    """The default stores and every store's scope now; restoring them lets code run again on
    the backward pass (``recompute_grad``) find the variables it found forward, and checks that
    it creates none."""
    defaults = list(_DEFAULT_STORES)
    scopes = [(store, list(store._scope)) for store in _ALL_STORES]

    @contextlib.contextmanager
    def restore():
        saved_defaults = list(_DEFAULT_STORES)
        saved_scopes = [(store, store._scope) for store, _ in scopes]
        counts = [(store, len(store._variables)) for store, _ in scopes]
        _DEFAULT_STORES[:] = defaults
        for store, scope in scopes:
            store._scope = list(scope)
        try:
            yield
        finally:
            _DEFAULT_STORES[:] = saved_defaults
            for store, scope in saved_scopes:
                store._scope = scope
        created = [name for store, n in counts for name in list(store._variables)[n:]]
        if created:
            raise ConfigError("variables %s were created while recomputing on the backward "
                              "pass; create every variable in the forward pass" % created)

    return restore


register_context_capture(_capture_stores)
