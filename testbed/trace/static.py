"""Pure: the static trace (`testbed trace --static`): what the rules say a connection would do.

Owns `World` (what every host of a cluster holds NOW: its kind, interfaces and addresses, its
routes as `ip -j route` prints them, a worker's bridge and the host-side veth of each of its
pods, its kube-proxy and NetworkPolicy modes, and its netfilter dumps: `iptables-save`,
`ipset save`, `nft list table ip kube-proxy`, `nft list table ip kube-netpol`) and
`static_trace(world, source, destination, port, protocol, prefer_endpoint=None)`, which follows
the connection's first packet host by host without sending anything, in the JSON form of
testbed.trace (module docstring there), with "mode": "static".

From a pod the packet leaves by the pod's routes (eth0, via its node's bridge address), from a
node, master, gateway or client through that host's OUTPUT path. At every host it passes the
prerouting hook (kube-proxy's DNAT: nat/PREROUTING -> KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP, or
kube-proxy/nat-prerouting -> services -> service- -> endpoint-), is delivered if its
destination is one of the host's addresses (input hook), else routed by the host's routes
(longest prefix) through the forward hook (policies, kube-proxy's filter chains) and the
postrouting hook (masquerade when marked); the next host is the one holding the route's
gateway address, or the destination itself on a directly connected route. A drop or reject
ends the trace ("verdict" dropped or rejected, "cause" the host, chain and rule); reaching the
destination's holder is "delivered". The reply walks back from the endpoint to the source's
address as the endpoint saw it, un-doing each host's NAT (un-snat at its prerouting, un-dnat at
its postrouting) and passing only the filter hooks, as an established packet does.

Where a Service has several endpoints, the trace follows ONE: `prefer_endpoint` ("10.0.2.3" or
"10.0.2.3:8080", e.g. the endpoint a live trace reached) when the rules can pick it, else the
first the rules list; the top-level key "endpoints" lists every DNAT target the rules could
pick at the host that chose. A static trace has no source port and no conntrack entries: its
"source" is the address alone and "conntrack" is empty. Pods' own namespaces hold no rules
here (World gives them none). A hop's "verdict" is null where the packet passed on, "accept"
at the hop it was delivered to, "drop" or "reject" at the hop that stopped it (as the live
trace reports them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from testbed.trace.netfilter import (
    HostRules,
    Iptables,
    NftTable,
    Packet,
    TraceError,
    Walk,
    endpoint_text,
    run_hook,
)

KINDS = ("pod", "worker", "master", "gateway", "client")
PROTOCOLS = ("tcp", "udp", "icmp")
MAX_HOPS = 32

__all__ = ["World", "HostState", "TraceError", "static_trace", "KINDS", "PROTOCOLS"]


@dataclass
class HostState:
    """One host (or pod) as the static trace needs it."""

    name: str                                       # host name, or a pod's "namespace/name"
    kind: str                                       # one of KINDS
    interfaces: Mapping[str, tuple[str, ...]]       # ifname -> ("10.0.1.1/24", ...)
    routes: tuple[Mapping, ...] = ()                # `ip -j route` entries (main table)
    node: str | None = None                         # a pod's node
    bridge: str | None = None                       # a worker's pod bridge (cbr0)
    pod_veths: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # pod -> (ip, veth)
    proxy_mode: str | None = None                   # iptables, nftables, userspace
    netpol_mode: str | None = None                  # iptables, nftables, none
    iptables_save: str = ""                         # `iptables-save` (every table)
    ipset_save: str = ""                            # `ipset save`
    nft_proxy: str = ""                             # `nft list table ip kube-proxy`
    nft_netpol: str = ""                            # `nft list table ip kube-netpol`

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a.split("/")[0] for addrs in self.interfaces.values() for a in addrs)

    def rules(self) -> HostRules:
        ipt = Iptables(self.iptables_save, self.ipset_save) if self.iptables_save.strip() else None
        nft = tuple(NftTable(t) for t in (self.nft_proxy, self.nft_netpol) if t.strip())
        return HostRules(ipt, nft)


@dataclass
class World:
    hosts: dict[str, HostState]

    def owner(self, ip: str) -> tuple[HostState, str] | None:
        """The host holding `ip`, and the interface it is on (pods before hosts)."""
        found = None
        for host in self.hosts.values():
            for ifname, addrs in host.interfaces.items():
                if ifname != "lo" and any(a.split("/")[0] == ip for a in addrs):
                    if host.kind == "pod":
                        return host, ifname
                    found = found or (host, ifname)
        return found


def _route(host: HostState, dst: str) -> Mapping | None:
    best, best_len = None, -1
    addr = ipaddress.ip_address(dst)
    for r in host.routes:
        if r.get("type", "unicast") not in ("unicast",) or r.get("table", "main") != "main":
            continue
        d = r.get("dst", "")
        net = ipaddress.ip_network("0.0.0.0/0" if d == "default" else
                                   (d if "/" in d else f"{d}/32"), strict=False)
        if addr in net and net.prefixlen > best_len:
            best, best_len = r, net.prefixlen
    return best


def _out_address(host: HostState, oif: str | None) -> str | None:
    addrs = host.interfaces.get(oif or "", ())
    return addrs[0].split("/")[0] if addrs else None


def _src_address(host: HostState, route: Mapping) -> str | None:
    return route.get("prefsrc") or _out_address(host, route.get("dev")) or _first_address(host)


def _first_address(host: HostState) -> str | None:
    """The host's first address that is not a loopback one."""
    return next((a for a in host.addresses if not a.startswith("127.")), None)


