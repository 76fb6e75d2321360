"""Named dimensions and shapes.

A ``Dimension`` is a name and a size; a ``Shape`` is an ordered list of
dimensions with distinct names.  Dimensions are matched by *name* everywhere in
namedmesh: two tensors that both have a dim called ``"batch"`` must agree on
its size.

The string format is mesh-tensorflow's: ``"b0:2;b1:4"``, pairs ``name:size``
separated by any mix of space, comma, period or semicolon.
"""

import re
from typing import Iterable, Optional, Sequence, Tuple, Union

from namedmesh.errors import ShapeError, WrongTypeError

_SEPARATORS = re.compile(r"[ ,.;]+")
# a dim name must survive the string form "name:size;...": none of mtf's separators
# (space, comma, period, semicolon), no ':' and no other whitespace
_NAME_BREAKERS = re.compile(r"[\s,.;:]")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def check_dim_name(name, context: str = "", what: str = "dimension name") -> str:
    """``name`` if it can name a dimension: a non-empty string without any of mtf's
    separators (``' ,.;'``), ``':'`` or whitespace, which would make the shape string
    ``"name:size;..."`` ambiguous."""
    if not isinstance(name, str) or not name:
        raise ShapeError("%s must be a non-empty string, got %r%s" % (what, name, context))
    bad = _NAME_BREAKERS.search(name)
    if bad:
        raise ShapeError("%s %r%s contains %r; names may not contain whitespace or any of "
                         "',.;:' (mtf's strings 'name:size;...' split on them)"
                         % (what, name, context, bad.group()))
    return name


def parse_pairs(text: str, what: str) -> list:
    """Split an mtf-style string ``"k1:v1;k2:v2"`` into ``[(k1, v1), ...]``.

    Pairs may be separated by any of `` ,.;`` (mixed freely); the empty string
    gives ``[]``.  ``what`` names the kind of string in error messages.
    """
    if not isinstance(text, str):
        raise ShapeError("%s must be a string, got %r" % (what, text))
    pairs = []
    for token in _SEPARATORS.split(text.strip()):
        if not token:
            continue
        parts = token.split(":")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ShapeError(
                "%s %r: entry %r is not of the form name:value "
                "(pairs are separated by any of ' ,.;')" % (what, text, token))
        pairs.append((parts[0], parts[1]))
    return pairs


def _check_size(name: str, size, context: str) -> int:
    if isinstance(size, bool):
        raise ShapeError("dimension %r%s: size %r is not an integer"
                         % (name, context, size))
    if isinstance(size, str):
        if not _INTEGER.fullmatch(size.strip()):
            raise ShapeError("dimension %r%s: size %r is not an integer"
                             % (name, context, size))
        size = int(size)
    try:
        as_int = int(size)
    except (TypeError, ValueError):
        raise ShapeError("dimension %r%s: size %r is not an integer"
                         % (name, context, size)) from None
    if as_int != size:
        raise ShapeError("dimension %r%s: size %r is not an integer"
                         % (name, context, size))
    if as_int < 1:
        raise ShapeError("dimension %r%s: size must be a positive integer, got %d"
                         % (name, context, as_int))
    return as_int


class Dimension(tuple):
    """A named axis: ``Dimension("batch", 8)``.

    A tuple ``(name, size)`` (like mtf's namedtuple), validated: the name a
    non-empty string, the size a positive integer.
    """

    __slots__ = ()

    def __new__(cls, name, size):
        check_dim_name(name)
        return tuple.__new__(cls, (name, _check_size(name, size, "")))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def size(self) -> int:
        return self[1]

    def __getnewargs__(self):
        return (self[0], self[1])

    def __repr__(self):
        return "Dimension(%r, %d)" % (self.name, self.size)

    def __str__(self):
        return "%s:%d" % (self.name, self.size)


def make_dimension(name, size, context: str = "") -> Dimension:
    """A validated ``Dimension``; ``context`` is added to error messages."""
    check_dim_name(name, context)
    return Dimension(name, _check_size(name, size, context))


def convert_to_dimension(d) -> Optional[Dimension]:
    """A ``Dimension`` from a Dimension, a ``(name, size)`` pair or ``"name:size"``."""
    if d is None:
        return None
    if isinstance(d, Dimension):
        return d
    if isinstance(d, str):
        pairs = parse_pairs(d, "dimension string")
        if len(pairs) != 1:
            raise ShapeError("dimension string %r must hold exactly one name:size pair" % d)
        return make_dimension(*pairs[0], context=" in %r" % d)
    if isinstance(d, (tuple, list)) and len(d) == 2:
        return make_dimension(d[0], d[1])
    raise WrongTypeError("cannot convert %r to a Dimension (expected a Dimension, "
                         "a (name, size) pair or a 'name:size' string)" % (d,))


