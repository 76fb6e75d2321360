"""mtf's dense-kernel initializers and its unit-scaling convention.

``DenseInitializer``s are called with ``(reduced_dims, new_dims)`` and return an
initializer for the kernel (mtf's ``layers.DenseInitializer`` protocol).
``unit_scaling_convention()`` is mtf's gin switch: when on, weights are
initialized with unit variance and contractions (``us_einsum``, hence ``dense``)
divide their output by ``sqrt(product of the contracted dims' sizes)``.
"""

import contextlib
import math

from namedmesh.core.checks import check_number
from namedmesh.errors import ConfigError
from namedmesh.layers.variables import random_uniform_initializer, truncated_normal_initializer

_UNIT_SCALING = [False]


def unit_scaling_convention(value=None) -> bool:
    """Whether the unit-scaling convention is on (mtf's gin-configurable switch).

    ``unit_scaling_convention(True)`` / ``(False)`` sets it and returns the new
    value; ``use_unit_scaling_convention()`` sets it for a block.
    """
    if value is not None:
        if not isinstance(value, bool):
            raise ConfigError("unit_scaling_convention: value must be True or False, got %r"
                              % (value,))
        _UNIT_SCALING[0] = value
    return _UNIT_SCALING[0]


@contextlib.contextmanager
def use_unit_scaling_convention(value: bool = True):
    """The unit-scaling convention on (or off) inside the block."""
    old = _UNIT_SCALING[0]
    unit_scaling_convention(value)
    try:
        yield
    finally:
        _UNIT_SCALING[0] = old


class DenseInitializer:
    """An initializer that ``dense`` calls with ``(reduced_dims, new_dims)``."""

    def __call__(self, reduced_dims, new_dims):
        raise NotImplementedError("%s must implement __call__(reduced_dims, new_dims)"
                                  % type(self).__name__)


class VarianceScalingInitializer(DenseInitializer):
    """mtf's default kernel init: ``stddev = sqrt(scale / n)``.

    ``n`` is 1 under the unit-scaling convention, else the fan-in (product of
    the reduced dims' sizes; ``mode="fan_in"``), the fan-out (``"fan_out"``) or
    their mean (``"fan_avg"``), each at least 1.  ``distribution="normal"``
    draws from a normal truncated at 2 stddev; ``"uniform"`` from
    ``[-limit, limit)`` with ``limit = stddev * sqrt(3)``.
    """

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "normal"):
        self.scale = check_number(scale, "VarianceScalingInitializer: scale", 0, above=True)
        for what, value in (("mode", mode), ("distribution", distribution)):
            if not isinstance(value, str):
                raise ConfigError("VarianceScalingInitializer: %s must be a string, got %r"
                                  % (what, value))
        self.mode = mode.lower()
        self.distribution = distribution.lower()
        if self.mode not in self.MODES:
            raise ConfigError("VarianceScalingInitializer: mode must be one of %s, got %r"
                              % (self.MODES, mode))
        if self.distribution not in self.DISTRIBUTIONS:
            raise ConfigError("VarianceScalingInitializer: distribution must be one of %s, got %r"
                              % (self.DISTRIBUTIONS, distribution))

    def stddev(self, reduced_dims, new_dims) -> float:
        fan_in = math.prod(d.size for d in reduced_dims)
        fan_out = math.prod(d.size for d in new_dims)
        scale = self.scale
        if unit_scaling_convention():
            if self.mode != "fan_in":
                raise ConfigError("VarianceScalingInitializer: the unit-scaling convention only "
                                  "works with mode 'fan_in', got %r" % self.mode)
        elif self.mode == "fan_in":
            scale /= max(1.0, fan_in)
        elif self.mode == "fan_out":
            scale /= max(1.0, fan_out)
        else:
            scale /= max(1.0, (fan_in + fan_out) / 2.0)
        return scale ** 0.5

    def __call__(self, reduced_dims, new_dims):
        stddev = self.stddev(reduced_dims, new_dims)
        if self.distribution == "normal":
            return truncated_normal_initializer(stddev)
        limit = stddev * 3.0 ** 0.5
        return random_uniform_initializer(-limit, limit)
