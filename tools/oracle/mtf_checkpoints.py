"""Checkpoints written by mtf, the logits mtf computes from them, and mtf's greedy decoding.

A case's model is trained a few steps with mtf's Adafactor (as ``utils.run`` trains), saved with
``tf.train.Saver`` the way mtf's training loop saves (``copy_slices_to_masters`` first), restored
into a fresh graph (``copy_masters_to_slices`` after, as ``MtfRestoreHook``) for the eval logits,
and decoded greedily with ``Unitransformer.sample_autoregressive`` / ``Bitransformer.decode``.
"""
import json
import os
import shutil

import numpy as np

from model_cases import CHECKPOINT_CASES, pattern_ids, pattern_next
from mtf_models import (EVAL, TRAIN, build_and_call, build_model,
                        check_gin_builds_the_same_model, constructor_arguments_of_function,
                        dims_of, gin_case_text, import_ids, jsonable, mesh_impl_for, mtf, tf,
                        transformer)
import tensorflow as tf2  # noqa: E402  (after mtf_models, which quiets TensorFlow's logs)


def _training_batch(case, rng):
    d = case["data"]
    rows = int(np.prod([s for _, s in d["batch_dims"]]))
    vocab = d["vocab_size"]
    if case["kind"] == "lm":
        return {"targets": pattern_ids(rng, rows, d["length"], vocab)}
    inputs = pattern_ids(rng, rows, d["inputs_length"], vocab)
    # the task: each target token is the pattern's successor of the input token
    targets = np.where(inputs[:, :d["targets_length"]] > 0,
                       pattern_next(inputs[:, :d["targets_length"]], vocab), 0).astype(np.int32)
    return {"inputs": inputs, "targets": targets}


def _with_sequence_id(case, batch):
    if case["kind"] == "lm":  # mtf's MoE1D crashes in train mode without nonpadding
        batch = dict(batch, sequence_id=(batch["targets"] > 0).astype(np.int32))
    return batch


def train_and_save(name, case, ckpt_dir, steps, learning_rate=0.05):
    """Train with mtf's Adafactor as utils.run does; save with tf.train.Saver as mtf's loop does."""
    rng = np.random.RandomState(case["seed"])
    d = case["data"]
    with tf.Graph().as_default():
        tf.set_random_seed(case["seed"])
        graph = mtf.Graph()
        mesh = mtf.Mesh(graph, "mesh")
        model, _ = build_model(case)
        global_step = tf.train.get_or_create_global_step()
        sample = _with_sequence_id(case, _training_batch(case, rng))
        placeholders = {k: tf.placeholder(tf.int32, v.shape, name=k) for k, v in sample.items()}
        batch = d["batch_dims"]

        def imported(k):
            if case["kind"] == "lm":
                length = d["length"]
            else:
                length = d["inputs_length"] if k == "inputs" else d["targets_length"]
            dims = [mtf.Dimension(n, s) for n, s in batch] + [mtf.Dimension("length", length)]
            return mtf.import_tf_tensor(mesh, placeholders[k], mtf.Shape(dims))
        t = {k: imported(k) for k in placeholders}
        if case["kind"] == "lm":
            inputs = transformer.autoregressive_inputs(t["targets"], sequence_id=t["sequence_id"])
            _, loss = model.call_simple(inputs, t["targets"], True, mode=TRAIN,
                                        variable_dtype=mtf.VariableDType(tf.float32),
                                        sequence_id=t["sequence_id"])
        else:
            _, loss = model.call_simple(t["inputs"], t["targets"], True, mode=TRAIN,
                                        variable_dtype=mtf.VariableDType(tf.float32))
        grads = mtf.gradients([loss], [v.outputs[0] for v in graph.trainable_variables])
        # The step runs in two session calls: gradients first, then mtf's Adafactor updates fed
        # with them.  In one call the lowered updates race with the reads of the same variables
        # (mtf's graph does not order them) and the training is not reproducible.
        grad_feeds = [tf.placeholder(tf.float32, g.shape.to_integer_list) for g in grads]
        fed_grads = [mtf.import_tf_tensor(mesh, f, g.shape) for f, g in zip(grad_feeds, grads)]
        optimizer = mtf.optimize.AdafactorOptimizer(learning_rate=learning_rate)
        update_ops = optimizer.apply_grads(fed_grads, graph.trainable_variables)
        lowering = mtf.Lowering(graph, {mesh: mesh_impl_for(case)})
        tf_loss = lowering.export_to_tf_tensor(loss)
        tf_grads = [lowering.export_to_tf_tensor(g) for g in grads]
        train_op = tf.group([lowering.lowered_operation(op) for op in update_ops])
        next_step = tf.assign_add(global_step, 1)
        saver = tf.train.Saver(tf.global_variables(), sharded=True, max_to_keep=1,
                               save_relative_paths=True)
        losses = []
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(lowering.copy_masters_to_slices())
            for _ in range(steps):
                feed = _with_sequence_id(case, _training_batch(case, rng))
                grad_values, lv = session.run(
                    [tf_grads, tf_loss], {placeholders[k]: v for k, v in feed.items()})
                session.run(train_op, dict(zip(grad_feeds, grad_values)))
                session.run(next_step)
                losses.append(float(lv))
            session.run(lowering.copy_slices_to_masters())  # MtfCheckpointSaverListener
            if os.path.isdir(ckpt_dir):
                shutil.rmtree(ckpt_dir)
            os.makedirs(ckpt_dir)
            prefix = saver.save(session, os.path.join(ckpt_dir, "model.ckpt"),
                                global_step=global_step, write_meta_graph=False)
    return prefix, losses, [v for v, _ in tf.train.list_variables(prefix)]


