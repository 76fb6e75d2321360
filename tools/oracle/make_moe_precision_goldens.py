"""Golden MoE cases of mesh-tensorflow 0.1.21 in reduced precision, made by running mtf itself.

* ``*_bf16_activations``: mtf's layer with bfloat16 activations (``VariableDType(float32,
  float32, bfloat16)``, the input cast to bfloat16 in mtf): its router computes in float32
  on the bfloat16 inputs, with the router kernel read in the activation dtype.
* ``*_alltoall_bf16``: float32 activations, but every all-to-all sends float32 as bfloat16
  and casts back, which is what mtf's SimdMeshImpl does on TPU (simd_mesh_impl.py
  ``alltoall``).  TPUs are not available here, so the PlacementMeshImpl's all-to-all is
  wrapped with the same two casts (``mtf_moe_layer.tpu_alltoall_rounding``).

Each ``.npz`` has the keys of tests/data/README.md plus ``precision`` (JSON).  Run in the
oracle virtualenv (tools/oracle/README.md):

    /tmp/mtf-oracle/bin/python tools/oracle/make_moe_precision_goldens.py --all
"""
import contextlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from mtf_moe_layer import (build_layer, golden_main, make_hparams, mtf,  # noqa: E402
                           placement_impl, tf, tpu_alltoall_rounding)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "precision")
V2_LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"

CASES = {
    "v2_bf16_activations": dict(
        layer="v2", activation="bfloat16", alltoall="float32", mesh_shape="b0:2;b1:2",
        layout=V2_LAYOUT, input_dims=[("outer_batch", 2), ("batch", 4), ("length", 8),
                                      ("d_model", 16)],
        hparams=dict(moe_num_experts=[4, 4], moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"), train=False, seed=21),
    "v1_bf16_activations": dict(
        layer="v1", activation="bfloat16", alltoall="float32", mesh_shape="b0:2",
        layout="batch:b0;experts:b0", input_dims=[("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_num_experts=4, moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"), train=False, seed=22),
    "v2_alltoall_bf16": dict(
        layer="v2", activation="float32", alltoall="bfloat16", mesh_shape="b0:2;b1:2",
        layout=V2_LAYOUT, input_dims=[("outer_batch", 2), ("batch", 4), ("length", 8),
                                      ("d_model", 16)],
        hparams=dict(moe_num_experts=[4, 4], moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"), train=False, seed=23),
    "v1_alltoall_bf16": dict(
        layer="v1", activation="float32", alltoall="bfloat16", mesh_shape="b0:2",
        layout="batch:b0;experts:b0", input_dims=[("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_num_experts=4, moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"), train=False, seed=24),
}


def run_case(name, case):
    rng = np.random.RandomState(case["seed"])
    sizes = [s for _, s in case["input_dims"]]
    x_np = rng.randn(*sizes).astype(np.float32)
    r_np = rng.randn(*sizes).astype(np.float32)
    hparams = make_hparams(**case["hparams"])
    activation = tf.bfloat16 if case["activation"] == "bfloat16" else tf.float32
    with tf.Graph().as_default():
        tf.set_random_seed(case["seed"])
        graph, mesh, y, loss, objective, variables, grads = build_layer(
            case["layer"], hparams, case["input_dims"], mtf.convert_to_shape(case["mesh_shape"]),
            mtf.convert_to_layout_rules(case["layout"]), case["train"], tf.constant(x_np),
            tf.constant(r_np), activation_dtype=activation)
        impl = placement_impl(case["mesh_shape"], case["layout"])
        rounding = tpu_alltoall_rounding() if case["alltoall"] == "bfloat16" else \
            contextlib.nullcontext()
        with rounding:
            lowering = mtf.Lowering(graph, {mesh: impl})
        fetch = {"y": tf.cast(lowering.export_to_tf_tensor(y), tf.float32),
                 "loss": tf.cast(lowering.export_to_tf_tensor(loss), tf.float32)}
        for v in graph.all_variables:  # the float32 masters (outputs[0] is in activation dtype)
            fetch["var/" + v.name] = v.get_master()
        names = [v.name for v in variables] + ["x"]
        for n, g in zip(names, grads):  # mtf differentiates w.r.t. the activation-dtype value
            fetch["grad/" + n] = tf.cast(lowering.export_to_tf_tensor(g), tf.float32)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(lowering.copy_masters_to_slices())
            values = session.run(fetch)
    out = {"x": x_np, "r": r_np}
    out.update(values)
    out["loss"] = np.float32(out["loss"])
    hp = vars(hparams)
    out["hparams"] = np.array(json.dumps(hp))
    out["config"] = np.array(json.dumps(dict(case, name=name)))
    out["precision"] = np.array(json.dumps({"activation_dtype": case["activation"],
                                            "alltoall_dtype": case["alltoall"]}))
    out["mtf_call"] = np.array(json.dumps({
        "function": "transformer_moe_layer_" + case["layer"], "train": case["train"],
        "mesh_shape": case["mesh_shape"], "layout": case["layout"],
        "input_shape": ";".join("%s:%d" % d for d in case["input_dims"]),
        "output_dim": "%s:%d" % case["input_dims"][-1], "nonpadding": False,
        "objective": "reduce_sum(to_float(y) * r) + to_float(loss)"}))
    return out


def _summary(path, data):
    return "wrote %s: loss %.6f, y[0,..,:3] %s" % (path, data["loss"], data["y"].reshape(-1)[:3])


def main(argv=None):
    golden_main(argv, __doc__.splitlines()[0], CASES, DEFAULT_OUT, run_case, _summary)


if __name__ == "__main__":
    main()