def _route_text(host: HostState, dst: str, route: Mapping) -> str:
    text = dst
    if route.get("gateway"):
        text += f" via {route['gateway']}"
    text += f" dev {route.get('dev')}"
    src = _src_address(host, route)
    return text + (f" src {src}" if src else "")


def _veth_of(host: HostState, other: HostState | None) -> str | None:
    """The host-side veth of pod `other` on worker `host`, if it is one of its pods."""
    if other is None or other.name not in host.pod_veths:
        return None
    return host.pod_veths[other.name][1]


@dataclass
class _Step:
    """Where a packet is: at `host`, came in on `iif` from `prev` (None: made here)."""

    host: HostState
    iif: str | None
    prev: HostState | None
    bridged: bool = False           # crossing a worker's bridge between two of its pods


def _cause(host: HostState, walk: Walk) -> dict:
    cause = dict(walk.cause or {"chain": None, "rule": None, "verdict": "drop"})
    return {"host": host.name, **cause}


def _undo_nat(pkt: Packet, walk: Walk, undo: list[dict], side: str) -> None:
    """Undo, as conntrack does for a reply, the NAT the forward path did at this host: its SNATs
    and masquerades on the reply's destination (`side` "dst", at prerouting: "un-snat"), its
    DNATs on the reply's source (`side` "src", at postrouting: "un-dnat")."""
    kinds, label = (("snat", "masquerade"), "un-snat") if side == "dst" else (("dnat",), "un-dnat")
    port_field = "dport" if side == "dst" else "sport"
    for entry in undo:
        before = endpoint_text(getattr(pkt, side), getattr(pkt, port_field))
        if entry["type"] in kinds and before == entry["to"]:
            ip, _, port = entry["from"].partition(":")
            setattr(pkt, side, ip)
            if port:
                setattr(pkt, port_field, int(port))
            walk.nat.append({"type": label, "from": before,
                             "to": endpoint_text(ip, getattr(pkt, port_field))})


def _follow(world: World, start: HostState, pkt: Packet, reply_nat: Mapping[str, list] | None,
            prefer: str | None, rules_of: dict[str, HostRules]) -> dict:
    """Follow `pkt` from `start` (where it is made) to its destination's holder.

    `reply_nat` (for a reply): per host, the NAT the forward path did there, to undo.
    Returns {"hops", "verdict", "cause", "endpoints", "nat_by_host", "final"}."""
    hops: list[dict] = []
    endpoints: list[str] = []
    nat_by_host: dict[str, list] = {}
    step = _Step(start, None, None)
    for _ in range(MAX_HOPS):
        host = step.host
        if host.name not in rules_of:           # parsed once per trace, not once per visit
            rules_of[host.name] = host.rules()
        rules = rules_of[host.name]
        walk = Walk(local=frozenset(host.addresses), prefer=prefer,
                    in_address=_out_address(host, step.iif))
        hop = {"host": host.name, "kind": host.kind, "in": step.iif, "out": None,
               "bridgePort": None, "route": None,
               "packet": {"src": endpoint_text(pkt.src, pkt.sport),
                          "dst": endpoint_text(pkt.dst, pkt.dport)},
               "chains": walk.chains, "rules": walk.rules, "nat": walk.nat, "verdict": None}
        hops.append(hop)
        pkt.iif, pkt.oif = step.iif, None
        undo = (reply_nat or {}).get(host.name, [])

        def finish(verdict: str, _hop=hop, _host=host, _walk=walk) -> dict:
            _hop["verdict"] = verdict       # accept: delivered here; drop, reject: stopped here
            nat_by_host[_host.name] = list(_walk.nat)
            endpoints.extend(e for e in _walk.endpoints if e not in endpoints)
            cause = _cause(_host, _walk) if verdict in ("drop", "reject") else None
            out = {"drop": "dropped", "reject": "rejected"}.get(verdict, "delivered")
            return {"hops": hops, "verdict": out, "cause": cause, "endpoints": endpoints,
                    "nat_by_host": nat_by_host, "final": _host}

        local = set(host.addresses)
        node = world.hosts.get(host.node or "")
        if host.kind == "pod" and step.iif is not None and node is not None:
            hop["bridgePort"] = {"in": None, "out": _veth_of(node, host)}   # its port on cbr0
        if step.iif is None:                                    # made here: OUTPUT
            route = _route(host, pkt.dst) if pkt.dst not in local else None
            pkt.oif = route.get("dev") if route else "lo"
            verdict = run_hook(rules, "output", pkt, walk)
            if verdict != "accept":
                return finish(verdict)
        else:
            _undo_nat(pkt, walk, undo, "dst")
            verdict = run_hook(rules, "prerouting", pkt, walk)
            if verdict != "accept":
                return finish(verdict)
        if pkt.dst in local or pkt.dst.startswith("127."):
            if step.iif is not None or pkt.dst in local:
                verdict = run_hook(rules, "input", pkt, walk)
            return finish(verdict)
        route = _route(host, pkt.dst)
        if route is None:
            walk.cause = {"chain": None, "rule": f"no route to {pkt.dst}", "verdict": "drop"}
            return finish("drop")
        pkt.oif = route.get("dev")
        hop["out"] = pkt.oif
        hop["route"] = None if step.bridged and pkt.oif == host.bridge else \
            _route_text(host, pkt.dst, route)
        if step.iif is not None:
            verdict = run_hook(rules, "forward", pkt, walk)
            if verdict != "accept":
                return finish(verdict)
        walk.out_address = _out_address(host, pkt.oif)
        verdict = run_hook(rules, "postrouting", pkt, walk)
        if verdict != "accept":
            return finish(verdict)
        _undo_nat(pkt, walk, undo, "src")
        nexthop = route.get("gateway") or pkt.dst
        holder = world.owner(nexthop)
        if holder is None:
            walk.cause = {"chain": None, "rule": f"no host holds {nexthop} "
                          f"({hop['route']})", "verdict": "drop"}
            return finish("drop")
        nxt, nif = holder
        if host.bridge and (step.iif == host.bridge or pkt.oif == host.bridge):
            hop["bridgePort"] = {
                "in": _veth_of(host, step.prev) if step.iif == host.bridge else None,
                "out": _veth_of(host, nxt) if pkt.oif == host.bridge else None}
        if host.kind == "pod" and step.iif is None and node is not None:
            hop["bridgePort"] = {"in": _veth_of(node, host), "out": None}
        nat_by_host[host.name] = list(walk.nat)
        endpoints.extend(e for e in walk.endpoints if e not in endpoints)
        if host.kind == "pod" and node is not None and node.bridge and nxt is not node \
                and not route.get("gateway"):
            # on-link to another pod: through the node's bridge, whose netfilter sees it too
            # (br_netfilter), as a hop of its own
            step = _Step(node, node.bridge, host, bridged=True)
            continue
        step = _Step(nxt, nif, host)
    raise TraceError(f"more than {MAX_HOPS} hops: a routing loop?")


