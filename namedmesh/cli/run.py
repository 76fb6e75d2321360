"""``namedmesh run``: a legacy model from its config and checkpoint, evaluated or decoded.

    namedmesh run defaults.gin lm_moe.gin my.gin --checkpoint model.ckpt-1000 \\
        --eval batch.npz            # loss, its parts, accuracy (and --output logits.npz)
    namedmesh run ... --checkpoint DIR --decode prompts.json    # greedy tokens

The config is read as ``namedmesh port`` reads it (gin command lines, t2t hparams, JSON);
every variable of the checkpoint is loaded by its mtf name (a missing, extra or wrongly
shaped one is an error naming it); the vocab sizes are read off the checkpoint's
embedding unless ``--vocab-size`` is given.  Batches are ``.npz`` or ``.json`` files of
ids by mtf's feature names: ``targets`` (and optionally ``inputs``, ``sequence_id``,
``position``) for a language model; ``inputs`` and ``targets`` (and the ``encoder_`` /
``decoder_`` sequence ids and positions) for an encoder-decoder.  ``--decode`` takes the
prompts (``prompts``: each row a prompt then zeros) or, for an encoder-decoder, the
encoder ``inputs``.  Without ``--eval`` or ``--decode`` one batch of random ids of the
config's own shape (shrunk to fit) is evaluated.
"""

import json
import os
import sys

import numpy as np


def add_arguments(parser):
    parser.add_argument("config", nargs="*", help="CONFIG.gin ... (read in order; mtf's "
                                                  "defaults.gin first) or one CONFIG.json")
    parser.add_argument("--gin_file", "--gin-file", action="append", metavar="FILE")
    parser.add_argument("--gin_param", "--gin-param", action="append", metavar="BINDING")
    parser.add_argument("--gin_location_prefix", "--gin-location-prefix", action="append",
                        metavar="DIR")
    parser.add_argument("--tpu-topology")
    parser.add_argument("--logical-cores-per-chip", type=int, default=2)
    parser.add_argument("--checkpoint", required=True, metavar="PREFIX",
                        help="the TF1 checkpoint (prefix, or a directory with a 'checkpoint' "
                             "file)")
    parser.add_argument("--vocab-size", type=int, help="the vocabulary size (default: read "
                                                       "off the checkpoint's embedding)")
    parser.add_argument("--eval", metavar="BATCH", help="a .npz or .json batch to evaluate")
    parser.add_argument("--decode", metavar="PROMPTS", help="a .npz or .json of prompts (an "
                                                            "encoder-decoder: inputs) to decode")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="decoding temperature (0: greedy, the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mesh", help="replace the config's mesh shape")
    parser.add_argument("--layout", help="replace the config's layout rules")
    parser.add_argument("--executor", choices=["placement", "strategy"], default="placement")
    parser.add_argument("--output", metavar="FILE.npz", help="write the logits (--eval) or "
                                                             "tokens (--decode) there")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def read_batch(path: str, allowed) -> dict:
    """``{feature: int32 array}`` from a .npz or .json file (errors name the file)."""
    from namedmesh.cli.main import UsageError
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path) as data:
                raw = {k: data[k] for k in data.files}
        elif ext == ".json":
            with open(path) as f:
                raw = json.load(f)
            if not isinstance(raw, dict):
                raise UsageError("%s: expected a JSON object of feature name -> ids" % path)
        else:
            raise UsageError("batch file %r: expected a .npz or .json file" % path)
    except OSError as e:
        raise UsageError("cannot read batch file %r: %s" % (path, e.strerror)) from None
    except ValueError as e:
        raise UsageError("batch file %r is not readable: %s" % (path, e)) from None
    unknown = sorted(k for k in raw if k not in allowed)
    if unknown:
        raise UsageError("%s: unknown feature %s (expected some of %s)"
                         % (path, ", ".join(unknown), ", ".join(allowed)))
    out = {}
    for key, value in raw.items():
        array = np.asarray(value)
        if array.dtype.kind not in "iu" or array.ndim not in (2, 3):
            raise UsageError("%s: feature %r must be integer ids [batch, length] (or [outer_batch,"
                             " batch, length]), got %s of shape %s"
                             % (path, key, array.dtype, list(array.shape)))
        out[key] = array.astype(np.int32)
    return out


