"""``namedmesh`` console command (also ``python -m namedmesh``).

Bad input gives a one-line error on stderr and exit status 2, never a traceback
(``--debug`` shows it); an unexpected failure gives one line and status 1.
"""

import argparse
import ast
import json
import os
import sys

COMMANDS = ("explain", "port", "run", "glossary", "demo", "check")
DESCRIPTION = ("namedmesh: mesh-tensorflow's named dims, layouts and MoE layers on TensorFlow 2. "
               "Explain, port, run, check and demo legacy mtf MoE configs and models.")


class UsageError(Exception):
    """A bad option or config: reported in one line, exit status 2.  ``prog`` is the
    (sub)command it belongs to, e.g. ``namedmesh explain``."""

    def __init__(self, message, prog=None):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message, self.prog)


def parse_value(text: str):
    """``8`` -> 8, ``1.25`` -> 1.25, ``[4, 4]`` -> [4, 4], ``all`` -> "all"."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def layer_from_args(args):
    """An MoE layer from --layer, --hparams FILE and -p KEY=VALUE options."""
    from namedmesh import moe
    kwargs = {}
    for item in args.param or []:
        if "=" not in item:
            raise UsageError("-p expects KEY=VALUE, got %r" % item)
        key, value = item.split("=", 1)
        kwargs[key.strip()] = parse_value(value.strip())
    layer_name = args.layer
    if args.hparams:
        from namedmesh.porting.files import read_text_file
        try:
            hparams = json.loads(read_text_file(args.hparams, "hparams file"))
        except json.JSONDecodeError as e:
            raise UsageError("hparams file %r is not JSON: %s" % (args.hparams, e))
        if layer_name is None:
            experts = hparams.get("moe_num_experts")
            layer_name = "MoE2D" if isinstance(experts, list) else "MoE1D"
        cls = getattr(moe, layer_name)
        layer = cls.from_hparams(hparams)
        if kwargs:
            layer = cls(**dict(layer.config.to_kwargs(), **kwargs))
        return layer
    cls = getattr(moe, layer_name or "MoE2D")
    return cls(**kwargs)


def _cmd_explain(args) -> int:
    from namedmesh.moe.explain import explain, render
    layer = layer_from_args(args)
    ex = explain(layer, args.input_shape, args.mesh, args.layout, train=args.train)
    sys.stdout.write(render(ex, args.format))
    return 0


def _split_list(values):
    """Repeated flags, each possibly comma-separated (absl's DEFINE_list)."""
    return [p for v in values or [] for p in v.split(",") if p]


def parse_t2t_overrides(text: str) -> dict:
    """tensor2tensor's ``--hparams='a=1,b=[4,4],c=relu'``: commas inside brackets stay."""
    out, depth, item = {}, 0, ""
    for ch in (text or "") + ",":
        if depth < 0:
            raise UsageError("--hparams %r: a closing bracket has no opening one" % text)
        if ch == "," and depth == 0:
            if item.strip():
                if "=" not in item:
                    raise UsageError("--hparams expects name=value pairs, got %r" % item)
                key, value = item.split("=", 1)
                out[key.strip()] = parse_value(value.strip())
            item = ""
            continue
        depth += ch in "[(" and 1 or (-1 if ch in "])" else 0)
        item += ch
    if depth != 0:
        raise UsageError("--hparams %r: a bracket is never closed" % text)
    return out


def port_config_from_args(args):
    """The PortedConfig of a ``port`` command line (gin files in order, or one JSON file)."""
    from namedmesh.porting import read_config, read_gin, read_hparams
    from namedmesh.porting.json_reader import read_gpt_neo
    files = list(args.config or []) + list(args.gin_file or [])
    search = _split_list(args.gin_location_prefix)
    if not files:
        raise UsageError("give a config: CONFIG.gin (and more with --gin_file) or one .json")
    for f in files:
        if os.path.splitext(f)[1].lower() not in (".gin", ".json"):
            raise UsageError("config %r: expected .gin files or one .json file" % f)
    gins = [f for f in files if not f.endswith(".json")]
    jsons = [f for f in files if f.endswith(".json")]
    if jsons and (gins or len(jsons) > 1):
        raise UsageError("port reads gin files (in order) or one JSON config, got %s" % files)
    for f in files:
        if not os.path.isabs(f) and not any(os.path.exists(os.path.join(p, f))
                                            for p in [""] + search):
            raise UsageError("config file %r not found (searched . and %s)"
                             % (f, search or "no --gin_location_prefix"))
    if args.tpu_topology is not None:
        from namedmesh.porting.gin_reader import tpu_mesh_shape
        tpu_mesh_shape(args.tpu_topology, 1, source="--tpu-topology")   # its form, early
    if gins:
        if args.t2t_model or args.hparams or args.gpt_neo_code:
            raise UsageError("--t2t-model, --hparams and --gpt-neo-code are for JSON configs")
        return read_gin(gins, args.gin_param or [], search, args.tpu_topology,
                        args.logical_cores_per_chip, args.mesh, args.layout)
    if args.gin_param or args.tpu_topology:
        raise UsageError("--gin_param and --tpu-topology are for gin configs")
    path = jsons[0]
    if args.gpt_neo_code:
        config = read_gpt_neo(path, code=args.gpt_neo_code)
    elif args.t2t_model or args.hparams:
        config = read_hparams(path, model=args.t2t_model,
                              overrides=parse_t2t_overrides(args.hparams))
    else:
        config = read_config(path)
    if args.mesh is not None or args.layout is not None:
        if args.mesh is not None:
            config.mesh_shape = args.mesh
        if args.layout is not None:
            config.layout = args.layout
        if config.model is not None:
            config.model.mesh_shape = config.mesh_shape or ""
            config.model.layout = config.layout or ""
        config.reports = [r for r in config.reports if not r.startswith("layout rule")]
        config.check_mesh_and_layout()
    return config


def _cmd_port(args) -> int:
    from namedmesh.porting.report import port_report
    config = port_config_from_args(args)
    sys.stdout.write(port_report(config, args.checkpoint, args.check, args.input_shape,
                                 args.format))
    return 0


def _cmd_glossary(args) -> int:
    from namedmesh.moe.glossary import render_markdown
    sys.stdout.write(render_markdown())
    return 0


def _cmd_demo(args) -> int:
    from namedmesh.cli.demo import run_demo
    return run_demo(args)


def _cmd_check(args) -> int:
    from namedmesh.cli.check import run_check
    return run_check(args)


def _cmd_run(args) -> int:
    from namedmesh.cli.run import run_model
    return run_model(args)


def _add_debug(parser, default):
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, show the Python traceback too")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="namedmesh", description=DESCRIPTION)
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{%s}" % ",".join(COMMANDS))

    ex = sub.add_parser("explain", help="the annotated MoE cheat sheet for a config, mesh and "
                                        "layout")
    ex.add_argument("--layer", choices=["MoE1D", "MoE2D"], default=None,
                    help="layer (default: MoE2D, or from --hparams)")
    ex.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                    help="an mtf keyword of the layer, e.g. -p expert_x=8 (repeatable)")
    ex.add_argument("--hparams", metavar="FILE.json", help="mtf hparams (moe_* names) as JSON")
    ex.add_argument("--input-shape", required=True,
                    help="e.g. 'outer_batch:4;batch:64;length:1024;d_model:1024'")
    ex.add_argument("--mesh", required=True, help="mesh shape, e.g. 'b0:4;b1:8'")
    ex.add_argument("--layout", default="", help="layout rules, e.g. "
                    "'outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0'")
    ex.add_argument("--train", action="store_true", help="train-mode capacity and policies")
    ex.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    ex.set_defaults(func=_cmd_explain)

    po = sub.add_parser("port", help="port a legacy config (mtf/T5 gin command line, "
                                     "tensor2tensor hparams, GPT-Neo or mtf BERT JSON)")
    po.add_argument("config", nargs="*", help="CONFIG.gin ... (read in order, like --gin_file; "
                                              "put mtf's defaults.gin first to port what "
                                              "mtf's main.py runs) or one CONFIG.json")
    po.add_argument("--gin_file", "--gin-file", action="append", metavar="FILE",
                    help="a gin file, read after the positional ones (repeatable)")
    po.add_argument("--gin_param", "--gin-param", action="append", metavar="BINDING",
                    help="a gin binding, read after all files (repeatable)")
    po.add_argument("--gin_location_prefix", "--gin-location-prefix", action="append",
                    metavar="DIR", help="a gin search path for files and includes "
                                        "(repeatable, comma-separated)")
    po.add_argument("--tpu-topology", help="utils.tpu_mesh_shape.tpu_topology, e.g. v3-8 or 4x4 "
                                           "(when the mesh is @utils.tpu_mesh_shape())")
    po.add_argument("--logical-cores-per-chip", type=int, default=2,
                    help="mtf's flag for tpu_mesh_shape (default 2)")
    po.add_argument("--t2t-model", choices=["mtf_transformer", "mtf_unitransformer",
                                            "mtf_bitransformer"],
                    help="the tensor2tensor model that reads the hparams (default: "
                         "recognised from the keys)")
    po.add_argument("--hparams", metavar="NAME=VALUE,...",
                    help="tensor2tensor-style overrides of the JSON hparams")
    po.add_argument("--gpt-neo-code", choices=["33f69b9", "before-33f69b9"],
                    help="GPT-Neo code generation that reads the config (default 33f69b9)")
    po.add_argument("--checkpoint", metavar="PREFIX", help="a TF1 checkpoint to pair and load")
    po.add_argument("--check", action="store_true", help="run each distinct MoE layer once")
    po.add_argument("--input-shape", help="input for explain / --check (default: the config's "
                                          "own batch, length and d_model)")
    po.add_argument("--mesh", help="replace the config's mesh shape")
    po.add_argument("--layout", help="replace the config's layout rules")
    po.add_argument("--format", choices=["text", "json"], default="text")
    po.set_defaults(func=_cmd_port)

    gl = sub.add_parser("glossary", help="print docs/glossary.md (the MoE dimension glossary)")
    gl.set_defaults(func=_cmd_glossary)

    demo = sub.add_parser("demo", help="port, explain, train and check mtf's lm_moe.gin MoE "
                                       "language model (packaged, scaled down)")
    from namedmesh.cli.demo import add_arguments
    add_arguments(demo)
    demo.set_defaults(func=_cmd_demo)

    check = sub.add_parser("check", help="print the processor map and check each mesh dim's "
                                         "all-to-all and all-reduce against one device")
    from namedmesh.cli.check import add_arguments as add_check_arguments
    add_check_arguments(check)
    check.set_defaults(func=_cmd_check)

    run = sub.add_parser("run", help="load a legacy model's config and checkpoint; evaluate a "
                                     "batch or decode prompts")
    from namedmesh.cli.run import add_arguments as add_run_arguments
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)

    for subparser in sub.choices.values():
        _add_debug(subparser, argparse.SUPPRESS)   # --debug before or after the command
    return parser


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None) -> int:
    """Run one command; bad arguments and bad files exit 2 with one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    prog = "namedmesh"
    try:
        args = parser.parse_args(argv)
        prog = "namedmesh %s" % args.command
        with _quiet_third_party_warnings():
            return args.func(args) or 0
    except UsageError as e:
        if debug:
            raise
        if e.prog == "namedmesh":   # the top parser: name the command if one was given
            e.prog = next(("namedmesh " + a for a in argv if a in COMMANDS), e.prog)
        print("%s: error: %s" % (e.prog or prog, _one_line(e)), file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # namedmesh's errors name the offending value
        if debug:
            raise
        print("%s: error: %s" % (prog, _one_line(e)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, not a traceback; --debug shows it
        if debug:
            raise
        print("%s: internal error: %s: %s (run it again with --debug for the traceback, and "
              "please report it)" % (prog, type(e).__name__, _one_line(e)), file=sys.stderr)
        return 1


def _quiet_third_party_warnings():
    """Python warnings of other libraries (TensorFlow, Keras, NumPy, gin) stay out of the
    command's output; namedmesh's own warnings (e.g. a LayoutWarning) are printed as one
    ``namedmesh: warning:`` line each."""
    import contextlib
    import warnings

    @contextlib.contextmanager
    def scope():
        with warnings.catch_warnings():
            warnings.simplefilter("default")

            def show(message, category, filename, lineno, file=None, line=None):
                if category.__module__.split(".")[0] == "namedmesh":
                    print("namedmesh: warning: %s" % _one_line(message), file=sys.stderr)

            warnings.showwarning = show   # catch_warnings restores it
            yield
    return scope()


if __name__ == "__main__":
    sys.exit(main())
