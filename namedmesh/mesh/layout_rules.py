"""Layout rules: which tensor dimension (by name) is split over which mesh dimension.

mtf's string format: ``"batch:b0;experts:b1"``, pairs ``tensor_dim:mesh_dim``
separated by any of `` ,.;``.  The empty string means no rules (everything
replicated).  A tensor dim may be mapped to one mesh dim only.
"""

from typing import Dict, Iterable, Optional, Tuple

from namedmesh.core.dims import check_dim_name, parse_pairs
from namedmesh.errors import LayoutError, ShapeError


class LayoutRules:
    """An ordered mapping ``tensor dim name -> mesh dim name``.

    ``LayoutRules([("batch", "b0"), ("experts", "b1")])``; usually built by
    ``convert_to_layout_rules("batch:b0;experts:b1")``.
    """

    __slots__ = ("_pairs", "_map")

    def __init__(self, pairs: Iterable[Tuple[str, str]] = ()):
        mapping: Dict[str, str] = {}
        ordered = []
        for pair in pairs:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise LayoutError("layout rule %r is not a (tensor_dim, mesh_dim) pair" % (pair,))
            tensor_dim, mesh_dim = pair
            for part, what in ((tensor_dim, "tensor dim"), (mesh_dim, "mesh dim")):
                if not isinstance(part, str) or not part:
                    raise LayoutError("layout rule %r: %s must be a non-empty name, got %r"
                                      % (pair, what, part))
                try:
                    check_dim_name(part, what=what + " name")
                except ShapeError as e:
                    raise LayoutError("layout rule %r: %s" % (pair, e)) from None
            if tensor_dim in mapping:
                raise LayoutError(
                    "layout rules map tensor dim %r twice (to %r and to %r); "
                    "a tensor dim can be split over one mesh dim only"
                    % (tensor_dim, mapping[tensor_dim], mesh_dim))
            mapping[tensor_dim] = mesh_dim
            ordered.append((tensor_dim, mesh_dim))
        self._pairs = tuple(ordered)
        self._map = mapping

    @property
    def pairs(self) -> Tuple[Tuple[str, str], ...]:
        return self._pairs

    def mesh_dim_name(self, tensor_dim_name: str) -> Optional[str]:
        """The mesh dim a tensor dim is split over by these rules, or None."""
        return self._map.get(tensor_dim_name)

    def __iter__(self):
        return iter(self._pairs)

    def __len__(self):
        return len(self._pairs)

    def __eq__(self, other):
        return isinstance(other, LayoutRules) and set(self._pairs) == set(other._pairs)

    def __hash__(self):
        return hash(frozenset(self._pairs))

    def to_string(self) -> str:
        return ";".join("%s:%s" % p for p in self._pairs)

    def __repr__(self):
        return "LayoutRules(%r)" % self.to_string()


def convert_to_layout_rules(x) -> LayoutRules:
    """``LayoutRules`` from LayoutRules, an mtf string or a list of pairs.

    ``"batch:b0;experts:b1"``, ``"ensemble:ensemble,batch:batch,d_ff:model"``,
    ``""`` (no rules), ``[("batch", "b0")]``, a dict ``{"batch": "b0"}`` and
    ``None``, ``{}`` or ``[]`` (no rules).
    """
    if x is None:
        return LayoutRules()
    if isinstance(x, dict):
        return LayoutRules(list(x.items()))
    if isinstance(x, LayoutRules):
        return x
    if isinstance(x, str):
        try:
            pairs = parse_pairs(x, "layout string")
        except ShapeError as e:
            raise LayoutError(str(e)) from None
        try:
            return LayoutRules(pairs)
        except LayoutError as e:
            raise LayoutError("layout string %r: %s" % (x, e)) from None
    if isinstance(x, (list, tuple)):
        return LayoutRules(x)
    raise LayoutError("cannot convert %r to layout rules (expected an mtf string such "
                      "as 'batch:b0;experts:b1' or a list of (tensor_dim, mesh_dim) pairs)"
                      % (x,))
