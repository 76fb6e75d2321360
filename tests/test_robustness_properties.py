"""Property tests (hypothesis): random valid inputs never raise; random invalid ones always
raise cleanly, with a namedmesh error (never a TensorFlow, Python or NumPy error from inside).
"""
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import namedmesh as nm
from helpers import one_device_mesh
from namedmesh.errors import ConfigError, NamedMeshError, ShapeError

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz_0123456789"
names = st.text(NAME_CHARS, min_size=1, max_size=8)
sizes = st.integers(1, 64)
SEPARATORS = st.sampled_from([";", ",", ".", " ", " ; ", ";;", ", "])


@st.composite
def shape_strings(draw):
    """A valid mtf shape string with distinct names and random separators."""
    dims = draw(st.lists(st.tuples(names, sizes), max_size=5, unique_by=lambda d: d[0]))
    text = ""
    for i, (n, s) in enumerate(dims):
        text += (draw(SEPARATORS) if i else "") + "%s:%d" % (n, s)
    return text, dims


@SETTINGS
@given(shape_strings())
def test_valid_shape_strings_parse_and_round_trip(case):
    text, dims = case
    shape = nm.convert_to_shape(text)
    assert [(d.name, d.size) for d in shape.dims] == dims
    assert nm.convert_to_shape(shape.to_string()) == shape


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


@SETTINGS
@given(ANY_TEXT)
def test_any_string_parses_or_raises_a_shape_error(text):
    try:
        shape = nm.convert_to_shape(text)
    except ShapeError as e:
        assert repr(text)[1:-1] in str(e) or text.strip() in str(e) or str(e)
        return
    # what parsed is unambiguous: it reads back the same
    assert nm.convert_to_shape(shape.to_string()) == shape


@SETTINGS
@given(st.text(min_size=1, max_size=6), sizes)
def test_a_dim_name_is_accepted_only_if_its_string_form_reads_back(name, size):
    try:
        dim = nm.Dimension(name, size)
    except ShapeError as e:
        assert repr(name) in str(e)
        assert any(c.isspace() or c in ",.;:" for c in name)
        return
    assert nm.convert_to_shape(str(dim)).dims == [dim]


JUNK = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(),
                 st.binary(max_size=4), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                 st.tuples(st.integers(), st.integers(), st.integers()))


@SETTINGS
@given(JUNK)
def test_junk_where_a_shape_dim_mesh_or_layout_goes_raises_cleanly(value):
    for fn in (nm.convert_to_shape, nm.convert_to_dimension, nm.convert_to_layout_rules,
               lambda v: nm.Mesh(v, "", devices=[""]), lambda v: nm.Mesh("", v),
               lambda v: nm.Mesh().tensor_layout(v)):
        try:
            fn(value)
        except NamedMeshError:
            pass


# -- ops on random tensors ----------------------------------------------------------------------
POOL = [("a", 2), ("b", 3), ("c", 4), ("d", 2)]
subsets = st.lists(st.sampled_from(POOL), unique=True, max_size=4)
DTYPES = [tf.float32, tf.float64, tf.bfloat16, tf.int32, tf.int64, tf.bool]


def tensor(dims, dtype=tf.float32):
    shape = nm.Shape(dims)
    value = tf.cast(tf.random.stateless_uniform(shape.sizes, [1, 2], -2, 2), dtype)
    return nm.import_tf_tensor(one_device_mesh(), value, shape)


@SETTINGS
@given(subsets, subsets, st.sampled_from(["add", "multiply", "maximum", "einsum", "where"]))
def test_valid_binary_programs_never_raise(dims1, dims2, op):
    x, y = tensor(dims1), tensor(dims2)
    if op == "einsum":
        out = nm.einsum([x, y])
    elif op == "where":
        out = nm.where(nm.greater(x, 0.0), x, y)
    else:
        out = getattr(nm, op)(x, y)
    assert set(out.shape.names) <= {n for n, _ in dims1 + dims2}
    nm.export_to_tf_tensor(out)
    total = nm.reduce_sum(out)
    assert total.shape.ndims == 0


@SETTINGS
@given(subsets.filter(bool), st.integers(0, 3), st.integers(1, 6))
def test_sizes_that_disagree_raise_a_shape_error(dims, which, wrong):
    """The same name with another size, anywhere (binary op, einsum, reduction, reshape,
    import), is a ShapeError naming the dim, never a TensorFlow error."""
    name, size = dims[which % len(dims)]
    if wrong == size:
        wrong = size + 1
    x = tensor(dims)
    calls = [lambda: x + tensor([(name, wrong)]),
             lambda: nm.einsum([x, tensor([(name, wrong)])]),
             lambda: nm.reduce_sum(x, reduced_dim="%s:%d" % (name, wrong)),
             lambda: nm.softmax(x, "%s:%d" % (name, wrong)),
             lambda: nm.import_tf_tensor(
                 one_device_mesh(), tf.zeros([d[1] if d[0] != name else wrong for d in dims]),
                 nm.Shape(dims))]
    for call in calls:
        with pytest.raises(ShapeError) as info:
            call()
        assert repr(name) in str(info.value) or name in str(info.value)
    with pytest.raises(ShapeError):
        nm.reshape(x, nm.Shape([("total", nm.Shape(dims).size + wrong)]))


