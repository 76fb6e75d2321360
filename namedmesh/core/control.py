"""Control over named tensors: custom gradients, recomputation on the backward pass, loops.

mtf builds a graph of its own and implements these by cloning operations;
namedmesh runs TensorFlow directly, so each is a TensorFlow construct applied to
the laid-out slices of the named tensors (every processor's slices, so the same
code runs on any mesh and executor):

* ``custom_gradient(fn, grad_fn, explicit_inputs)``: ``tf.custom_gradient``;
* ``recompute_grad(fn, explicit_inputs)``: the forward keeps only ``fn``'s
  inputs and outputs; the backward pass runs ``fn`` again to get its gradients
  (intermediate activations are not held between the passes);
* ``while_loop(cond_fn, body_fn, inputs)``: ``tf.while_loop`` over the slices,
  with mtf's accumulators, and with gradients (mtf has none).

Random ops inside a recomputed ``fn`` must be seeded (``seed=``), or the
recomputation draws different values than the forward pass did.
"""

import contextlib
from typing import Callable, List, Sequence

import tensorflow as tf

from namedmesh.core.creation import zeros
from namedmesh.core.elementwise import broadcast, check_tensor, same_mesh
from namedmesh.core.tensor import Tensor
from namedmesh.errors import MeshError, ShapeError, WrongTypeError
from namedmesh.lowering import trace

_WHILE_KWARGS = ("parallel_iterations", "maximum_iterations", "swap_memory", "back_prop",
                 "shape_invariants")


# -- state the backward pass must see as the forward pass saw it -----------------------------
_CONTEXT_CAPTURES: List[Callable] = []


def register_context_capture(capture: Callable):
    """Register ``capture()``, which returns a function giving a context manager that
    re-enters the state seen at capture time (e.g. the variable stores' scopes), so that
    a function run again on the backward pass finds the same variables."""
    _CONTEXT_CAPTURES.append(capture)


def _captured_context():
    restores = [capture() for capture in _CONTEXT_CAPTURES]

    @contextlib.contextmanager
    def restored():
        with contextlib.ExitStack() as stack:
            for restore in restores:
                stack.enter_context(restore())
            yield

    return restored


# -- named tensors <-> flat lists of slices ---------------------------------------------------
def _check_callable(fn, op: str, what: str):
    if not callable(fn):
        raise WrongTypeError("%s: %s must be a function, got %r (%s)"
                             % (op, what, fn, type(fn).__name__))