class Shape:
    """An ordered list of ``Dimension``s with distinct names.

    ``Shape([Dimension("batch", 4), Dimension("d_model", 16)])``; also
    built by ``convert_to_shape("batch:4;d_model:16")``.

    Look-ups go by name: ``"batch" in shape``, ``shape["batch"]`` (the
    Dimension), ``shape.index("batch")``.  ``shape + other`` appends the
    dims of ``other`` not already present (by name, sizes must agree);
    ``shape - x`` removes dims by name, where ``x`` is a name, a Dimension or
    a list/Shape of them (like mtf, a single dim must be present; dims of a
    list that are absent are ignored).

    mtf's surface: ``shape.dims`` is a new list (``shape.dims + [d]`` works),
    ``to_integer_list`` is a list that can also be called,
    ``dimension_names``, ``cumprod``, ``cumprod_to_tensor_axis``,
    ``resize_dimension`` and ``get_dim_by_name``.
    """

    __slots__ = ("_dims", "_index")

    def __init__(self, dims: Iterable = ()):
        if isinstance(dims, Shape):
            dims = dims.dims
        elif isinstance(dims, str):
            raise WrongTypeError("Shape(%r): a Shape takes a list of Dimensions; for an mtf "
                                 "string use namedmesh.convert_to_shape(%r)" % (dims, dims))
        elif not isinstance(dims, Iterable) or isinstance(dims, Dimension):
            raise WrongTypeError("Shape(%r): expected a list of Dimensions or (name, size) "
                                 "pairs" % (dims,))
        converted = []
        index = {}
        for d in dims:
            d = convert_to_dimension(d)
            if d.name in index:
                other = converted[index[d.name]]
                if other.size != d.size:
                    raise ShapeError(
                        "dimension name %r appears twice with sizes %d and %d; "
                        "one name must have one size" % (d.name, other.size, d.size))
                raise ShapeError("duplicate dimension name %r in shape [%s]"
                                 % (d.name, ", ".join(str(x) for x in list(converted) + [d])))
            index[d.name] = len(converted)
            converted.append(d)
        self._dims = tuple(converted)
        self._index = index

    # -- basic properties -------------------------------------------------
    @property
    def dims(self) -> list:
        """The dimensions, as a new list (mtf's type: ``shape.dims + [d]`` works)."""
        return list(self._dims)

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(d.name for d in self._dims)

    @property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(d.size for d in self._dims)

    @property
    def to_integer_list(self) -> "IntegerList":
        """The sizes as a list; mtf reads it as a property, older namedmesh code
        calls it: both ``shape.to_integer_list`` and ``shape.to_integer_list()`` work."""
        return IntegerList(self.sizes)

    @property
    def dimension_names(self) -> list:
        return [d.name for d in self._dims]

    @property
    def cumprod(self) -> list:
        """Exclusive cumulative product of the sizes: ``[1, s0, s0*s1, ...]`` (ndims entries)."""
        out, p = [], 1
        for d in self._dims:
            out.append(p)
            p *= d.size
        return out

    def cumprod_to_tensor_axis(self, cumprod: int) -> Optional[int]:
        """The last axis ``i`` with ``self.cumprod[i] == cumprod``, or None (mtf's helper)."""
        products = self.cumprod
        for i in range(len(products) - 1, -1, -1):
            if products[i] == cumprod:
                return i
        return None

    def resize_dimension(self, name: str, new_size: int) -> "Shape":
        """A copy where dim ``name`` has ``new_size``."""
        i = self.index(name)
        dims = list(self._dims)
        dims[i] = make_dimension(name, new_size)
        return Shape(dims)

    def get_dim_by_name(self, name: str) -> Dimension:
        return self._dims[self.index(name)]

    @property
    def ndims(self) -> int:
        return len(self._dims)

    @property
    def size(self) -> int:
        """Number of elements (product of the sizes)."""
        n = 1
        for d in self._dims:
            n *= d.size
        return n

    # -- look-ups -----------------------------------------------------------
    def __len__(self):
        return len(self._dims)

    def __iter__(self):
        return iter(self._dims)

    def __contains__(self, item) -> bool:
        if isinstance(item, str):
            return item in self._index
        if isinstance(item, Dimension):
            i = self._index.get(item.name)
            return i is not None and self._dims[i].size == item.size
        return False

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._dims[self.index(key)]
        if isinstance(key, slice):
            return Shape(self._dims[key])
        return self._dims[key]

    def index(self, name_or_dim) -> int:
        """Position of a dim given by name or Dimension; ShapeError if absent."""
        name = name_or_dim.name if isinstance(name_or_dim, Dimension) else name_or_dim
        i = self._index.get(name)
        if i is None:
            raise ShapeError("dimension %r is not in shape %s" % (name, self))
        if isinstance(name_or_dim, Dimension) and self._dims[i].size != name_or_dim.size:
            raise ShapeError("dimension %r has size %d in shape %s, not %d"
                             % (name, self._dims[i].size, self, name_or_dim.size))
        return i

    def get(self, name: str) -> Optional[Dimension]:
        i = self._index.get(name)
        return None if i is None else self._dims[i]

    # -- algebra by name ----------------------------------------------------
    def __add__(self, other) -> "Shape":
        other = _as_dims(other)
        extra = []
        for d in other:
            mine = self.get(d.name)
            if mine is None:
                extra.append(d)
            elif mine.size != d.size:
                raise ShapeError("cannot add dimension %s to shape %s: %r has size %d there"
                                 % (d, self, d.name, mine.size))
        return Shape(self._dims + tuple(extra))

    def __sub__(self, other) -> "Shape":
        if other is None:
            return self
        single = isinstance(other, Dimension) or (isinstance(other, str) and ":" not in other)
        names = set()
        for d in _as_names(other):
            if d not in self._index:
                if not single:
                    continue  # mtf: shape - [dim] tolerates an absent dim
                raise ShapeError("cannot remove dimension %r from shape %s: not present"
                                 % (d, self))
            names.add(d)
        return Shape([d for d in self._dims if d.name not in names])

    def rename_dimension(self, old_name: str, new_name: str) -> "Shape":
        i = self.index(old_name)
        dims = list(self._dims)
        dims[i] = make_dimension(new_name, dims[i].size)
        return Shape(dims)

    def is_compatible_with(self, other) -> bool:
        """True when every shared name has the same size."""
        for d in _as_dims(other):
            mine = self.get(d.name)
            if mine is not None and mine.size != d.size:
                return False
        return True

    # -- comparison / printing ------------------------------------------------
    def __eq__(self, other):
        if isinstance(other, Shape):
            return self._dims == other._dims
        if isinstance(other, (list, tuple)):
            try:
                return self._dims == Shape(other)._dims
            except ShapeError:
                return False
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(self._dims)

    def __repr__(self):
        return "Shape([%s])" % ", ".join(repr(d) for d in self._dims)

    def __str__(self):
        return "[%s]" % ", ".join(str(d) for d in self._dims)

    def to_string(self) -> str:
        """The mtf string form, ``"a:2;b:3"``."""
        return ";".join(str(d) for d in self._dims)


