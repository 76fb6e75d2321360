"""mtf 0.1.21 as the oracle for mtf's ops.py (tests/data/mtf_ops, made by
tools/oracle/mtf_ops_oracle.py): the same calls give mtf's values and gradients; on the
cases' meshes the collective trace shows the kind and count of the collectives mtf's
lowering calls (a neighbour exchange's source map included), except the deviations listed
below with their reasons; wrong calls raise the exception type mtf raises."""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm

DATA = pathlib.Path(__file__).resolve().parent / "data" / "mtf_ops"
RECORDS = json.loads((DATA / "cases.json").read_text())
ARRAYS = np.load(DATA / "cases.npz")
CASES = RECORDS["cases"]

# Where namedmesh's collectives differ from mtf's, and why (the rest must be equal).
DEVIATIONS = {
    "top_k_3_split": ([("all_gather", ("m",))] * 2,
                      "mtf runs top_1 three times for 2 <= k <= 4 (2 all-gathers each); "
                      "namedmesh gathers the per-processor top-k candidates once"),
    "nth_largest_split": ([("all_gather", ("m",))] * 2, "top_k with k = 3, as above"),
    "cumsum_split": ([("all_gather", ("m",))],
                     "mtf all-reduces the whole tensor (an einsum with a triangular mask); "
                     "namedmesh all-gathers only each processor's total"),
}
# Where mtf refuses the layout, what namedmesh does instead.
INSTEAD_OF_MTF_ERRORS = {
    "slice_m:2_b:m": [("all_gather", ("m",))],
    "pad_m:2_b:m": [("all_gather", ("m",))],
    "concat_m:2_b:m": [("all_gather", ("m",))],
    "split_m:2_b:m": [("all_gather", ("m",))],
    "unstack_m:2_b:m": [("all_gather", ("m",))],
    "stack_new_dim_split": [],
    "conv2d_m:2_h:m": [("all_gather", ("m",))],
}
# mtf raises these by accident (an assert, ...); namedmesh raises a ValueError subclass.
ACCIDENTAL_MTF_ERRORS = {"split_not_dividing": "AssertionError"}

# mtf's operation classes and the namedmesh functions that are them
OPERATIONS = {"Conv2dOperation": "conv2d_with_filter", "Conv3dOperation": "conv3d_with_filter",
              "Conv2dTransposeOperation": "conv2d_transpose_with_filter",
              "Conv3dTransposeOperation": "conv3d_transpose_with_filter", "PoolOperation": "pool",
              "Shape": "Shape"}
_KIND = {"allreduce": "all_reduce", "allconcat": "all_gather", "alltoall": "all_to_all",
         "receive": "permute"}


def resolve(value, tensors, mesh):
    if isinstance(value, dict):
        if "dim" in value:
            return nm.convert_to_dimension(value["dim"])
        if "shape" in value:
            return nm.convert_to_shape(value["shape"])
        if "input" in value:
            return tensors[value["input"]]
    if isinstance(value, list):
        return [resolve(v, tensors, mesh) for v in value]
    return {"$mesh": mesh, "$len": len, "int32": tf.int32, "float32": tf.float32}.get(
        value, tf.zeros([2, 3]) if value == "$zeros_2_3" else value) if isinstance(
        value, str) else value


def call(case, mesh, values):
    tensors = {}
    for name, (shape, _kind, *_) in case["inputs"].items():
        tensors[name] = nm.import_tf_tensor(mesh, values[name], shape)
    fn = getattr(nm, OPERATIONS.get(case["op"], case["op"]))
    out = fn(*[resolve(a, tensors, mesh) for a in case["args"]],
             **{k: resolve(v, tensors, mesh) for k, v in case["kwargs"].items()})
    return list(out) if isinstance(out, (list, tuple)) else [out]


def inputs_of(case):
    return {name: tf.constant(ARRAYS["%s/in/%s" % (case["id"], name)]) for name in case["inputs"]}


def values_and_grads(case, mesh):
    values = inputs_of(case)
    floats = sorted(n for n, v in values.items() if v.dtype.is_floating)
    with tf.GradientTape() as tape:
        tape.watch([values[n] for n in floats])
        outs = call(case, mesh, values)
        exported = [nm.export_to_tf_tensor(o) for o in outs]
        float_outs = [e for e in exported if e.dtype.is_floating]
        weights = ["%s/r/%d" % (case["id"], i) for i in range(len(float_outs))]
        with_grads = case["grads"] and floats and all(w in ARRAYS.files for w in weights)
        loss = tf.add_n([tf.reduce_sum(e * ARRAYS[w]) for e, w in zip(float_outs, weights)]) \
            if with_grads else None
    grads = tape.gradient(loss, [values[n] for n in floats]) if with_grads else []
    return outs, exported, dict(zip(floats, grads))