def static_trace(world: World, source: str, destination: str, port: int | None,
                 protocol: str = "tcp", prefer_endpoint: str | None = None) -> dict:
    """The static trace of one connection from `source` (a host name, a pod key, or the name
    of a pod in the default namespace) to
    `destination` (an IP address, or a host name or pod key standing for its first address),
    in testbed.trace's JSON form, plus "endpoints" (module docstring). TraceError for a
    source, destination or protocol that is not one, or rules the tracer cannot read."""
    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise TraceError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    if source not in world.hosts and f"default/{source}" in world.hosts:
        source = f"default/{source}"            # a pod of the default namespace by its name
    if source not in world.hosts:
        raise TraceError(f"source {source!r}: no such host or pod "
                         f"(known: {', '.join(sorted(world.hosts))})")
    start = world.hosts[source]
    if destination in world.hosts:
        dst_ip = _first_address(world.hosts[destination])
        if dst_ip is None:
            raise TraceError(f"destination {destination!r} has no address")
    else:
        try:
            dst_ip = str(ipaddress.IPv4Address(destination))
        except ValueError as err:
            raise TraceError(f"destination {destination!r}: not an IPv4 address, host or pod"
                             ) from err
    if protocol == "icmp":
        port = None
    elif port is None:
        raise TraceError(f"{protocol} needs a port")
    route = _route(start, dst_ip)
    src_ip = _src_address(start, route) if route else _first_address(start)
    if src_ip is None:
        raise TraceError(f"source {source!r} has no address")

    rules_of: dict[str, HostRules] = {}
    pkt = Packet(src_ip, dst_ip, protocol, None, port)
    fwd = _follow(world, start, pkt, None, prefer_endpoint, rules_of)
    reply: list[dict] = []
    if fwd["verdict"] == "delivered" and fwd["final"] is not start:
        back = Packet(pkt.dst, pkt.src, protocol, pkt.dport, pkt.sport, state="established")
        reply = _follow(world, fwd["final"], back, fwd["nat_by_host"], None, rules_of)["hops"]
    holder = world.owner(pkt.dst)        # where the packet was going, after any DNAT
    endpoint = holder[0].name if holder and holder[0].kind == "pod" else None
    return {
        "mode": "static", "from": source,
        "to": endpoint_text(destination, port), "protocol": protocol,
        "source": src_ip, "destination": endpoint_text(dst_ip, port),
        "verdict": fwd["verdict"], "cause": fwd["cause"], "endpoint": endpoint,
        "conntrack": [], "hops": fwd["hops"], "reply": reply,
        "endpoints": fwd["endpoints"],
    }