def _checked(tensors, op: str) -> List[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("%s needs at least one input Tensor" % op)
    for t in tensors:
        check_tensor(t, op)
    same_mesh(tensors, op)
    return tensors


def _flatten(tensors: Sequence[Tensor]) -> list:
    return [s for t in tensors for s in t.slices]


def _rebuild(like: Sequence, flat) -> List[Tensor]:
    """Tensors shaped like ``like`` (Tensors, or (mesh, shape, dtype, n) specs) from ``flat``."""
    out, i = [], 0
    for t in like:
        mesh, shape, dtype, n = _spec(t)
        out.append(Tensor(mesh, shape, tuple(flat[i:i + n]), dtype))
        i += n
    return out


def _spec(t):
    if isinstance(t, Tensor):
        return t.mesh, t.shape, t.dtype, len(t.slices)
    return t


def _as_list(outputs, op: str):
    """(list of output Tensors, whether fn returned a tuple/list)."""
    many = isinstance(outputs, (tuple, list))
    outs = list(outputs) if many else [outputs]
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError("%s: the function must return namedmesh Tensors, got %r" % (op, o))
    return outs, many


def _differentiable(t: tf.Tensor) -> bool:
    return t.dtype.is_floating or t.dtype.is_complex


# -- custom gradients ---------------------------------------------------------------------------
def custom_gradient(fn: Callable, grad_fn: Callable, explicit_inputs):
    """Run ``fn(*explicit_inputs)``; on the backward pass call ``grad_fn`` instead of
    differentiating ``fn``.

    ``grad_fn(explicit_inputs, outputs, output_grads)`` gets the inputs, ``fn``'s
    outputs and their gradients (lists of named Tensors) and returns one
    gradient per input (a named Tensor with the input's dims, or None).  If
    ``fn`` reads variables, ``grad_fn`` is called with ``variables=`` (the
    ``tf.Variable``s) as well and returns ``(input_grads, variable_grads)``,
    the latter ``tf.Tensor``s shaped like the variables.

    mtf's ``grad_fn`` also receives the captured graph operations; namedmesh
    runs TensorFlow eagerly or in ``tf.function``, where there are none.
    Returns fn's outputs (a Tensor or a tuple of Tensors, as fn returns them).
    """
    inputs = _checked(explicit_inputs, "custom_gradient")
    result = {}
    context = _captured_context()

    @tf.custom_gradient
    def run(*flat):
        outs, many = _as_list(fn(*_rebuild(inputs, flat)), "custom_gradient")
        result["specs"], result["many"] = [_spec(o) for o in outs], many
        out_tensors = outs

        def grad(*dys, variables=None):
            output_grads = _rebuild(result["specs"], dys)
            named_inputs = _rebuild(inputs, flat)
            with context():
                if variables:
                    input_grads, variable_grads = grad_fn(named_inputs, out_tensors, output_grads,
                                                          variables=variables)
                else:
                    input_grads = grad_fn(named_inputs, out_tensors, output_grads)
                    variable_grads = []
            input_grads = list(input_grads)
            if len(input_grads) != len(inputs):
                raise ShapeError("custom_gradient: grad_fn returned %d gradients for %d inputs"
                                 % (len(input_grads), len(inputs)))
            flat_grads = []
            for x, g in zip(inputs, input_grads):
                if g is None:
                    flat_grads.extend([None] * len(x.slices))
                    continue
                check_tensor(g, "custom_gradient")
                if set(g.shape.dims) != set(x.shape.dims):
                    raise ShapeError("custom_gradient: the gradient %s does not have the dims "
                                     "of its input %s" % (g.shape, x.shape))
                if g.shape != x.shape:
                    g = broadcast(g, x.shape)  # same dims in another order: transpose
                flat_grads.extend(g.slices)
            if variables:
                return flat_grads, list(variable_grads)
            return flat_grads

        return _flatten(outs), grad

    flat_out = run(*_flatten(inputs))
    outs = _rebuild(result["specs"], flat_out)
    return tuple(outs) if result["many"] else outs[0]


def recompute_grad(fn: Callable, explicit_inputs, control_dependencies: bool = True):
    """``fn(*explicit_inputs)``, recomputed on the backward pass instead of stored.

    The forward pass runs ``fn`` without recording it on the gradient tape, so
    none of its intermediate tensors is kept (only its inputs and outputs);
    the backward pass runs ``fn`` again under a tape and differentiates it,
    variables included (``tf.recompute_grad`` on the processors' slices).
    Trades one extra forward of ``fn`` for the memory of its activations.
    The recomputation always waits for the output gradients (mtf's
    ``control_dependencies=True``; the argument is accepted for compatibility).
    Inputs that are not floating point get no gradient.
    Returns fn's outputs (a Tensor or a tuple of Tensors).
    """
    del control_dependencies  # tf.recompute_grad orders the recomputation after the gradients
    _check_callable(fn, "recompute_grad", "fn")
    inputs = _checked(explicit_inputs, "recompute_grad")
    context = _captured_context()
    flat_in = _flatten(inputs)
    float_at = [i for i, s in enumerate(flat_in) if _differentiable(s)]
    result = {"calls": 0}

    def flat_fn(*floats):
        flat = list(flat_in)
        for i, v in zip(float_at, floats):
            flat[i] = v
        result["calls"] += 1
        # the first call is the forward pass (it may create variables); later ones recompute
        scope = context() if result["calls"] > 1 else contextlib.nullcontext()
        with scope, tf.name_scope("recompute_grad"):
            outs, many = _as_list(fn(*_rebuild(inputs, flat)), "recompute_grad")
        result["specs"], result["many"] = [_spec(o) for o in outs], many
        return _flatten(outs)

    if not float_at:
        raise ShapeError("recompute_grad: no input is floating point, so there is nothing to "
                         "differentiate; call fn directly")
    flat_out = tf.recompute_grad(flat_fn)(*[flat_in[i] for i in float_at])
    outs = _rebuild(result["specs"], list(flat_out))
    return tuple(outs) if result["many"] else outs[0]


# -- loops --------------------------------------------------------------------------------------
def _accumulator_specs(body_fn, inputs: List[Tensor], n: int):
    """Specs of the body's outputs beyond the first ``n``, from a trace in a scratch graph."""
    found = {}
    flat = _flatten(inputs)
    signature = [tf.TensorSpec(s.shape, s.dtype) for s in flat]

    def probe(*placeholders):
        outs, _ = _as_list(body_fn(*_rebuild(inputs, placeholders)), "while_loop")
        found["specs"] = [_spec(o) for o in outs[n:]]
        return tf.constant(0)

    with trace.suspended():  # the probe's collectives never run
        tf.function(probe, autograph=False).get_concrete_function(*signature)
    return found["specs"]


def _aligned_output(out: Tensor, like: Tensor, i: int) -> Tensor:
    if out.shape == like.shape and out.dtype == like.dtype:
        return out
    if set(out.shape.dims) != set(like.shape.dims) or out.dtype != like.dtype:
        raise ShapeError("while_loop: body output %d is %s %s but loop variable %d is %s %s; "
                         "they must agree" % (i, out.dtype.name, out.shape, i, like.dtype.name,
                                              like.shape))
    return broadcast(out, like.shape)  # same dims in another order: transpose


def _needs_unrolling(mesh) -> bool:
    """Per-replica ``tf.while_loop``s whose bodies run collectives deadlock under
    MirroredStrategy / MultiWorkerMirroredStrategy (TF 2.21: the replicas' loops never meet
    in a collective; measured), so there the loop is unrolled into conditional steps."""
    if mesh.strategy is None:
        return False
    from namedmesh.lowering.replica import is_tpu_strategy
    return not is_tpu_strategy(mesh.strategy)


def _unrolled(mesh, cond, body, flat, kwargs):
    """``maximum_iterations`` steps of ``flat = body(flat) if cond(flat) else flat``."""
    steps = kwargs.get("maximum_iterations")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise MeshError("while_loop on mesh %s under %s needs maximum_iterations=<int> (got %r): "
                        "per-replica tf.while_loops with collectives in the body deadlock there, "
                        "so namedmesh unrolls the loop into that many conditional steps"
                        % (mesh.shape.to_string(), type(mesh.strategy).__name__, steps))
    # every step runs the body and keeps its result only while cond holds: a tf.cond would
    # trace the body in a graph of its own per replica, whose collectives would not match
    flat = list(flat)
    for _ in range(steps):
        keep_going = cond(*flat)
        flat = [tf.where(keep_going, new, old) for new, old in zip(body(*flat), flat)]
    return flat


def while_loop(cond_fn: Callable, body_fn: Callable, inputs, num_loop_vars: int = None,
               has_accumulators: bool = False, name: str = None, **kwargs) -> List[Tensor]:
    """mtf's while loop over named tensors: ``while cond_fn(*v): v = body_fn(*v)``.

    Args:
      cond_fn: ``n`` Tensors -> a bool scalar Tensor (dims ``[]``).
      body_fn: ``n`` Tensors -> ``n`` Tensors with the same dims and dtypes (plus
        accumulators, with ``has_accumulators``).
      inputs: the ``n`` initial loop Tensors.
      num_loop_vars: return only the first ``num_loop_vars`` outputs (mtf's
        option; mtf keeps the rest in variables on GPUs, namedmesh carries all).
      has_accumulators: body outputs beyond the first ``n`` are summed over the
        iterations (zero if the loop does not run) and returned after the ``n``.
      kwargs: ``tf.while_loop``'s ``maximum_iterations``, ``parallel_iterations``,
        ``swap_memory``.
    Returns:
      the list of final Tensors.  Differentiable (``tf.while_loop``'s gradients).

    On the tf.distribute executor with MirroredStrategy or
    MultiWorkerMirroredStrategy, ``maximum_iterations`` is required: each
    replica would run its own ``tf.while_loop``, and collectives inside such
    loops never meet (they hang, measured with TF 2.21), so the loop is unrolled
    into ``maximum_iterations`` steps; each step runs ``body_fn`` and keeps its
    result only while ``cond_fn`` holds.
    """
    _check_callable(cond_fn, "while_loop", "cond_fn")
    _check_callable(body_fn, "while_loop", "body_fn")
    inputs = _checked(inputs, "while_loop")
    unknown = sorted(k for k in kwargs if k not in _WHILE_KWARGS)
    if unknown:
        raise ShapeError("while_loop: unknown keyword %s (known: %s)"
                         % (", ".join(unknown), ", ".join(_WHILE_KWARGS)))
    kwargs.pop("back_prop", None)
    kwargs.pop("shape_invariants", None)
    n = len(inputs)
    acc_specs = _accumulator_specs(body_fn, inputs, n) if has_accumulators else []
    carried = inputs + [zeros(m, shape, dtype) for m, shape, dtype, _ in acc_specs]
    n_flat = len(_flatten(inputs))

    def cond(*flat):
        c = cond_fn(*_rebuild(inputs, flat[:n_flat]))
        if isinstance(c, Tensor):
            if c.shape.ndims != 0 or c.dtype != tf.bool:
                raise ShapeError("while_loop: cond_fn must return a bool scalar Tensor, got %s %s"
                                 % (c.dtype.name, c.shape))
            return c.slices[0]
        return tf.convert_to_tensor(c, tf.bool)

    def body(*flat):
        outs, _ = _as_list(body_fn(*_rebuild(inputs, flat[:n_flat])), "while_loop")
        if len(outs) < n:
            raise ShapeError("while_loop: body_fn returned %d Tensors for %d loop variables"
                             % (len(outs), n))
        if len(outs) > n and not has_accumulators:
            raise ShapeError("while_loop: body_fn returned %d Tensors for %d loop variables; "
                             "pass has_accumulators=True to sum the extra ones" % (len(outs), n))
        outs = [_aligned_output(o, x, i) for i, (o, x) in enumerate(zip(outs, carried))]
        totals = [a + b for a, b in zip(_rebuild(carried[n:], flat[n_flat:]), outs[n:])]
        return _flatten(outs[:n] + totals)

    with tf.name_scope(name or "while_loop"):
        if _needs_unrolling(inputs[0].mesh):
            flat_out = _unrolled(inputs[0].mesh, cond, body, _flatten(carried), kwargs)
        else:
            flat_out = tf.while_loop(cond, body, _flatten(carried), **kwargs)
    outs = _rebuild(carried, flat_out)
    return outs[:num_loop_vars] if num_loop_vars is not None else outs
