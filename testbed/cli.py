"""The `testbed` command line: parses arguments and hands each subcommand to its module.

Every subcommand module offers `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Bad input of any kind (a SpecError) is printed as `testbed: file:line:
field: reason` lines and exits 2, with no traceback and nothing built.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import sys
import warnings

from testbed.spec.source import SpecError

# Modules that add subcommands, in the order `testbed --help` lists them.
SUBCOMMAND_MODULES = [
    "testbed.scenario.command",   # run
    "testbed.emu.up_command",     # up, down, kubeconfig
    "testbed.emu.command",        # cli, ps, clean
    "testbed.proxy.command",      # proxy render
    "testbed.emu.kubectl_command",  # apply, delete, get, describe, scale
    "testbed.emu.inspect_command",  # nat, netpol, conntrack
    "testbed.emu.trace_command",    # trace
    "testbed.emu.diagram_command",  # diagram
    "testbed.scenario.validate_command",  # validate
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep its wording short
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def prefer_stdlib_distutils() -> None:
    """Load the standard library's distutils, where Python still has it (3.11), before
    Mininet asks for it (mininet/node.py imports distutils.version for one version compare).
    Otherwise setuptools' distutils-precedence.pth hook answers that import by importing
    setuptools whole, which cost a `testbed run` about 0.15 s of CPU (0.05 s with this; measured
    with `python -X importtime`). Nothing is done once a distutils is loaded, or where the
    standard library has none (3.12+: the hook's copy it is)."""
    if "distutils" in sys.modules:
        return
    spec = importlib.machinery.PathFinder.find_spec("distutils")
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["distutils"] = module
    try:
        with warnings.catch_warnings():   # "distutils is deprecated": Mininet's to heed
            warnings.simplefilter("ignore", DeprecationWarning)
            spec.loader.exec_module(module)
    except Exception:   # a broken copy: leave the import to whoever comes next
        del sys.modules["distutils"]


def build_parser() -> argparse.ArgumentParser:
    prefer_stdlib_distutils()
    parser = _Parser(prog="testbed", description="An emulated Kubernetes cluster on Mininet.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command is None:  # no subcommand: run (the default tour, or the given file)
            args = parser.parse_args(["run", *(argv or [])])
        else:
            parser.print_help(sys.stderr)
            return 2
    try:
        return int(args.func(args) or 0)
    except SpecError as err:
        for problem in err.problems:
            print(f"testbed: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
