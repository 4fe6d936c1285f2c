"""Acts: `testbed run [SCENARIO.yaml] [--junit FILE] [--json FILE]`.

Exit status: 0 when every step passed, 1 when a check failed, 2 for bad input (nothing is
built then), 130 when interrupted (after tearing down).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from testbed.checks import report_warnings
from testbed.emu.errors import SETUP_ERRORS, require_root
from testbed.scenario import report
from testbed.scenario.runner import Runner, log_progress, prepare
from testbed.spec.source import Problem, SpecError

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "tour.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="build a cluster, run a scenario's checks, report, tear down",
                       description="Run a scenario file (default: the tour).")
    p.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--json", metavar="FILE", help="write a JSON report")
    p.set_defaults(func=cmd_run)


def _check_output(path: str | None, option: str) -> list[Problem]:
    if path is None:
        return []
    parent = Path(path).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return [Problem("<command line>", None, option, f"cannot write {path}: no writable directory {parent}")]
    return []


def cmd_run(args: argparse.Namespace) -> int:
    prepared = prepare(args.scenario)
    problems = _check_output(args.junit, "--junit") + _check_output(args.json, "--json")
    if problems:
        raise SpecError(problems)
    report_warnings(prepared.warnings, sys.stderr)
    require_root()
    scenario = prepared.scenario
    print(f"scenario {scenario.name} ({scenario.file})", file=sys.stderr)
    for line in scenario.description.splitlines():
        print(f"  | {line}", file=sys.stderr)
    runner = Runner(prepared, log_progress)
    try:
        results = runner.run()
    except KeyboardInterrupt:
        print("testbed: interrupted; the cluster was torn down", file=sys.stderr)
        return 130
    except SETUP_ERRORS as err:
        # The cluster could not be brought up or its manifests not applied: a failed run,
        # reported in a sentence (the cluster was torn down already).
        print(f"testbed: the cluster could not be set up: {err}", file=sys.stderr)
        return 1
    print(report.table(results))
    if args.junit:
        Path(args.junit).write_text(report.junit(scenario.name, results, runner.setup_seconds))
    if args.json:
        Path(args.json).write_text(report.as_json(scenario.name, scenario.file, results, runner.setup_seconds))
    return 0 if all(r.passed for r in results) else 1
