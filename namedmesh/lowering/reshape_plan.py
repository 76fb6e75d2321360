"""How a reshape lowers: the collectives that turn one layout into another.

This follows mtf's ``ReshapeOperation.lower``.  A split of a tensor dim over a
mesh axis partitions the row-major flattening of the tensor; it is fully
described by the *prefix product* of the dims before the split dim.  Per mesh
axis, compare the prefix products of the old and the new shape:

* equal                -> nothing (renames, merges and splits that keep the offset);
* unsplit -> split     -> allsplit (a local slice, no communication);
* split -> unsplit     -> allconcat (all-gather);
* split -> split elsewhere -> one all-to-all: split the old axis that starts where
  the new split dim starts, concatenate on the old split axis.

Differences from mtf (its bugs fixed, not copied):

* mtf never checks that the old axis it splits is divisible by the mesh dim;
  here such an allsplit is deferred until after the local reshape, and such an
  all-to-all becomes allconcat + allsplit after the reshape.
* mtf raises NotImplementedError when no old axis starts where the new split
  dim starts; here that case also becomes allconcat + allsplit after the reshape.
* mtf may split an axis that another mesh axis still splits (interleaving the
  blocks wrongly); here an old axis is split by one mesh axis at a time, and a
  move onto an axis waits until the move off it has run.
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple

from namedmesh.core.dims import Shape


class Step(NamedTuple):
    """One collective of a reshape plan.

    kind: "allsplit", "allconcat" or "alltoall".
    mesh_axis: the mesh axis it works along.
    split_axis / concat_axis: tensor axes (of the old shape before the local
    reshape, of the new shape after it); None where the kind has none.
    """

    kind: str
    mesh_axis: int
    split_axis: Optional[int] = None
    concat_axis: Optional[int] = None


class ReshapePlan(NamedTuple):
    before: Tuple[Step, ...]      # on the old shape, before the local reshape
    local_shape: Tuple[int, ...]  # slice shape the local reshape produces
    after: Tuple[Step, ...]       # allsplits on the new shape, after it

    @property
    def steps(self) -> Tuple[Step, ...]:
        return self.before + self.after

    def count(self, kind: str) -> int:
        return sum(1 for s in self.steps if s.kind == kind)


def prefix_products(shape: Shape) -> List[int]:
    out, p = [], 1
    for d in shape.dims:
        out.append(p)
        p *= d.size
    return out


def _axis_starting_at(shape: Shape, prefix: int, divisor: int, busy) -> Optional[int]:
    """The tensor axis of ``shape`` whose prefix product is ``prefix`` and whose
    size ``divisor`` divides, not currently split (``busy``); None if there is none."""
    for i, (p, d) in enumerate(zip(prefix_products(shape), shape.dims)):
        if p == prefix and d.size % divisor == 0 and i not in busy:
            return i
    return None


def plan_reshape(old_shape: Shape, new_shape: Shape, mesh_shape: Shape,
                 old_axes: Sequence[Optional[int]], new_axes: Sequence[Optional[int]]) -> ReshapePlan:
    """The collectives that take slices of ``old_shape`` laid out by ``old_axes``
    (mesh axis per tensor dim, or None) to slices of ``new_shape`` laid out by
    ``new_axes``."""
    mesh_sizes = mesh_shape.sizes
    old_pp, new_pp = prefix_products(old_shape), prefix_products(new_shape)

    def where(axes, pp):
        out = {}
        for i, a in enumerate(axes):
            if a is not None and mesh_sizes[a] > 1:
                out[a] = (i, pp[i])
        return out

    old_split, new_split = where(old_axes, old_pp), where(new_axes, new_pp)
    # current state of the old shape: tensor axis -> mesh axis splitting it
    occupied = {i: a for a, (i, _) in old_split.items()}
    local = [d.size if a is None else d.size // mesh_sizes[a]
             for d, a in zip(old_shape.dims, old_axes)]
    pending = []  # (kind, mesh_axis)
    for a in range(len(mesh_sizes)):
        o, n = old_split.get(a), new_split.get(a)
        if o is None and n is None:
            continue
        if o is not None and n is not None and o[1] == n[1]:
            continue
        if o is None:
            pending.append(("allsplit", a))
        elif n is None:
            pending.append(("allconcat", a))
        else:
            pending.append(("alltoall", a))
    before, after_axes = [], []

    def do_allconcat(a):
        i = old_split[a][0]
        before.append(Step("allconcat", a, None, i))
        local[i] *= mesh_sizes[a]
        del occupied[i]

    while pending:
        progress = False
        for kind, a in list(pending):
            n = mesh_sizes[a]
            if kind == "allsplit":
                target = _axis_starting_at(old_shape, new_split[a][1], n, occupied)
                if target is None:
                    if _axis_starting_at(old_shape, new_split[a][1], n, ()) is None:
                        after_axes.append(a)  # no old axis will do: split after the reshape
                        pending.remove((kind, a))
                        progress = True
                    continue
                before.append(Step("allsplit", a, target, None))
                local[target] //= n
                occupied[target] = a
            elif kind == "alltoall":
                target = _axis_starting_at(old_shape, new_split[a][1], n, occupied)
                if target is None:
                    if _axis_starting_at(old_shape, new_split[a][1], n, ()) is None:
                        do_allconcat(a)  # mtf: NotImplementedError or a silent bug
                        after_axes.append(a)
                        pending.remove((kind, a))
                        progress = True
                    continue
                i = old_split[a][0]
                before.append(Step("alltoall", a, target, i))
                local[target] //= n
                local[i] *= n
                del occupied[i]
                occupied[target] = a
            else:
                do_allconcat(a)
            pending.remove((kind, a))
            progress = True
        if not progress:
            # a cycle of moves (e.g. a swap): break it by gathering one of them
            kind, a = pending.pop(0)
            if kind == "alltoall":
                do_allconcat(a)
            after_axes.append(a)
    local_shape = [d.size if a is None else d.size // mesh_sizes[a]
                   for d, a in zip(new_shape.dims, new_axes)]
    after = []
    for a in after_axes:
        j = new_split[a][0]
        local_shape[j] *= mesh_sizes[a]
        after.append(Step("allsplit", a, j, None))
    return ReshapePlan(tuple(before), tuple(local_shape), tuple(after))
