"""``namedmesh demo``: a legacy 2-level MoE config, ported, explained, trained on a mesh, checked.

1. ports the embedded legacy gin config (or ``--config FILE.gin``) and prints the annotated
   cheat sheet of its MoE2D layer on the demo mesh (2x4 over eight logical CPU devices);
2. trains a small character language model whose feed-forward layers are those MoE2D
   layers on the generated corpus, with a progress line (step, loss, aux loss, dropped);
3. prints the expert-load table and writes ``demo.png`` (loss curve, expert utilisation);
4. checks that one batch gives the same output on the mesh and on a single device.
"""

import os
import sys
import time

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "demo", "data",
                              "legacy_moe2d.gin")
DEVICES = 8


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--mesh", help="mesh shape (default: the config's, b0:2;b1:4)")
    parser.add_argument("--layout", help="layout rules (default: the config's)")
    parser.add_argument("--config", help="a legacy gin file with MoE2D bindings "
                                         "(default: the embedded one)")
    parser.add_argument("--executor", choices=["placement", "strategy"], default="placement",
                        help="placement: slices on devices; strategy: tf.distribute "
                             "MirroredStrategy")
    parser.add_argument("--out", default="out", help="directory for demo.png (default: out)")
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
    config_path = args.config or DEFAULT_CONFIG
    if not os.path.isfile(config_path) or not os.access(config_path, os.R_OK):
        raise UsageError("cannot read config %r" % config_path)

    from namedmesh.lowering.devices import default_devices
    from namedmesh.mesh.mesh import parse_mesh_shape
    from namedmesh.porting import read_gin

    ported = read_gin(config_path)
    if args.mesh is not None:
        ported.mesh_shape = args.mesh
    if args.layout is not None:
        ported.layout = args.layout
    ported.reports = []
    ported.check_mesh_and_layout()
    size = parse_mesh_shape(ported.mesh_shape or "").size
    if size > DEVICES or DEVICES % size:
        raise UsageError("mesh %r has %d processors; the demo runs on %d logical CPU devices, "
                         "so the mesh size must divide %d (e.g. b0:2;b1:4)"
                         % (ported.mesh_shape, size, DEVICES, DEVICES))
    if any(layer.kind != "MoE2D" for layer in ported.layers):
        raise UsageError("%s: the demo trains MoE2D layers; the config has %s"
                         % (config_path, [layer.kind for layer in ported.layers]))
    check_out_dir(args.out)   # before any training: a bad --out must not cost the run
    default_devices(max(size, 2))  # before TensorFlow starts

    import tensorflow as tf

    import namedmesh as nm
    from namedmesh.demo.corpus import Corpus
    from namedmesh.demo.model import CharMoELM
    from namedmesh.demo.report import expert_load_table, mesh_matches_single_device, write_png
    from namedmesh.demo.train import train
    from namedmesh.moe.dims import mesh_dim_size_of
    from namedmesh.moe.explain import explain, render

    strategy = None
    if args.executor == "strategy":
        strategy = tf.distribute.MirroredStrategy(["/cpu:%d" % i for i in range(size)])
    mesh = ported.build_mesh(strategy=strategy) if strategy else ported.build_mesh()
    layers = [spec.build() for spec in ported.layers]
    corpus = Corpus(seed=args.seed)
    outer = mesh_dim_size_of(mesh, nm.Dimension("outer_batch", 1))  # one slice per processor
    positions = nm.convert_to_shape("outer_batch:%d;batch:8;length:32" % outer)
    d_model = 32
    input_shape = positions + [nm.Dimension("d_model", d_model)]

    print("== 1. the legacy config, ported: %s" % config_path)
    print(ported.python_snippet())
    for report in ported.reports:
        print("note: " + report)
    print(render(explain(layers[0], input_shape, ported.mesh_shape, ported.layout, train=True),
                 "text"))

    print("== 2. training a character language model with %d MoE2D feed-forward layers on "
          "mesh %s (%s executor), %d steps" % (len(layers), ported.mesh_shape, args.executor,
                                               args.steps))
    print("corpus: %d characters of generated text, vocabulary %d, e.g. %r"
          % (len(corpus.text), corpus.vocab_size, corpus.text[:60]))
    model = CharMoELM(corpus.vocab_size, d_model, context=4, moe_layers=layers, seed=args.seed)
    history = train(model, mesh, corpus, positions, args.steps, seed=args.seed)
    first = sum(history.loss[:10]) / min(10, len(history.loss))
    last = sum(history.loss[-10:]) / min(10, len(history.loss))
    print("loss fell from %.3f to %.3f (mean of the first and last 10 steps; uniform guess: "
          "%.3f) in %.1f s" % (first, last, float(tf.math.log(float(corpus.vocab_size))),
                               history.seconds))

    print("\n== 3. expert load")
    c = layers[0].config
    print(expert_load_table(history, c.expert_x, c.expert_y))
    os.makedirs(args.out, exist_ok=True)
    png = write_png(history, os.path.join(args.out, "demo.png"), c.expert_x, c.expert_y)
    print("wrote %s (loss curve and expert utilisation heatmap)" % png)

    print("\n== 4. the same batch on the mesh and on a single device")
    diff, ok = mesh_matches_single_device(model, mesh, corpus, positions)
    print("%s: max |logits(mesh %s) - logits(single device)| = %.2e"
          % ("OK, they agree" if ok else "MISMATCH", ported.mesh_shape, diff))
    return 0 if ok else 1
