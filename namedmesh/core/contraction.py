"""Einsum and reductions: the ops that sum (or max/min) over dims.

Lowering: each processor contracts or reduces its slices; a summed dim that
is split over a mesh dim leaves partial results, which one all-reduce within
that mesh dim's groups completes.
"""

import string

import tensorflow as tf

from namedmesh.core.checks import check_number_tensor
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import broadcast, check_tensor, same_mesh
from namedmesh.core.naming import named_op
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError, WrongTypeError

_LETTERS = string.ascii_letters


def _union_of_dims(shapes, op: str):
    """Dims of all shapes in order of first appearance, with a size check by name."""
    seen = {}
    order = []
    count = {}
    for s in shapes:
        for d in s.dims:
            if d.name in seen:
                if seen[d.name].size != d.size:
                    raise ShapeError("%s: dimension %r has size %d in one input and %d in "
                                     "another" % (op, d.name, seen[d.name].size, d.size))
            else:
                seen[d.name] = d
                order.append(d)
            count[d.name] = count.get(d.name, 0) + 1
    return order, count


@named_op("einsum")
def einsum(xs, output_shape=None, reduced_dims=None, name=None) -> Tensor:
    """Multiply ``xs`` broadcast to the union of their dims and sum down to ``output_shape``.

    Like mtf: without ``output_shape`` the output keeps the dims that appear
    in exactly one input (or all dims not in ``reduced_dims``), in order of
    appearance.  ``einsum([x[a, b], w[b, c]], "a:..;c:..")`` is a matmul.
    Summed dims that are split on the mesh cost one all-reduce.  Output dims
    that no input has are broadcast, as mtf 0.1.21 computes them (its op table
    case ``einsum_broadcast_new_dim``), although mtf's docstring forbids them.
    """
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
        raise WrongTypeError("einsum: xs must be a list of namedmesh.Tensors, got %s; write "
                             "einsum([x, y], ...)" % type(xs).__name__)
    xs = list(xs)
    if not xs:
        raise ShapeError("einsum needs at least one input tensor")
    for x in xs:
        check_tensor(x, "einsum")
        check_number_tensor(x, "einsum", "inputs")
    mesh = same_mesh(xs, "einsum")
    dtypes = {x.dtype for x in xs}
    if len(dtypes) > 1:
        raise WrongTypeError("einsum: inputs have different dtypes %s; cast them first"
                             % sorted(d.name for d in dtypes))
    order, count = _union_of_dims([x.shape for x in xs], "einsum")
    if reduced_dims is not None:
        reduced_names = {_dim_name(d) for d in reduced_dims}
        unknown = [n for n in reduced_names if n not in count]
        if unknown:
            raise ShapeError("einsum: reduced dims %s are not dims of any input %s"
                             % (sorted(unknown), [str(x.shape) for x in xs]))
    output_shape = convert_to_shape(output_shape)
    if output_shape is None:
        if reduced_dims is None:
            output_shape = Shape([d for d in order if count[d.name] == 1])
        else:
            output_shape = Shape([d for d in order if d.name not in reduced_names])
    else:
        for d in output_shape.dims:
            if d.name not in count:
                continue  # a new dim: broadcast after the contraction, as mtf lowers it
            size = next(o.size for o in order if o.name == d.name)
            if size != d.size:
                raise ShapeError("einsum: output dim %r has size %d but %d in the inputs"
                                 % (d.name, d.size, size))
        if reduced_dims is not None:
            computed = {d.name for d in order if d.name not in output_shape}
            if computed != reduced_names:
                raise ShapeError("einsum: reduced_dims %s contradict output_shape %s "
                                 "(which reduces %s)" % (sorted(reduced_names), output_shape,
                                                         sorted(computed)))
    if len(order) > len(_LETTERS):
        raise ShapeError("einsum: %d distinct dims exceed the %d supported"
                         % (len(order), len(_LETTERS)))
    letter = {d.name: _LETTERS[i] for i, d in enumerate(order)}
    reduced = [d for d in order if d.name not in output_shape]
    contracted_shape = Shape([d for d in output_shape.dims if d.name in count])

    from namedmesh.lowering.contract import lower_einsum  # the mesh side
    out = lower_einsum(mesh, xs, contracted_shape, reduced, letter)
    return out if contracted_shape == output_shape else broadcast(out, output_shape)