def eval_from_checkpoint(case, prefix, arrays):
    """Eval logits after a fresh graph restores the checkpoint (Saver, then masters -> slices)."""
    with tf.Graph().as_default():
        graph, mesh, model, recorder, logits, loss, extra = build_and_call(case, arrays, EVAL)
        lowering = mtf.Lowering(graph, {mesh: mesh_impl_for(case)})
        fetch = {"logits": lowering.export_to_tf_tensor(logits),
                 "loss": lowering.export_to_tf_tensor(loss)}
        fetch.update({"moe_loss/" + s: lowering.export_to_tf_tensor(l)
                      for s, l in recorder.moe_losses.items()})
        fetch.update({k: lowering.export_to_tf_tensor(v) for k, v in extra.items()})
        saver = tf.train.Saver(tf.global_variables())  # model variables only: no slots, no step
        with tf.Session() as session:
            saver.restore(session, prefix)
            session.run(lowering.copy_masters_to_slices())  # MtfRestoreHook
            out = session.run(fetch)
        meta = {"var_dims": {v.name: dims_of(v.outputs[0]) for v in graph.trainable_variables},
                "logits_dims": dims_of(logits)}
    return {k: np.asarray(v) for k, v in out.items()}, meta


def greedy_decode(case, prefix, prompts, perturb=0.0):
    """Unitransformer.sample_autoregressive at temperature 0 from the checkpoint's weights."""
    with tf.Graph().as_default():
        graph = mtf.Graph()
        mesh = mtf.Mesh(graph, "mesh")
        model, _ = build_model(case)
        dims = [list(d) for d in case["data"]["batch_dims"]] + [["length", prompts.shape[-1]]]
        partial = import_ids(mesh, prompts, dims)
        if case["kind"] == "lm":
            decoded = model.sample_autoregressive(
                partial, temperature=0.0, variable_dtype=mtf.VariableDType(tf.float32))
        else:
            decoded = model.decode(partial, variable_dtype=mtf.VariableDType(tf.float32),
                                   beam_size=1, temperature=0.0)
        lowering = mtf.Lowering(graph, {mesh: mesh_impl_for(case)})
        tokens = lowering.export_to_tf_tensor(decoded)
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session() as session:
            saver.restore(session, prefix)
            if perturb:
                noise = np.random.RandomState(7)
                for v in tf.global_variables():
                    value = session.run(v)
                    v.load((value * (1 + perturb * noise.randn(*value.shape))).astype(
                        value.dtype), session)
            session.run(lowering.copy_masters_to_slices())
            return session.run(tokens)


