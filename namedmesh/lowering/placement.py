"""The placement executor: every processor's slice is a TF tensor on its own device.

One Python program drives all processors (mtf's ``PlacementMeshImpl``):
slicewise work runs under ``tf.device`` per processor, and collectives are
ordinary TF ops that move tensors between devices, so TensorFlow's own
autodiff gives their exact adjoints.  Runs eagerly and inside ``tf.function``.
"""

import contextlib

import tensorflow as tf

from namedmesh.lowering.base import LaidOut, MeshImpl


class PlacementImpl(MeshImpl):
    """Slices on ``devices[p]`` for processor ``p`` (row-major mesh coordinates)."""

    def __init__(self, mesh, devices):
        super().__init__(mesh)
        self.devices = list(devices)

    @property
    def num_local_slices(self) -> int:
        return self.mesh.size

    def on(self, p: int):
        d = self.devices[p]
        return tf.device(d) if d else contextlib.nullcontext()

    def slicewise(self, fn, *args) -> LaidOut:
        outs = []
        for p in range(self.mesh.size):
            per = [a[p] if isinstance(a, tuple) else a for a in args]
            with self.on(p):
                outs.append(fn(*per))
        return tuple(outs)

    def pcoord(self, mesh_axis: int) -> LaidOut:
        return tuple(self.mesh.coordinates(p)[mesh_axis] for p in range(self.mesh.size))

    # -- collectives -----------------------------------------------------------
    def _allreduce(self, x, mesh_axes, reduction) -> LaidOut:
        out = list(x)
        for group in self.mesh.groups(mesh_axes):
            with self.on(group[0]):
                if reduction == "SUM":
                    total = [tf.add_n([x[p] for p in group])]
                else:
                    total = _reduce_extreme(reduction, *[x[p] for p in group])
            for p in group:
                with self.on(p):
                    out[p] = tf.identity(total[0])
        return tuple(out)

    def _alltoall(self, x, mesh_axis, split_axis, concat_axis) -> LaidOut:
        n = self.mesh.shape.dims[mesh_axis].size
        out = list(x)
        for group in self.mesh.groups([mesh_axis]):
            pieces = {}
            for p in group:
                with self.on(p):
                    pieces[p] = tf.split(x[p], n, axis=split_axis)
            for k, p in enumerate(group):
                with self.on(p):
                    out[p] = tf.concat([pieces[s][k] for s in group], axis=concat_axis)
        return tuple(out)

    def _allconcat(self, x, mesh_axis, concat_axis) -> LaidOut:
        out = list(x)
        for group in self.mesh.groups([mesh_axis]):
            for p in group:
                with self.on(p):
                    out[p] = tf.concat([x[s] for s in group], axis=concat_axis)
        return tuple(out)

    def _receive(self, x, mesh_axis, sources) -> LaidOut:
        out = list(x)
        for group in self.mesh.groups([mesh_axis]):
            for k, p in enumerate(group):
                with self.on(p):
                    src = sources[k]
                    out[p] = tf.zeros_like(x[p]) if src is None else tf.identity(x[group[src]])
        return tuple(out)

    # -- import / export ----------------------------------------------------------
    def import_tf_tensor(self, value, layout) -> LaidOut:
        """Every processor's slice of ``value``, cut once with ``tf.split`` per split axis.

        The pieces are cut once for the whole mesh (not once per processor), and the
        gradient of a split is a concat: the gradient of ``value`` (a whole variable, say)
        is assembled from the processors' slice gradients with no full-size zero tensor
        per processor, and the copies of a replicated piece are summed piece by piece.
        """
        pieces = split_pieces(value, [(t, a, self.mesh.shape.dims[a].size)
                                      for t, a in enumerate(layout.mesh_axes) if a is not None])
        out = []
        for p in range(self.mesh.size):
            coords = self.mesh.coordinates(p)
            key = tuple(coords[a] for a in layout.mesh_axes if a is not None)
            with self.on(p):
                out.append(tf.identity(pieces[key]))
        return tuple(out)

    def export_to_tf_tensor(self, x, layout) -> tf.Tensor:
        split = [(t, a) for t, a in enumerate(layout.mesh_axes) if a is not None]
        coords = [0] * self.mesh.ndims

        def assemble(level):
            if level == len(split):
                return x[self.mesh.pnum(coords)]
            tensor_axis, mesh_axis = split[level]
            parts = []
            for c in range(self.mesh.shape.dims[mesh_axis].size):
                coords[mesh_axis] = c
                parts.append(assemble(level + 1))
            coords[mesh_axis] = 0
            return tf.concat(parts, axis=tensor_axis)

        return assemble(0)


def split_pieces(value, splits):
    """``{coordinates: piece}``: ``value`` cut along each ``(tensor axis, mesh axis, n)`` of
    ``splits`` in turn into ``n`` equal pieces; the key lists the piece's coordinate along
    each split's mesh axis, in the order of ``splits`` (``{(): value}`` for no split)."""
    pieces = {(): value}
    for tensor_axis, _, n in splits:
        pieces = {key + (c,): part for key, piece in pieces.items()
                  for c, part in enumerate(tf.split(piece, n, axis=tensor_axis))}
    return pieces


def _reduce_extreme(reduction, *values):
    """Max or min of a group's slices, with mtf's gradient (every maximal element gets it)."""
    fn = tf.maximum if reduction == "MAX" else tf.minimum

    @tf.custom_gradient
    def combine(*xs):
        y = xs[0]
        for v in xs[1:]:
            y = fn(y, v)

        def grad(dy):
            return [tf.cast(tf.equal(v, y), dy.dtype) * dy for v in xs]

        return y, grad

    return [combine(*values)]
