"""Golden cases of whole mesh-tensorflow 0.1.21 transformer models, made by running mtf itself.

Each case builds mtf's own ``Unitransformer`` or ``Bitransformer`` (mtf's transformer.py,
transformer_layers.py, moe.py) from an explicit layer stack, lowers it with mtf's
``PlacementMeshImpl`` on the case's mesh and layout, runs it in float32 in train mode (dropout 0)
and in eval mode, and saves one ``.npz``: the config, the inputs, every variable by its mtf name,
the logits, the loss and its parts, and the gradients of the train loss w.r.t. every variable.

The checkpoint cases train a small lm_moe-shaped / bi_moe-shaped model for a few steps with mtf's
Adafactor, save it with ``tf.train.Saver`` the way mtf's training loop does, restore it into a fresh
graph, and record the logits mtf computes from it (and greedy decodes).

mtf is an oracle here, never a dependency of namedmesh: run this in the oracle virtualenv
(tools/oracle/README.md), e.g.

    /tmp/mtf-oracle/bin/python tools/oracle/make_model_goldens.py --list
    /tmp/mtf-oracle/bin/python tools/oracle/make_model_goldens.py --case lm_moe_1dev
    /tmp/mtf-oracle/bin/python tools/oracle/make_model_goldens.py --all

Outputs go to tests/data/models/ (``--out``); tests/data/models/README.md describes every key.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from model_cases import CASES, CHECKPOINT_CASES  # noqa: E402
from mtf_checkpoints import make_checkpoint_case, verify_checkpoint  # noqa: E402
from mtf_models import (DEFAULT_OUT, EVAL, TRAIN, build_and_call, build_model,  # noqa: E402
                        case_data, check_gin_builds_the_same_model, dims_of, gin_case_text,
                        jsonable, mesh_impl_for, mtf, tf, unitransformers_of)
import tensorflow as tf2  # noqa: E402


def _master_variables():
    return {v.op.name: v for v in tf.global_variables()}


def load_values(session, values):
    masters = _master_variables()
    missing = sorted(set(values) - set(masters))
    if missing:
        raise KeyError("no master variable for %s" % missing)
    for name, value in values.items():
        masters[name].load(value, session)


def run_case(case, mode, values=None, perturbations=()):
    """Build, lower and run the case in one mode.

    Returns (outputs: numpy arrays by key, variable values by name, train gradients by variable
    name (empty in eval), metadata, [the logits under each perturbation]).
    values: variable values to load (by mtf name) instead of the seeded initialisation.
    perturbations: relative noise scales; the logits are recomputed with each variable v
      replaced by v * (1 + scale * N(0, 1)) to detect discrete decisions near a tie.
    """
    rng = np.random.RandomState(case["seed"])
    arrays = case_data(case, rng)
    with tf.Graph().as_default():
        tf.set_random_seed(case["seed"])
        graph, mesh, model, recorder, logits, loss, extra = build_and_call(case, arrays, mode)
        (decoder_name,) = [n for n in recorder.model_losses]
        model_loss, _, targets, vocab_dim, _ = recorder.model_losses[decoder_name]
        # the cross-entropy part alone (mtf's own loss function with z_loss 0, weighted and
        # normalised as Unitransformer._compute_loss does); the rest of model_loss is z_loss
        decoder = unitransformers_of(model)[-1]
        ce = mtf.layers.softmax_cross_entropy_with_logits(logits, targets, vocab_dim, z_loss=0.0)
        weights = mtf.cast(mtf.greater(targets, 0), tf.float32)
        ce = mtf.reduce_sum(ce * weights) / decoder.loss_denominator(targets, 1)
        variables = graph.trainable_variables
        grads = (mtf.gradients([loss], [v.outputs[0] for v in variables]) if mode == TRAIN
                 else [])
        lowering = mtf.Lowering(graph, {mesh: mesh_impl_for(case)})
        fetch = {"logits": lowering.export_to_tf_tensor(logits),
                 "loss": lowering.export_to_tf_tensor(loss),
                 "cross_entropy": lowering.export_to_tf_tensor(ce),
                 "model_loss": lowering.export_to_tf_tensor(model_loss)}
        for scope, moe_loss in recorder.moe_losses.items():
            fetch["moe_loss/" + scope] = lowering.export_to_tf_tensor(moe_loss)
        for name, tensor in extra.items():
            fetch[name] = lowering.export_to_tf_tensor(tensor)
        for model_name, outputs in recorder.layer_outputs.items():
            for i, tensor in enumerate(outputs):
                fetch["layer_outputs/%s/%02d" % (model_name, i)] = \
                    lowering.export_to_tf_tensor(tensor)
        var_fetch = {v.name: lowering.export_to_tf_tensor(v.outputs[0]) for v in variables}
        grad_fetch = {v.name: lowering.export_to_tf_tensor(g) for v, g in zip(variables, grads)}
        meta = {"var_dims": {v.name: dims_of(v.outputs[0]) for v in variables},
                "logits_dims": dims_of(logits),
                "variable_order": [v.name for v in variables],
                "loss_denominator": decoder.loss_denominator(targets, 1),
                "moe_loss_scopes": list(recorder.moe_losses),
                "layer_outputs_dims": {
                    m: [dims_of(t) for t in outs] for m, outs in recorder.layer_outputs.items()}}
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            if values is not None:
                load_values(session, values)
            session.run(lowering.copy_masters_to_slices())
            out, var_values, grad_values = session.run([fetch, var_fetch, grad_fetch])
            perturbed = []
            noise_rng = np.random.RandomState(1000 + case["seed"])
            for scale in perturbations:
                load_values(session, {
                    k: (v * (1 + scale * noise_rng.randn(*v.shape))).astype(np.float32)
                    for k, v in var_values.items()})
                session.run(lowering.copy_masters_to_slices())
                perturbed.append(session.run(fetch["logits"]))
    out = {k: np.asarray(v) for k, v in out.items()}
    out.update(arrays)
    out["z_loss"] = out["model_loss"] - out["cross_entropy"]
    return out, var_values, grad_values, meta, perturbed


def check_no_near_ties(name, mode, logits, perturbed, scales):
    """A discrete routing / bucket / argmax decision near a tie makes the logits jump.

    With every weight multiplied by 1 + s*N(0, 1) the logits of these models move smoothly, by
    about 8*s times their largest value (measured for s from 1e-6 to 1e-3); a top-k choice,
    threshold or capacity decision that flips moves them by far more.  Above 20*s times the
    largest logit the golden is refused (give the case another seed).
    """
    scale_of_logits = float(np.abs(logits).max())
    report = []
    for s, p in zip(scales, perturbed):
        change = float(np.abs(p - logits).max())
        report.append((s, change))
        if change > 20 * s * max(scale_of_logits, 1.0):
            raise AssertionError(
                "%s/%s: a relative weight perturbation of %g moves the logits by %g (logit scale "
                "%g): a discrete decision is near a tie; pick another seed" %
                (name, mode, s, change, scale_of_logits))
    return report


def _mode_keys(prefix, out, grads):
    keys = {prefix + "/logits": out["logits"].astype(np.float32),
            prefix + "/loss": np.float32(out["loss"]),
            prefix + "/cross_entropy": np.float32(out["cross_entropy"]),
            prefix + "/z_loss": np.float32(out["z_loss"])}
    for k, v in out.items():
        if k.startswith("moe_loss/"):
            keys[prefix + "/" + k] = np.float32(v)
        if k.startswith("layer_outputs/"):
            keys[prefix + "/" + k] = v.astype(np.float32)
    for k, v in grads.items():
        keys[prefix + "/grad/" + k] = v.astype(np.float32)
    return keys


def make_case(name, case, out_dir, check_ties=True):
    config = {"case": name, "description": case["description"],
              "mtf_version": "0.1.21", "tensorflow_version": tf2.__version__,
              "mesh_shape": case["mesh_shape"], "layout": case["layout"],
              "devices": mtf.convert_to_shape(case["mesh_shape"]).size,
              "variable_dtype": {"master": "float32", "slice": "float32",
                                 "activation": "float32"},
              "modes": [TRAIN, EVAL], "data": case["data"], "seed": case["seed"],
              "patches": case["patches"]}
    config.update(build_model(case)[1])
    if case["gin"]:
        text = gin_case_text(name, case)
        check_gin_builds_the_same_model(case, text)
        gin_dir = os.path.join(out_dir, "gin", "cases")
        os.makedirs(gin_dir, exist_ok=True)
        with open(os.path.join(gin_dir, name + ".gin"), "w") as f:
            f.write(text)
        config["gin"] = {"files": case["gin"]["files"] + ["cases/%s.gin" % name],
                         "checked": "the script builds the model from these files with gin and "
                                    "checks it equals the model built from this config"}
    else:
        config["gin"] = None
    scales = (1e-5,) if check_ties else ()
    train, values, grads, meta, perturbed = run_case(case, TRAIN, perturbations=scales)
    tie_report = {TRAIN: check_no_near_ties(name, TRAIN, train["logits"], perturbed, scales)}
    evaluation, eval_values, _, _, perturbed = run_case(case, EVAL, values=values,
                                                        perturbations=scales)
    tie_report[EVAL] = check_no_near_ties(name, EVAL, evaluation["logits"], perturbed, scales)
    for k in values:
        assert np.array_equal(values[k], eval_values[k]), k
    _check_loss_parts(name, train)
    _check_loss_parts(name, evaluation)
    config.update({k: meta[k] for k in ("var_dims", "logits_dims", "variable_order",
                                        "loss_denominator", "moe_loss_scopes",
                                        "layer_outputs_dims")})
    config["perturbation_check"] = {m: [{"relative_noise": s, "max_logit_change": c}
                                        for s, c in r] for m, r in tie_report.items()}
    config["call_simple_arrays"] = sorted(k for k in case_data(case, np.random.RandomState(
        case["seed"])) if k != "targets")
    arrays = {"config": np.array(json.dumps(jsonable(config), indent=1))}
    data_keys = [k for k in ("targets", "inputs", "decoder_inputs", "sequence_id", "position",
                             "encoder_sequence_id", "decoder_sequence_id", "encoder_position",
                             "decoder_position") if k in train]
    for k in data_keys:
        arrays[k] = train[k].astype(np.int32)
    for k, v in values.items():
        arrays["var/" + k] = v.astype(np.float32)
    arrays.update(_mode_keys(TRAIN, train, grads))
    arrays.update(_mode_keys(EVAL, evaluation, {}))
    path = os.path.join(out_dir, name + ".npz")
    np.savez_compressed(path, **arrays)
    print("%-28s %6.1f KB  train loss %.6f (ce %.6f z %.6f moe %s)  eval loss %.6f  ties %s" % (
        name, os.path.getsize(path) / 1024, train["loss"], train["cross_entropy"],
        train["z_loss"], ["%.5f" % v for k, v in sorted(train.items())
                          if k.startswith("moe_loss/")],
        evaluation["loss"], {m: ["%.1e" % c for _, c in r] for m, r in tie_report.items()}))


def _check_loss_parts(name, out):
    parts = out["model_loss"] + sum(v for k, v in out.items() if k.startswith("moe_loss/"))
    if abs(parts - out["loss"]) > 1e-6 * max(1.0, abs(out["loss"])):
        raise AssertionError("%s: loss %r != sum of its parts %r" % (name, out["loss"], parts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", default=[],
                        help="a case name (repeatable); see --list")
    parser.add_argument("--all", action="store_true", help="every case and checkpoint case")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--verify-checkpoint", metavar="PREFIX",
                        help="restore this checkpoint (e.g. one namedmesh wrote) into mtf's model "
                             "of the one --case checkpoint case, and compare mtf's eval logits "
                             "with that case's committed golden")
    parser.add_argument("--expect-logits", metavar="FILE.npy",
                        help="with --verify-checkpoint: compare mtf's eval logits with these "
                             "(e.g. what namedmesh computes from a checkpoint it trained and "
                             "saved) instead of the golden's")
    args = parser.parse_args()
    everything = dict(CASES, **CHECKPOINT_CASES)
    if args.list:
        for name, case in everything.items():
            print("%-28s %s" % (name, case["description"]))
        return
    if args.verify_checkpoint:
        if len(args.case) != 1 or args.case[0] not in CHECKPOINT_CASES:
            parser.error("--verify-checkpoint needs one --case of %s" % sorted(CHECKPOINT_CASES))
        sys.exit(verify_checkpoint(args.case[0], args.verify_checkpoint, args.out,
                                   expected=args.expect_logits))
    names = list(everything) if args.all else args.case
    unknown = [n for n in names if n not in everything]
    if unknown or not names:
        parser.error("unknown case(s) %s; choose from %s" % (unknown, sorted(everything)))
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        if name in CASES:
            make_case(name, CASES[name], args.out)
        else:
            make_checkpoint_case(name, CHECKPOINT_CASES[name], args.out)


if __name__ == "__main__":
    main()