def make_checkpoint_case(name, case, out_dir):
    ckpt_dir = os.path.join(out_dir, name)
    prefix, train_losses, ckpt_variables = train_and_save(name, case, ckpt_dir,
                                                          case["train_steps"])
    rng = np.random.RandomState(case["seed"] + 100)
    arrays = _with_sequence_id(case, _training_batch(case, rng))  # held-out pattern data
    out, meta = eval_from_checkpoint(case, prefix, arrays)
    config = {"case": name, "description": case["description"], "mtf_version": "0.1.21",
              "tensorflow_version": tf2.__version__, "mesh_shape": case["mesh_shape"],
              "layout": case["layout"], "devices": mtf.convert_to_shape(case["mesh_shape"]).size,
              "variable_dtype": {"master": "float32", "slice": "float32", "activation": "float32"},
              "data": case["data"], "seed": case["seed"], "mode": EVAL,
              "checkpoint": {"prefix": os.path.relpath(prefix, out_dir),
                             "variables": ckpt_variables,
                             "written_by": "tf.train.Saver(tf.global_variables(), sharded=True, "
                                           "save_relative_paths=True) after "
                                           "lowering.copy_slices_to_masters()",
                             "optimizer": "mtf.optimize.AdafactorOptimizer(learning_rate=0.05)",
                             "train_steps": case["train_steps"],
                             "train_losses": train_losses}}
    config.update(build_model(case)[1])
    if case["gin"]:
        text = gin_case_text(name, case)
        check_gin_builds_the_same_model(case, text)
        with open(os.path.join(out_dir, "gin", "cases", name + ".gin"), "w") as f:
            f.write(text)
        config["gin"] = {"files": case["gin"]["files"] + ["cases/%s.gin" % name]}
    config.update(meta)
    saved = {"config": None, "eval/logits": out["logits"].astype(np.float32),
             "eval/loss": np.float32(out["loss"])}
    for k, v in out.items():
        if k.startswith("moe_loss/"):
            saved["eval/" + k] = np.float32(v)
    for k, v in arrays.items():
        saved[k] = v.astype(np.int32)
    for k in ("inputs", "decoder_inputs"):
        if k in out and k not in saved:
            saved[k] = out[k].astype(np.int32)
    # greedy decoding (temperature 0), checked stable under a 1e-4 relative weight perturbation
    prompts = decode_prompts(case, rng)
    tokens = greedy_decode(case, prefix, prompts)
    perturbed = greedy_decode(case, prefix, prompts, perturb=1e-4)
    if not np.array_equal(tokens, perturbed):
        raise AssertionError("%s: greedy decoding is not stable under a 1e-4 perturbation" % name)
    saved["decode/prompts"] = prompts
    saved["decode/tokens"] = tokens.astype(np.int32)
    config["decode"] = decode_config(case)
    saved["config"] = np.array(json.dumps(jsonable(config), indent=1))
    np.savez_compressed(os.path.join(out_dir, name + ".npz"), **saved)
    size = sum(os.path.getsize(os.path.join(ckpt_dir, f)) for f in os.listdir(ckpt_dir))
    print("%-28s ckpt %5.1f KB  train loss %.3f -> %.3f  eval loss %.5f" % (
        name, size / 1024, train_losses[0], train_losses[-1], out["loss"]))
    print("  prompts\n%s\n  greedy tokens\n%s" % (prompts, tokens))


def verify_checkpoint(name, prefix, out_dir, expected=None):
    """mtf reads the checkpoint and computes the golden's eval logits from it (exit status 0);
    with ``expected`` (a .npy of logits for the golden's eval batch), those logits instead."""
    golden = np.load(os.path.join(out_dir, name + ".npz"))
    case = CHECKPOINT_CASES[name]
    arrays = {k: golden[k] for k in ("targets", "inputs", "sequence_id") if k in golden}
    out, _ = eval_from_checkpoint(case, prefix, arrays)
    want = golden["eval/logits"] if expected is None else np.load(expected)
    error = float(np.abs(out["logits"] - want).max())
    print("mtf restored %s into %s's model: max |logits - %s| = %.3g"
          % (prefix, name, "golden" if expected is None else expected, error))
    return 0 if error <= 2e-5 else 1


def decode_prompts(case, rng):
    d = case["data"]
    rows = int(np.prod([s for _, s in d["batch_dims"]]))
    vocab = d["vocab_size"]
    if case["kind"] == "lm":  # partial sequences: a prompt of 1..4 pattern tokens, then zeros
        prompts = np.zeros((rows, d["length"]), np.int32)
        for r in range(rows):
            t = rng.randint(2, vocab)
            for i in range(1 + r % 4):
                prompts[r, i] = t
                t = pattern_next(t, vocab)
        return prompts
    return _training_batch(case, rng)["inputs"]  # encoder inputs; the decoder starts empty


def decode_config(case):
    if case["kind"] == "lm":
        return {"call": "Unitransformer.sample_autoregressive",
                "kwargs": jsonable(constructor_arguments_of_function(
                    transformer.Unitransformer.sample_autoregressive,
                    {"temperature": 0.0, "variable_dtype": "float32"})),
                "prompts": "partial_sequences: prompt ids then zeros (has_partial_sequences)"}
    return {"call": "Bitransformer.decode",
            "kwargs": jsonable(constructor_arguments_of_function(
                transformer.Bitransformer.decode,
                {"beam_size": 1, "temperature": 0.0, "variable_dtype": "float32"})),
            "prompts": "the encoder inputs; the decoder starts from zeros"}
