"""What the multi-worker tests run in each worker, and the programs they compare.

Every program is a plain namedmesh program on a given mesh, so the test runs
the same function on the single-process placement executor for the expected
values.  A scenario takes (strategy, task_id, args) and returns a dict of numpy
arrays that the launcher saves as ``worker<task_id>.npz``.
"""
import time

import numpy as np
import tensorflow as tf

import namedmesh as nm


# -- the rank probe: one all-to-all, all-reduce and all-gather along each mesh dim ----------
def probe_layout(mesh_shape) -> str:
    """``first`` mesh dim splits h and f, ``second`` splits g and e."""
    first, second = nm.convert_to_shape(mesh_shape).names
    return "g:%s;e:%s;h:%s;f:%s" % (second, second, first, first)


def probe_input(mesh_shape) -> np.ndarray:
    """[eu:B, g:B, fu:A, h:A, d:2] of distinct small integers (sums are exact)."""
    a, b = nm.convert_to_shape(mesh_shape).sizes
    return np.arange(b * b * a * a * 2, dtype=np.float32).reshape(b, b, a, a, 2)


def probe(mesh, x):
    """(moved, sum over e, max over e, sum over f): reshapes whose split moves give an
    all-to-all along each mesh dim, the reductions an all-reduce along each, and the
    exports all-gathers."""
    a, b = mesh.shape.sizes
    t = nm.import_tf_tensor(mesh, x, "eu:%d;g:%d;fu:%d;h:%d;d:2" % (b, b, a, a))
    t = nm.reshape(t, "e:%d;gu:%d;fu:%d;h:%d;d:2" % (b, b, a, a))   # all-to-all along b
    t = nm.reshape(t, "e:%d;gu:%d;f:%d;hu:%d;d:2" % (b, b, a, a))   # all-to-all along a
    return (nm.export_to_tf_tensor(t),
            nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="e")),
            nm.export_to_tf_tensor(nm.reduce_max(t, reduced_dim="e")),
            nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="f")))


LINE_LAYOUT = "r:x;s:x"


def line_program(mesh, x):
    """A second program, on a 1-D mesh ``x:N`` with ``LINE_LAYOUT``: an export, a sum over
    the split dim and a reshape that moves the split (an all-to-all of the whole mesh)."""
    n = x.shape[0]
    t = nm.import_tf_tensor(mesh, x, "q:%d;r:%d" % (n, n))
    moved = nm.reshape(t, "s:%d;ru:%d" % (n, n))
    total = nm.reduce_sum(t, reduced_dim="r")
    return (nm.export_to_tf_tensor(t * 2.0), nm.export_to_tf_tensor(total),
            nm.export_to_tf_tensor(moved))


def line_input(n) -> np.ndarray:
    return np.arange(n * n, dtype=np.float32).reshape(n, n)


def _trace_only(strategy, mesh, fn, *args):
    """Trace (and never run) a program with collectives, as a worker that traced one
    more program than the others would."""
    @tf.function(autograph=False)
    def extra(*a):
        return strategy.run(lambda *b: fn(mesh, *b), args=a)
    extra.get_concrete_function(*[tf.constant(v) for v in args])


def _meshes(strategy, task_id, mesh_shape, timeout):
    """The probe mesh and a 1-D mesh on the same strategy, built in an order that
    depends on the worker (odd workers build the 1-D mesh first)."""
    n = strategy.num_replicas_in_sync

    def probe_mesh():
        return nm.Mesh(mesh_shape, probe_layout(mesh_shape), strategy=strategy,
                       collective_timeout=timeout)

    def line_mesh():
        return nm.Mesh("x:%d" % n, LINE_LAYOUT, strategy=strategy, collective_timeout=timeout)

    if task_id % 2:
        line = line_mesh()
        return probe_mesh(), line
    return probe_mesh(), line_mesh()


def rank_probe(strategy, task_id, args):
    mesh_shape = args.mesh if getattr(args, "mesh", None) else "a:3;b:4"
    mesh, line = _meshes(strategy, task_id, mesh_shape, args.timeout)
    x = probe_input(mesh_shape)
    if task_id % 2:  # odd workers trace one more program first (a different key base once)
        _trace_only(strategy, line, line_program, line_input(line.size))
    moved, sum_e, max_e, sum_f = mesh.run(lambda x: probe(mesh, x), tf.constant(x))
    doubled, line_sum, line_moved = line.run(lambda x: line_program(line, x),
                                             tf.constant(line_input(line.size)))
    report = nm.check_collectives(mesh)  # what `namedmesh check --strategy multi-worker` runs
    return dict(moved=moved.numpy(), sum_e=sum_e.numpy(), max_e=max_e.numpy(),
                check_ok=np.array(report.ok), check=np.array(report.render()),
                sum_f=sum_f.numpy(), doubled=doubled.numpy(), line_sum=line_sum.numpy(),
                line_moved=line_moved.numpy(),
                processor_map=np.array(mesh.describe_processors()),
                local_devices=np.array([str(d) for d in strategy.extended.worker_devices]))


