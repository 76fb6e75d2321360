"""Any TensorFlow function applied slice by slice (mtf's ``slicewise`` / ``cwise``), and
mtf's helpers for binary ops and per-device calls.

``slicewise(tf_fn, xs, ..., splittable_dims)`` runs ``tf_fn`` on each processor's
slices.  A dim that the layout splits but ``splittable_dims`` does not list
(one ``tf_fn`` must see whole) is all-gathered first, and each output dim that
the layout splits is cut to the processor's piece after; so any layout runs
(mtf raises "dimension ... is not declared as splittable" instead).
"""

import types

import tensorflow as tf

from namedmesh.core.dims import Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import binary_op, check_tensor, same_mesh
from namedmesh.core.naming import named_op, scope_name
from namedmesh.core.tensor import Tensor, import_tf_tensor
from namedmesh.errors import ShapeError, WrongTypeError


def _names(dims) -> set:
    out = set()
    for d in dims or ():
        out.add(d if isinstance(d, str) else convert_to_dimension(d).name)
    return out


def _local_slices(x: Tensor, splittable: set):
    """``x``'s slices with every split dim that is not splittable gathered whole."""
    slices = x.slices
    for axis, (d, mesh_axis) in enumerate(zip(x.shape.dims, x.layout.mesh_axes)):
        if mesh_axis is not None and d.name not in splittable:
            slices = x.mesh.impl.allconcat(slices, mesh_axis, axis, shape=x.shape)
    return slices


def _cut_to_layout(mesh, slices, shape: Shape, splittable: set):
    """Slices computed with the non-splittable dims whole, cut to ``shape``'s layout."""
    layout = mesh.tensor_layout(shape)
    for axis, (d, mesh_axis) in enumerate(zip(shape.dims, layout.mesh_axes)):
        if mesh_axis is not None and d.name not in splittable:
            slices = mesh.impl.allsplit(slices, mesh_axis, axis)
    return slices


@named_op("slicewise")
def slicewise(tf_fn, xs, output_shape=None, output_dtype=None, splittable_dims=None,
              grad_function=None, name=None):
    """``tf_fn`` applied to each processor's slices of ``xs``.

    Args:
      tf_fn: TF tensors (one per input, axes in each input's dim order) -> a TF
        tensor, or a tuple of them when ``output_dtype`` is a list.
      xs: the input Tensors.
      output_shape: the output's dims (a list of shapes for several outputs);
        default ``xs[0].shape``.
      output_dtype: its dtype (a list for several outputs); default ``xs[0].dtype``.
      splittable_dims: dims ``tf_fn`` may see in pieces (elementwise dims);
        other split dims are gathered first (default: none are splittable).
      grad_function: ``None`` (TensorFlow's gradient of ``tf_fn``), ``0`` (no
        gradient), or mtf's ``fn(op, *dys) -> [dx per input]`` on named Tensors,
        where ``op.inputs`` / ``op.outputs`` are the named inputs and outputs.
    Returns:
      a Tensor, or a tuple of Tensors for several outputs.
    """
    xs = list(xs)
    if not xs:
        raise ShapeError("slicewise needs at least one input Tensor")
    for x in xs:
        check_tensor(x, "slicewise")
    mesh = same_mesh(xs, "slicewise")
    several = isinstance(output_dtype, list)
    shapes = output_shape if several else [output_shape]
    dtypes = output_dtype if several else [output_dtype]
    if several and (not isinstance(shapes, list) or len(shapes) != len(dtypes)):
        raise ShapeError("slicewise: give one output shape per output dtype, got %r and %r"
                         % (output_shape, output_dtype))
    shapes = [convert_to_shape(s) if s is not None else xs[0].shape for s in shapes]
    dtypes = [tf.as_dtype(d) if d is not None else xs[0].dtype for d in dtypes]
    splittable = _names(splittable_dims)

    def forward(inputs):
        local = [_local_slices(x, splittable) for x in inputs]
        out = mesh.impl.slicewise(tf_fn, *local)
        per_output = [tuple(o[i] for o in out) for i in range(len(shapes))] if several else [out]
        return [Tensor(mesh, s, _cut_to_layout(mesh, o, s, splittable), d)
                for s, o, d in zip(shapes, per_output, dtypes)]

    if grad_function is None:
        outs = forward(xs)
    elif grad_function == 0:
        outs = forward([Tensor(mesh, x.shape, mesh.impl.slicewise(tf.stop_gradient, x.slices),
                               x.dtype) for x in xs])
    else:
        outs = _with_custom_gradient(forward, grad_function, xs)
    return tuple(outs) if several else outs[0]


