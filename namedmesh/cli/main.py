"""``namedmesh`` console command (also ``python -m namedmesh``).

Bad input gives a one-line error on stderr and exit status 2, never a traceback.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UsageError(Exception):
    """A bad option or config: reported in one line, exit status 2."""


def _cmd_demo(args) -> int:
    from namedmesh.cli.demo import run_demo
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="namedmesh", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short tour of named dims on the embedded default")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as e:
        print("namedmesh %s: error: %s" % (args.command, e), file=sys.stderr)
        return 2
    except ValueError as e:  # namedmesh errors name the offending value
        print("namedmesh %s: error: %s" % (args.command, str(e).splitlines()[0]), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
