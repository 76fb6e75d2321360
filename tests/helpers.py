"""Helpers for tests: named arrays in and out, axis permutations by name."""
import functools

import numpy as np
import tensorflow as tf

import namedmesh as nm


@functools.lru_cache(maxsize=None)
def one_device_mesh():
    """One single-device mesh, made on first use and shared (property tests run an op on
    hundreds of generated inputs; a mesh each would be wasted work)."""
    return nm.Mesh()


def shape_of(names, sizes):
    return nm.Shape([nm.Dimension(n, s) for n, s in zip(names, sizes)])


def permuted_import(mesh, array, names, order):
    """Import ``array`` (axes named ``names``) with its axes in ``order`` (a permutation of names)."""
    perm = [names.index(n) for n in order]
    data = np.transpose(array, perm)
    return nm.import_tf_tensor(mesh, data, shape_of(order, data.shape))


def as_numpy(t, names):
    """Export ``t`` and transpose its axes into the order ``names``."""
    value = nm.export_to_tf_tensor(t).numpy()
    perm = [t.shape.names.index(n) for n in names]
    return np.transpose(value, perm)


def random_order(rng, names):
    names = list(names)
    rng.shuffle(names)
    return names


_STRATEGIES = {}


def strategy(n):
    """One MirroredStrategy over the first ``n`` logical CPUs, shared by all tests."""
    if n not in _STRATEGIES:
        _STRATEGIES[n] = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(n)])
    return _STRATEGIES[n]