def check_values(case, outs, exported, grads):
    for i, (o, e) in enumerate(zip(outs, exported)):
        meta = case["outputs"][i]
        assert o.shape == nm.convert_to_shape(meta["shape"]), (i, o.shape, meta)
        assert o.dtype.name == meta["dtype"]
        np.testing.assert_allclose(e.numpy(), ARRAYS["%s/out/%d" % (case["id"], i)], atol=2e-5,
                                   rtol=1e-5, err_msg="output %d" % i)
    for name, g in grads.items():
        key = "%s/grad/%s" % (case["id"], name)
        if key in ARRAYS.files:
            got = np.zeros_like(ARRAYS[key]) if g is None else tf.convert_to_tensor(g).numpy()
            np.testing.assert_allclose(got, ARRAYS[key], atol=2e-5, rtol=1e-5,
                                       err_msg="gradient of %s" % name)


@pytest.mark.parametrize("case", [c for c in CASES if not c["random"]], ids=lambda c: c["id"])
def test_one_device_values_and_gradients_equal_mtf(case):
    outs, exported, grads = values_and_grads(case, nm.Mesh())
    check_values(case, outs, exported, grads)


def mtf_collectives(case):
    mesh_dims = nm.convert_to_shape(case["mesh_shape"]).names
    out = []
    for c in case["mtf_collectives"]:
        axes = tuple(mesh_dims[a] for a in c["mesh_axes"])
        if c["kind"] == "receive":
            if c["sources"] == list(range(len(c["sources"]))):
                continue  # mtf calls receive with the identity map: nothing moves
            out.append(("permute", axes, tuple(c["sources"])))
        else:
            out.append((_KIND[c["kind"]], axes))
    return sorted(out, key=repr)


def namedmesh_collectives(trace):
    out = []
    for r in trace.select(phase="forward"):
        out.append((r.kind, r.mesh_dims, r.sources) if r.kind == "permute" else
                   (r.kind, r.mesh_dims))
    return sorted(out, key=repr)


@pytest.mark.parametrize("case", [c for c in CASES if c["mesh_shape"]], ids=lambda c: c["id"])
def test_collectives_on_the_mesh_match_mtf(case):
    mesh = nm.Mesh(case["mesh_shape"], case["layout"])
    with nm.trace_collectives() as trace:
        outs, exported, grads = values_and_grads(case, mesh)
    ours = namedmesh_collectives(trace)
    # the collectives of the op only: those of exporting the outputs are not the op's
    with nm.trace_collectives() as export_trace:
        for o in outs:
            nm.export_to_tf_tensor(o)
    for record in namedmesh_collectives(export_trace):
        ours.remove(record)
    if case["mtf_error"]:
        assert case["id"] in INSTEAD_OF_MTF_ERRORS, "mtf refused: %s" % case["mtf_error"]
        assert ours == sorted(INSTEAD_OF_MTF_ERRORS[case["id"]], key=repr)
    elif case["id"] in DEVIATIONS:
        assert ours == sorted(DEVIATIONS[case["id"]][0], key=repr)
        assert len(ours) <= len(mtf_collectives(case))
    else:
        assert ours == mtf_collectives(case)
    if not case["random"]:
        check_values(case, outs, exported, grads)


def test_every_mesh_case_is_compared():
    assert set(DEVIATIONS) | set(INSTEAD_OF_MTF_ERRORS) <= {c["id"] for c in CASES}
    assert {c["id"] for c in CASES if c["mtf_error"]} == set(INSTEAD_OF_MTF_ERRORS)
    assert all(c.get("mtf_mesh_equals_one_device", True) for c in CASES)


@pytest.mark.parametrize("case", RECORDS["misuse"], ids=lambda c: c["id"])
def test_misuse_raises_what_mtf_raises(case):
    expected = case["mtf_error"]
    assert expected is not None, "mtf accepts this call"
    rng = np.random.RandomState(0)
    values = {}
    for name, desc in case["inputs"].items():
        sizes = nm.convert_to_shape(desc[0]).sizes
        values[name] = tf.constant(rng.randn(*sizes).astype(np.float32) if desc[1] == "float32"
                                   else rng.randint(desc[2], desc[3], sizes).astype(np.int32))
    with pytest.raises(Exception) as info:
        call(case, nm.Mesh(), values)
    error = info.value
    assert isinstance(error, (nm.NamedMeshError, TypeError)), repr(error)
    if case["id"] in ACCIDENTAL_MTF_ERRORS:
        assert expected["type"] == ACCIDENTAL_MTF_ERRORS[case["id"]]
        assert isinstance(error, ValueError)
    else:
        assert expected["type"] in [c.__name__ for c in type(error).__mro__], (
            "mtf raises %s, namedmesh %r" % (expected["type"], error))
