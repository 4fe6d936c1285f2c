"""Pure: a trace as a person reads it, like the article's walk-through: one hop per line, then
under it the rules hit there (as `iptables -S` or `nft list` shows them) and the rewrites.

    default/client-1 -> service-test (10.3.241.152:80), tcp from 10.0.1.2:46901: delivered to default/service-test-6b5f7-x
     1. default/client-1   out eth0 (bridge port veth85072d21)   route: 10.3.241.152 via 10.0.1.1 dev eth0
     2. node1              in cbr0, out node1-eth0   DNAT 10.3.241.152:80 -> 10.0.2.3:8080
          nat/KUBE-SERVICES  -A KUBE-SERVICES -d 10.3.241.152/32 ... -j KUBE-SVC-...
          ...
"""

from __future__ import annotations

NAT_WORDS = {"dnat": "DNAT", "snat": "SNAT", "masquerade": "MASQUERADE", "redirect": "REDIRECT",
             "un-dnat": "un-DNAT", "un-snat": "un-SNAT"}


def _where(hop: dict) -> str:
    parts = []
    bridge = hop.get("bridgePort") or {}
    for way in ("in", "out"):
        if hop.get(way):
            port = f" (bridge port {bridge[way]})" if bridge.get(way) and hop["kind"] != "pod" else ""
            parts.append(f"{way} {hop[way]}{port}")
    if hop.get("hairpin"):
        parts.append("hairpin")
    if hop["kind"] == "pod":
        veth = bridge.get("in") or bridge.get("out")
        if veth:
            parts.append(f"veth {veth} on the node")
    return ", ".join(parts) or "-"


def nat_text(rewrite: dict) -> str:
    return f"{NAT_WORDS.get(rewrite['type'], rewrite['type'])} {rewrite['from']} -> {rewrite['to']}"


def _hops(lines: list[str], hops: list[dict], rules: bool) -> None:
    width = max((len(h["host"]) for h in hops), default=0)
    for number, hop in enumerate(hops, 1):
        line = f" {number:>2}. {hop['host']:<{width}}  {_where(hop)}"
        if hop.get("nat"):
            line += "   " + "; ".join(nat_text(n) for n in hop["nat"])
        if hop.get("verdict") in ("drop", "reject"):
            line += "   DROPPED" if hop["verdict"] == "drop" else "   REJECTED"
        lines.append(line)
        if hop.get("route"):
            lines.append(f"       route: {hop['route']}")
        if rules:
            for rule in hop.get("rules", []):
                lines.append(f"       {rule['chain']:<28} {rule['rule']}")


def render_text(trace: dict, rules: bool = True) -> str:
    """The walk-through of a trace (testbed.trace's JSON form)."""
    what = trace["to"]
    if trace.get("destination") and trace["destination"] != trace["to"]:
        what = f"{trace['to']} ({trace['destination']})"
    verdict = trace["verdict"]
    head = f"{trace['from']} -> {what}, {trace['protocol']} from {trace.get('source', '?')}: {verdict}"
    if verdict == "delivered" and trace.get("endpoint"):
        head += f" to {trace['endpoint']}"
    if trace.get("mode") == "static":
        head += " (static: what the rules say, nothing sent)"
    lines = [head]
    cause = trace.get("cause")
    if cause:
        where = f" in {cause['chain']}" if cause.get("chain") else ""
        lines.append(f"  {verdict} at {cause.get('host')}{where}: {cause.get('rule')}")
    if trace.get("note"):
        lines.append(f"  note: {trace['note']}")
    if trace.get("outcome"):
        lines.append(f"  the connection: {trace['outcome']}")
    lines.append("  the way there:")
    _hops(lines, trace.get("hops", []), rules)
    if trace.get("reply"):
        lines.append("  the way back:")
        _hops(lines, trace["reply"], rules)
    if trace.get("endpoints"):
        lines.append(f"  possible endpoints: {', '.join(trace['endpoints'])}")
    if trace.get("conntrack"):
        lines.append("  conntrack:")
        lines.extend(f"    {entry}" for entry in trace["conntrack"])
    return "\n".join(lines) + "\n"
