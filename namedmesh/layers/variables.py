"""Variables by mtf name: ``VariableStore`` creates and keeps ``tf.Variable``s.

Variables are held whole (the "master" copy, axes in mtf's dimension order);
each use imports them onto the mesh, where every processor keeps its slice.
Gradients with respect to the master variable sum over all slices and copies.
"""

import contextlib
import hashlib
import math
from typing import Callable, Dict, Optional

import tensorflow as tf

from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.tensor import Tensor, import_tf_tensor
from namedmesh.errors import ShapeError

Initializer = Callable[[Shape, tf.DType, int], tf.Tensor]


def truncated_normal_initializer(stddev: float) -> Initializer:
    def init(shape: Shape, dtype, seed: int):
        return tf.random.stateless_truncated_normal(shape.sizes, seed=[seed, 0], stddev=stddev,
                                                    dtype=dtype)
    return init


def variance_scaling_initializer(reduced_dims, scale: float = 1.0) -> Initializer:
    """mtf's default dense init: truncated normal, stddev ``sqrt(scale / fan_in)``."""
    fan_in = 1
    for d in reduced_dims:
        fan_in *= d.size
    return truncated_normal_initializer(math.sqrt(scale / max(1.0, fan_in)))


def zeros_initializer(shape: Shape, dtype, seed: int):
    return tf.zeros(shape.sizes, dtype)


class VariableStore:
    """Creates variables on first request and returns the same ones afterwards.

    Names are mtf's: ``scope/.../name`` (``with store.scope("wi"):`` then
    ``get_variable(mesh, "kernel", ...)`` makes ``wi/kernel``).  Initial values
    are drawn from ``seed`` and the variable's name, so a store is reproducible.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._variables: Dict[str, tf.Variable] = {}
        self._shapes: Dict[str, Shape] = {}
        self._scope = []

    @contextlib.contextmanager
    def scope(self, name: str):
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

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
        with tf.init_scope():
            if value is None:
                init = initializer or truncated_normal_initializer(1.0)
                value = init(shape, tf.as_dtype(dtype), self._seed_for(full_name))
            var = tf.Variable(tf.cast(value, dtype), trainable=trainable,
                              name=full_name.replace("/", "_"))
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

    def variables(self) -> Dict[str, tf.Variable]:
        """``{mtf_name: tf.Variable}`` in creation order."""
        return dict(self._variables)

    def shapes(self) -> Dict[str, Shape]:
        return dict(self._shapes)

    @property
    def trainable_variables(self):
        return [v for v in self._variables.values() if v.trainable]
