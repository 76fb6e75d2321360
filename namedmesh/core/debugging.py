"""Printing, summaries, control dependencies and size reports (mtf's debugging helpers)."""

import collections

import tensorflow as tf

from namedmesh.core.dims import convert_to_shape
from namedmesh.core.elementwise import check_tensor
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError


def _identity_after(x: Tensor, control):
    with tf.control_dependencies(control):
        return Tensor(x.mesh, x.shape, x.mesh.impl.slicewise(tf.identity, x.slices), x.dtype)


@named_op("Print")
def Print(x: Tensor, data, message: str, name=None, **kwargs) -> Tensor:  # noqa: N802 - mtf's name
    """``x``, printing ``message`` and the local slices of the Tensors ``data`` when it is
    computed (``tf.print``; kwargs go to it)."""
    check_tensor(x, "Print")
    if not isinstance(data, (list, tuple)):
        raise WrongTypeError("Print: data must be a list of namedmesh.Tensors, got %r" % (data,))
    values = []
    for d in data:
        values.extend(check_tensor(d, "Print").slices)
    printed = tf.print(message, *values, **kwargs)
    return _identity_after(x, [printed] if printed is not None else [])


@named_op("depend")
def depend(x: Tensor, dependencies, name=None) -> Tensor:
    """``x``, computed after ``dependencies`` (Tensors, or TF ops / tensors)."""
    check_tensor(x, "depend")
    control = []
    for d in dependencies:
        if isinstance(d, Tensor):
            control.extend(d.slices)
        elif isinstance(d, (tf.Tensor, tf.Operation, tf.Variable)):
            control.append(d)
        else:
            raise WrongTypeError("depend: dependencies must be namedmesh Tensors or TF ops, got %r"
                                 % (d,))
    if tf.executing_eagerly():
        return x  # eagerly the dependencies have already run
    return _identity_after(x, control)


def scalar_summary(name: str, x: Tensor, step=None) -> Tensor:
    """``x`` (a 0-d Tensor), written as the scalar summary ``name`` (TensorBoard's scalars
    plugin) to the default ``tf.summary`` writer when there is one (``step``: default the
    writer's step).  Does not need TensorBoard installed."""
    check_tensor(x, "scalar_summary")
    if x.shape.ndims:
        raise ShapeError("scalar_summary(%r) takes a 0-d tensor, got dims %s" % (name, x.shape))
    from tensorflow.core.framework import summary_pb2
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    written = tf.summary.write(name, tf.cast(x.slices[0], tf.float32), step=step,
                               metadata=metadata)
    return _identity_after(x, [written] if isinstance(written, (tf.Tensor, tf.Operation)) else [])


def pretty_print_counters(counters) -> str:
    """``[("a/b", n), ...]`` -> one line per prefix with its total, indented by depth."""
    if isinstance(counters, (str, bytes)) or not hasattr(counters, "__iter__"):
        raise WrongTypeError("pretty_print_counters: expected [(name, count), ...], got %r"
                             % (counters,))
    totals = collections.defaultdict(int)
    for key, value in counters:
        prefixes = [key[:i] for i, ch in enumerate(key) if ch == "/"] + [key]
        for p in prefixes:
            totals[p] += value
    return "\n".join(" " * key.count("/") + "%s: %.3g" % (key, value)
                     for key, value in sorted(totals.items()))


def log_variable_sizes(var_list, tag=None, verbose=True, mesh_to_impl=None, log_file=None):
    """Log each variable's size and per-processor slice size, and the totals (mtf's report).

    ``var_list``: a ``VariableStore``, a ``{name: shape}`` dict, or objects with
    ``.name`` and ``.shape``.  ``mesh_to_impl``: a Mesh (or a dict whose values are
    Meshes; the first is used) giving the slice sizes; without one they are 0.
    ``log_file``: an open file the lines are also written to.  Returns the lines.
    """
    if hasattr(var_list, "shapes") and callable(var_list.shapes):
        items = list(var_list.shapes().items())
    elif isinstance(var_list, dict):
        items = list(var_list.items())
    elif isinstance(var_list, (list, tuple)) or var_list is None:
        items = [(v.name, v.shape) for v in var_list or ()]
    else:
        raise WrongTypeError("log_variable_sizes: expected a VariableStore, a {name: shape} dict "
                             "or a list of variables, got %r" % (var_list,))
    if not items:
        return []
    mesh = mesh_to_impl
    if isinstance(mesh, dict):
        mesh = next(iter(mesh.values()), None)
    tag = tag or "Trainable Variables"
    lines, total, total_slice = [], 0, 0
    for name, shape in sorted(items):
        shape = convert_to_shape(shape)
        slice_size = 0
        if mesh is not None:
            slice_size = 1
            for n in mesh.tensor_layout(shape).slice_sizes:
                slice_size *= n
        total += shape.size
        total_slice += slice_size
        if verbose:
            lines.append("Variable %s size %s slice_size %s %s" % (
                name.ljust(60), str(shape.size).ljust(12), str(slice_size).ljust(12), shape))
    lines.append("%s count: %s  Total size: %s  Total slice_size: %s" % (
        tag.ljust(30), str(len(items)).ljust(6), str(total).ljust(15), str(total_slice).ljust(15)))
    for line in lines:
        tf.get_logger().info(line)
        if log_file is not None:
            log_file.write(line + "\n")
    return lines
