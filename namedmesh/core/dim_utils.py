"""Small helpers on dims and shapes that mtf exposes: combined and anonymous dims,
subsequences, and checks that an output adds no new dims."""

from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.errors import ShapeError, WrongTypeError


def combined_dimension(dims, name=None) -> Dimension:
    """One dim as big as ``dims`` together, named ``name`` or the first dim's name."""
    dims = list(dims)
    if not dims:
        raise ShapeError("combined_dimension: dims must be a list of one or more Dimensions")
    return Dimension(name or dims[0].name, Shape(dims).size)


def anonymous_shape(shape) -> Shape:
    """``shape`` with its dims renamed ``_anonymous_0, _anonymous_1, ...`` (never split)."""
    shape = convert_to_shape(shape)
    return Shape([Dimension("_anonymous_%d" % i, d.size) for i, d in enumerate(shape.dims)])


def anonymize(x, name=None):
    """``x`` reshaped to its anonymous shape: the same values, replicated on every processor."""
    from namedmesh.core.reshape import reshape
    return reshape(x, anonymous_shape(x.shape), name=name or "anonymize")


def is_subsequence(short_seq, long_seq) -> bool:
    """Whether ``short_seq`` occurs in ``long_seq`` in order (not necessarily adjacent)."""
    for seq in (short_seq, long_seq):
        if not hasattr(seq, "__iter__"):
            raise WrongTypeError("is_subsequence: expected two sequences, got %r" % (seq,))
    it = iter(long_seq)
    return all(any(a == b for b in it) for a in short_seq)


def verify_no_new_dims(input_shapes, output_shape) -> None:
    """Raise ShapeError if ``output_shape`` has a dim that no input shape has."""
    present = set()
    for s in input_shapes:
        present.update(convert_to_shape(s).dims)
    new = [d for d in convert_to_shape(output_shape).dims if d not in present]
    if new:
        inputs = [str(convert_to_shape(s)) for s in input_shapes]
        raise ShapeError("no new dims allowed in the output: %s are not in the inputs %s"
                         % ([str(d) for d in new], inputs))


def transpose_list_of_lists(lol) -> list:
    """``[[a, b], [c, d]] -> [[a, c], [b, d]]`` (equally long lists)."""
    if not lol:
        raise ShapeError("transpose_list_of_lists: cannot transpose the empty list")
    return [list(x) for x in zip(*lol)]
