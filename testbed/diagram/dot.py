"""Pure: a Picture (testbed/diagram/model.py) as Graphviz DOT text, with a trace's path over it.

The layout follows the Kubernetes networking article's drawings: the clients at the top, the
gateway router below them with its routing table, then one box per node holding its uplink
(`NODE-eth0` and its address), `cbr0` with the pods' gateway address, one veth per pod on the
bridge and the pods themselves (name, namespace, eth0's IP, containers). Services hang below,
each with its ClusterIP, ports, node ports and load-balancer addresses, and a dashed arrow to
every endpoint (a pod, or a host such as the master for `kubernetes`).

`to_dot(picture, trace)` draws a `testbed trace --json` result over it (its form is in
testbed/trace/__init__.py): the request's path as red numbered edges (1, 2, ...) through the
hops' interfaces (`in`, `out`, the bridge ports), each NAT rewrite written on the edge that
leaves the host that made it, the reply's path in blue (r1, r2, ...), and the verdict as a
note, tied to the host of its cause when there is one. `check_trace(data)` checks that form
and raises TraceFormatError naming the field.

Every label is an HTML-like label with each user-provided string escaped, and node names are
generated (`n0`, `n1`, ...), so no name, however odd, can break the DOT text. The output is a
function of its input alone (everything is drawn in the Picture's sorted order).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface

from testbed.diagram.model import BRIDGE, Host, Picture, Pod, Service

FONT = "Helvetica"
COLORS = {"worker": "#eef5ff", "master": "#f3f3f3", "gateway": "#fff4e0", "client": "#eaf7ea",
          "pod": "#ffffff", "service": "#f4ecff", "request": "#d62728", "reply": "#1f5fbf",
          "delivered": "#2ca02c", "dropped": "#d62728", "rejected": "#d62728"}


class TraceFormatError(ValueError):
    """A trace that is not in `testbed trace --json`'s form; the message names the field."""


# -- escaping -------------------------------------------------------------------------------

