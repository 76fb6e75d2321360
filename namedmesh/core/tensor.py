"""The named ``Tensor``: a (laid-out) TensorFlow value plus a ``Shape``.

A Tensor's axes are addressed by name.  Its value lives as slices on the
processors of its ``Mesh`` (one slice on a single device); ops never look at
the axis order except to translate names to positions.
"""

from typing import Optional

import tensorflow as tf

from namedmesh.core.checks import check_mesh
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.naming import scope_name
from namedmesh.errors import ShapeError, WrongTypeError


class Tensor:
    """A named-dimension tensor on a mesh.

    Attributes:
      mesh: the ``Mesh`` it lives on.
      shape: its global ``Shape`` (dims by name, in axis order).
      dtype: its ``tf.DType``.
      slices: the laid-out value, a tuple of ``tf.Tensor`` (one per local
        processor), each of shape ``layout.slice_sizes``.

    Build one with ``import_tf_tensor(mesh, value, shape)`` or any op;
    ``export_to_tf_tensor(t)`` returns the global ``tf.Tensor``.
    """

    __slots__ = ("mesh", "shape", "dtype", "slices", "_layout")
    __array_priority__ = 100  # so numpy scalars on the left defer to us

    def __init__(self, mesh, shape: Shape, slices, dtype: Optional[tf.DType] = None):
        self.mesh = mesh
        self.shape = convert_to_shape(shape)
        self.slices = tuple(slices)
        self.dtype = tf.as_dtype(dtype) if dtype is not None else self.slices[0].dtype
        self._layout = None

    @property
    def layout(self):
        """The ``TensorLayout`` of this tensor on its mesh."""
        if self._layout is None:
            self._layout = self.mesh.tensor_layout(self.shape)
        return self._layout

    @property
    def dims(self):
        return self.shape.dims

    @property
    def size(self) -> int:
        return self.shape.size

    def __repr__(self):
        return "namedmesh.Tensor(shape=%s, dtype=%s, mesh=%s)" % (
            self.shape, self.dtype.name, self.mesh.describe())

    def __bool__(self):
        raise TypeError("the truth value of a namedmesh.Tensor is ambiguous; use "
                        "namedmesh.reduce_any / reduce_all or export it first")

    # -- operators (implemented in elementwise.py) ---------------------------
    def __add__(self, other):
        return _ew().add(self, other)

    def __radd__(self, other):
        return _ew().add(other, self)

    def __sub__(self, other):
        return _ew().subtract(self, other)

    def __rsub__(self, other):
        return _ew().subtract(other, self)

    def __mul__(self, other):
        return _ew().multiply(self, other)

    def __rmul__(self, other):
        return _ew().multiply(other, self)

    def __truediv__(self, other):
        return _ew().divide(self, other)

    def __rtruediv__(self, other):
        return _ew().divide(other, self)

    def __neg__(self):
        return _ew().negative(self)

    def __pow__(self, other):
        return _ew().pow(self, other)

    def __floordiv__(self, other):
        return _ew().floordiv(self, other)

    def __rfloordiv__(self, other):
        return _ew().floordiv(other, self)

    def __mod__(self, other):
        return _ew().mod(self, other)

    def __rmod__(self, other):
        return _ew().mod(other, self)

    def __lt__(self, other):
        return _ew().less(self, other)

    def __le__(self, other):
        return _ew().less_equal(self, other)

    def __gt__(self, other):
        return _ew().greater(self, other)

    def __ge__(self, other):
        return _ew().greater_equal(self, other)

    __hash__ = object.__hash__  # == is not overloaded: use namedmesh.equal


def _ew():
    from namedmesh.core import elementwise
    return elementwise


def import_tf_tensor(mesh, tf_tensor, shape=None, name=None) -> Tensor:
    """A namedmesh Tensor holding the global value ``tf_tensor`` with dims ``shape``.

    ``tf_tensor``: anything ``tf.convert_to_tensor`` accepts, whose static shape
    equals the sizes of ``shape`` in order (``shape=None``: a scalar, as in mtf).
    On a multi-processor mesh each processor keeps its slice (a local copy, no
    communication).
    """
    with tf.name_scope(scope_name(name or "import")):
        return _import(mesh, tf_tensor, shape)


