"""Acts: `testbed diagram`: the cluster drawn as the Kubernetes networking article draws it,
by Graphviz's `dot`.

`testbed diagram [CLUSTER]` reads a running cluster (found as `testbed nat` finds it,
testbed.emu.access.find, and attached with testbed.emu.attach): every host's `ip -j addr` and
`ip -j route` in its namespace, the Pods, Services and EndpointSlices from its API server, and
each pod's host-side veth from its kubelet's saved sandbox. `--topology FILE` draws what
`testbed up FILE` would build instead, with nothing running. `--trace FILE.json` draws a
`testbed trace --json` result over either. The picture itself (what is drawn, the DOT text) is
testbed/diagram's; this module gathers, runs `dot` and writes.

`cluster_svg(cluster, trace)` and `topology_svg(topo, trace)` give the SVG text for other
code (the HTML report embeds it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from testbed.apiclient.client import ApiError
from testbed.diagram.dot import TraceFormatError, check_trace, to_dot
from testbed.diagram.model import (
    Host,
    Picture,
    from_topology,
    interfaces_from_ip,
    picture,
    pods_from_api,
    routes_from_ip,
    services_from_api,
    topology_links,
)
from testbed.net.run import CommandError, run
from testbed.spec.source import Problem, SpecError
from testbed.spec.topology import load_topology
from testbed.spec.userfile import FileRefused, read_text

FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
NO_DOT = ("Graphviz's `dot` is not installed: install the graphviz package "
          "(apt-get install graphviz; scripts/install.sh does)")


class DiagramError(RuntimeError):
    """The picture could not be made (no `dot`, a host that cannot be read); the message
    says why."""


# -- gathering ------------------------------------------------------------------------------

def _ip_json(argv: list[str], pid: int, host: str) -> object:
    try:
        out = run(argv, netns=pid, where=host, timeout=20).stdout
    except CommandError as err:
        raise DiagramError(f"cannot read {host}'s network: {err}") from None
    try:
        return json.loads(out or "[]")
    except ValueError as err:
        raise DiagramError(f"`{' '.join(argv)}` on {host} printed no JSON: {err}") from None


def cluster_picture(cluster) -> Picture:
    """What a running Cluster (built here or attached) looks like now."""
    topo = cluster.topo
    pod_cidrs = {n.name: str(n.pod_cidr) for n in topo.workers}
    hosts = []
    for h in sorted(cluster.network.hosts.values(), key=lambda h: h.name):
        hosts.append(Host(h.name, h.role,
                          interfaces_from_ip(_ip_json(["ip", "-j", "addr"], h.pid, h.name)),
                          routes_from_ip(_ip_json(["ip", "-j", "route"], h.pid, h.name)),
                          pod_cidrs.get(h.name)))
    client = cluster.client
    pods, _ = client.list("Pod")
    services, _ = client.list("Service")
    slices, _ = client.list("EndpointSlice")
    veths = {uid: box.attachment.host_veth for uid, box in cluster.cp.sandboxes().items()
             if box.attachment is not None}
    return picture(topo.name, "running cluster", topo.network_mode, hosts,
                   pods_from_api(pods, veths), services_from_api(services, slices),
                   topology_links(topo))


# -- rendering ------------------------------------------------------------------------------

def dot_program() -> str:
    found = shutil.which("dot")
    if found is None:
        raise DiagramError(NO_DOT)
    return found


def _dot(options: list[str], dot_text: str) -> str:
    """What `dot OPTIONS` prints, fed the DOT text; DiagramError when it fails."""
    try:
        return run([dot_program(), *options], input=dot_text, timeout=60).stdout
    except CommandError as err:
        raise DiagramError(f"dot failed: {err}") from None


def render_svg(dot_text: str) -> str:
    """`dot -Tsvg` of the DOT text."""
    return _dot(["-Tsvg"], dot_text)


def cluster_svg(cluster, trace: dict | None = None) -> str:
    """The SVG picture of a live Cluster, with `trace` (testbed trace --json's object) drawn
    over it. DiagramError without `dot`; TraceFormatError for a trace not in that form."""
    return render_svg(to_dot(cluster_picture(cluster), trace))


def topology_svg(topo, trace: dict | None = None) -> str:
    """The SVG picture of what `topo` builds (nothing running), with `trace` over it."""
    return render_svg(to_dot(from_topology(topo), trace))


# -- the command ----------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagram", help="draw the cluster (nodes, cbr0, veths, pods, gateway, Services) as SVG",
        description="Draw a running cluster, or a topology file with nothing running, the way "
                    "the Kubernetes networking article draws it: nodes with eth0 and cbr0 and "
                    "their addresses, veths, pods with their IPs and containers, the gateway "
                    "and its routes, the clients, and Services with their ClusterIPs pointing "
                    "at their endpoints. Uses Graphviz's dot. Prints SVG unless -o says "
                    "otherwise.")
    p.add_argument("cluster", nargs="?", metavar="CLUSTER",
                   help="the running cluster (by name); optional when only one runs")
    p.add_argument("--topology", metavar="FILE",
                   help="draw what this topology file builds; nothing needs to run")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write FILE instead of printing: .svg, .png, or .dot (the DOT text)")
    p.add_argument("--trace", metavar="FILE.json",
                   help="draw a trace's path over it (the output of `testbed trace --json`)")
    p.set_defaults(func=cmd_diagram)


def _fail(message: str) -> int:
    print(f"testbed: {message}", file=sys.stderr)
    return 2


def read_trace(path: str) -> dict:
    """A `testbed trace --json` file; SpecError naming the file (and line, field) otherwise."""
    try:
        data = json.loads(read_text(path))
    except FileRefused as err:
        raise SpecError([Problem(path, None, "", str(err))]) from None
    except UnicodeDecodeError:
        raise SpecError([Problem(path, None, "", "is not text (want testbed trace --json's "
                                                 "output)")]) from None
    except json.JSONDecodeError as err:
        raise SpecError([Problem(path, err.lineno, "", f"not JSON: {err.msg} (column "
                                                       f"{err.colno})")]) from None
    try:
        return check_trace(data)
    except TraceFormatError as err:
        raise SpecError([Problem(path, None, "", f"{err} (want testbed trace --json's "
                                                 "output)")]) from None


def _output_format(output: str | None) -> str:
    if output is None:
        return "svg"
    fmt = FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise SpecError([Problem(output, None, "", "unknown picture format: name it .svg, "
                                                   ".png or .dot")])
    parent = Path(output).parent
    if not parent.is_dir():
        raise SpecError([Problem(output, None, "", f"directory {parent} does not exist")])
    if Path(output).is_dir():
        raise SpecError([Problem(output, None, "", "is a directory: name the picture's file")])
    if not os.access(parent, os.W_OK) or (Path(output).exists() and not os.access(output, os.W_OK)):
        raise SpecError([Problem(output, None, "", "cannot be written (permission denied)")])
    return fmt


def cmd_diagram(args: argparse.Namespace) -> int:
    if args.topology and args.cluster:
        return _fail("diagram: give a running CLUSTER or --topology FILE, not both")
    fmt = _output_format(args.output)
    trace = read_trace(args.trace) if args.trace else None
    try:
        if fmt != "dot":
            dot_program()       # before reading anything: say so at once when it is missing
        if args.topology:
            text = to_dot(from_topology(load_topology(args.topology)), trace)
        else:
            text = _running_dot(args.cluster, trace)
        if fmt == "png":
            _dot(["-Tpng", "-o", args.output], text)
            return 0
        out = text if fmt == "dot" else render_svg(text)
    except DiagramError as err:
        return _fail(f"diagram: {err}")
    if args.output:
        Path(args.output).write_text(out)
    else:
        sys.stdout.write(out)
    return 0


def _running_dot(name: str | None, trace: dict | None) -> str:
    from testbed.emu.access import NoCluster, find
    from testbed.emu.attach import AttachError, attach

    try:
        cluster = attach(find(name))
    except (NoCluster, AttachError) as err:
        raise DiagramError(f"{err} (or draw a topology file with --topology FILE)") from None
    try:
        return to_dot(cluster_picture(cluster), trace)
    except (ApiError, OSError) as err:
        raise DiagramError(f"cannot read cluster {cluster.topo.name} from its API server: "
                           f"{err}") from None
    finally:
        cluster.down()          # attached: lets go of it, the cluster goes on running
