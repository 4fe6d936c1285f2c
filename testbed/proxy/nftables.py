"""Pure: the `nft -f` input for kube-proxy's nftables table (nftables_structure.md).

Owns `render(services, endpoints, settings)`: the `kube-proxy` table of a first, full sync as
upstream's knftables fake dumps it (one `add ...` command per line, which nft 1.0.6 accepts),
ordered so that `nft -f` can load it in one transaction: table, sets and maps, chains, rules,
elements. `normalize` is upstream's `sortNFTablesTransaction`. Nothing here touches the system.

Partial syncs, as upstream's nftables proxier does them: `service_text()` renders one service
port's sets, chains, rules and map elements on its own; `render_partial()` rewrites (add +
flush + rules) only the chains of changed services, diffs their map and set elements against
what was applied (deleting only elements that went or changed, adding only new or changed
ones, as upstream's nftElementStorage does) and deletes the chains and affinity sets that
changed services no longer use, all in one transaction. The proxier keeps the per-service
texts between syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from testbed.proxy import names
from testbed.proxy.model import (
    Endpoint,
    EndpointsMap,
    ProxierSettings,
    ServicePort,
    categorize,
    contains,
    node_port_ips,
    traffic_plan,
)
from testbed.proxy.objects import parse_cidr

TABLE = "kube-proxy"


@dataclass(frozen=True)
class Element:
    """One set or map element: where it goes, its key, and its whole text (key, comment, value)."""

    target: str
    key: str
    text: str


@dataclass
class _Tx:
    """The commands of one transaction, grouped so that every reference is declared first."""

    prefix: str
    sets: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    elements: list[Element] = field(default_factory=list)

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.append(f"add chain {self.prefix} {name}" + (f" {{ {spec} ; }}" if spec else ""))

    def rule(self, chain: str, rule: str, comment: str = "") -> None:
        self.rules.append(f"add rule {self.prefix} {chain} {rule}"
                          + (f' comment "{comment}"' if comment else ""))

    def element(self, target: str, key: Sequence[str | int], value: str = "",
                comment: str = "") -> None:
        text = key_text = " . ".join(str(k) for k in key)
        if comment:
            text += f' comment "{comment}"'
        if value:
            text += f" : {value}"
        self.elements.append(Element(target, key_text, text))

    def element_lines(self) -> list[str]:
        return [f"add element {self.prefix} {e.target} {{ {e.text} }}" for e in self.elements]


def render(services: Sequence[ServicePort], endpoints: EndpointsMap,
           settings: ProxierSettings, replace_table: bool = False,
           texts: Sequence[ServiceText] | None = None) -> str:
    """The whole kube-proxy table for one full sync, as `nft -f` input.

    With `replace_table` the text first deletes any existing table (after adding it, so the
    delete cannot fail), making the file an atomic replacement that is safe to apply twice;
    the default is the bare table as upstream's tests dump it. `texts`, when given, are the
    services' shares already rendered (`service_text` of each of `services`, in order).
    """
    s = settings
    family, ipx, addr = _family(s)
    loopback = "::1" if s.is_ipv6 else "127.0.0.0/8"
    tx = _Tx(f"{family} {TABLE}")
    head = [f'add table {tx.prefix} {{ comment "rules for kube-proxy" ; }}']
    if replace_table:
        head = [f"add table {tx.prefix}", f"delete table {tx.prefix}", *head]
    np_ips = node_port_ips(s)
    if np_ips is not None:
        np_ips = [ip for ip in np_ips if ip != "::1" and not ip.startswith("127.")]

    tx.sets.append(f'add set {tx.prefix} cluster-ips {{ type {addr} ; comment "Active ClusterIPs" ; }}')
    if np_ips is not None:
        tx.sets.append(f"add set {tx.prefix} nodeport-ips {{ type {addr} ; "
                       'comment "IPs that accept NodePort traffic" ; }')
    triple = f"{addr} . inet_proto . inet_service : verdict"
    pair = "inet_proto . inet_service : verdict"
    for name, typ, comment in (
        ("firewall-ips", triple, "destinations that are subject to LoadBalancerSourceRanges"),
        ("no-endpoint-nodeports", pair,
         "vmap to drop or reject packets to service nodeports with no endpoints"),
        ("no-endpoint-services", triple,
         "vmap to drop or reject packets to services with no endpoints"),
        ("service-ips", triple, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ("service-nodeports", pair, "NodePort traffic"),
    ):
        tx.sets.append(f'add map {tx.prefix} {name} {{ type {typ} ; comment "{comment}" ; }}')

    for name, spec in (
        ("cluster-ips-check", ""),
        ("filter-prerouting-pre-dnat", "type filter hook prerouting priority -110"),
        ("filter-output-pre-dnat", "type filter hook output priority -110"),
        ("filter-forward", "type filter hook forward priority 0"),
        ("filter-input", "type filter hook input priority 0"),
        ("filter-output", "type filter hook output priority 0"),
        ("firewall-check", ""), ("mark-for-masquerade", ""), ("masquerading", ""),
        ("nat-output", "type nat hook output priority -100"),
        ("nat-postrouting", "type nat hook postrouting priority 100"),
        ("nat-prerouting", "type nat hook prerouting priority -100"),
        ("nodeport-endpoints-check", ""),
        ("reject-chain", 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports"'),
        ("services", ""), ("service-endpoints-check", ""),
    ):
        tx.chain(name, spec)

    mark = s.masquerade_mark
    new = "ct state new"
    tx.rule("cluster-ips-check", f"{ipx} daddr @cluster-ips reject",
            "Reject traffic to invalid ports of ClusterIPs")
    cidrs = [c for c in (parse_cidr(c) for c in s.service_cidrs) if c and (":" in c) == s.is_ipv6]
    if cidrs:
        tx.rule("cluster-ips-check", f"{ipx} daddr {{ {', '.join(cidrs)} }} drop",
                "Drop traffic to unallocated ClusterIPs")
    for chain, rule in (
        ("filter-prerouting-pre-dnat", f"{new} jump firewall-check"),
        ("filter-forward", f"{new} jump service-endpoints-check"),
        ("filter-forward", f"{new} jump cluster-ips-check"),
        ("filter-input", f"{new} jump nodeport-endpoints-check"),
        ("filter-input", f"{new} jump service-endpoints-check"),
        ("filter-output", f"{new} jump service-endpoints-check"),
        ("filter-output-pre-dnat", f"{new} jump firewall-check"),
        ("filter-output", f"{new} jump cluster-ips-check"),
        ("firewall-check", f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips"),
        ("mark-for-masquerade", f"mark set mark or {mark}"),
        ("masquerading", f"mark and {mark} == 0 return"),
        ("masquerading", f"mark set mark xor {mark}"),
        ("masquerading", "masquerade fully-random"),
        ("nat-output", "jump services"),
        ("nat-postrouting", "jump masquerading"),
        ("nat-prerouting", "jump services"),
        ("reject-chain", "reject"),
        ("services", f"{ipx} daddr . meta l4proto . th dport vmap @service-ips"),
        ("service-endpoints-check",
         f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    ):
        tx.rule(chain, rule)
    if np_ips is None:  # match all local addresses; never localhost in nftables mode
        tx.rule("nodeport-endpoints-check", f"{ipx} daddr != {loopback} meta l4proto . th dport "
                "vmap @no-endpoint-nodeports")
        tx.rule("services", f"fib daddr type local {ipx} daddr != {loopback} meta l4proto . "
                "th dport vmap @service-nodeports")
    else:
        tx.rule("nodeport-endpoints-check", f"{ipx} daddr @nodeport-ips meta l4proto . th dport "
                "vmap @no-endpoint-nodeports")
        tx.rule("services", f"{ipx} daddr @nodeport-ips meta l4proto . th dport "
                "vmap @service-nodeports")
        for ip in np_ips:
            tx.element("nodeport-ips", [ip])

    if texts is None:
        texts = [service_text(svc, endpoints.get(svc.name, ()), s) for svc in services]
    return assemble(head, tx, texts)


def assemble(head: list[str], tx: _Tx, texts: Sequence[ServiceText]) -> str:
    """The full sync's text: the base table in `tx`, then every service's share, by kind."""
    seen = {(e.target, e.key) for e in tx.elements}
    for text in texts:
        tx.sets += text.sets
        tx.chains += text.chains
        tx.rules += text.rules
        for e in text.elements:
            # two services claiming one address and port: the first keeps it (nft refuses a
            # second value for a key, where iptables mode just never reaches the later rule)
            if (e.target, e.key) not in seen:
                seen.add((e.target, e.key))
                tx.elements.append(e)
    return "\n".join(head + tx.sets + tx.chains + tx.rules + tx.element_lines()) + "\n"


@dataclass(frozen=True)
class ServiceText:
    """One service port's share of the table (what `render` writes for it)."""

    sets: tuple[str, ...]
    chains: tuple[str, ...]
    rules: tuple[str, ...]
    elements: tuple[Element, ...]

    @property
    def chain_names(self) -> frozenset[str]:
        return frozenset(line.split(" ")[4] for line in self.chains)

    @property
    def set_names(self) -> frozenset[str]:
        return frozenset(line.split(" ")[4] for line in self.sets)


