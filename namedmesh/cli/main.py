"""``namedmesh`` console command (also ``python -m namedmesh``).

Bad input gives a one-line error on stderr and exit status 2, never a traceback.
"""

import argparse
import ast
import json
import os
import sys




class UsageError(Exception):
    """A bad option or config: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
        try:
            with open(args.hparams) as f:
                hparams = json.load(f)
        except OSError as e:
            raise UsageError("cannot read hparams file %r: %s" % (args.hparams, e.strerror))
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


def _cmd_port(args) -> int:
    from namedmesh.porting import read_config
    from namedmesh.porting.report import port_report
    if not os.path.exists(args.config):
        raise UsageError("config file %r not found" % args.config)
    config = read_config(args.config)
    if args.mesh is not None:
        config.mesh_shape = args.mesh
    if args.layout is not None:
        config.layout = args.layout
    if args.mesh is not None or args.layout is not None:
        config.reports = []
        config.check_mesh_and_layout()
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="namedmesh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    po = sub.add_parser("port", help="port a legacy mtf MoE config (gin or hparams JSON)")
    po.add_argument("config", help="CONFIG.gin or HPARAMS.json")
    po.add_argument("--checkpoint", metavar="PREFIX", help="a TF1 mtf checkpoint to load")
    po.add_argument("--check", action="store_true", help="run the ported layers once")
    po.add_argument("--input-shape", help="input for explain / --check (default: a small "
                                          "shape the mesh can lay out)")
    po.add_argument("--mesh", help="override the config's mesh shape")
    po.add_argument("--layout", help="override the config's layout rules")
    po.add_argument("--format", choices=["text", "json"], default="text")
    po.set_defaults(func=_cmd_port)

    gl = sub.add_parser("glossary", help="print docs/glossary.md (the MoE dimension glossary)")
    gl.set_defaults(func=_cmd_glossary)

    demo = sub.add_parser("demo", help="port, explain, train and check a legacy MoE2D config "
                                       "(embedded default)")
    from namedmesh.cli.demo import add_arguments
    add_arguments(demo)
    demo.set_defaults(func=_cmd_demo)

    check = sub.add_parser("check", help="print the processor map and check each mesh dim's "
                                         "all-to-all and all-reduce against one device")
    from namedmesh.cli.check import add_arguments as add_check_arguments
    add_check_arguments(check)
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    command = "?"
    try:
        args = parser.parse_args(argv)
        command = args.command
        return args.func(args) or 0
    except UsageError as e:
        print("namedmesh %s: error: %s" % (command, e), file=sys.stderr)
        return 2
    except ValueError as e:  # namedmesh's errors name the offending value
        print("namedmesh %s: error: %s" % (command, " ".join(str(e).split())), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
