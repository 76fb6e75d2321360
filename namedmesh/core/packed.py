"""Many sums, few all-reduces: ``reduce_sums`` packs reductions that need the same collective.

A sum over a dim that the layout splits ends in an all-reduce (``reduce_sum``).
Small sums such as a load-balancing loss and routing statistics are latency
bound: each all-reduce is a synchronisation point of the whole group.
``reduce_sums`` first computes every processor's partial sums, then concatenates
those that need the same mesh dims (and have the same dtype) into one vector,
runs one all-reduce per such set, and cuts the result back into tensors.

The values equal those of separate ``reduce_sum`` calls: the same partial sums,
combined by the same group sum.

    sums = reduce_sums({"loss": density, "routed": (mask, "experts:8")})
    sums["loss"]      # a scalar Tensor; sums["routed"]: dims [experts]
"""

from typing import Dict, Mapping

import tensorflow as tf

from namedmesh.core.contraction import _reduction_output_shape
from namedmesh.core.dims import Dimension, Shape
from namedmesh.core.elementwise import check_tensor, same_mesh
from namedmesh.core.tensor import Tensor


def _local_sum(x: Tensor, out_shape: Shape):
    """Per-processor sums of ``x`` down to ``out_shape`` (dims in its order), and the
    mesh axes of the summed dims that are split (whose groups must still add them)."""
    names = x.shape.names
    axes = [i for i, n in enumerate(names) if n not in out_shape]
    kept = [n for n in names if n in out_shape]
    perm = [kept.index(n) for n in out_shape.names]
    split = tuple(sorted(x.layout.mesh_axes[i] for i in axes
                         if x.layout.mesh_axes[i] is not None
                         and x.mesh.shape.dims[x.layout.mesh_axes[i]].size > 1))

    def local(v):
        r = tf.reduce_sum(v, axes) if axes else v
        return tf.transpose(r, perm) if perm != sorted(perm) else r

    return x.mesh.impl.slicewise(local, x.slices), split


def reduce_sums(requests: Mapping[str, object]) -> Dict[str, Tensor]:
    """Several ``reduce_sum``s with one all-reduce per set of mesh dims they need.

    requests: ``{name: x}`` (sum over every dim: a scalar) or ``{name: (x, output_shape)}``
      (sum down to ``output_shape``, a subset of x's dims in any order).
    Returns ``{name: Tensor}`` with the dims of each output shape.
    """
    if not requests:
        return {}
    prepared = {}
    packs = {}  # (mesh axes, dtype) -> names, in request order
    for name, request in requests.items():
        x, output_shape = request if isinstance(request, tuple) else (request, None)
        check_tensor(x, "reduce_sums(%r)" % name)
        if not (x.dtype.is_floating or x.dtype.is_integer):
            raise TypeError("reduce_sums(%r): cannot sum a %s tensor %s; cast it first"
                            % (name, x.dtype.name, x.shape))
        out_shape = _reduction_output_shape(x, output_shape, None, "reduce_sums(%r)" % name)
        local, split = _local_sum(x, out_shape)
        prepared[name] = (x, out_shape, local)
        packs.setdefault((split, x.dtype), []).append(name)
    mesh = same_mesh([p[0] for p in prepared.values()], "reduce_sums")
    impl = mesh.impl
    out = {}
    for (split, dtype), names in packs.items():
        if not split:
            for n in names:
                out[n] = Tensor(mesh, prepared[n][1], prepared[n][2], dtype)
            continue
        if len(names) == 1:
            n = names[0]
            total = impl.allreduce(prepared[n][2], list(split), "SUM", shape=prepared[n][1])
            out[n] = Tensor(mesh, prepared[n][1], total, dtype)
            continue
        slice_shapes = [list(mesh.tensor_layout(prepared[n][1]).slice_sizes) for n in names]
        lengths = [_product(s) for s in slice_shapes]
        packed = impl.slicewise(lambda *vs: tf.concat([tf.reshape(v, [-1]) for v in vs], 0),
                                *[prepared[n][2] for n in names])
        described = Shape([Dimension("packed_sums", sum(lengths))])
        total = impl.allreduce(packed, list(split), "SUM", shape=described)
        pieces = impl.slicewise(
            lambda v: tuple(tf.reshape(p, s) for p, s in zip(tf.split(v, lengths), slice_shapes)),
            total)
        for k, n in enumerate(names):
            out[n] = Tensor(mesh, prepared[n][1], tuple(p[k] for p in pieces), dtype)
    return out


def _product(sizes) -> int:
    p = 1
    for s in sizes:
        p *= s
    return p


__all__ = ["reduce_sums"]

