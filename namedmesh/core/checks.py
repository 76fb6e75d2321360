"""Argument checks shared by the public entry points.

Each check returns the value (converted where the conversion is exact) or raises a
namedmesh error that names the offending value and says what was expected.  None of
them converts lossily: a float where an integer is needed, a string where a flag is
needed, NaN where a finite number is needed are errors, never a silent truncation.
"""

import math
import numbers
import os

import numpy as np
import tensorflow as tf

from namedmesh.errors import ConfigError, WrongTypeError


def check_mesh(mesh, op: str):
    """``mesh`` if it is a namedmesh ``Mesh`` (duck-typed: core does not import the mesh)."""
    if not (hasattr(mesh, "tensor_layout") and hasattr(mesh, "impl")):
        raise WrongTypeError("%s: expected a namedmesh.Mesh, got %r (%s); build one with "
                             "namedmesh.Mesh('b0:2', 'batch:b0')"
                             % (op, mesh, type(mesh).__name__))
    return mesh


def as_dtype(dtype, op: str, what: str = "dtype") -> tf.DType:
    """``tf.as_dtype(dtype)``, or a WrongTypeError naming ``dtype``."""
    try:
        return tf.as_dtype(dtype)
    except (TypeError, ValueError):
        raise WrongTypeError("%s: %s %r is not a TensorFlow dtype (expected e.g. tf.float32 or "
                             "'float32')" % (op, what, dtype)) from None


def is_float_dtype(dtype) -> bool:
    dtype = tf.as_dtype(dtype)
    return dtype.is_floating or dtype.is_complex


def check_float_tensor(x, op: str, what: str = "input"):
    """``x`` if its dtype is floating point (what exp, softmax, dense and MoE layers need)."""
    if not is_float_dtype(x.dtype):
        raise WrongTypeError("%s: %s must be a floating-point tensor, got dtype %s (shape %s); "
                             "cast it first, e.g. namedmesh.to_float(x)"
                             % (op, what, x.dtype.name, x.shape))
    return x


def check_number_tensor(x, op: str, what: str = "input"):
    """``x`` if its dtype is a number (integer or floating point), not bool or string."""
    if x.dtype == tf.bool or x.dtype == tf.string:
        raise WrongTypeError("%s: %s must be a numeric tensor, got dtype %s (shape %s); "
                             "cast it first, e.g. namedmesh.to_float(x)"
                             % (op, what, x.dtype.name, x.shape))
    return x


def check_bool_tensor(x, op: str, what: str = "input"):
    """``x`` if its dtype is bool (conditions, logical ops)."""
    if x.dtype != tf.bool:
        raise WrongTypeError("%s: %s must be a bool tensor, got dtype %s (shape %s); make one "
                             "with a comparison, e.g. namedmesh.greater(mask, 0.5)"
                             % (op, what, x.dtype.name, x.shape))
    return x


def _is_real(value) -> bool:
    return isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_))


def check_number(value, what: str, minimum=None, maximum=None, above: bool = False,
                 below: bool = False, integer: bool = False, error=ConfigError):
    """A finite real number (an ``int`` when ``integer``) within bounds.

    ``minimum`` / ``maximum`` are inclusive unless ``above`` / ``below`` make them
    strict.  NaN and infinity are always errors: a hyperparameter is a finite number.
    """
    if not _is_real(value) or (integer and not isinstance(value, (numbers.Integral,
                                                                   np.integer))):
        raise error("%s: expected %s, got %r (%s)" % (
            what, "an integer" if integer else "a finite number", value, type(value).__name__))
    if not math.isfinite(float(value)):
        raise error("%s: expected a finite number, got %r" % (what, value))
    if minimum is not None and (value <= minimum if above else value < minimum):
        raise error("%s: must be %s %s, got %r" % (what, ">" if above else ">=", minimum, value))
    if maximum is not None and (value >= maximum if below else value > maximum):
        raise error("%s: must be %s %s, got %r" % (what, "<" if below else "<=", maximum, value))
    return value


def check_flag(value, what: str, error=WrongTypeError) -> bool:
    """A Python or NumPy bool; anything else (a string such as ``"no"``, a tensor) is an
    error rather than a truthiness test."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise error("%s: expected True or False, got %r (%s)"
                         % (what, value, type(value).__name__))


def check_seed(seed, what: str):
    """``None``, an integer, or an integer TF tensor (a scalar)."""
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(
            seed, (bool, np.bool_)):
        return seed
    if isinstance(seed, (tf.Tensor, tf.Variable)) and seed.dtype.is_integer:
        return seed
    raise WrongTypeError("%s: a seed must be an integer (or an integer tensor), got %r (%s)"
                         % (what, seed, type(seed).__name__))


def check_path(path, what: str) -> str:
    """A filesystem path given as ``str`` or ``os.PathLike``, returned as ``str``."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise WrongTypeError("%s: expected a path (a non-empty string), got %r (%s)"
                             % (what, path, type(path).__name__))
    return path


def check_exact_cast(value, dtype: tf.DType, op: str):
    """``value`` (a Python/NumPy scalar or array, or a TF tensor) if converting it to
    ``dtype`` loses nothing: no fractions dropped by an integer or bool dtype, nothing out
    of the dtype's range, no strings.  TensorFlow's ``tf.constant`` refuses the same values;
    ``tf.cast`` would truncate them silently."""
    dtype = tf.as_dtype(dtype)
    if isinstance(value, (tf.Tensor, tf.Variable)):
        if value.dtype == tf.string or (value.dtype.is_floating and (dtype.is_integer or
                                                                     dtype == tf.bool)):
            raise WrongTypeError("%s: a %s tensor cannot become %s without losing values; cast "
                                 "it explicitly (tf.cast) if that is what you want"
                                 % (op, value.dtype.name, dtype.name))
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise WrongTypeError("%s: value %.80r is not an array: %s" % (op, value, e)) from None
    if array.dtype.kind not in "biuf":
        raise WrongTypeError("%s: value %.80r (%s) is not numeric; expected numbers or bools "
                             "of dtype %s" % (op, value, array.dtype, dtype.name))
    if array.dtype.kind == "f" and (dtype.is_integer or dtype == tf.bool):
        finite = np.nan_to_num(array)
        lossy = ~np.isfinite(array) | (finite != np.round(finite))
        if np.any(lossy):
            bad = array[lossy]
            raise WrongTypeError("%s: value %.80r has non-integer element(s) %s that dtype %s "
                                 "cannot hold; give integers or a floating dtype"
                                 % (op, value, bad.ravel()[:3].tolist(), dtype.name))
    if dtype == tf.bool and array.dtype.kind != "b" and np.any((array != 0) & (array != 1)):
        raise WrongTypeError("%s: value %.80r is not 0/1 and cannot become bool; compare it "
                             "instead, e.g. namedmesh.not_equal(x, 0)" % (op, value))
    if dtype.is_integer and array.size and array.dtype.kind in "iuf":
        low, high = np.min(array), np.max(array)
        if low < dtype.min or high > dtype.max:
            raise WrongTypeError("%s: value %.80r is outside the range of %s [%d, %d]"
                                 % (op, value, dtype.name, dtype.min, dtype.max))
    if dtype.is_floating and array.dtype.kind == "f" and array.size:
        finite = array[np.isfinite(array)]
        if finite.size and np.max(np.abs(finite)) > dtype.max:
            raise WrongTypeError("%s: value %.80r overflows %s (largest finite value %g)"
                                 % (op, value, dtype.name, dtype.max))
    return value