def run_model(args) -> int:
    from namedmesh.cli.main import UsageError, port_config_from_args
    from namedmesh.mesh.mesh import parse_mesh_shape
    for key in ("t2t_model", "hparams", "gpt_neo_code"):
        setattr(args, key, getattr(args, key, None))
    if args.eval and args.decode:
        raise UsageError("give --eval or --decode, not both")
    if args.vocab_size is not None and args.vocab_size < 1:
        raise UsageError("--vocab-size must be positive, got %d" % args.vocab_size)
    config = port_config_from_args(args)
    if config.model is None:
        why = [r for r in config.reports if r.startswith("not a whole")]
        raise UsageError("%s does not describe a whole model%s" % (
            config.path, ": " + why[0] if why else ""))
    size = parse_mesh_shape(config.mesh_shape or "").size
    from namedmesh.lowering.devices import default_devices
    default_devices(max(size, 1))  # before TensorFlow starts

    import tensorflow as tf

    from namedmesh.core.tensor import export_to_tf_tensor
    from namedmesh.transformer import model as model_module
    from namedmesh.transformer.running import (batch_that_fits, evaluate, load_ported_model,
                                               random_features)
    strategy = None
    if args.executor == "strategy":
        strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(size)])
    mesh = config.build_mesh(strategy=strategy) if strategy else config.build_mesh()
    model = load_ported_model(config, args.checkpoint, mesh=mesh, vocab_size=args.vocab_size,
                              seed=args.seed)
    spec = config.model
    report = {"config": config.path, "checkpoint": args.checkpoint, "model": repr(model),
              "variables": len(model.variables()), "mesh": config.mesh_shape,
              "layout": config.layout}
    allowed = (model_module.BI_FEATURES if model.is_bitransformer
               else model_module.LM_FEATURES)
    lines = ["%s from %s" % (model, args.checkpoint),
             "loaded %d variables by name; mesh %r, layout %r"
             % (len(model.variables()), config.mesh_shape or "", config.layout or "")]
    if args.decode:
        key = "inputs" if model.is_bitransformer else "prompts"
        batch = read_batch(args.decode, [key])
        if key not in batch:
            raise UsageError("%s: expected the feature %r" % (args.decode, key))
        seed = args.seed if args.temperature else None

        def decode(ids):
            return export_to_tf_tensor(model.decode(mesh, ids, temperature=args.temperature,
                                                    seed=seed))
        ids = tf.constant(batch[key])
        tokens = (mesh.run(decode, ids) if mesh.strategy is not None else decode(ids)).numpy()
        report["tokens"] = tokens.tolist()
        lines.append("decoded %s (temperature %s):" % (list(tokens.shape), args.temperature))
        lines += ["  " + " ".join(str(t) for t in row) for row in tokens.reshape(
            -1, tokens.shape[-1])]
        if args.output:
            np.savez(args.output, tokens=tokens)
    else:
        if args.eval:
            features = read_batch(args.eval, allowed)
            source = args.eval
        else:
            shape = batch_that_fits(spec, mesh)
            sizes = {"input_vocab_size": model.unitransformers[0].input_vocab_dim.size,
                     "output_vocab_size": model.output_vocab_dim.size}
            features = random_features(spec, shape, sizes, seed=args.seed)
            source = "random ids %s" % {k: list(v.shape) for k, v in features.items()}
        result = evaluate(model, mesh, features)
        report["eval"] = result.to_dict()
        lines.append("evaluated %s:" % source)
        lines += ["  " + line for line in result.lines()]
        if args.output:
            np.savez(args.output, logits=result.logits)
    if args.output:
        lines.append("wrote %s" % args.output)
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.format == "json"
                     else "\n".join(lines) + "\n")
    return 0