def _as_tf_value(value, shape, op: str) -> tf.Tensor:
    """``tf.convert_to_tensor(value)``; values TensorFlow cannot hold (ragged lists, objects,
    None) and strings are errors naming the value and the declared shape."""
    try:
        value = tf.convert_to_tensor(value)
    except (ValueError, TypeError) as e:
        kind = "ragged (not rectangular)" if isinstance(value, (list, tuple)) else \
            "not convertible to a tensor"
        raise WrongTypeError("%s: the value %.80r (%s) for shape %s is %s: %s"
                             % (op, value, type(value).__name__, shape, kind,
                                str(e).splitlines()[0])) from None
    if value.dtype == tf.string:
        raise WrongTypeError("%s: the value for shape %s has dtype string; namedmesh tensors "
                             "hold numbers or bools" % (op, shape))
    return value


def _import(mesh, value, shape) -> Tensor:
    check_mesh(mesh, "import_tf_tensor")
    value = _as_tf_value(value, shape, "import_tf_tensor")
    if shape is None:
        if value.shape.rank != 0:
            raise ShapeError("import_tf_tensor: without a shape the value must be a scalar, got "
                             "a value of shape %s" % value.shape.as_list())
        shape = Shape([])
    shape = convert_to_shape(shape)
    static = value.shape
    if static.rank is not None and static.rank != shape.ndims:
        raise ShapeError("import_tf_tensor: value has rank %d (shape %s) but the named shape %s "
                         "has %d dims" % (static.rank, static.as_list(), shape, shape.ndims))
    if static.rank is not None:
        for d, n in zip(shape.dims, static.as_list()):
            if n is not None and n != d.size:
                raise ShapeError("import_tf_tensor: dim %r has size %d in the named shape %s but "
                                 "the value's axis has size %d (value shape %s)"
                                 % (d.name, d.size, shape, n, static.as_list()))
    value = tf.ensure_shape(value, shape.sizes) if static.rank is None else value
    layout = mesh.tensor_layout(shape)
    return Tensor(mesh, shape, mesh.impl.import_tf_tensor(value, layout), value.dtype)


def export_to_tf_tensor(t: Tensor) -> tf.Tensor:
    """The global ``tf.Tensor`` of ``t``, axes in the order of ``t.shape``."""
    if not isinstance(t, Tensor):
        raise WrongTypeError("export_to_tf_tensor expects a namedmesh.Tensor, got %r" % (t,))
    return t.mesh.impl.export_to_tf_tensor(t.slices, t.layout)


def import_laid_out_tensor(mesh, laid_out_tensor, shape, name=None) -> Tensor:
    """A Tensor from slices that are already laid out (mtf's expert import).

    ``laid_out_tensor``: one ``tf.Tensor`` per local processor (a list or
    tuple; an object with mtf's ``tensor_list`` works too), each of the slice
    shape ``shape`` has on ``mesh``.
    """
    check_mesh(mesh, "import_laid_out_tensor")
    shape = convert_to_shape(shape)
    slices = getattr(laid_out_tensor, "tensor_list", laid_out_tensor)
    if isinstance(slices, (tf.Tensor, tf.Variable)):
        slices = [slices]
    if not isinstance(slices, (list, tuple)):
        raise WrongTypeError("import_laid_out_tensor: expected a list of per-processor slices, "
                             "got %.80r (%s)" % (slices, type(slices).__name__))
    slices = [_as_tf_value(s, shape, "import_laid_out_tensor") for s in slices]
    expected = list(mesh.tensor_layout(shape).slice_sizes)
    if len(slices) != mesh.impl.num_local_slices:
        raise ShapeError("import_laid_out_tensor: %d slices given but this process holds %d "
                         "slices of mesh %s" % (len(slices), mesh.impl.num_local_slices,
                                                mesh.describe()))
    for i, s in enumerate(slices):
        if s.shape.as_list() != expected:
            raise ShapeError("import_laid_out_tensor: slice %d has shape %s but dims %s laid out "
                             "as %s need slices of shape %s" % (i, s.shape.as_list(), shape,
                                                                 mesh.describe_layout(shape),
                                                                 expected))
    with tf.name_scope(scope_name(name or "import_laid_out_tensor")):
        return Tensor(mesh, shape, mesh.impl.slicewise(tf.identity, tuple(slices)), slices[0].dtype)


def import_fully_replicated(mesh, tf_tensor, shape, name=None) -> Tensor:
    """``import_tf_tensor`` for a value that every processor holds whole (mtf's name)."""
    return import_tf_tensor(mesh, tf_tensor, shape, name=name or "import_fully_replicated")