class IntegerList(list):
    """A list of sizes that returns a plain copy of itself when called."""

    def __call__(self) -> list:
        return list(self)


def _as_dims(x) -> Sequence[Dimension]:
    if isinstance(x, Dimension):
        return [x]
    return convert_to_shape(x).dims


def _as_names(x) -> Sequence[str]:
    if isinstance(x, str) and ":" not in x:
        return [x]
    if isinstance(x, Dimension):
        return [x.name]
    if isinstance(x, Shape):
        return list(x.names)
    if isinstance(x, (list, tuple)):
        out = []
        for item in x:
            out.extend(_as_names(item))
        return out
    return list(convert_to_shape(x).names)


ShapeLike = Union[Shape, str, Sequence]


def convert_to_shape(x) -> Optional[Shape]:
    """A ``Shape`` from a Shape, an mtf string, a list of pairs or of Dimensions.

    ``None`` stays ``None`` (like mtf).  ``"b0:2;b1:4"``, ``"b0:2,b1:4"``,
    ``[("b0", 2), ("b1", 4)]`` and ``[Dimension("b0", 2), ...]`` are accepted.
    """
    if x is None:
        return None
    if isinstance(x, Shape):
        return x
    if isinstance(x, str):
        pairs = parse_pairs(x, "shape string")
        dims = [make_dimension(n, s, context=" in shape string %r" % x) for n, s in pairs]
        try:
            return Shape(dims)
        except ShapeError as e:
            raise ShapeError("shape string %r: %s" % (x, e)) from None
    if isinstance(x, Dimension):
        return Shape([x])
    if isinstance(x, (list, tuple)):
        return Shape(x)
    raise ShapeError("cannot convert %r to a Shape (expected a Shape, an mtf string "
                     "such as 'b0:2;b1:4', or a list of Dimensions or (name, size) pairs)"
                     % (x,))