def matmul(a, b, output_shape=None, reduced_dims=None, name=None) -> Tensor:
    """``einsum([a, b], ...)`` (mtf's alias)."""
    return einsum([a, b], output_shape=output_shape, reduced_dims=reduced_dims,
                  name=name or "matmul")


def _dim_name(d) -> str:
    if isinstance(d, Dimension):
        return d.name
    if isinstance(d, str):
        return d.split(":")[0]
    raise ShapeError("expected a Dimension or a dim name, got %r" % (d,))


def _reduction_output_shape(x: Tensor, output_shape, reduced_dim, op: str) -> Shape:
    output_shape = convert_to_shape(output_shape)
    if output_shape is None:
        if reduced_dim is None:
            return Shape([])
        dims = reduced_dim if isinstance(reduced_dim, (list, tuple)) and not (
            len(reduced_dim) == 2 and isinstance(reduced_dim[1], int)) else [reduced_dim]
        names = [_dim_name(d) for d in dims]
        for n, d in zip(names, dims):
            if n not in x.shape:
                raise ShapeError("%s: reduced dim %r is not a dim of the tensor %s"
                                 % (op, n, x.shape))
            if isinstance(d, str) and ":" in d or isinstance(d, (list, tuple)):
                d = convert_to_dimension(d)
            if isinstance(d, Dimension) and x.shape[n].size != d.size:
                raise ShapeError("%s: reduced dim %s has size %d in the tensor %s"
                                 % (op, d, x.shape[n].size, x.shape))
        return x.shape - names
    for d in output_shape.dims:
        if d.name not in x.shape:
            raise ShapeError("%s: output dim %r is not a dim of the tensor %s"
                             % (op, d.name, x.shape))
        if x.shape[d.name].size != d.size:
            raise ShapeError("%s: output dim %s has size %d in the tensor %s"
                             % (op, d, x.shape[d.name].size, x.shape))
    if reduced_dim is not None:
        expected = [d.name for d in x.shape.dims if d.name not in output_shape]
        if [_dim_name(reduced_dim)] != expected:
            raise ShapeError("%s: reduced_dim %r contradicts output_shape %s (which reduces %s)"
                             % (op, _dim_name(reduced_dim), output_shape, expected))
    return output_shape


def _reduce(x, output_shape, reduced_dim, reduction: str, op: str) -> Tensor:
    check_tensor(x, op)
    check_number_tensor(x, op)
    out_shape = _reduction_output_shape(x, output_shape, reduced_dim, op)
    if out_shape == x.shape:
        return x  # nothing to reduce (mtf returns x too)
    from namedmesh.lowering.contract import lower_reduction
    return lower_reduction(x, out_shape, reduction)


@named_op("reduce_sum")
def reduce_sum(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    """Sum over ``reduced_dim`` (a dim or list of dims), or down to ``output_shape``
    (a subset of x's dims, any order); with neither, over everything."""
    return _reduce(x, output_shape, reduced_dim, "SUM", "reduce_sum")


@named_op("reduce_mean")
def reduce_mean(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    """Mean over ``reduced_dim`` or down to ``output_shape`` (see ``reduce_sum``)."""
    check_tensor(x, "reduce_mean")
    if not (x.dtype.is_floating or x.dtype.is_complex):
        raise WrongTypeError("reduce_mean of a %s tensor %s: cast it to a float type first"
                             % (x.dtype.name, x.shape))
    out = _reduce(x, output_shape, reduced_dim, "SUM", "reduce_mean")
    if out is x:
        return x
    return out * (1.0 / (x.shape.size // out.shape.size))


@named_op("reduce_max")
def reduce_max(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    """Max over ``reduced_dim`` or down to ``output_shape``.  Gradient like mtf:
    every position equal to the max receives the full upstream gradient."""
    return _reduce(x, output_shape, reduced_dim, "MAX", "reduce_max")


@named_op("reduce_min")
def reduce_min(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    """Min over ``reduced_dim`` or down to ``output_shape`` (gradient as reduce_max)."""
    return _reduce(x, output_shape, reduced_dim, "MIN", "reduce_min")


@named_op("reduce_any")
def reduce_any(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    from namedmesh.core.elementwise import cast
    return cast(reduce_max(cast(x, tf.float32), output_shape, reduced_dim), tf.bool)


@named_op("reduce_all")
def reduce_all(x, output_shape=None, reduced_dim=None, name=None) -> Tensor:
    from namedmesh.core.elementwise import cast
    return cast(reduce_min(cast(x, tf.float32), output_shape, reduced_dim), tf.bool)