def _family(settings: ProxierSettings) -> tuple[str, str, str]:
    return ("ip6", "ip6", "ipv6_addr") if settings.is_ipv6 else ("ip", "ip", "ipv4_addr")


def service_text(svc: ServicePort, eps: Sequence[Endpoint],
                 settings: ProxierSettings) -> ServiceText:
    family, ipx, addr = _family(settings)
    tx = _Tx(f"{family} {TABLE}")
    _service(tx, svc, eps, settings, ipx, addr)
    return ServiceText(tuple(tx.sets), tuple(tx.chains), tuple(tx.rules), tuple(tx.elements))


def render_partial(old: Sequence[ServiceText], new: Sequence[ServiceText],
                   settings: ProxierSettings) -> str:
    """One partial sync, from the changed services' shares as last applied (`old`) and now.

    The table, its base chains and the shares of unchanged services are left as they are.
    Changed services' sets are added and their chains rewritten (add, flush, rules); map and
    set elements are diffed as upstream's element storage does, so only elements that went
    (or changed) are deleted and only new (or changed) ones added; chains and affinity sets
    no longer used are deleted last. The caller makes sure no unchanged service shares an
    element key with the changed ones (else it syncs in full).
    """
    family, _, _ = _family(settings)
    prefix = f"{family} {TABLE}"
    before = {(e.target, e.key): e for t in old for e in t.elements}
    after = {(e.target, e.key): e for t in new for e in t.elements}
    gone = [e for k, e in before.items() if after.get(k) != e]
    added = [e for k, e in after.items() if before.get(k) != e]
    stale_chains = sorted(set().union(*(t.chain_names for t in old))
                          - set().union(*(t.chain_names for t in new)))
    stale_sets = sorted(set().union(*(t.set_names for t in old))
                        - set().union(*(t.set_names for t in new)))

    out = [f'add table {prefix} {{ comment "rules for kube-proxy" ; }}']
    out += [f"delete element {prefix} {e.target} {{ {e.key} }}" for e in gone]
    for text in new:
        out += text.sets
    for text in new:
        for line in text.chains:
            out += [line, f"flush chain {prefix} {line.split(' ')[4]}"]
    for text in new:
        out += text.rules
    grouped: dict[str, list[str]] = {}
    for e in added:
        grouped.setdefault(e.target, []).append(e.text)
    for target, elements in sorted(grouped.items()):
        out.append(f"add element {prefix} {target} {{ {', '.join(elements)} }}")
    # flush first: a stale service chain may still jump to a stale endpoint chain
    out += [f"flush chain {prefix} {name}" for name in stale_chains]
    out += [f"delete chain {prefix} {name}" for name in stale_chains]
    out += [f"delete set {prefix} {name}" for name in stale_sets]
    return "\n".join(out) + "\n"


