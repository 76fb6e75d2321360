"""Random tensors and dropout with mtf's signatures, drawn statelessly.

mtf draws with TF1's stateful random ops and a per-slice seed derived from the
slice's position, so replicated slices agree.  namedmesh draws with
``tf.random.stateless_*`` from an explicit ``seed``: every processor draws the
*global* tensor and keeps its slice, so replicated slices agree and a run on a
mesh equals the run on one device, bit for bit.  (The cost: each processor
generates the whole tensor; generation is cheap next to the ops that use it.)

``seed``: an int or a shape-[2] int tensor (e.g. ``[seed, step]``).  Without a
seed (mtf's call ``random_uniform(mesh, shape)``), the placement executor draws
one seed per call from TensorFlow's global random state (``tf.random.set_seed``
makes it reproducible) and uses it on every processor; the tf.distribute
executor needs an explicit seed, since replicas cannot share a stateful draw.
"""

import numbers

import tensorflow as tf

from namedmesh.core.checks import as_dtype, check_mesh
from namedmesh.core.dims import convert_to_shape
from namedmesh.core.elementwise import cast, check_tensor, less
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError, MeshError, ShapeError

_INT64_MAX = 2 ** 63 - 1


def _seed_pair(mesh, seed, op: str):
    """A shape-[2] int64 seed tensor for ``tf.random.stateless_*``."""
    if seed is None:
        if mesh.strategy is not None:
            raise MeshError("%s: mesh %s runs on a tf.distribute strategy; pass seed= (an int or "
                            "[seed, step]) so that every replica draws the same values"
                            % (op, mesh.describe()))
        return tf.random.uniform([2], 0, _INT64_MAX, dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ShapeError("%s: seed must be an integer or a pair of integers, got %r" % (op, seed))
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.constant(0, tf.int64)])
    if seed.shape.as_list() != [2]:
        raise ShapeError("%s: seed must be a scalar or have shape [2], got shape %s"
                         % (op, seed.shape.as_list()))
    return seed


def _random(mesh, shape, seed, draw, dtype, op: str) -> Tensor:
    check_mesh(mesh, op)
    shape = convert_to_shape(shape)
    if shape is None:
        raise ShapeError("%s needs a shape, got None" % op)
    dtype = as_dtype(dtype, op)
    seed = _seed_pair(mesh, seed, op)
    layout = mesh.tensor_layout(shape)
    slices = mesh.impl.slicewise(lambda _: draw(shape.sizes, seed, dtype),
                                 mesh.impl.pcoord_or_none())
    for tensor_axis, mesh_axis in enumerate(layout.mesh_axes):
        if mesh_axis is not None:
            slices = mesh.impl.allsplit(slices, mesh_axis, tensor_axis)
    return Tensor(mesh, shape, slices, dtype)


@named_op("random_uniform")
def random_uniform(mesh, shape, seed=None, minval=0, maxval=None, dtype=tf.float32,
                   name=None) -> Tensor:
    """Uniform values in ``[minval, maxval)`` with dims ``shape`` (``maxval`` defaults to 1
    for floats; integers need it).  The other arguments are ``tf.random.uniform``'s."""
    if isinstance(minval, numbers.Real) and isinstance(maxval, numbers.Real) and \
            not minval < maxval:
        raise ConfigError("random_uniform: minval must be less than maxval, got minval=%r "
                          "maxval=%r" % (minval, maxval))

    def draw(sizes, s, dt):
        return tf.random.stateless_uniform(sizes, seed=s, minval=minval, maxval=maxval, dtype=dt)
    return _random(mesh, shape, seed, draw, dtype, "random_uniform")


@named_op("random_normal")
def random_normal(mesh, shape, seed=None, mean=0.0, stddev=1.0, dtype=tf.float32,
                  name=None) -> Tensor:
    """Normal values (``mean``, ``stddev``) with dims ``shape``."""
    def draw(sizes, s, dt):
        return tf.random.stateless_normal(sizes, seed=s, mean=mean, stddev=stddev, dtype=dt)
    return _random(mesh, shape, seed, draw, dtype, "random_normal")


@named_op("dropout")
def dropout(x: Tensor, is_training=True, keep_prob=None, rate=None, noise_shape=None,
            name=None, seed=None) -> Tensor:
    """mtf's dropout: keep each element with probability ``keep_prob`` (or ``1 - rate``).

    Give exactly one of ``keep_prob`` and ``rate``.  Kept float values are
    scaled by ``1 / keep_prob`` (integers are not scaled); the identity when
    ``is_training`` is false or ``keep_prob == 1``.  ``noise_shape``: a subset of
    x's dims over which the mask varies (default: all).  An element is kept
    where a uniform draw is ``< keep_prob``, as in mtf.  ``seed``: see the module.
    Output dims = x's dims.
    """
    check_tensor(x, "dropout")
    if (keep_prob is None) == (rate is None):
        raise ConfigError("dropout: give exactly one of keep_prob and rate, got keep_prob=%r "
                          "rate=%r" % (keep_prob, rate))
    given = "rate=%r" % (rate,) if keep_prob is None else "keep_prob=%r" % (keep_prob,)
    if keep_prob is None:
        keep_prob = 1.0 - rate if isinstance(rate, numbers.Real) else None
    if not isinstance(keep_prob, numbers.Real) or not 0.0 < keep_prob <= 1.0:
        raise ConfigError("dropout: keep_prob must be a number in (0, 1] (rate in [0, 1)), got "
                          "%s" % given)
    noise_shape = convert_to_shape(noise_shape) if noise_shape is not None else x.shape
    for d in noise_shape.dims:
        if d not in x.shape:
            raise ShapeError("dropout: noise_shape dim %s is not a dim of x %s" % (d, x.shape))
    if keep_prob == 1.0 or not is_training:
        return x
    draw_dtype = x.dtype if x.dtype.is_floating else tf.float32
    noise = cast(less(random_uniform(x.mesh, noise_shape, seed, dtype=draw_dtype), keep_prob),
                 x.dtype)
    if x.dtype.is_floating:
        noise = noise * (1.0 / keep_prob)
    return x * noise


def stateless_dropout(x: Tensor, rate: float, seed, noise_shape=None, name=None) -> Tensor:
    """``dropout(x, True, rate=rate, noise_shape=noise_shape, seed=seed)``: the seeded form."""
    return dropout(x, True, rate=rate, noise_shape=noise_shape, name=name, seed=seed)
