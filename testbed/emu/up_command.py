"""Acts: `testbed up`, `testbed down` and `testbed kubeconfig`: a cluster that stays up.

    testbed up TOPOLOGY [-f MANIFEST ...] [--name NAME] [--wait SECONDS]
    testbed down [NAME]
    testbed kubeconfig [NAME]

As with kind's `create cluster` / `delete cluster`: `up` validates everything first (bad
input: exit 2, nothing built), starts the cluster's daemon (testbed/emu/daemon.py) in a
session of its own, prints its progress, and returns once the cluster is ready (nodes Ready,
cluster DNS answering, the manifests' pods Ready), printing how to use it. Interrupted while
it builds (Ctrl-C), it has the daemon tear everything down before it exits 130. `down` asks
the daemon to tear the cluster down and returns when it is gone. `kubeconfig` prints a
kubeconfig for kubectl on this machine. With one cluster running, NAME may be left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from testbed.emu import access
from testbed.emu.record import Record
from testbed.spec.source import Problem, SpecError

ROOT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="build a cluster and leave it running (see `down`)",
                       description="Build the cluster of TOPOLOGY, apply the -f manifests and "
                                   "wait for their pods, then return with the cluster running. "
                                   "Use it with kubectl (`testbed kubeconfig`), `testbed cli "
                                   "NAME`, `testbed get`; end it with `testbed down NAME`.")
    p.add_argument("topology", help="topology YAML file")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="Kubernetes manifests to apply once it is up; may be repeated")
    p.add_argument("--name", help="the cluster's name (default: the topology's)")
    p.add_argument("--wait", type=float, default=180.0, metavar="SECONDS",
                   help="how long to wait for the manifests' pods to be Ready (default 180)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="tear down a cluster started with `testbed up`")
    p.add_argument("name", nargs="?", help="which cluster (default: the only one running)")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("kubeconfig", help="print a kubeconfig for a running cluster",
                       description="Print a kubeconfig whose server is the running cluster's "
                                   "API server, reached through a listener on 127.0.0.1: "
                                   "`testbed kubeconfig > k.yaml; KUBECONFIG=k.yaml kubectl "
                                   "get nodes`.")
    p.add_argument("name", nargs="?", help="which cluster (default: the only one running)")
    p.add_argument("--path", action="store_true", help="print the file's path instead")
    p.set_defaults(func=cmd_kubeconfig)


def _validate(args: argparse.Namespace) -> tuple[object, str]:
    from testbed.checks import check_with_topology, report_warnings
    from testbed.spec.validation import is_dns1123_label

    # The checks `testbed run` makes, against this topology (testbed.checks).
    topo, checked = check_with_topology(args.topology, args.filename, which=shutil.which)
    problems = list(checked.problems)
    name = args.name or (topo.name if topo is not None else "")
    if args.name is not None:
        problems += [Problem("<command line>", None, "--name", f"Invalid value: {args.name!r}: "
                             f"{e}") for e in is_dns1123_label(args.name)]
    if args.wait <= 0:
        problems.append(Problem("<command line>", None, "--wait",
                                f"Invalid value: {args.wait}: must be greater than 0"))
    if problems:
        raise SpecError(problems)
    report_warnings(checked.warnings, sys.stderr)
    return topo, name


def cmd_up(args: argparse.Namespace) -> int:
    from testbed.emu.errors import require_root

    _, name = _validate(args)
    require_root()
    taken = [c for c in access.running() if c.name == name]
    if taken:
        print(f"testbed up: a cluster named {name} is already running ({taken[0].directory}); "
              f"`testbed down {name}` ends it, or choose another --name", file=sys.stderr)
        return 1
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "testbed.emu.daemon", "--topology",
            str(Path(args.topology).resolve()), "--name", name, "--ready-fd", str(write_end),
            "--wait", str(args.wait)]
    for manifest in args.filename:
        argv += ["-f", str(Path(manifest).resolve())]
    daemon = subprocess.Popen(argv, pass_fds=(write_end,), start_new_session=True, cwd=ROOT,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        return _follow(os.fdopen(read_end), daemon, name)
    except KeyboardInterrupt:
        # Let the daemon tear down what it built; a second Ctrl-C must not cut that short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("*** interrupted: tearing down", file=sys.stderr)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        print("testbed: interrupted; the cluster was torn down", file=sys.stderr)
        return 130


def _follow(pipe, daemon: subprocess.Popen, name: str) -> int:
    """Print the daemon's progress until it is ready (0; 1 when some pods did not become
    Ready in time: the cluster stays up to be looked at) or has failed (its exit code)."""
    warned = False
    for line in pipe:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if "progress" in item:
            print(f"*** {item['progress']}", file=sys.stderr)
        elif "warning" in item:
            print(f"*** warning: {item['warning']}", file=sys.stderr)
            warned = True
        elif "error" in item:
            for text in str(item["error"]).splitlines():
                print(f"testbed: {text}", file=sys.stderr)
            daemon.wait()
            return int(item.get("code") or 1)
        elif "ready" in item:
            _usage(item["ready"], name)
            if warned:
                print(f"testbed up: the cluster is up, but not every pod is Ready (see "
                      f"`kubectl get pods -A`); `testbed down {name}` ends it",
                      file=sys.stderr)
            return 1 if warned else 0
    daemon.wait()
    print(f"testbed up: the cluster's daemon ended without a word (exit {daemon.returncode}); "
          "`testbed clean` removes what it left", file=sys.stderr)
    return 1


def _usage(info: dict, name: str) -> None:
    found = access.find(name)
    workers = [h for h, v in (info.get("hosts") or {}).items() if v.get("role") == "worker"]
    print(f"cluster {name} is up: {len(workers)} workers ({', '.join(workers)}), API at "
          f"{info.get('server')} (for this machine)")
    print(f"  export KUBECONFIG={found.kubeconfig}   # or: testbed kubeconfig {name} > FILE")
    print("  kubectl get nodes; kubectl get pods -A -o wide")
    print(f"  testbed cli {name}                      # Mininet's CLI in the running cluster")
    print(f"  testbed down {name}                     # tear it down")


def cmd_down(args: argparse.Namespace) -> int:
    from testbed.emu.daemon import ControlError, request

    try:
        found = access.find(args.name)
    except access.NoCluster as err:
        print(f"testbed down: {err}", file=sys.stderr)
        return 1
    if not found.control_socket.exists():
        owner = Record(found.directory).owner().get("pid", "?")
        print(f"testbed down: cluster {found.name} was not started by `testbed up`: process "
              f"{owner} (a `testbed run`, `testbed cli` or a script) owns it; end that",
              file=sys.stderr)
        return 1
    try:
        request(found.control_socket, {"op": "down"})
    except ControlError as err:
        print(f"testbed down: {err}", file=sys.stderr)
        return 1
    print(f"cluster {found.name} is down")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    try:
        found = access.find(args.name)
    except access.NoCluster as err:
        print(f"testbed kubeconfig: {err}", file=sys.stderr)
        return 1
    if not found.kubeconfig.exists():
        print(f"testbed kubeconfig: cluster {found.name} has no kubeconfig yet (it is still "
              "starting, or runs without a control plane)", file=sys.stderr)
        return 1
    print(found.kubeconfig if args.path else found.kubeconfig.read_text(), end="\n"
          if args.path else "")
    return 0