UNARY = ["exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "gelu", "relu", "negative", "abs",
         "square", "softplus", "sin", "logical_not", "identity", "sign", "reciprocal"]


@SETTINGS
@given(subsets, st.sampled_from(DTYPES), st.sampled_from(UNARY))
def test_unary_op_of_any_dtype_works_or_raises_a_wrong_type_error(dims, dtype, op):
    x = tensor(dims, dtype)
    try:
        y = getattr(nm, op)(x)
    except nm.WrongTypeError as e:
        assert dtype.name in str(e)
        return
    nm.export_to_tf_tensor(y)   # and what was accepted really runs


SCALARS = st.one_of(st.integers(-300, 300), st.floats(-1e40, 1e40), st.booleans(),
                    st.sampled_from([0.5, 2.0, 1e300, -0.0, math.nan, math.inf]))


@SETTINGS
@given(st.sampled_from([tf.float32, tf.int32, tf.int8, tf.bool]), SCALARS,
       st.sampled_from(["add", "multiply", "subtract", "minimum", "equal", "less"]))
def test_scalar_operands_fit_or_raise_never_truncate(dtype, scalar, op):
    """A Python scalar next to a tensor either keeps its value in the tensor's dtype or is a
    WrongTypeError; no silent truncation (int_tensor * 0.5) and no TensorFlow error."""
    x = tensor([("a", 2)], dtype)
    try:
        y = getattr(nm, op)(x, scalar)
    except nm.WrongTypeError:
        return
    values = nm.export_to_tf_tensor(y).numpy()
    if dtype.is_integer and op in ("add", "multiply", "subtract"):
        assert float(scalar) == int(scalar)   # nothing fractional got through
    assert values.shape == (2,)


# -- MoE configuration numbers ----------------------------------------------------------------
POSITIVE_FLOAT_KEYS = ["capacity_factor_train", "capacity_factor_eval"]
NONNEGATIVE_FLOAT_KEYS = ["loss_coef", "second_threshold_train", "second_threshold_eval"]
INT_KEYS = ["group_size", "hidden_size", "num_experts", "min_expert_capacity"]


@SETTINGS
@given(st.sampled_from(POSITIVE_FLOAT_KEYS + NONNEGATIVE_FLOAT_KEYS + INT_KEYS),
       st.floats(1e-3, 1e3), st.integers(1, 10_000))
def test_valid_moe_numbers_never_raise(key, number, count):
    value = count if key in INT_KEYS else number
    config = nm.moe.MoE1DConfig(**{key: value})
    assert getattr(config, key) == value


@SETTINGS
@given(st.sampled_from(POSITIVE_FLOAT_KEYS + NONNEGATIVE_FLOAT_KEYS + INT_KEYS),
       st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-9, "1.0", None,
                                  [1], True]),
                 st.floats(max_value=-1e-6), st.integers(max_value=-1)))
def test_invalid_moe_numbers_raise_a_config_error_naming_them(key, value):
    with pytest.raises(ConfigError) as info:
        nm.moe.MoE1DConfig(**{key: value})
    assert key in str(info.value) and repr(value) in str(info.value)


@SETTINGS
@given(st.integers(1, 6), st.integers(0, 7), st.sampled_from([np.nan, np.inf, -np.inf]),
       st.booleans())
def test_a_nonfinite_token_never_poisons_another(token, feature, bad, two_level):
    """With the default nonfinite_tokens="mask": any NaN or infinity, in any token of any
    group, leaves every other token's output finite, the loss finite, and is counted."""
    rng = np.random.RandomState(token * 8 + feature)
    if two_level:
        layer = nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=4, group_size=4,
                             second_policy_eval="all")
        spec, sizes = "outer_batch:1;batch:2;length:4;d_model:8", [1, 2, 4, 8]
    else:
        layer = nm.moe.MoE1D(num_experts=2, hidden_size=4, group_size=4,
                             second_policy_eval="all")
        spec, sizes = "batch:2;length:4;d_model:8", [2, 4, 8]
    x = rng.randn(*sizes).astype(np.float32)
    x.reshape(-1, 8)[token, feature] = bad
    y, loss, stats = layer(nm.import_tf_tensor(one_device_mesh(), x, spec), return_stats=True)
    y = nm.export_to_tf_tensor(y).numpy().reshape(-1, 8)
    others = np.delete(y, token, axis=0)
    assert np.isfinite(others).all() and np.isfinite(nm.export_to_tf_tensor(loss).numpy())
    first = stats["outer" if two_level else "experts"].numpy()
    assert first["nonfinite_tokens"] == 1
