"""Property tests (hypothesis): einsum, reshape and reductions over random named shapes."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import namedmesh as nm
from helpers import one_device_mesh, shape_of

POOL = "abcdef"
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)


@st.composite
def named_dims(draw, min_dims=1, max_dims=4):
    names = draw(st.lists(st.sampled_from(POOL), min_size=min_dims, max_size=max_dims, unique=True))
    sizes = {n: draw(st.integers(1, 4)) for n in names}
    return names, sizes


@st.composite
def einsum_case(draw):
    names = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    sizes = {n: draw(st.integers(1, 3)) for n in names}
    k = draw(st.integers(1, 3))
    operands = []
    for _ in range(k):
        sub = draw(st.lists(st.sampled_from(names), min_size=0, max_size=len(names), unique=True))
        operands.append(sub)
    used = sorted({n for op in operands for n in op})
    out = draw(st.permutations(used)) if used else []
    keep = draw(st.integers(0, len(out)))
    return sizes, operands, list(out[:keep])


@SETTINGS
@given(einsum_case(), st.integers(0, 2 ** 31 - 1))
def test_einsum_matches_numpy(case, seed):
    sizes, operands, out = case
    rng = np.random.RandomState(seed % 1000)
    arrays = [np.asarray(rng.randn(*[sizes[n] for n in op]), np.float32) for op in operands]
    mesh = one_device_mesh()
    tensors = [nm.import_tf_tensor(mesh, a, shape_of(op, a.shape)) for a, op in zip(arrays, operands)]
    got = nm.export_to_tf_tensor(nm.einsum(tensors, shape_of(out, [sizes[n] for n in out]))).numpy()
    eq = ",".join("".join(op) for op in operands) + "->" + "".join(out)
    np.testing.assert_allclose(got, np.einsum(eq, *arrays), rtol=1e-4, atol=1e-4)


def _factorizations(draw, total):
    """A random list of factors of ``total`` (each >= 1)."""
    factors = []
    remaining = total
    while remaining > 1 and len(factors) < 4:
        divisors = [d for d in range(2, remaining + 1) if remaining % d == 0]
        f = draw(st.sampled_from(divisors))
        factors.append(f)
        remaining //= f
    if remaining > 1:
        factors.append(remaining)
    if draw(st.booleans()):
        factors.insert(draw(st.integers(0, len(factors))), 1)
    return factors or [1]


@SETTINGS
@given(st.data())
def test_reshape_matches_numpy(data):
    names, sizes = data.draw(named_dims())
    old = [sizes[n] for n in names]
    total = int(np.prod(old))
    new = _factorizations(data.draw, total)
    new_names = ["n%d" % i for i in range(len(new))]
    x = np.arange(total, dtype=np.float32).reshape(old)
    t = nm.import_tf_tensor(one_device_mesh(), x, shape_of(names, old))
    got = nm.export_to_tf_tensor(nm.reshape(t, shape_of(new_names, new))).numpy()
    np.testing.assert_array_equal(got, x.reshape(new))


@SETTINGS
@given(named_dims(), st.sampled_from(["sum", "mean", "max", "min"]), st.data())
def test_reductions_match_numpy(dims, kind, data):
    names, sizes = dims
    reduced = data.draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
    kept = [n for n in names if n not in reduced]
    out = list(data.draw(st.permutations(kept))) if kept else []
    rng = np.random.RandomState(len(names) * 7 + len(reduced))
    x = rng.randn(*[sizes[n] for n in names]).astype(np.float32)
    t = nm.import_tf_tensor(one_device_mesh(), x, shape_of(names, x.shape))
    fn = {"sum": nm.reduce_sum, "mean": nm.reduce_mean, "max": nm.reduce_max,
          "min": nm.reduce_min}[kind]
    ref = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[kind]
    got = nm.export_to_tf_tensor(fn(t, output_shape=shape_of(out, [sizes[n] for n in out]))).numpy()
    want = ref(x, axis=tuple(names.index(n) for n in reduced)) if reduced else x
    want = np.transpose(want, [kept.index(n) for n in out]) if out else want
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