def _service(tx: _Tx, svc: ServicePort, eps: Sequence[Endpoint], s: ProxierSettings,
             ipx: str, addr: str) -> None:
    n = svc.name
    S, P, port = str(n), svc.protocol, svc.port
    base = names.nft_service_base(n.namespace, n.name, P, n.port)
    cluster_chain, local_chain = names.nft_service_chain(base), names.nft_local_chain(base)
    ext, fw = names.nft_external_chain(base), names.nft_firewall_chain(base)
    cat = categorize(eps, svc, s.node_name)
    has_endpoints = cat.has_any
    plan = traffic_plan(svc, cat, cluster_chain, local_chain)
    internal_chain, has_internal = plan.internal_chain, plan.has_internal
    external_policy_chain, has_external = plan.external_chain, plan.has_external
    uses_ext, uses_fw = plan.uses_external_chain, plan.uses_firewall
    internal_verdict = external_verdict = "goto reject-chain"
    if has_endpoints:
        internal_verdict = external_verdict = "drop"

    tx.element("cluster-ips", [svc.cluster_ip])
    if has_internal:
        tx.element("service-ips", [svc.cluster_ip, P, port], f"goto {internal_chain}")
    else:
        tx.element("no-endpoint-services", [svc.cluster_ip, P, port], internal_verdict, S)
    for ip in (*svc.external_ips, *svc.load_balancer_ips):
        if has_endpoints:
            tx.element("service-ips", [ip, P, port], f"goto {ext}")
        if not has_external:
            tx.element("no-endpoint-services", [ip, P, port], external_verdict, S)
    if uses_fw:
        for vip in svc.load_balancer_ips:
            tx.element("firewall-ips", [vip, P, port], f"goto {fw}")
    if svc.node_port:
        if has_endpoints:
            tx.element("service-nodeports", [P, svc.node_port], f"goto {ext}")
        if not has_external:
            tx.element("no-endpoint-nodeports", [P, svc.node_port], external_verdict, S)

    if has_internal and (s.masquerade_all or s.local_detector.implemented):
        _ensure(tx, internal_chain)
        match = "" if s.masquerade_all else " " + s.local_detector.if_not_local_nft(ipx)
        tx.rule(internal_chain, f"{ipx} daddr {svc.cluster_ip}{match} jump mark-for-masquerade")
    if uses_ext:
        tx.chain(ext)
        if not svc.external_policy_local:
            tx.rule(ext, "jump mark-for-masquerade")
        else:
            if s.local_detector.implemented:
                tx.rule(ext, f"{s.local_detector.if_local_nft(ipx)} goto {cluster_chain}",
                        "short-circuit pod traffic")
            tx.rule(ext, "fib saddr type local jump mark-for-masquerade",
                    "masquerade local traffic")
            tx.rule(ext, f"fib saddr type local goto {cluster_chain}",
                    "short-circuit local traffic")
        if has_external:
            tx.rule(ext, f"goto {external_policy_chain}")
    if uses_fw:
        tx.chain(fw)
        sources = list(svc.load_balancer_source_ranges)
        if any(contains(c, s.node_ip) for c in sources):
            sources += svc.load_balancer_ips
        tx.rule(fw, f"{ipx} saddr != {{ {' , '.join(sources)} }} drop")

    def ep_base(ep: Endpoint) -> str:
        return names.nft_endpoint_base(n.namespace, n.name, P, n.port, ep.ip, ep.port)

    timeout = svc.session_affinity_timeout
    if timeout:
        for ep in cat.all_reachable:
            tx.sets.append(f"add set {tx.prefix} {names.nft_affinity_set(ep_base(ep))} "
                           f"{{ type {addr} ; flags dynamic,timeout ; timeout {timeout}s ; }}")
    for chain, group, used in ((cluster_chain, cat.cluster, svc.uses_cluster_endpoints),
                               (local_chain, cat.local, svc.uses_local_endpoints)):
        if not group or not used:
            continue
        _ensure(tx, chain)
        if timeout:
            for ep in group:
                tx.rule(chain, f"{ipx} saddr @{names.nft_affinity_set(ep_base(ep))} "
                        f"goto {names.nft_endpoint_chain(ep_base(ep))}")
        vmap = " , ".join(f"{i} : goto {names.nft_endpoint_chain(ep_base(ep))}"
                          for i, ep in enumerate(group))
        tx.rule(chain, f"numgen random mod {len(group)} vmap {{ {vmap} }}")
    for ep in cat.all_reachable:
        chain = names.nft_endpoint_chain(ep_base(ep))
        tx.chain(chain)
        tx.rule(chain, f"{ipx} saddr {ep.ip} jump mark-for-masquerade")
        if timeout:
            tx.rule(chain, f"update @{names.nft_affinity_set(ep_base(ep))} {{ {ipx} saddr }}")
        tx.rule(chain, f"meta l4proto {P} dnat to {ep}")


def _ensure(tx: _Tx, chain: str) -> None:
    line = f"add chain {tx.prefix} {chain}"
    if line not in tx.chains:
        tx.chains.append(line)


_ORDER = {"table": 0, "chain": 1, "rule": 2, "set": 3, "map": 4, "element": 5}


def normalize(text: str) -> str:
    """Upstream's sortNFTablesTransaction: drop blanks and comments, sort by type and name."""
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#")]

    def key(line: str) -> tuple[int, str, str]:
        words = line.split(" ")
        kind = words[1]
        if kind == "table":
            return (-1, "", "")
        name = words[4] if len(words) > 4 else ""
        return (_ORDER.get(kind, 9), name, "" if kind == "rule" else line)

    return "\n".join(sorted(lines, key=key)) + "\n"
