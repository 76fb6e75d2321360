"""reduce_sums: the values of separate reduce_sums, with one all-reduce per set of mesh dims."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from helpers import strategy
from namedmesh.core.packed import reduce_sums

SHAPE = nm.convert_to_shape("a:4;b:6;c:8")
LAYOUT = "a:x;c:y"


def _requests(mesh, value):
    t = nm.import_tf_tensor(mesh, value, SHAPE)
    return {
        "all": t,                                  # sums a (x) and c (y)
        "all_squares": t * t,                      # the same mesh dims: packed with "all"
        "per_c": (t, "c:8"),                       # sums a (x): c stays split on y
        "per_b_a": (t * t, "b:6;a:4"),             # sums c (y), transposed
        "local": (t, "a:4;c:8;b:6"),               # sums nothing
        "count": (nm.to_int32(nm.greater(t, 0.0)), "b:6"),  # int32: a pack of its own
    }


def _expected(value):
    sq = value * value
    return {"all": value.sum(), "all_squares": sq.sum(), "per_c": value.sum((0, 1)),
            "per_b_a": sq.sum(2).T,
            "local": np.transpose(value, (0, 2, 1)), "count": (value > 0).sum((0, 2))}


def test_reduce_sums_equal_separate_sums_with_one_allreduce_per_mesh_dims():
    value = np.random.RandomState(0).randn(*SHAPE.sizes).astype(np.float32)
    mesh = nm.Mesh("x:2;y:2", LAYOUT)
    with nm.trace_collectives() as tr:
        sums = reduce_sums(_requests(mesh, value))
    dims = {"all": (), "all_squares": (), "per_c": ("c",), "per_b_a": ("b", "a"),
            "local": ("a", "c", "b"),
            "count": ("b",)}
    for name, want in _expected(value).items():
        assert sums[name].shape.names == dims[name]
        got = nm.export_to_tf_tensor(sums[name]).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
    # float sums over {x, y}: "all" and "all_squares" in one; over {x}: "per_c"; over {y}:
    # "per_b_a";
    # int32 over {x, y}: "count"; nothing for "local"
    dims = sorted((r.mesh_dims, r.dtype) for r in tr.select("all_reduce"))
    assert dims == [(("x",), "float32"), (("x", "y"), "float32"), (("x", "y"), "int32"),
                    (("y",), "float32")]
    packed = [r for r in tr.select("all_reduce") if "packed_sums" in r.shape]
    assert len(packed) == 1 and r"packed_sums:2" in packed[0].shape


def test_packed_values_and_gradients_match_separate_reduce_sum_on_both_executors():
    value = np.random.RandomState(1).randn(*SHAPE.sizes).astype(np.float32)
    weights = tf.constant(np.random.RandomState(2).randn(3).astype(np.float32))

    def program(mesh, packed):
        x = tf.constant(value)
        with tf.GradientTape() as tape:
            tape.watch(x)
            t = nm.import_tf_tensor(mesh, x, SHAPE)
            parts = {"s": t * t, "m": t * 3.0, "c": (t, "c:8")}
            if packed:
                sums = reduce_sums(parts)
            else:
                sums = {"s": nm.reduce_sum(t * t), "m": nm.reduce_sum(t * 3.0),
                        "c": nm.reduce_sum(t, output_shape="c:8")}
            out = [nm.export_to_tf_tensor(sums[k]) for k in ("s", "m")]
            objective = weights[0] * out[0] + weights[1] * out[1] + weights[2] * tf.reduce_sum(
                tf.sin(nm.export_to_tf_tensor(sums["c"])))
        return objective, tape.gradient(objective, x)

    results = {}
    for executor, n in (("placement", 1), ("strategy", 4)):
        mesh = nm.Mesh("x:2;y:2", LAYOUT, strategy=strategy(4) if executor == "strategy"
                       else None)
        for packed in (False, True):
            if executor == "placement":
                got = program(mesh, packed)
            else:
                got = mesh.run(lambda packed=packed, mesh=mesh: program(mesh, packed),
                               reduce="sum")
            # per-replica objectives are copies (their sum is n times it); gradients add up
            results[executor, packed] = [got[0].numpy() / n, got[1].numpy()]
    reference = results["placement", False]
    for key, got in results.items():
        for a, b in zip(got, reference):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=str(key))


def test_bad_requests_are_named():
    mesh = nm.Mesh()
    t = nm.zeros(mesh, SHAPE)
    with pytest.raises(nm.ShapeError, match="reduce_sums\\('bad'\\).*'d'"):
        reduce_sums({"bad": (t, "d:3")})
    with pytest.raises(TypeError, match="reduce_sums\\('flags'\\).*bool"):
        reduce_sums({"flags": nm.greater(t, 0.0)})
    with pytest.raises(TypeError, match="namedmesh.Tensor"):
        reduce_sums({"raw": tf.zeros([2])})