def _with_custom_gradient(forward, grad_function, xs):
    """``forward(xs)`` whose gradient is mtf's ``grad_function(op, *dys)`` on named Tensors."""
    mesh = xs[0].mesh
    counts = [len(x.slices) for x in xs]
    flat = [s for x in xs for s in x.slices]
    layouts = []

    def unflatten(values, like):
        out, i = [], 0
        for t, n in zip(like, [len(t.slices) for t in like]):
            out.append(Tensor(mesh, t.shape, tuple(values[i:i + n]), t.dtype))
            i += n
        return out

    @tf.custom_gradient
    def run(*values):
        inputs = unflatten(list(values), xs)
        outputs = forward(inputs)
        layouts[:] = outputs

        def grad(*dys):
            dy_tensors = unflatten([tf.zeros_like(s) if d is None else d
                                    for d, s in zip(dys, [s for o in outputs for s in o.slices])],
                                   outputs)
            op = types.SimpleNamespace(inputs=inputs, outputs=outputs)
            grads = list(grad_function(op, *dy_tensors))
            if len(grads) != len(xs):
                raise ShapeError("slicewise: grad_function returned %d gradients for %d inputs"
                                 % (len(grads), len(xs)))
            flat_grads = []
            for g, x, n in zip(grads, inputs, counts):
                if g is None:
                    flat_grads.extend(tf.zeros_like(s) for s in x.slices)
                else:
                    from namedmesh.core.elementwise import cast
                    from namedmesh.core.reshape import transpose
                    g = transpose(cast(g, x.dtype), x.shape) if g.shape != x.shape else cast(
                        g, x.dtype)
                    flat_grads.extend(g.slices)
            return flat_grads

        return [s for o in outputs for s in o.slices], grad

    values = run(*flat)
    return unflatten(list(values), layouts)


@named_op("cwise")
def cwise(tf_fn, xs, output_dtype=None, grad_function=None, name=None):
    """Elementwise ``tf_fn`` on inputs of one shape (every dim may be split)."""
    xs = list(xs)
    if not xs:
        raise ShapeError("cwise needs at least one input Tensor")
    check_tensor(xs[0], "cwise")
    return slicewise(tf_fn, xs, output_dtype=output_dtype, splittable_dims=xs[0].shape.dims,
                     grad_function=grad_function)


def binary_arguments_to_tensors(x1, x2):
    """Both operands as Tensors: a scalar operand becomes a 0-d Tensor of the other's dtype."""
    if not isinstance(x1, Tensor) and not isinstance(x2, Tensor):
        raise WrongTypeError("at least one of x1 and x2 must be a namedmesh Tensor, got %r and %r"
                             % (x1, x2))
    if isinstance(x1, Tensor) and isinstance(x2, Tensor):
        return x1, x2
    if isinstance(x1, Tensor):
        return x1, import_tf_tensor(x1.mesh, tf.convert_to_tensor(x2, dtype=x1.dtype), Shape([]))
    return import_tf_tensor(x2.mesh, tf.convert_to_tensor(x1, dtype=x2.dtype), Shape([])), x2


def binary_op_with_broadcasting(tf_fn, x1, x2, output_shape=None, output_dtype=None, name=None):
    """``tf_fn(x1, x2)`` slicewise with broadcasting by name (mtf's rule); dtype ``x1``'s
    unless ``output_dtype``."""
    with tf.name_scope(scope_name(name or "binary_op")):
        x1, x2 = binary_arguments_to_tensors(x1, x2)
        return binary_op(tf_fn, x1, x2, "binary_op_with_broadcasting", output_shape,
                         output_dtype or x1.dtype)


def parallel(devices, fn, *args, **kwargs) -> list:
    """``[fn(args[0][i], ..., **{k: v[i]}) on devices[i] for i ...]`` (mtf's helper)."""
    if not isinstance(devices, list):
        raise ShapeError("parallel: devices must be a list, got %r" % (devices,))
    for a in list(args) + list(kwargs.values()):
        if not isinstance(a, list) or len(a) != len(devices):
            raise ShapeError("parallel: every argument must be a list as long as devices (%d), "
                             "got %r" % (len(devices), a))
    out = []
    for i, device in enumerate(devices):
        with tf.device(device), tf.name_scope("parallel_%d" % i):
            out.append(fn(*[a[i] for a in args], **{k: v[i] for k, v in kwargs.items()}))
    return out
