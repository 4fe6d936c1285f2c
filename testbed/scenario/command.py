"""Acts: `testbed run [SCENARIO.yaml] [--junit FILE] [--json FILE] [--html FILE]
[--kube-proxy MODE] [--network-policy MODE] [--pod-network PLUGIN] [--routing MODE]
[--cni-conf FILE] [--cni-bin-dir DIR]`.

--html writes one self-contained page (testbed.scenario.html): the cluster's diagram, taken
before the teardown, and every step, with failed probes' traces and inspections folded in.

--kube-proxy and --network-policy set every worker's mode, over the scenario's and the
topology's, so that one scenario file runs in each mode (a policy mode the files leave out
follows the kube-proxy mode, as in a topology). --pod-network, --routing, --cni-conf and
--cni-bin-dir set the pod network (a topology's `podNetwork:` plugin, routing, conf, binDir)
over the scenario's and the topology's: so every shipped scenario runs on real CNI plugins, a
plugin of your own, or under each routing mode. A --cni-conf or --cni-bin-dir alone implies
--pod-network cni.

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
from testbed.scenario import html, report
from testbed.scenario.preflight import POD_NETWORK_OPTIONS
from testbed.scenario.runner import Runner, log_progress, prepare
from testbed.spec.source import Problem, SpecError
from testbed.spec.topology import POD_NETWORK_PLUGINS, POLICY_MODES, PROXY_MODES, ROUTING_MODES

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "tour.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="build a cluster, run a scenario's checks, report, tear down",
                       description="Run a scenario file (default: the tour).")
    p.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--json", metavar="FILE", help="write a JSON report")
    p.add_argument("--html", metavar="FILE",
                   help="write an HTML report: the cluster's diagram, the steps, failures' traces")
    add_mode_options(p)
    p.set_defaults(func=cmd_run)


def add_mode_options(p: argparse.ArgumentParser) -> None:
    """--kube-proxy and --network-policy, for `run` and `validate`."""
    p.add_argument("--kube-proxy", choices=PROXY_MODES, metavar="MODE", dest="proxy_mode",
                   help=f"every worker's kube-proxy mode ({', '.join(PROXY_MODES)}), over the "
                        "scenario's and the topology's")
    p.add_argument("--network-policy", choices=POLICY_MODES, metavar="MODE", dest="policy_mode",
                   help=f"every worker's NetworkPolicy agent mode ({', '.join(POLICY_MODES)}; "
                        "none: no agent, nothing enforced), over the scenario's and the "
                        "topology's (default: as the node's kube-proxy)")
    helps = {
        "plugin": ("PLUGIN", f"the pod network plugin ({', '.join(POD_NETWORK_PLUGINS)}: real CNI "
                             "plugins), over the scenario's and the topology's"),
        "routing": ("MODE", f"how nodes reach each other's pods ({', '.join(ROUTING_MODES)}), "
                            "over the scenario's and the topology's"),
        "conf": ("FILE", "a CNI network configuration list (JSON or YAML) for plugin cni; "
                         "default: the kubenet chain (bridge cbr0, host-local, portmap)"),
        "binDir": ("DIR", "a directory of CNI plugins of your own, searched before /usr/lib/cni"),
    }
    for key, (option, dest) in POD_NETWORK_OPTIONS.items():
        metavar, text = helps[key]
        p.add_argument(option, metavar=metavar, dest=dest, help=text)


def pod_network_options(args: argparse.Namespace) -> dict | None:
    """The pod network options given, as podNetwork fields (checked by preflight)."""
    given = {key: getattr(args, dest, None) for key, (_, dest) in POD_NETWORK_OPTIONS.items()}
    return {k: v for k, v in given.items() if v is not None} or None


def _check_output(path: str | None, option: str) -> list[Problem]:
    if path is None:
        return []
    parent = Path(path).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return [Problem("<command line>", None, option, f"cannot write {path}: no writable directory {parent}")]
    if Path(path).is_dir():
        return [Problem("<command line>", None, option, f"cannot write {path}: it is a directory")]
    return []


def cmd_run(args: argparse.Namespace) -> int:
    prepared = prepare(args.scenario, args.proxy_mode, args.policy_mode, pod_network_options(args))
    problems = (_check_output(args.junit, "--junit") + _check_output(args.json, "--json")
                + _check_output(args.html, "--html"))
    if problems:
        raise SpecError(problems)
    report_warnings(prepared.warnings, sys.stderr)
    require_root()
    scenario = prepared.scenario
    print(f"scenario {scenario.name} ({scenario.file})", file=sys.stderr)
    for line in scenario.description.splitlines():
        print(f"  | {line}", file=sys.stderr)
    runner = Runner(prepared, log_progress, diagram=bool(args.html))
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
    if args.html:
        Path(args.html).write_text(html.page(scenario.name, scenario.file, results, runner.setup_seconds,
                                             runner.diagram))
    return 0 if all(r.passed for r in results) else 1
