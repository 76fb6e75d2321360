"""A replica's own batch shard as its processor's slice, and back (tf.distribute executor).

Under ``tf.distribute`` the input pipeline (``strategy.experimental_distribute_dataset``,
which Keras uses) splits each global batch into one contiguous shard per
replica, in replica order: replica ``r`` of ``R`` gets rows ``[r*n/R, (r+1)*n/R)``
of ``n``.  A mesh program can take that shard *as it is* as the slice of its
processor, with no communication, when the layout puts exactly those rows on
that processor: the batch dims (the leading dims, flattened row-major) must be
split over every mesh dim, the outer dims over the first mesh dims, and no
other dim may be split.  ``check_replica_shards`` says whether that holds (and
how to fix the layout if not); ``import_replica_shard`` /
``export_replica_shard`` convert.

Gradients (the convention of ``tf.distribute`` training, which Keras follows):
a loss computed on a replica's shard is that replica's part of the global
loss, already scaled by ``1 / R`` by the caller (Keras' losses,
``tf.nn.compute_average_loss``), and per-replica gradients are *summed*.  The
shard import and export are slice identities, so they add no scaling; a value
every replica holds whole (``export_replicated``: a scalar aux loss) is the
local copy, also unscaled: each replica adding it to its loss with the caller's
``1 / R`` counts it once in the sum.  (``export_to_tf_tensor`` instead scales
the gradient by ``1 / R``: it serves programs whose every replica computes the
whole loss unscaled, see docs/concepts.md.)
"""

import weakref
from typing import List

import numpy as np
import tensorflow as tf

from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.tensor import Tensor, export_to_tf_tensor, import_laid_out_tensor
from namedmesh.errors import LayoutError, ShapeError


def processor_rows(mesh, shape, batch_dims: int) -> List[np.ndarray]:
    """For each processor, the rows it holds of the leading ``batch_dims`` dims of
    ``shape`` flattened row-major (in the order its slice lists them)."""
    shape = convert_to_shape(shape)
    layout = mesh.tensor_layout(shape)
    sizes = shape.sizes[:batch_dims]
    out = []
    for p in range(mesh.size):
        coords = mesh.coordinates(p)
        ranges = []
        for i in range(batch_dims):
            axis, size = layout.mesh_axes[i], layout.slice_sizes[i]
            start = 0 if axis is None else coords[axis] * size
            ranges.append(np.arange(start, start + size))
        grid = np.meshgrid(*ranges, indexing="ij")
        out.append(np.ravel_multi_index([g.ravel() for g in grid], sizes) if sizes else
                   np.zeros([1], np.int64))
    return out


def check_replica_shards(mesh, shape, batch_dims: int) -> None:
    """Raise a ``LayoutError`` unless replica ``r``'s slice of ``shape`` is rows
    ``[r*n/R, (r+1)*n/R)`` of its ``batch_dims`` leading dims (flattened) and no
    other dim is split (see the module doc)."""
    _check(mesh, convert_to_shape(shape), batch_dims)


def _check_rows(mesh, shape: Shape, batch_dims: int) -> None:
    layout = mesh.tensor_layout(shape)
    rows = processor_rows(mesh, shape, batch_dims)
    n = int(np.prod(shape.sizes[:batch_dims], dtype=np.int64))
    replicas = mesh.size
    described = "%s laid out as %s on mesh %s with layout %r" % (
        shape, mesh.describe_layout(shape), mesh.shape.to_string(),
        mesh.layout_rules.to_string())
    split_rest = [d.name for d, a in zip(shape.dims[batch_dims:], layout.mesh_axes[batch_dims:])
                  if a is not None]
    if split_rest:
        raise LayoutError(
            "%s: dims %s are split, but a replica's shard of the batch holds whole rows; "
            "split only the batch dims %s" % (described, split_rest,
                                              list(shape.names[:batch_dims])))
    per = n // replicas if n % replicas == 0 else None
    order = mesh.processor_map.processor_of_replica
    for r in range(replicas):
        held = rows[order[r]]
        if per is None or len(held) != per or not np.array_equal(
                held, np.arange(r * per, (r + 1) * per)):
            raise LayoutError(
                "%s: replica %d (processor %d) holds rows %s of the %d rows of the batch dims "
                "%s, but tf.distribute gives replica %d rows [%d, %d) of every batch; split the "
                "batch dims over every mesh dim, outer batch dims over the first mesh dims "
                "(e.g. layout 'outer_batch:%s;batch:%s' for [outer_batch, batch, ...])"
                % (described, r, order[r], _ranges(held), n, list(shape.names[:batch_dims]), r,
                   r * (per or 0), (r + 1) * (per or 0), mesh.shape.names[0],
                   mesh.shape.names[-1]))