# -- MoE2D forward and backward -----------------------------------------------------------
def moe2d(strategy, task_id, args):
    from moe_cases import Case, forward_and_grads
    case = Case("v2_small")
    n = strategy.num_replicas_in_sync
    mesh = nm.Mesh(case.call["mesh_shape"], case.call["layout"], strategy=strategy,
                   collective_timeout=args.timeout)
    if task_id % 2:
        line = nm.Mesh("x:%d" % n, LINE_LAYOUT, strategy=strategy)
        _trace_only(strategy, line, line_program, line_input(n))
    layer = case.make_layer()
    layer.build(case.shape, mesh)

    def replica(x, r):
        y, loss, grads, _ = forward_and_grads(case, layer, mesh, x, r)
        return y / n, loss / n, grads

    y, loss, grads = mesh.run(replica, tf.constant(case.data["x"]), tf.constant(case.data["r"]),
                              reduce="sum")
    out = {"y": y.numpy(), "loss": np.array(loss.numpy())}
    out.update({"grad/" + k: v.numpy() for k, v in grads.items()})
    return out


# -- a program that differs between workers ------------------------------------------------
def mismatch(strategy, task_id, args):
    """Worker 0 sums over the split dim (an all-reduce); the others move the split
    (an all-to-all).  Nobody's collective completes: each must fail within the timeout."""
    n = strategy.num_replicas_in_sync
    mesh = nm.Mesh("b:%d" % n, "g:b;e:b", strategy=strategy, collective_timeout=args.timeout)

    def summed(x):
        t = nm.import_tf_tensor(mesh, x, "eu:%d;g:%d" % (n, n))
        return nm.export_to_tf_tensor(nm.reduce_sum(t, reduced_dim="g"))

    def moved(x):
        t = nm.import_tf_tensor(mesh, x, "eu:%d;g:%d" % (n, n))
        return nm.export_to_tf_tensor(nm.reshape(t, "e:%d;gu:%d" % (n, n)))

    x = tf.constant(np.ones([n, n], np.float32))
    start = time.time()
    try:
        mesh.run(summed if task_id == 0 else moved, x)
        error, kind = "", ""
    except nm.NamedMeshError as e:
        error, kind = str(e), type(e).__name__
    elapsed = time.time() - start
    again = ""
    try:  # TensorFlow aborted this process's collectives: the next call says so
        mesh.run(summed if task_id == 0 else moved, x)
    except nm.NamedMeshError as e:
        again = str(e)
    return dict(error=np.array(error), kind=np.array(kind), seconds=np.array(elapsed),
                again=np.array(again))


# -- a Keras model with namedmesh layers in a custom training loop ---------------------------
KERAS_STEPS = 3


def keras_loop(strategy, task_id, args):
    """namedmesh.keras.example's model on mesh b0:2;b1:2 over every worker's replicas:
    ``KERAS_STEPS`` steps of a custom loop (strategy.run, Keras's compute_loss, the
    optimizer), replica r on rows [r*B/R, (r+1)*B/R) of each global batch (a worker's
    replicas take its dataset's elements in turn); then ``model.evaluate``-style loss.

    (Keras 3.15's ``model.fit`` cannot run under MultiWorkerMirroredStrategy on TF 2.21
    for any model: its first-batch ``strategy.reduce`` of the (x, y) pair raises; see
    docs/keras.md.)"""
    from namedmesh.keras.example import LAYOUT, MESH_SHAPE, ToyTask, build_model
    task = ToyTask()
    mesh = nm.Mesh(MESH_SHAPE, LAYOUT, strategy=strategy, collective_timeout=None)
    with strategy.scope():
        model = build_model(task, mesh)
        model.optimizer.build(model.trainable_weights)
    x, y = task.data(KERAS_STEPS)

    def dataset_fn(context):
        replicas, workers = context.num_replicas_in_sync, context.num_input_pipelines
        local = replicas // workers
        per = task.batch // replicas
        order = [step * task.batch + (context.input_pipeline_id * local + k) * per + i
                 for step in range(KERAS_STEPS) for k in range(local) for i in range(per)]
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(
            per, drop_remainder=True)

    @tf.function(autograph=False)
    def train_step(batch):
        def replica(xb, yb):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(xb, yb, model(xb, training=True), training=True)
            grads = tape.gradient(loss, model.trainable_weights)
            model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
            return loss
        return strategy.reduce("SUM", strategy.run(replica, args=batch), axis=None)

    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    losses = [float(train_step(next(batches))) for _ in range(KERAS_STEPS)]
    out = {"losses": np.array(losses)}
    out.update({"weight/" + w.path: w.numpy() for w in model.trainable_weights})
    return out


SCENARIOS = {"rank_probe": rank_probe, "moe2d": moe2d, "mismatch": mismatch,
             "keras_loop": keras_loop}