def text(value: object) -> str:
    """A user-provided string for an HTML-like label: markup escaped, each backslash doubled
    (Graphviz expands `\\N`, `\\G`, ... in HTML-like labels too, and turns `\\\\` into one),
    control characters shown as \\xNN (Graphviz would otherwise take them, or choke on them)."""
    out = []
    for c in html.escape(str(value), quote=True):
        if c == "\\":
            out.append("\\\\")
        elif c < " " or c == "\x7f":
            out.append(f"\\\\x{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


def _attrs(**attrs: str) -> str:
    """DOT attributes; a value starting with '<' is an HTML-like label (already escaped),
    anything else is quoted."""
    parts = []
    for key, value in attrs.items():
        if value.startswith("<") and value.endswith(">"):
            parts.append(f"{key}={value}")
        else:
            parts.append(f'{key}="{_quote(value)}"')
    return "[" + ", ".join(parts) + "]"


def _quote(value: str) -> str:
    """A DOT quoted string's body for values the testbed writes itself (colours, styles)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _table(rows: Iterable[str], bgcolor: str = "#ffffff", border: int = 1) -> str:
    return (f'<<TABLE BORDER="{border}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" '
            f'BGCOLOR="{bgcolor}">' + "".join(rows) + "</TABLE>>")


def _row(content: str, port: str | None = None, align: str = "LEFT", bgcolor: str | None = None) -> str:
    attrs = f' ALIGN="{align}"' + (f' PORT="{port}"' if port else "") + (
        f' BGCOLOR="{bgcolor}"' if bgcolor else "")
    return f"<TR><TD{attrs}>{content or ' '}</TD></TR>"


# -- the drawing ----------------------------------------------------------------------------

@dataclass
class _Ids:
    """Generated node names, by what they stand for."""

    by_key: dict[tuple, str] = field(default_factory=dict)

    def __call__(self, *key: object) -> str:
        if key not in self.by_key:
            self.by_key[key] = f"n{len(self.by_key)}"
        return self.by_key[key]

    def get(self, *key: object) -> str | None:
        return self.by_key.get(key)


class _Drawing:
    def __init__(self, pic: Picture):
        self.pic = pic
        self.ids = _Ids()
        self.lines: list[str] = []
        self.host_of_address: dict[str, str] = {a: h.name for h in pic.hosts for a in h.addresses}

    def out(self, line: str, depth: int = 1) -> None:
        self.lines.append("  " * depth + line)

    # hosts

    def gateway(self, host: Host) -> None:
        rows = [_row(f"<B>{text(host.name)}</B> (gateway)", align="CENTER")]
        for i in host.interfaces:
            port = "p" + self.ids("port", host.name, i.name)
            what = ", ".join(text(a) for a in i.addresses) or (
                f"port of {text(i.master)}" if i.master else "")
            rows.append(_row(f"{text(i.name)}  {what}", port=port))
        rows.append(_row("<B>routes</B>", align="CENTER", bgcolor="#f5e6c8"))
        rows.extend(_row(text(r.text())) for r in host.routes)
        self.out(f"{self.ids('host', host.name)} "
                 + _attrs(shape="plain", label=_table(rows, COLORS["gateway"])))

    def client(self, host: Host) -> None:
        rows = [_row(f"<B>{text(host.name)}</B> (client)", align="CENTER")]
        rows.extend(_row(f"{text(i.name)}  {', '.join(text(a) for a in i.addresses)}")
                    for i in host.interfaces)
        self.out(f"{self.ids('host', host.name)} "
                 + _attrs(shape="plain", label=_table(rows, COLORS["client"])))

    def node(self, host: Host, pods: list[Pod]) -> None:
        cluster = self.ids("cluster", host.name)
        caption = f"<B>{text(host.name)}</B> ({text(host.role)})"
        if host.pod_cidr:
            caption += f"  pods {text(host.pod_cidr)}"
        self.out(f"subgraph cluster_{cluster} {{")
        self.out(f"label=<{caption}>; style=filled; fillcolor=\"{COLORS.get(host.role, '#ffffff')}\";"
                 f" color=\"#7f7f7f\";", 2)
        uplink = host.uplink
        eth0 = self.ids("host", host.name)          # the node as a whole is its uplink
        addresses = ", ".join(text(a) for a in uplink.addresses) if uplink else ""
        name = text(uplink.name) if uplink else "no uplink"
        self.out(f"{eth0} " + _attrs(shape="box", style="rounded,filled", fillcolor="#ffffff",
                                     label=f"<<B>eth0</B> {name}<BR/>{addresses}>"), 2)
        bridge = host.bridge
        if bridge is not None:
            cbr0 = self.ids("bridge", host.name)
            self.out(f"{cbr0} " + _attrs(
                shape="box", style="filled", fillcolor="#dde8f7",
                label=f"<<B>{BRIDGE}</B><BR/>{', '.join(text(a) for a in bridge.addresses)}>"), 2)
            self.out(f"{eth0} -> {cbr0} " + _attrs(dir="none", style="dashed",
                                                   label="<routing>", fontsize="9"), 2)
        veths = {i.name for i in host.veths} | {p.veth for p in pods if p.veth}
        for veth in sorted(veths):
            vid = self.ids("veth", host.name, veth)
            self.out(f"{vid} " + _attrs(shape="box", fontsize="10", height="0.25",
                                        label=f"<{text(veth)}>"), 2)
            if bridge is not None:
                self.out(f"{self.ids('bridge', host.name)} -> {vid} " + _attrs(dir="none"), 2)
        for pod in pods:
            pid = self.pod(pod, 2)
            if pod.veth:
                self.out(f"{self.ids('veth', host.name, pod.veth)} -> {pid} "
                         + _attrs(dir="none", label="<eth0>", fontsize="9"), 2)
            elif bridge is not None:
                self.out(f"{self.ids('bridge', host.name)} -> {pid} " + _attrs(dir="none"), 2)
        self.out("}")

    def pod(self, pod: Pod, depth: int = 1) -> str:
        pid = self.ids("pod", pod.key)
        rows = [_row(f"<B>{text(pod.name)}</B>", align="CENTER", bgcolor="#e8e8e8"),
                _row(f"namespace {text(pod.namespace)}"),
                _row(f"eth0 {text(pod.ip) if pod.ip else '(no IP)'}")]
        if pod.containers:
            rows.append(_row("containers: " + ", ".join(text(c) for c in pod.containers)))
        if pod.phase and pod.phase != "Running":
            rows.append(_row(f"<I>{text(pod.phase)}</I>"))
        self.out(f"{pid} " + _attrs(shape="plain", label=_table(rows, COLORS["pod"])), depth)
        return pid

    # services

    def service(self, svc: Service, pods_by_ip: dict[str, str]) -> None:
        sid = self.ids("service", svc.key)
        rows = [_row(f"<B>Service {text(svc.name)}</B>", align="CENTER"),
                _row(f"namespace {text(svc.namespace)}, {text(svc.type)}"),
                _row(f"ClusterIP {text(svc.cluster_ip) if svc.cluster_ip else 'None'}")]
        rows.extend(_row(text(p.text())) for p in svc.ports)
        if svc.external_ips:
            rows.append(_row("external " + ", ".join(text(i) for i in svc.external_ips)))
        self.out(f"{sid} " + _attrs(shape="plain", label=_table(rows, COLORS["service"])))
        for e in svc.endpoints:
            target = (self.ids.get("pod", e.pod) if e.pod else None) or (
                self.ids.get("pod", pods_by_ip[e.address]) if e.address in pods_by_ip else None)
            if target is None and e.address in self.host_of_address:
                target = self.ids.get("host", self.host_of_address[e.address])
            if target is None:
                target = self.ids("endpoint", e.address)
                self.out(f"{target} " + _attrs(shape="box", style="dashed",
                                               label=f"<endpoint {text(e.address)}>"))
            label = text(e.address) + (f" {text(', '.join(e.ports))}" if e.ports else "")
            # Drawn pod -> Service, reversed, so that Services sit below the pods they serve.
            self.out(f"{target} -> {sid} " + _attrs(
                dir="back", style="dashed" if e.ready else "dotted", color="#7b52ab",
                label=f"<{label}{'' if e.ready else ' (not ready)'}>", fontsize="9"))

    # the whole picture

    def draw(self, trace: dict | None) -> str:
        pic = self.pic
        title = f"<B>{text(pic.name)}</B>: {text(pic.source)}"
        if pic.network_mode:
            title += f", {text(pic.network_mode)} node network"
        self.lines = ["digraph cluster {",
                      f"  graph [rankdir=TB, newrank=true, nodesep=0.3, ranksep=0.6, "
                      f"fontname=\"{FONT}\", labelloc=t, label=<{title}>];",
                      f"  node [fontname=\"{FONT}\", fontsize=11];",
                      f"  edge [fontname=\"{FONT}\", fontsize=10];"]
        pods_by_node: dict[str, list[Pod]] = {}
        for pod in pic.pods:
            pods_by_node.setdefault(pod.node, []).append(pod)
        gateways = [h for h in pic.hosts if h.role == "gateway"]
        for host in pic.hosts:
            if host.role == "gateway":
                self.gateway(host)
            elif host.role == "client":
                self.client(host)
        for host in pic.hosts:
            if host.role in ("master", "worker"):
                self.node(host, pods_by_node.pop(host.name, []))
        for node in sorted(pods_by_node):      # pods of no drawn node (not scheduled yet)
            for pod in pods_by_node[node]:
                self.pod(pod)
        self.links(gateways)
        pods_by_ip = {p.ip: p.key for p in pic.pods if p.ip}
        for svc in pic.services:
            self.service(svc, pods_by_ip)
        if trace is not None:
            _Overlay(self, trace).draw()
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def links(self, gateways: list[Host]) -> None:
        """Each node and client to the gateway: by the Picture's links where they name the
        gateway's port, else to the gateway interface on the host's subnet."""
        names = {g.name for g in gateways}
        for host in self.pic.hosts:
            if host.role == "gateway":
                continue
            port = gw = None
            for link in self.pic.links:
                if link.host == host.name and link.peer in names:
                    gw = self.pic.host(link.peer)
                    if gw is not None and gw.interface(link.peer_iface) is not None:
                        port = "p" + self.ids("port", gw.name, link.peer_iface)
                        break
            if port is None and host.uplink is not None:
                port, gw = self._subnet_port(host, gateways)
            if port is None or gw is None:
                continue
            here, there = self.ids("host", host.name), self.ids("host", gw.name)
            if host.role == "client":   # clients above the gateway, nodes below it
                self.out(f"{here} -> {there}:{port} " + _attrs(dir="none", penwidth="1.5"))
            else:
                self.out(f"{there}:{port} -> {here} " + _attrs(dir="none", penwidth="1.5"))

    def _subnet_port(self, host: Host, gateways: list[Host]) -> tuple[str | None, Host | None]:
        mine = [ip_address(a.split("/")[0]) for a in host.uplink.addresses] if host.uplink else []
        for gw in gateways:
            for i in gw.interfaces:
                if any(m in ip_interface(a).network for a in i.addresses for m in mine):
                    return "p" + self.ids("port", gw.name, i.name), gw
        return None, None


# -- a trace over it ------------------------------------------------------------------------

def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise TraceFormatError(f"{where}: {what}")


def _opt_str(d: dict, key: str, where: str) -> None:
    _check(d.get(key) is None or isinstance(d.get(key), str), f"{where}.{key}",
           "must be a string or null")


def check_trace(data: object) -> dict:
    """`data` if it has `testbed trace --json`'s form (the fields the drawing reads);
    TraceFormatError naming the first field that does not."""
    _check(isinstance(data, dict), "trace", "must be a JSON object (testbed trace --json)")
    assert isinstance(data, dict)
    _check(isinstance(data.get("hops"), list), "hops", "must be a list of hops")
    for key in ("verdict", "from", "to", "endpoint", "protocol"):
        _opt_str(data, key, "trace")
    _check(data.get("reply") is None or isinstance(data.get("reply"), list), "reply",
           "must be a list of hops")
    cause = data.get("cause")
    _check(cause is None or isinstance(cause, dict), "cause", "must be an object or null")
    if isinstance(cause, dict):
        for key in ("host", "chain", "rule", "verdict"):
            _opt_str(cause, key, "cause")
    for part in ("hops", "reply"):
        for n, hop in enumerate(data.get(part) or []):
            where = f"{part}[{n}]"
            _check(isinstance(hop, dict), where, "must be an object")
            _check(isinstance(hop.get("host"), str) and hop["host"] != "", f"{where}.host",
                   "must be a host's name")
            for key in ("in", "out", "kind", "verdict"):
                _opt_str(hop, key, where)
            port = hop.get("bridgePort")
            _check(port is None or isinstance(port, dict), f"{where}.bridgePort",
                   "must be an object or null")
            if isinstance(port, dict):
                for key in ("in", "out"):
                    _opt_str(port, key, f"{where}.bridgePort")
            nat = hop.get("nat")
            nat = [] if nat is None else nat
            _check(isinstance(nat, list), f"{where}.nat", "must be a list")
            for k, rewrite in enumerate(nat):
                _check(isinstance(rewrite, dict), f"{where}.nat[{k}]", "must be an object")
                for key in ("type", "from", "to"):
                    _opt_str(rewrite, key, f"{where}.nat[{k}]")
    return data


class _Overlay:
    """The trace's path: points (drawn nodes) in order, edges between them numbered."""

    def __init__(self, drawing: _Drawing, trace: dict):
        self.d = drawing
        self.trace = trace                      # checked by to_dot

    def pod_key(self, name: str) -> str | None:
        pods = self.d.pic.pods
        if any(p.key == name for p in pods):
            return name
        matches = [p.key for p in pods if p.name == name]
        return matches[0] if len(matches) == 1 else None

    def host_point(self, name: str) -> str:
        """The drawn node of a host, pod or anything else the trace names."""
        key = self.pod_key(name)
        if key is not None:
            return self.d.ids("pod", key)
        if self.d.pic.host(name) is not None:
            return self.d.ids("host", name)
        point = self.d.ids.get("trace-host", name)
        if point is None:                       # drawn once, at its first mention
            point = self.d.ids("trace-host", name)
            self.d.out(f"{point} " + _attrs(shape="box", style="dashed",
                                            label=f"<{text(name)}>"))
        return point

    def points(self, hop: dict) -> list[str]:
        """Where the hop goes through: in the bridge's port, cbr0, out the uplink, ..."""
        name = hop["host"]
        host = self.d.pic.host(name)
        if host is not None and host.role == "gateway":
            out = []
            for side in ("in", "out"):          # the rows of the interfaces it crossed
                iface = hop.get(side)
                if iface and host.interface(iface) is not None:
                    out.append(f"{self.d.ids('host', name)}:p{self.d.ids('port', name, iface)}")
            return out or [self.host_point(name)]
        if host is None or host.role not in ("master", "worker"):
            return [self.host_point(name)]
        port = hop.get("bridgePort") or {}
        out: list[str] = []
        for side in ("in", "out"):
            iface = hop.get(side)
            here: list[str] = []
            if iface == BRIDGE and host.bridge is not None:
                here = [self.d.ids("bridge", name)]
                veth = port.get(side)
                vid = self.d.ids.get("veth", name, veth) if veth else None
                if vid is not None:
                    here = [vid, *here] if side == "in" else [*here, vid]
            elif iface or side == "in" or hop.get("verdict") not in ("drop", "reject"):
                # its uplink; or the node itself, where the packet starts (no `in`) or ends
                # (no `out`, not dropped): the node is drawn as its uplink
                here = [self.d.ids("host", name)]
            out.extend(here)
        return out or [self.d.ids("host", name)]

    def path(self, hops: list[dict], color: str, prefix: str) -> None:
        points: list[tuple[str, str]] = []     # (drawn node, words for the edge leaving it)
        for hop in hops:
            words = "; ".join(f"{text(str(r.get('type') or '').upper())} "
                              f"{text(r.get('from') or '')} \u2192 {text(r.get('to') or '')}"
                              for r in hop.get("nat") or [])
            for point in self.points(hop):
                if points and points[-1][0] == point:
                    continue
                points.append((point, ""))
            if words and points:
                last, before = points[-1]
                points[-1] = (last, f"{before}; {words}" if before else words)
        for n, ((a, words), (b, _)) in enumerate(zip(points, points[1:], strict=False), 1):
            label = f"<<B>{prefix}{n}</B>" + (f" {words}" if words else "") + ">"
            self.d.out(f"{a} -> {b} " + _attrs(color=color, fontcolor=color, penwidth="2.5",
                                               constraint="false", label=label))

    def draw(self) -> None:
        t = self.trace
        self.path(t["hops"], COLORS["request"], "")
        self.path(t.get("reply") or [], COLORS["reply"], "r")
        verdict = t.get("verdict") or "unknown"
        color = COLORS.get(verdict, "#555555")
        rows = [_row(f"<B>{text(verdict)}</B>", align="CENTER")]
        what = " ".join(x for x in (t.get("protocol"), t.get("from"), "\u2192" if t.get("to")
                                    else None, t.get("to")) if x)
        if what:
            rows.append(_row(text(what)))
        if t.get("endpoint"):
            rows.append(_row(f"endpoint {text(t['endpoint'])}"))
        cause = t.get("cause")
        if cause:
            rows.append(_row(f"at {text(cause.get('host') or '?')}: "
                             f"{text(cause.get('chain') or '')} {text(cause.get('verdict') or '')}"))
            if cause.get("rule"):
                rows.append(_row(text(cause["rule"])))
        vid = self.d.ids("verdict")
        self.d.out(f"{vid} " + _attrs(shape="note", style="filled", fillcolor="#ffffff",
                                      color=color, penwidth="2",
                                      label=_table(rows, "#ffffff", border=0)))
        at = None
        if cause and cause.get("host"):
            at = self.host_point(cause["host"])
        elif t["hops"]:
            at = self.points(t["hops"][-1])[-1]
        if at is not None:
            self.d.out(f"{at} -> {vid} " + _attrs(color=color, style="dashed", penwidth="2",
                                                  constraint="false"))


def to_dot(pic: Picture, trace: dict | None = None) -> str:
    """The DOT text of `pic`, with `trace` (testbed trace --json's object) drawn over it.
    TraceFormatError when the trace is not in that form."""
    if trace is not None:
        check_trace(trace)
    return _Drawing(pic).draw(trace)
