"""Acts: `testbed trace [CLUSTER] FROM TO`: one connection's path through a running cluster.

The cluster is found as `testbed nat` finds it (a `testbed up` cluster; CLUSTER may be left out
when one runs), attached to (emu/attach.py), and traced live (emu/tracing.py) or, with
`--static`, worked out from the rules the hosts hold now without sending anything. The text
form is the walk-through (testbed.trace.text), `--json` the JSON form (testbed.trace).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from testbed.emu.tracing import PROTOCOLS, TraceError
from testbed.spec.source import Problem, SpecError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="follow one connection through a running cluster's kernels",
        description="Send one real connection from FROM (a pod, node, gateway or client) to TO "
                    "(a pod, Service, IP, node port as NODE:PORT, LoadBalancer address or "
                    "Ingress host) and report its path: per hop the interfaces, bridge port, "
                    "route, the netfilter chains and rules it hit, and every rewrite (DNAT, "
                    "masquerade, the reply's un-NAT); then the conntrack entries, the endpoint "
                    "that answered and the verdict (delivered, dropped or rejected, with the "
                    "rule responsible).",
        usage="testbed trace [-h] [CLUSTER] FROM TO [--port N] [--protocol {tcp,udp,icmp}] "
              "[--json] [--static]")
    p.add_argument("names", nargs="+", metavar="[CLUSTER] FROM TO",
                   help="the running cluster (optional when one runs), the source and the target")
    p.add_argument("--port", type=int, help="the target's port (default: a Service's first port)")
    p.add_argument("--protocol", default="tcp", choices=PROTOCOLS)
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.add_argument("--static", action="store_true",
                   help="work the path out from the rules the hosts hold now, sending nothing")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")
    p.add_argument("--cluster", metavar="NAME", help="which running cluster (by name)")
    p.set_defaults(func=cmd_trace)


def _args(args: argparse.Namespace) -> tuple[str | None, str, str]:
    names = args.names
    if len(names) not in (2, 3):
        raise _refused(f"expected [CLUSTER] FROM TO, got {len(names)} names")
    if len(names) == 3 and args.cluster and args.cluster != names[0]:
        raise _refused(f"CLUSTER {names[0]!r} and --cluster {args.cluster!r} disagree")
    cluster = names[0] if len(names) == 3 else args.cluster
    if args.port is not None and not 1 <= args.port <= 65535:
        raise _refused(f"--port {args.port}: must be between 1 and 65535, inclusive")
    if not 0 < args.timeout <= 60:
        raise _refused(f"--timeout {args.timeout:g}: must be more than 0 and at most 60")
    if args.protocol == "icmp" and args.port is not None:
        raise _refused("--port: an icmp trace takes no port")
    return cluster, names[-2], names[-1]


def cmd_trace(args: argparse.Namespace) -> int:
    from testbed.emu.access import NoCluster, find
    from testbed.emu.attach import AttachError, attach
    from testbed.emu.tracing import static, trace
    from testbed.trace.text import render_text

    name, source, target = _args(args)
    try:
        found = find(name, hint="name it: testbed trace CLUSTER FROM TO")
        cluster = attach(found)
    except (NoCluster, AttachError) as err:
        raise _refused(str(err)) from None
    # Ended by a signal, the trace still takes its tracing rules out (its finally blocks).
    # SIGINT too, explicitly: a process started in the background inherits it ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.static:
            result = static(cluster, source, target, args.port, args.protocol)
        else:
            result = trace(cluster, source, target, args.port, args.protocol, args.timeout)
    except TraceError as err:
        raise _refused(str(err)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        cluster.cp.stop()
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(result))
    return 0


def _refused(message: str) -> SpecError:
    """Bad input to `testbed trace`: printed as `testbed: trace: MESSAGE`, exit 2."""
    return SpecError([Problem("trace", None, "", message)])


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
