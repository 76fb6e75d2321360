"""``PlainAxes``: the dim names of a plain tensor's axes, given once.

    axes = PlainAxes(("batch", "length", "d_model"))
    axes.shape_of([8, 16, 32])      # Shape [batch:8, length:16, d_model:32]

The first axis is the batch axis (the one tf.distribute and Keras split among
replicas).  It may stand for several named dims, outermost first, of which all
but one give their size: ``PlainAxes((("outer_batch:2", "batch"), "length",
"d_model"))`` names a ``[16, 4, 8]`` tensor ``[outer_batch:2, batch:8,
length:4, d_model:8]`` (the batch axis is ``outer_batch x batch``, row-major).
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.errors import ShapeError


def _parse_entry(entry, what: str) -> Tuple[str, Optional[int]]:
    """``"name"`` -> (name, None); ``"name:size"`` or a Dimension -> (name, size)."""
    if isinstance(entry, Dimension):
        return entry.name, entry.size
    if not isinstance(entry, str) or not entry or entry.count(":") > 1:
        raise ShapeError("%s: an axis is named by a string 'name' or 'name:size', got %r"
                         % (what, entry))
    if ":" in entry:
        d = convert_to_shape(entry).dims[0]
        return d.name, d.size
    return entry, None


class PlainAxes:
    """Names of a plain tensor's axes; the first (batch) axis may merge several dims.

    Args:
      dims: one entry per axis: a name (its size is read off the tensor),
        ``"name:size"`` (checked), or for the batch axis a tuple of such
        entries, outermost first, all but one with a size.
    """

    def __init__(self, dims: Sequence, what: str = "input_dims"):
        if isinstance(dims, (str, Shape)) or not isinstance(dims, (list, tuple)) or not dims:
            raise ShapeError("%s must be a non-empty tuple of axis names such as "
                             "('batch', 'length', 'd_model'), got %r" % (what, dims))
        self.what = what
        axes = []
        for i, entry in enumerate(dims):
            if isinstance(entry, (list, tuple)) and not isinstance(entry, Dimension):
                if i != 0:
                    raise ShapeError("%s: only the first (batch) axis may merge several dims, "
                                     "axis %d is %r" % (what, i, entry))
                parts = [_parse_entry(e, what) for e in entry]
                if not parts or sum(size is None for _, size in parts) > 1:
                    raise ShapeError("%s: the merged batch axis %r must give the size of all "
                                     "its dims but at most one" % (what, entry))
                axes.append(parts)
            else:
                axes.append([_parse_entry(entry, what)])
        names = [n for axis in axes for n, _ in axis]
        if len(set(names)) != len(names):
            raise ShapeError("%s: a dim name appears twice in %r" % (what, dims))
        self._axes = axes

    @property
    def ndims(self) -> int:
        """The plain tensor's rank."""
        return len(self._axes)

    @property
    def batch_dims(self) -> int:
        """How many named dims the batch axis stands for."""
        return len(self._axes[0])

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(n for axis in self._axes for n, _ in axis)

    def __repr__(self):
        def entry(axis):
            text = [n if s is None else "%s:%d" % (n, s) for n, s in axis]
            return text[0] if len(text) == 1 else "(%s)" % ", ".join(text)
        return "PlainAxes(%s)" % ", ".join(entry(a) for a in self._axes)

    def shape_of(self, sizes, what: str = "input") -> Shape:
        """The named Shape of a plain tensor of global ``sizes`` (a list or TensorShape)."""
        sizes = list(sizes)
        if len(sizes) != self.ndims:
            raise ShapeError("%s has %d axes (shape %s) but %s names %d: %r"
                             % (what, len(sizes), sizes, self.what, self.ndims, self))
        dims = []
        for i, (axis, size) in enumerate(zip(self._axes, sizes)):
            if size is None:
                raise ShapeError(
                    "%s axis %d (%s) has no static size (shape %s): named dims need one; give "
                    "the batch a fixed size (keras.Input(batch_size=...), "
                    "dataset.batch(..., drop_remainder=True))"
                    % (what, i, "/".join(n for n, _ in axis), sizes))
            size = int(size)
            known = int(np.prod([s for _, s in axis if s is not None], dtype=np.int64))
            free = [n for n, s in axis if s is None]
            if size % known or (not free and size != known):
                raise ShapeError("%s axis %d has size %d, which %s cannot name (%r)"
                                 % (what, i, size, self.what, self))
            for n, s in axis:
                dims.append(Dimension(n, s if s is not None else size // known))
        return Shape(dims)

    def plain_sizes(self, shape: Shape) -> list:
        """The plain sizes of a named ``shape`` that begins with the batch dims: the batch
        dims merged into one axis, the other dims as they are."""
        k = self.batch_dims
        return [int(np.prod(shape.sizes[:k]))] + list(shape.sizes[k:])

    def batch_shape(self, shape: Shape) -> Shape:
        """The batch dims of a named shape made by ``shape_of``."""
        return Shape(shape.dims[:self.batch_dims])


__all__ = ["PlainAxes"]