_checked = weakref.WeakKeyDictionary()   # mesh -> {(shape, batch_dims)} found right


def _check(mesh, shape, batch_dims):
    if mesh.strategy is None:
        raise LayoutError("replica shards exist only on a mesh with a tf.distribute strategy; "
                          "mesh %s runs on the placement executor" % mesh.describe())
    if not 1 <= batch_dims <= shape.ndims:
        raise ShapeError("batch_dims must be between 1 and the %d dims of %s, got %r"
                         % (shape.ndims, shape, batch_dims))
    done = _checked.setdefault(mesh, set())
    if (shape, batch_dims) not in done:
        _check_rows(mesh, shape, batch_dims)
        done.add((shape, batch_dims))


def _ranges(rows) -> str:
    """``[0, 4) + [8, 12)``: a row set as its runs."""
    rows = list(rows)
    if not rows:
        return "[]"
    parts, start, prev = [], rows[0], rows[0]
    for v in rows[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append("[%d, %d)" % (start, prev + 1))
        if v is not None:
            start = prev = v
    return " + ".join(parts)


def import_replica_shard(mesh, shard, shape, batch_dims: int = 1) -> Tensor:
    """The Tensor of global dims ``shape`` whose slice on this replica is ``shard``.

    shard: this replica's rows, ``[rows, *sizes of the dims after the batch dims]``
      (the batch dims flattened into one axis, as the input pipeline gives them).
    Runs inside ``strategy.run``; no communication.
    """
    shape = convert_to_shape(shape)
    _check(mesh, shape, batch_dims)
    slice_sizes = list(mesh.tensor_layout(shape).slice_sizes)
    want = [int(np.prod(slice_sizes[:batch_dims]))] + slice_sizes[batch_dims:]
    shard = tf.convert_to_tensor(shard)
    got = shard.shape.as_list() if shard.shape.rank is not None else None
    if got is None or len(got) != len(want) or any(
            g is not None and g != w for g, w in zip(got, want)):
        raise ShapeError("a replica's shard of %s on mesh %s must have shape %s (rows of the "
                         "batch dims %s, then the other dims), got %s"
                         % (shape, mesh.shape.to_string(), want,
                            list(shape.names[:batch_dims]), got))
    return import_laid_out_tensor(mesh, [tf.reshape(shard, slice_sizes)], shape)


def export_replica_shard(t: Tensor, batch_dims: int = 1) -> tf.Tensor:
    """This replica's slice of ``t`` as a shard: ``[rows, *the other dims' sizes]``.

    The inverse of ``import_replica_shard``; the gradient passes unscaled (see the
    module doc)."""
    _check(t.mesh, t.shape, batch_dims)
    sizes = t.layout.slice_sizes
    return tf.reshape(t.slices[0], [int(np.prod(sizes[:batch_dims]))] + list(sizes[batch_dims:]))


def export_replicated(t: Tensor) -> tf.Tensor:
    """The value of ``t``, which no layout splits (a scalar loss), as this replica holds it.

    Under a strategy: the local copy, the gradient unscaled (see the module doc);
    on the placement executor: ``export_to_tf_tensor``."""
    if t.mesh.strategy is None:
        return export_to_tf_tensor(t)
    split = [d.name for d, a in zip(t.shape.dims, t.layout.mesh_axes) if a is not None]
    if split:
        raise LayoutError("export_replicated: %s has split dims %s; only a value every replica "
                          "holds whole can be taken from one replica"
                          % (t.mesh.describe_layout(t.shape), split))
    return tf.identity(t.slices[0])


__all__ = ["check_replica_shards", "export_replica_shard", "export_replicated",
           "import_replica_shard", "processor_rows"]
