"""Elementwise ops: unary maths, binary arithmetic and comparisons broadcast by name.

Binary ops follow mtf's broadcasting rule: the output holds the dims of the
first operand followed by the new dims of the second, unless one operand's
dims are a subsequence of the other's (then the longer shape wins), or an
``output_shape`` is given.  Dims are matched by name; sizes must agree.
No communication is ever needed: a dim has the same split in every tensor.
"""

import numbers

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import (as_dtype, check_bool_tensor, check_exact_cast,
                                   check_float_tensor, check_number_tensor)
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError


# -- helpers shared by many ops -------------------------------------------------
def check_tensor(x, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise WrongTypeError("%s expects a namedmesh.Tensor, got %s" % (op, type(x).__name__))
    return x


def same_mesh(tensors, op: str):
    mesh = tensors[0].mesh
    for t in tensors[1:]:
        if t.mesh is not mesh:
            raise ShapeError("%s: operands live on different meshes (%s and %s)"
                             % (op, mesh.describe(), t.mesh.describe()))
    return mesh


def align_local(value: tf.Tensor, in_shape: Shape, out_shape: Shape) -> tf.Tensor:
    """Transpose a slice of ``in_shape`` to ``out_shape``'s order, size-1 axes for missing dims."""
    names = in_shape.names
    order = [names.index(n) for n in out_shape.names if n in in_shape]
    if order != sorted(order):
        value = tf.transpose(value, order)
    if in_shape.ndims != out_shape.ndims:
        present = [n in in_shape for n in out_shape.names]
        for axis, here in enumerate(present):
            if not here:
                value = tf.expand_dims(value, axis)
    return value


def _aligned(t, out_shape: Shape):
    """A Tensor operand's slices aligned to ``out_shape`` (``align_local``); scalars as they are."""
    if isinstance(t, Tensor):
        return t.mesh.impl.slicewise(lambda v: align_local(v, t.shape, out_shape), t.slices)
    return t


def check_same_dtype(tensors, op: str):
    """mtf's rule: the tensor operands of a binary op share one dtype."""
    dtypes = [t.dtype for t in tensors]
    if any(d != dtypes[0] for d in dtypes[1:]):
        raise WrongTypeError("%s: operands have dtypes %s (shapes %s); mtf requires equal dtypes, "
                             "cast one first" % (op, [d.name for d in dtypes],
                                                 [str(t.shape) for t in tensors]))


def _is_subsequence(short, long) -> bool:
    it = iter(long)
    return all(any(a == b for b in it) for a in short)


def broadcast_shape(shape1: Shape, shape2: Shape, op: str) -> Shape:
    """mtf's ``_infer_binary_broadcast_shape`` with a size check by name."""
    for d in shape2.dims:
        other = shape1.get(d.name)
        if other is not None and other.size != d.size:
            raise ShapeError("%s: dimension %r has size %d in %s but %d in %s"
                             % (op, d.name, other.size, shape1, d.size, shape2))
    if _is_subsequence(shape1.dims, shape2.dims):
        return shape2
    if _is_subsequence(shape2.dims, shape1.dims):
        return shape1
    return Shape(list(shape1.dims) + [d for d in shape2.dims if d.name not in shape1])


def _check_output_shape(output_shape: Shape, shapes, op: str) -> Shape:
    union = Shape([])
    for s in shapes:
        union = union + s
    for d in output_shape.dims:
        if d.name in union and union[d.name].size != d.size:
            raise ShapeError("%s: output dim %s has a different size in the inputs (%s)"
                             % (op, d, union[d.name]))
    missing = [d.name for d in union.dims if d.name not in output_shape]
    if missing:
        raise ShapeError("%s: output_shape %s lacks input dims %s; use a reduction to drop dims"
                         % (op, output_shape, missing))
    extra = [d.name for d in output_shape.dims if d.name not in union]
    if extra:
        raise ShapeError("%s: output_shape %s has dims %s that no input has; use "
                         "namedmesh.broadcast to add dims" % (op, output_shape, extra))
    return output_shape


def _check_scalar_fits(x, like: Tensor, op: str):
    """A scalar operand must keep its value in the tensor's dtype: ``int_tensor * 0.5`` would
    compute ``int_tensor * 0`` after the cast, so it is an error (mtf's ``tf.convert_to_tensor``
    refuses it too); cast the tensor first."""
    try:
        check_exact_cast(x, like.dtype, op)
    except WrongTypeError:
        raise WrongTypeError(
            "%s: scalar operand %r does not fit the tensor's dtype %s (shape %s) without losing "
            "its value; cast the tensor first, e.g. namedmesh.to_float(x)"
            % (op, x, like.dtype.name, like.shape)) from None


def _as_operand(x, like: Tensor, op: str):
    """A Tensor, or a TF scalar of ``like``'s dtype (python/numpy/TF scalars)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (numbers.Number, np.generic)):
        _check_scalar_fits(x, like, op)
        return tf.cast(tf.constant(x), like.dtype)
    if isinstance(x, (tf.Tensor, tf.Variable)) and x.shape.rank == 0:
        _check_scalar_fits(x, like, op)
        return tf.cast(x, like.dtype)
    raise WrongTypeError("%s: operand %r is neither a namedmesh.Tensor nor a scalar; import tf "
                         "tensors with namedmesh.import_tf_tensor(mesh, value, shape)" % (op, x))


# which operand dtypes an op accepts: "number" (integer or float), "float", "bool", or any
_NEEDS = {"number": check_number_tensor, "float": check_float_tensor, "bool": check_bool_tensor}


def binary_op(fn, x1, x2, op: str, output_shape=None, out_dtype=None, needs=None) -> Tensor:
    """Apply ``fn(a, b)`` slicewise with broadcasting by name.  ``needs``: the dtype kind
    both operands must have ("number", "float" or "bool"), checked before any TF op."""
    if not isinstance(x1, Tensor) and not isinstance(x2, Tensor):
        raise WrongTypeError("%s: at least one operand must be a namedmesh.Tensor, got %r and %r"
                             % (op, x1, x2))
    like = x1 if isinstance(x1, Tensor) else x2
    x1 = _as_operand(x1, like, op)
    x2 = _as_operand(x2, like, op)
    tensors = [t for t in (x1, x2) if isinstance(t, Tensor)]
    check_same_dtype(tensors, op)
    if needs is not None:
        _NEEDS[needs](like, op, "operands")
    mesh = same_mesh(tensors, op)
    if output_shape is not None:
        out_shape = _check_output_shape(convert_to_shape(output_shape),
                                        [t.shape for t in tensors], op)
    elif len(tensors) == 2:
        out_shape = broadcast_shape(x1.shape, x2.shape, op)
    else:
        out_shape = tensors[0].shape

    slices = mesh.impl.slicewise(fn, _aligned(x1, out_shape), _aligned(x2, out_shape))
    return Tensor(mesh, out_shape, slices, out_dtype)


def unary_op(fn, x: Tensor, op: str, out_dtype=None, needs=None) -> Tensor:
    check_tensor(x, op)
    if needs is not None:
        _NEEDS[needs](x, op)
    return Tensor(x.mesh, x.shape, x.mesh.impl.slicewise(fn, x.slices), out_dtype)


# -- arithmetic ----------------------------------------------------------------
@named_op("add")
def add(x1, x2, output_shape=None, name=None):
    return binary_op(tf.add, x1, x2, "add", output_shape, needs="number")


@named_op("sub")
def subtract(x1, x2, output_shape=None, name=None):
    return binary_op(tf.subtract, x1, x2, "subtract", output_shape, needs="number")


sub = subtract  # mtf's name


@named_op("mul")
def multiply(x1, x2, output_shape=None, name=None):
    return binary_op(tf.multiply, x1, x2, "multiply", output_shape, needs="number")


@named_op("divide")
def divide(x1, x2, output_shape=None, name=None):
    return binary_op(tf.divide, x1, x2, "divide", output_shape, needs="number")


@named_op("pow")
def pow(x, y, output_shape=None, name=None):  # noqa: A001 - mtf's name
    """``x ** y`` broadcast by name.  mtf computes ``exp(log(x) * y)``, which is NaN for
    negative ``x``; namedmesh uses ``tf.pow`` (equal for positive ``x``)."""
    return binary_op(tf.pow, x, y, "pow", output_shape, needs="number")


mtf_pow = pow


@named_op("floordiv")
def floordiv(x1, x2, output_shape=None, name=None):
    """``floor(x1 / x2)`` broadcast by name (``tf.math.floordiv``); dtype of the tensor operand."""
    return binary_op(tf.math.floordiv, x1, x2, "floordiv", output_shape, needs="number")


@named_op("mod")
def mod(x1, x2, output_shape=None, name=None):
    """``x1 mod x2`` with the sign of ``x2`` (``tf.math.floormod``), broadcast by name."""
    return binary_op(tf.math.floormod, x1, x2, "mod", output_shape, needs="number")


@named_op("minimum")
def minimum(x1, x2, output_shape=None, name=None):
    return binary_op(tf.minimum, x1, x2, "minimum", output_shape, needs="number")


@named_op("maximum")
def maximum(x1, x2, output_shape=None, name=None):
    return binary_op(tf.maximum, x1, x2, "maximum", output_shape, needs="number")


# -- comparisons (bool results) -------------------------------------------------
@named_op("less")
def less(x1, x2, output_shape=None, name=None):
    return binary_op(tf.less, x1, x2, "less", output_shape, tf.bool, needs="number")


@named_op("less_equal")
def less_equal(x1, x2, output_shape=None, name=None):
    return binary_op(tf.less_equal, x1, x2, "less_equal", output_shape, tf.bool, needs="number")


@named_op("greater")
def greater(x1, x2, output_shape=None, name=None):
    return binary_op(tf.greater, x1, x2, "greater", output_shape, tf.bool, needs="number")


@named_op("greater_equal")
def greater_equal(x1, x2, output_shape=None, name=None):
    return binary_op(tf.greater_equal, x1, x2, "greater_equal", output_shape, tf.bool,
                     needs="number")


@named_op("equal")
def equal(x1, x2, output_shape=None, name=None):
    return binary_op(tf.equal, x1, x2, "equal", output_shape, tf.bool)


@named_op("not_equal")
def not_equal(x1, x2, output_shape=None, name=None):
    return binary_op(tf.not_equal, x1, x2, "not_equal", output_shape, tf.bool)


@named_op("logical_and")
def logical_and(x1, x2, output_shape=None, name=None):
    return binary_op(tf.logical_and, x1, x2, "logical_and", output_shape, tf.bool, needs="bool")


@named_op("logical_or")
def logical_or(x1, x2, output_shape=None, name=None):
    return binary_op(tf.logical_or, x1, x2, "logical_or", output_shape, tf.bool, needs="bool")


@named_op("logical_not")
def logical_not(x, name=None):
    return unary_op(tf.logical_not, x, "logical_not", needs="bool")


@named_op("where")
def where(condition, if_true, if_false, output_shape=None, name=None) -> Tensor:
    """``if_true`` where ``condition`` else ``if_false``, broadcast by name.

    Output dims as mtf orders them: ``broadcast(if_true, condition)`` then the
    new dims of ``broadcast(if_false, condition)``; scalars are allowed for
    ``if_true`` / ``if_false``.  mtf computes ``t * c + f * (1 - c)``, which turns
    an ``inf`` in the branch not taken into NaN; namedmesh selects (``tf.where``).
    """
    check_tensor(condition, "where")
    check_bool_tensor(condition, "where", "condition")  # mtf's logical_not(condition) needs bool
    like = if_true if isinstance(if_true, Tensor) else if_false
    if not isinstance(like, Tensor):
        raise WrongTypeError("where: if_true or if_false must be a namedmesh.Tensor, got %r and %r"
                             % (if_true, if_false))
    if_true = _as_operand(if_true, like, "where")
    if_false = _as_operand(if_false, like, "where")
    tensors = [t for t in (condition, if_true, if_false) if isinstance(t, Tensor)]
    mesh = same_mesh(tensors, "where")
    check_same_dtype([t for t in (if_true, if_false) if isinstance(t, Tensor)], "where")
    if output_shape is None:
        def with_condition(t):
            if not isinstance(t, Tensor):
                return condition.shape
            return broadcast_shape(t.shape, condition.shape, "where")
        out_shape = broadcast_shape(with_condition(if_true), with_condition(if_false), "where")
    else:
        out_shape = _check_output_shape(convert_to_shape(output_shape),
                                        [t.shape for t in tensors], "where")
    sizes = mesh.tensor_layout(out_shape).slice_sizes

    def local(c, a, b):
        return tf.where(tf.broadcast_to(c, sizes), a, b)

    return Tensor(mesh, out_shape, mesh.impl.slicewise(
        local, _aligned(condition, out_shape), _aligned(if_true, out_shape),
        _aligned(if_false, out_shape)), like.dtype)


# -- unary maths --------------------------------------------------------------
def _unary(tf_fn, default_name: str, doc: str = None, needs: str = None):
    """An mtf unary op ``fn(x, name=None)`` applying ``tf_fn`` to every slice; ``needs``: the
    dtype kind x must have ("number" or "float")."""

    @named_op(default_name)
    def op(x, name=None):
        return unary_op(tf_fn, x, default_name, needs=needs)

    op.__name__ = op.__qualname__ = default_name
    op.__doc__ = doc or "``%s`` of every element; output dims = x's dims." % default_name
    return op


identity = _unary(tf.identity, "identity")
negative = _unary(tf.negative, "negative", needs="number")
abs = _unary(tf.abs, "abs", needs="number")  # noqa: A001 - mtf's name
mtf_abs = abs
sign = _unary(tf.sign, "sign", "-1, 0 or 1 by the sign of each element (no gradient, as in mtf).",
              needs="number")
exp = _unary(tf.exp, "exp", needs="float")
log = _unary(tf.math.log, "log", needs="float")
sqrt = _unary(tf.sqrt, "sqrt", needs="float")
rsqrt = _unary(tf.math.rsqrt, "rsqrt", needs="float")
square = _unary(tf.square, "square", needs="number")
reciprocal = _unary(tf.math.reciprocal, "reciprocal", needs="float")
sin = _unary(tf.sin, "sin", needs="float")
cos = _unary(tf.cos, "cos", needs="float")
relu = _unary(tf.nn.relu, "relu", needs="number")
gelu = _unary(lambda v: tf.nn.gelu(v, approximate=True), "gelu",
              "mtf's gelu: the tanh approximation "
              "``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.", needs="float")
elu = _unary(tf.nn.elu, "elu", needs="float")
selu = _unary(tf.nn.selu, "selu", needs="float")
sigmoid = _unary(tf.sigmoid, "sigmoid", needs="float")
tanh = _unary(tf.tanh, "tanh", needs="float")
softplus = _unary(tf.nn.softplus, "softplus", needs="float")
silu = _unary(tf.nn.silu, "swish", "``x * sigmoid(x)`` (mtf's swish).", needs="float")
swish = silu
stop_gradient = _unary(tf.stop_gradient, "stop_gradient")


@named_op("squared_relu")
def squared_relu(x, name=None):
    """``relu(x) ** 2`` (the Primer paper's activation)."""
    return unary_op(lambda v: tf.square(tf.nn.relu(v)), x, "squared_relu", needs="number")


@named_op("leaky_relu")
def leaky_relu(x, alpha=0.2, name=None):
    """``x`` where ``x > 0`` else ``alpha * x``."""
    return unary_op(lambda v: tf.nn.leaky_relu(v, alpha), x, "leaky_relu", needs="number")


@named_op("cast")
def cast(x, dtype, name=None):
    """``x`` converted to ``dtype`` (``tf.DType`` or its name); ``x`` itself if it has it."""
    check_tensor(x, "cast")
    dtype = as_dtype(dtype, "cast")
    if x.dtype == dtype:
        return x
    return Tensor(x.mesh, x.shape, x.mesh.impl.slicewise(lambda v: tf.cast(v, dtype), x.slices),
                  dtype)


def to_float(x, name=None):
    return cast(x, tf.float32, name=name or "to_float")


def to_bfloat16(x, name=None):
    return cast(x, tf.bfloat16, name=name or "to_bfloat16")


def to_int32(x, name=None):
    return cast(x, tf.int32, name=name or "to_int32")


@named_op("add_n")
def add_n(xs, name=None):
    """Sum of a list of Tensors (broadcast by name); ``0`` for an empty list, as in mtf."""
    xs = list(xs)
    if not xs:
        return 0
    out = xs[0]
    for x in xs[1:]:
        out = add(out, x)
    return out


@named_op("broadcast")
def broadcast(x, new_shape, name=None) -> Tensor:
    """``x`` broadcast to ``new_shape``, a superset of its dims (any order)."""
    check_tensor(x, "broadcast")
    new_shape = convert_to_shape(new_shape)
    for d in x.shape.dims:
        if d.name not in new_shape:
            raise ShapeError("broadcast: dim %r of %s is missing from the new shape %s"
                             % (d.name, x.shape, new_shape))
        if new_shape[d.name].size != d.size:
            raise ShapeError("broadcast: dim %r has size %d in %s but %d in the new shape %s"
                             % (d.name, d.size, x.shape, new_shape[d.name].size, new_shape))
    if new_shape == x.shape:
        return x
    sizes = x.mesh.tensor_layout(new_shape).slice_sizes
    return Tensor(x.mesh, new_shape, x.mesh.impl.slicewise(
        lambda v: tf.broadcast_to(align_local(v, x.shape, new_shape), sizes), x.slices))
