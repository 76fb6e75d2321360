"""``PlainCall``: run a named program on plain tensors, in whatever context it is called.

    call = PlainCall(mesh, PlainAxes(("batch", "length", "d_model")))
    y = call(lambda x: {"y": layer(x)[0]}, plain_x)["y"]     # plain in, plain out

Three contexts, chosen at each call:

* **placement**: the mesh has devices (or is one processor).  The plain tensor
  is the whole batch: it is imported (each processor keeps its slice) and the
  outputs exported whole.  Inside another strategy's ``strategy.run`` a
  one-processor mesh runs on each replica's own data (plain data parallelism).
* **replica**: the mesh runs on a tf.distribute strategy and this is that
  strategy's ``strategy.run`` (``model.fit``, ``evaluate``, ``predict``, a custom
  loop).  The plain tensor is this replica's shard of the batch and *is* its
  processor's slice (``namedmesh.lowering.shards``: no gathering); outputs are
  this replica's shard, and values every replica holds (a scalar loss) its
  local copy, gradients unscaled: the caller's loss scaling (``1 / replicas``,
  as Keras and ``tf.nn.compute_average_loss`` do) is the only one.
* **cross-replica**: a strategy mesh called outside ``strategy.run`` (e.g.
  ``model(x)`` eagerly).  The plain tensor is the whole batch; the program runs
  through ``mesh.run`` on every replica and the whole outputs come back.  For
  inference: gradients through it raise an error (train inside ``strategy.run``).

Outputs of the program: a nest of named Tensors (and plain TF values, passed
through).  A named output whose leading dims are the input's batch dims comes
back as a plain tensor with the batch axis first; one that no layout splits
(a loss) comes back as its value; anything else is an error.
"""

import tensorflow as tf

from namedmesh.core.tensor import Tensor, export_to_tf_tensor, import_tf_tensor
from namedmesh.errors import MeshError, ShapeError
from namedmesh.lowering.shards import (export_replica_shard, export_replicated,
                                       import_replica_shard)
from namedmesh.plain.axes import PlainAxes

PLACEMENT, REPLICA, CROSS_REPLICA = "placement", "replica", "cross-replica"


def call_context(mesh) -> str:
    """Which of the three contexts (see the module doc) a call on ``mesh`` runs in now."""
    if mesh.strategy is None:
        ctx = tf.distribute.get_replica_context()
        if mesh.size > 1 and tf.distribute.has_strategy() and ctx is not None and \
                ctx.num_replicas_in_sync > 1:
            raise MeshError(
                "a placement mesh of %d processors (%s) was called inside strategy.run of %s: "
                "every replica would run the whole mesh; build the mesh on the strategy "
                "(Mesh(..., strategy=strategy)) or use a one-processor mesh"
                % (mesh.size, mesh.describe(), type(tf.distribute.get_strategy()).__name__))
        return PLACEMENT
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and tf.distribute.has_strategy() and \
            tf.distribute.get_strategy() is mesh.strategy:
        return REPLICA
    return CROSS_REPLICA


class PlainCall:
    """Runs named programs on ``mesh`` with plain inputs named by ``axes``.

    Args:
      mesh: the namedmesh Mesh (devices or a strategy).
      axes: a ``PlainAxes`` (or the tuple of names it takes) for the input.
    """

    def __init__(self, mesh, axes):
        self.mesh = mesh
        self.axes = axes if isinstance(axes, PlainAxes) else PlainAxes(axes)
        self._cross_replica_fns = {}

    def named_shape(self, plain_shape, context=None):
        """The global named Shape of an input of static ``plain_shape`` in ``context``
        (in a replica, the shape is this replica's shard: the batch is ``replicas`` times it)."""
        sizes = list(tf.TensorShape(plain_shape).as_list())
        if (context or call_context(self.mesh)) == REPLICA and sizes and sizes[0] is not None:
            sizes[0] *= self.mesh.size
        return self.axes.shape_of(sizes)

    def __call__(self, program, x, *extras, key="program"):
        """``program(named_x, *extras)`` on the plain tensor ``x``; its outputs made plain.

        extras: plain values passed to the program as they are (seeds, flags).
        key: names the program for the cross-replica context's compiled function
          (one per key: pass a different key for a different program).
        """
        context = call_context(self.mesh)
        x = tf.convert_to_tensor(x)
        shape = self.named_shape(x.shape, context)
        if context == PLACEMENT:
            named = import_tf_tensor(self.mesh, tf.reshape(x, shape.sizes), shape)
            return self._plain_outputs(program(named, *extras), shape, whole=True)
        if context == REPLICA:
            named = import_replica_shard(self.mesh, x, shape, self.axes.batch_dims)
            return self._plain_outputs(program(named, *extras), shape, whole=False)
        return self._cross_replica(program, key, x, extras)

    def _cross_replica(self, program, key, x, extras):
        fn = self._cross_replica_fns.get(key)
        if fn is None:
            def fn(x, *extras):   # per replica, on the whole batch
                whole = self.axes.shape_of(x.shape.as_list())
                named = import_tf_tensor(self.mesh, tf.reshape(x, whole.sizes), whole)
                return self._plain_outputs(program(named, *extras), whole, whole=True)
            fn.__name__ = "namedmesh_%s" % key
            self._cross_replica_fns[key] = fn
        try:
            out = self.mesh.run(fn, x, *extras)
        except MeshError as e:
            # under a GradientTape TensorFlow traces the backward pass of mesh.run's function
            # at once, outside strategy.run, where the collectives' adjoints cannot run
            if "inside strategy.run" not in str(e):
                raise
            raise MeshError(NO_GRADIENT) from e
        return tf.nest.map_structure(_without_gradient, out)

    def _plain_outputs(self, out, input_shape, whole: bool):
        batch = self.axes.batch_shape(input_shape)

        def plain(v):
            if not isinstance(v, Tensor):
                return v
            lead = v.shape.dims[:batch.ndims]
            if v.shape.ndims >= batch.ndims and lead == batch.dims:
                if whole:
                    return tf.reshape(export_to_tf_tensor(v), self.axes.plain_sizes(v.shape))
                return export_replica_shard(v, batch.ndims)
            split = [d.name for d, a in zip(v.shape.dims, v.layout.mesh_axes) if a is not None]
            if split:
                raise ShapeError(
                    "a program output with dims %s neither begins with the batch dims %s nor "
                    "is whole on every processor (split: %s); return per-example outputs "
                    "batch dims first, and reduce the others" % (v.shape, batch, split))
            return export_to_tf_tensor(v) if whole else export_replicated(v)

        return tf.nest.map_structure(plain, out)


NO_GRADIENT = ("no gradient through a strategy mesh called outside strategy.run (the whole "
               "batch runs on every replica, for inference); train inside strategy.run: "
               "model.fit, or a custom loop calling the model in strategy.run")


@tf.custom_gradient
def _no_gradient_impl(v):
    def grad(dy):
        raise MeshError(NO_GRADIENT)
    return tf.identity(v), grad


def _without_gradient(v):
    if isinstance(v, tf.Tensor) and v.dtype.is_floating:
        return _no_gradient_impl(v)
    return v


__all__ = ["PlainCall", "call_context", "PLACEMENT", "REPLICA", "CROSS_REPLICA"]
