"""What mesh-tensorflow 0.1.21's MoE layers do with a token whose input holds NaN or infinity.

For each case, mtf's layer runs twice on the same weights:

* ``nan``: the input with one bad token, as it is (``y_nan``, ``loss_nan``): what mtf
  computes, i.e. what namedmesh's ``nonfinite_tokens="mtf"`` must reproduce;
* ``padded``: the same input with that token set to zero and made padding
  (``nonpadding`` 0 there), with gradients of ``reduce_sum(y * r) + loss``: what
  namedmesh's default ``nonfinite_tokens="mask"`` must give for the other tokens.

Writes ``tests/data/nonfinite/<case>.npz`` (keys in tests/data/nonfinite/README.md).  Run in
the oracle virtualenv (tools/oracle/README.md):

    /tmp/mtf-oracle/bin/python tools/oracle/make_moe_nonfinite_goldens.py --all
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from mtf_moe_layer import (build_layer, golden_main, make_hparams, mtf,  # noqa: E402
                           placement_impl, tf)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "nonfinite")
V2_LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"

CASES = {
    "v1_top2_nan": dict(
        layer="v1", mesh_shape="b0:2", layout="batch:b0;experts:b0",
        input_dims=[("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_num_experts=4, moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"),
        bad_token=[1, 3], bad_feature=5, bad_value="nan", seed=31),
    "v1_switch_inf": dict(
        layer="v1", mesh_shape="b0:2", layout="batch:b0;experts:b0",
        input_dims=[("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_gating="switch", moe_num_experts=4, moe_hidden_size=32,
                     moe_group_size=8, moe_capacity_factor_eval=2.0,
                     moe_min_expert_capacity=2, moe_switch_policy_eval="argmax"),
        bad_token=[2, 0], bad_feature=0, bad_value="inf", seed=32),
    "v2_nan": dict(
        layer="v2", mesh_shape="b0:2;b1:2", layout=V2_LAYOUT,
        input_dims=[("outer_batch", 2), ("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_num_experts=[4, 4], moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"),
        bad_token=[1, 2, 6], bad_feature=9, bad_value="nan", seed=33),
    "v2_neg_inf": dict(
        layer="v2", mesh_shape="b0:2;b1:2", layout=V2_LAYOUT,
        input_dims=[("outer_batch", 2), ("batch", 4), ("length", 8), ("d_model", 16)],
        hparams=dict(moe_num_experts=[4, 4], moe_hidden_size=32, moe_group_size=8,
                     moe_capacity_factor_eval=2.0, moe_min_expert_capacity=2,
                     moe_second_policy_eval="all"),
        bad_token=[0, 0, 0], bad_feature=15, bad_value="-inf", seed=34),
}


def _run(case, hparams, x_np, r_np, nonpadding_np, gradients):
    with tf.Graph().as_default():
        tf.set_random_seed(case["seed"])
        nonpadding = tf.constant(nonpadding_np) if nonpadding_np is not None else None
        graph, mesh, y, loss, objective, variables, grads = build_layer(
            case["layer"], hparams, case["input_dims"], mtf.convert_to_shape(case["mesh_shape"]),
            mtf.convert_to_layout_rules(case["layout"]), False, tf.constant(x_np),
            tf.constant(r_np), nonpadding=nonpadding)
        impl = placement_impl(case["mesh_shape"], case["layout"])
        lowering = mtf.Lowering(graph, {mesh: impl})
        fetch = {"y": lowering.export_to_tf_tensor(y), "loss": lowering.export_to_tf_tensor(loss)}
        for v in graph.all_variables:
            fetch["var/" + v.name] = v.get_master()
        if gradients:
            for n, g in zip([v.name for v in variables] + ["x"], grads):
                fetch["grad/" + n] = lowering.export_to_tf_tensor(g)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(lowering.copy_masters_to_slices())
            return session.run(fetch)


def run_case(name, case):
    rng = np.random.RandomState(case["seed"])
    sizes = [s for _, s in case["input_dims"]]
    x_np = rng.randn(*sizes).astype(np.float32)
    r_np = rng.randn(*sizes).astype(np.float32)
    token = tuple(case["bad_token"])
    x_np[token + (case["bad_feature"],)] = np.float32(float(case["bad_value"]))
    padded_x = x_np.copy()
    padded_x[token] = 0.0
    nonpadding = np.ones(sizes[:-1], np.float32)
    nonpadding[token] = 0.0
    hparams = make_hparams(**case["hparams"])
    bad = _run(case, hparams, x_np, r_np, None, gradients=False)
    padded = _run(case, hparams, padded_x, r_np, nonpadding, gradients=True)
    for k in bad:   # the same weights in both runs (same graph seed and names)
        if k.startswith("var/"):
            np.testing.assert_array_equal(bad[k], padded[k])
    out = {"x": x_np, "r": r_np, "nonpadding_padded": nonpadding, "x_padded": padded_x,
           "y_nan": bad["y"], "loss_nan": np.float32(bad["loss"]),
           "y_padded": padded["y"], "loss_padded": np.float32(padded["loss"])}
    out.update({k: v for k, v in padded.items() if k.startswith(("var/", "grad/"))})
    out["hparams"] = np.array(json.dumps(vars(hparams)))
    out["config"] = np.array(json.dumps(dict(case, name=name)))
    out["mtf_call"] = np.array(json.dumps({
        "function": "transformer_moe_layer_" + case["layer"], "train": False,
        "mesh_shape": case["mesh_shape"], "layout": case["layout"],
        "input_shape": ";".join("%s:%d" % d for d in case["input_dims"]),
        "objective": "reduce_sum(y * r) + loss (padded run)"}))
    return out


def _summary(path, data):
    rows = data["y_nan"].reshape(-1, data["y_nan"].shape[-1])
    return ("wrote %s: mtf's output has %d of %d tokens NaN, loss %s; padded loss %.6f"
            % (path, int(np.isnan(rows).any(-1).sum()), rows.shape[0], data["loss_nan"],
               data["loss_padded"]))


def main(argv=None):
    golden_main(argv, __doc__.splitlines()[0], CASES, DEFAULT_OUT, run_case, _summary)


if __name__ == "__main__":
    main()
