"""``namedmesh demo``: a real legacy MoE language model config, ported, explained, trained on
a mesh, checked.

1. ports mtf's ``defaults.gin`` + ``models/lm_moe.gin`` (unchanged copies) + the demo's
   scale-down ``demo_small.gin`` (or ``--config FILE.gin ...`` after ``defaults.gin``) and
   prints the model (every layer of the stack) and the cheat sheet of its MoE layer on the
   demo mesh (2x4 over eight logical CPU devices: data and model parallel);
2. builds the whole model (mtf's Unitransformer with its variable names) and trains it as a
   character language model on the generated corpus, with a progress line;
3. prints the expert-load table and writes ``demo.png`` (loss curve, expert utilisation);
4. checks that one batch gives the same logits on the mesh and on a single device;
5. continues a few prompts greedily (mtf's ``sample_autoregressive``) and saves the model
   as a TF1 checkpoint under mtf's names (``namedmesh run`` evaluates it).
"""

import os

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "demo", "data")
DEFAULTS = os.path.join(DATA, "defaults.gin")
DEFAULT_CONFIG = [os.path.join(DATA, "lm_moe.gin"), os.path.join(DATA, "demo_small.gin")]
DEVICES = 8
PROMPTS = ["the cat ", "two horses ", "my sister paints "]


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--mesh", help="mesh shape (default: the config's, batch:2;model:4)")
    parser.add_argument("--layout", help="layout rules (default: the config's, defaults.gin's)")
    parser.add_argument("--config", action="append", metavar="FILE.gin",
                        help="legacy gin files of the model, read in order after mtf's "
                             "defaults.gin (default: lm_moe.gin and demo_small.gin; "
                             "repeatable)")
    parser.add_argument("--executor", choices=["placement", "strategy"], default="placement",
                        help="placement: slices on devices; strategy: tf.distribute "
                             "MirroredStrategy")
    parser.add_argument("--out", default="out", help="directory for demo.png and the "
                                                     "checkpoint (default: out)")
    parser.add_argument("--seed", type=int, default=0)


def check_out_dir(out: str) -> str:
    """``--out`` as a directory the demo can write ``demo.png`` into, created if missing.
    Tried for real (a file is created and removed): permission bits do not bind root, but a
    path under a regular file or a read-only filesystem still refuses."""
    import tempfile
    from namedmesh.cli.main import UsageError
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError("--out %r is a file, not a directory" % out)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError("--out %r cannot be written: %s" % (out, e.strerror or e)) from None
    if os.path.isdir(os.path.join(out, "demo.png")):
        raise UsageError("--out %r: %r is a directory, so demo.png cannot be written there"
                         % (out, os.path.join(out, "demo.png")))
    return out


def run_demo(args) -> int:
    from namedmesh.cli.main import UsageError
    if args.steps < 1:
        raise UsageError("--steps must be at least 1, got %d" % args.steps)
    configs = list(args.config) if args.config else list(DEFAULT_CONFIG)
    for path in configs:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise UsageError("cannot read config %r" % path)

    from namedmesh.lowering.devices import default_devices
    from namedmesh.mesh.mesh import parse_mesh_shape
    from namedmesh.porting import read_gin

    ported = read_gin([DEFAULTS] + configs, mesh=args.mesh, layout=args.layout)
    ported.reports = []
    ported.check_mesh_and_layout()
    size = parse_mesh_shape(ported.mesh_shape or "").size
    if size > DEVICES or DEVICES % size:
        raise UsageError("mesh %r has %d processors; the demo runs on %d logical CPU devices, "
                         "so the mesh size must divide %d (e.g. batch:2;model:4)"
                         % (ported.mesh_shape, size, DEVICES, DEVICES))
    spec = ported.model
    if spec is None or spec.kind != "Unitransformer":
        raise UsageError("%s: the demo trains a language model (a Unitransformer); the config "
                         "describes %s" % (" ".join(configs), spec.kind if spec else
                                           "no whole model (%s)" % "; ".join(ported.reports)))
    check_out_dir(args.out)   # before any training: a bad --out must not cost the run
    default_devices(max(size, 2))  # before TensorFlow starts

    import tensorflow as tf

    from namedmesh.demo.corpus import Corpus
    from namedmesh.demo.report import (continue_prompts, expert_load_table,
                                       mesh_matches_single_device, write_png)
    from namedmesh.demo.train import FIRST_ID, train
    from namedmesh.moe.explain import explain, render
    from namedmesh.porting.report import _model_lines

    corpus = Corpus(seed=args.seed)
    batch_names = [n for n, _ in spec.batch_dims] or ["batch"]
    batch_sizes = [s for _, s in spec.batch_dims] or [16]
    length = spec.sequence_length.get("targets") or 32
    vocab = corpus.vocab_size + FIRST_ID
    strategy = None
    if args.executor == "strategy":
        strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(size)])
    # no collective timeout while training: TensorFlow holds a thread per collective
    # execution for the whole timeout (docs/distributed.md)
    mesh = ported.build_mesh(strategy=strategy, collective_timeout=None) if strategy else \
        ported.build_mesh()
    model = ported.build_model(vocab_size=vocab, seed=args.seed)

    print("== 1. the legacy config, ported: %s" % " ".join([DEFAULTS] + configs))
    print("\n".join(_model_lines(ported)))
    for report in ported.reports:
        print("note: " + report)
    if ported.layers:
        first = ported.layers[0]
        shape = ";".join("%s:%d" % d for d in zip(batch_names, batch_sizes)) + \
            ";length:%d;d_model:%d" % (length, spec.decoder.d_model)
        print()
        print(render(explain(first.build(), shape, ported.mesh_shape or "", ported.layout or "",
                             train=True), "text"))

    print("== 2. training it as a character language model on mesh %s (%s executor), "
          "%d steps" % (ported.mesh_shape, args.executor, args.steps))
    print("corpus: %d characters of generated text, %d distinct (ids 2..%d; vocab padded to "
          "%d as mtf pads it), e.g. %r" % (len(corpus.text), corpus.vocab_size, vocab - 1,
                                           model.output_vocab_dim.size, corpus.text[:50]))
    print("batch: %s sequences of %d characters" % (" x ".join(map(str, batch_sizes)), length))
    history = train(model, mesh, corpus, batch_sizes, length, args.steps, seed=args.seed,
                    batch_dims=batch_names)
    k = max(1, min(10, len(history.loss) // 2))
    first, last = sum(history.loss[:k]) / k, sum(history.loss[-k:]) / k
    print("loss fell from %.3f to %.3f (mean of the first and last %d steps; uniform guess: "
          "%.3f) in %.1f s (the first step, with tracing, %.1f s)"
          % (first, last, k, float(tf.math.log(float(corpus.vocab_size))), history.seconds,
             history.first_step_seconds))

    print("\n== 3. expert load")
    print(expert_load_table(history))
    os.makedirs(args.out, exist_ok=True)
    png = write_png(history, os.path.join(args.out, "demo.png"))
    print("wrote %s (loss curve and expert utilisation heatmap)" % png)

    print("\n== 4. the same batch on the mesh and on a single device")
    diff, ok = mesh_matches_single_device(model, mesh, corpus, batch_sizes, length, batch_names)
    print("%s: max |logits(mesh %s) - logits(single device)| = %.2e"
          % ("OK, they agree" if ok else "MISMATCH", ported.mesh_shape, diff))

    print("\n== 5. greedy continuations and a checkpoint mtf can read")
    for prompt, text in zip(PROMPTS, continue_prompts(model, corpus, PROMPTS, length)):
        print("  %-18r -> %r" % (prompt, text))
    prefix = model.save_checkpoint(os.path.join(args.out, "model.ckpt-%d" % args.steps),
                                   global_step=args.steps)
    options = "".join(" --%s %r" % (k, v) for k, v in (("mesh", args.mesh),
                                                       ("layout", args.layout)) if v)
    print("wrote %s (%d variables by mtf's names); evaluate it with\n  namedmesh run %s "
          "--checkpoint %s --vocab-size %d%s" % (prefix, len(model.variables()),
                                               " ".join([DEFAULTS] + configs), prefix, vocab,
                                               options))
    return 0 if ok else 1
