"""Pure: the iptables-restore input kube-proxy writes for one sync (rule_structure.md).

Owns `render(services, endpoints, settings, changed=None)`, a port of upstream
`syncProxyRules`: fixed chains, then per service port the KUBE-SERVICES / KUBE-NODEPORTS /
filter verdict rules and the KUBE-SVC/SVL/EXT/FW/SEP chains, stale-chain deletion for
`settings.existing_nat_chains`, and the jump rules the net layer must ensure in the built-in
chains (`JUMP_RULES`). Rules are written per service in upstream's order; `normalize` (from
`restore.py`) sorts like upstream's tests. Nothing here touches the system.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from testbed.proxy import names
from testbed.proxy.model import (
    CT_STATE_INVALID_COUNTER,
    LARGE_CLUSTER_ENDPOINTS,
    LOCALHOST_NODEPORT_COUNTER,
    Endpoint,
    EndpointsMap,
    ProxierSettings,
    ServicePort,
    categorize,
    contains,
    node_port_ips,
    traffic_plan,
)
from testbed.proxy.restore import normalize

__all__ = ["JUMP_RULES", "JumpRule", "normalize", "render", "RenderResult", "render_sync"]

# Fixed chain names
SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"


@dataclass(frozen=True)
class JumpRule:
    """A rule kube-proxy ensures (prepends) in a built-in chain at every full sync."""

    table: str
    chain: str
    args: tuple[str, ...]


def _jump(table: str, chain: str, extra: tuple[str, ...], comment: str, dst: str) -> JumpRule:
    args = extra + (("-m", "comment", "--comment", comment) if comment else ()) + ("-j", dst)
    return JumpRule(table, chain, args)


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
# iptablesJumpChains + iptablesKubeletJumpChains, in processing order (each is prepended).
JUMP_RULES: tuple[JumpRule, ...] = (
    _jump("filter", "INPUT", _NEW, "kubernetes externally-visible service portals",
          EXTERNAL_SERVICES),
    _jump("filter", "FORWARD", _NEW, "kubernetes externally-visible service portals",
          EXTERNAL_SERVICES),
    _jump("filter", "INPUT", (), "kubernetes health check service ports", NODEPORTS),
    _jump("filter", "FORWARD", _NEW, "kubernetes service portals", SERVICES),
    _jump("filter", "OUTPUT", _NEW, "kubernetes service portals", SERVICES),
    _jump("filter", "FORWARD", (), "kubernetes forwarding rules", FORWARD),
    _jump("filter", "INPUT", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("filter", "OUTPUT", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("filter", "FORWARD", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("nat", "OUTPUT", (), "kubernetes service portals", SERVICES),
    _jump("nat", "PREROUTING", (), "kubernetes service portals", SERVICES),
    _jump("nat", "POSTROUTING", (), "kubernetes postrouting rules", POSTROUTING),
    _jump("filter", "INPUT", (), "", KUBELET_FIREWALL),
    _jump("filter", "OUTPUT", (), "", KUBELET_FIREWALL),
)


@dataclass
class _Buffers:
    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    active_nat: set[str] = field(default_factory=set)

    def chain(self, name: str, write: bool) -> None:
        """A per-service nat chain: always active, written only when not skipped."""
        self.active_nat.add(name)
        if write:
            self.nat_chains.append(f":{name} - [0:0]")


def _line(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class RenderResult:
    """One sync's restore input and the nat chains it keeps (for the next stale check)."""

    text: str
    active_nat_chains: frozenset[str]


def render(services: Sequence[ServicePort], endpoints: EndpointsMap,
           settings: ProxierSettings, changed: Collection[tuple[str, str]] | None = None) -> str:
    """The iptables-restore input for one sync.

    A full sync unless `settings.full_sync` is false and `changed` is given: then only the
    per-service nat chains of the (namespace, name) services in `changed` are written, as
    upstream's partial sync does; top-level chains are always written in full.
    """
    return render_sync(services, endpoints, settings, changed).text


def render_sync(services: Sequence[ServicePort], endpoints: EndpointsMap,
                settings: ProxierSettings,
                changed: Collection[tuple[str, str]] | None = None) -> RenderResult:
    """`render`, also returning the active nat chains."""
    s = settings
    mark = s.masquerade_mark
    b = _Buffers()
    partial = not s.full_sync and changed is not None
    for name in (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, PROXY_FIREWALL):
        b.filter_chains.append(f":{name} - [0:0]")
    for name in (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ):
        b.nat_chains.append(f":{name} - [0:0]")
    b.nat_rules += [
        f"-A {POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
        f"-j MASQUERADE" + (" --random-fully" if s.has_random_fully else ""),
        f"-A {MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    if not s.is_ipv6 and s.localhost_node_ports:
        b.filter_chains.append(f":{KUBELET_FIREWALL} - [0:0]")
        b.filter_rules.append(
            f'-A {KUBELET_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
            "-j DROP")

    large = s.large_cluster_mode
    if large is None:
        total = sum(len(endpoints.get(svc.name, ())) for svc in services)
        large = total > LARGE_CLUSTER_ENDPOINTS
    for svc in services:
        write = not partial or svc.name.service in (changed or ())
        _service_rules(b, svc, endpoints.get(svc.name, ()), s, write, large)

    for chain in sorted(set(s.existing_nat_chains) - b.active_nat):
        if names.is_service_chain(chain):
            b.nat_chains.append(f":{chain} - [0:0]")
            b.nat_rules.append(f"-X {chain}")

    last = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last ' \
        'rule in this chain"'
    ips = node_port_ips(s)
    if ips is None:
        dest = "-m addrtype --dst-type LOCAL"
        if s.is_ipv6:
            dest += " ! -d ::1/128"
        elif not s.localhost_node_ports:
            dest += " ! -d 127.0.0.0/8"
        b.nat_rules.append(f"-A {SERVICES} {last} {dest} -j {NODEPORTS}")
    else:
        for ip in ips:
            loopback = ip == "::1" or ip.startswith("127.")
            if loopback and (s.is_ipv6 or not s.localhost_node_ports):
                continue
            b.nat_rules.append(f"-A {SERVICES} {last} -d {ip} -j {NODEPORTS}")

    if not s.conntrack_tcp_liberal:
        nfacct = ""
        if CT_STATE_INVALID_COUNTER in s.nfacct_counters:
            nfacct = f"-m nfacct --nfacct-name {CT_STATE_INVALID_COUNTER}"
        b.filter_rules.append(_line(f"-A {FORWARD} -m conntrack --ctstate INVALID", nfacct,
                                    "-j DROP"))
    b.filter_rules += [
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {mark}/{mark} -j ACCEPT",
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    lines = ["*filter", *b.filter_chains, *b.filter_rules, "COMMIT",
             "*nat", *b.nat_chains, *b.nat_rules, "COMMIT"]
    return RenderResult("\n".join(lines) + "\n", frozenset(b.active_nat))


def _service_rules(b: _Buffers, svc: ServicePort, eps: Sequence[Endpoint],
                   s: ProxierSettings, write: bool, large: bool) -> None:
    """Everything one service port contributes (rule_structure.md section 3, in order)."""
    S, P = str(svc.name), svc.protocol
    cat = categorize(eps, svc, s.node_name)
    has_endpoints = cat.has_any
    svc_chain, svl_chain, ext, fw = svc.svc_chain, svc.svl_chain, svc.ext_chain, svc.fw_chain
    uses_cluster_chain = bool(cat.cluster) and svc.uses_cluster_endpoints
    uses_local_chain = bool(cat.local) and svc.uses_local_endpoints
    plan = traffic_plan(svc, cat, svc_chain, svl_chain)
    internal_chain, has_internal = plan.internal_chain, plan.has_internal
    external_policy_chain, has_external = plan.external_chain, plan.has_external
    uses_ext_chain, uses_fw = plan.uses_external_chain, plan.uses_firewall
    lb_chain = fw if uses_fw else ext

    if not has_endpoints:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f'"{S} has no endpoints"'
    else:
        int_target = ext_target = "DROP"
        int_comment = ext_comment = f'"{S} has no local endpoints"'
    pp = f"-m {P} -p {P}"
    port = svc.port
    nat, flt = b.nat_rules, b.filter_rules

    if has_internal:
        nat.append(f'-A {SERVICES} -m comment --comment "{S} cluster IP" {pp} '
                   f"-d {svc.cluster_ip} --dport {port} -j {internal_chain}")
    else:
        flt.append(f"-A {SERVICES} -m comment --comment {int_comment} {pp} "
                   f"-d {svc.cluster_ip} --dport {port} -j {int_target}")
    for eip in svc.external_ips:
        if has_endpoints:
            nat.append(f'-A {SERVICES} -m comment --comment "{S} external IP" {pp} '
                       f"-d {eip} --dport {port} -j {ext}")
        if not has_external:
            flt.append(f"-A {EXTERNAL_SERVICES} -m comment --comment {ext_comment} {pp} "
                       f"-d {eip} --dport {port} -j {ext_target}")
    for vip in svc.load_balancer_ips:
        if has_endpoints:
            nat.append(f'-A {SERVICES} -m comment --comment "{S} loadbalancer IP" {pp} '
                       f"-d {vip} --dport {port} -j {lb_chain}")
        if uses_fw:
            flt.append(f'-A {PROXY_FIREWALL} -m comment --comment "{S} traffic not accepted '
                       f'by {fw}" {pp} -d {vip} --dport {port} -j DROP')
    if not has_external:
        for vip in svc.load_balancer_ips:
            flt.append(f"-A {EXTERNAL_SERVICES} -m comment --comment {ext_comment} {pp} "
                       f"-d {vip} --dport {port} -j {ext_target}")
    if svc.node_port:
        np = svc.node_port
        if has_endpoints:
            if (s.localhost_node_ports and not s.is_ipv6
                    and LOCALHOST_NODEPORT_COUNTER in s.nfacct_counters):
                nat.append(f"-A {NODEPORTS} -m comment --comment {S} {pp} -d 127.0.0.0/8 "
                           f"--dport {np} -m nfacct --nfacct-name {LOCALHOST_NODEPORT_COUNTER} "
                           f"-j {ext}")
            nat.append(f"-A {NODEPORTS} -m comment --comment {S} {pp} --dport {np} -j {ext}")
        if not has_external:
            flt.append(f"-A {EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                       f"-m addrtype --dst-type LOCAL {pp} --dport {np} -j {ext_target}")
    if svc.health_check_node_port:
        flt.append(f'-A {NODEPORTS} -m comment --comment "{S} health check node port" '
                   f"-m tcp -p tcp --dport {svc.health_check_node_port} -j ACCEPT")

    # Per-service nat chains: skipped (but still active) in a partial sync.
    rules: list[str] = []
    if has_internal:
        args = (f'-m comment --comment "{S} cluster IP" {pp} -d {svc.cluster_ip} '
                f"--dport {port}")
        if s.masquerade_all:
            rules.append(f"-A {internal_chain} {args} -j {MARK_MASQ}")
        elif s.local_detector.implemented:
            rules.append(f"-A {internal_chain} {args} "
                         f"{' '.join(s.local_detector.if_not_local())} -j {MARK_MASQ}")
    if uses_ext_chain:
        b.chain(ext, write)
        if not svc.external_policy_local:
            rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {S} external '
                         f'destinations" -j {MARK_MASQ}')
        else:
            if s.local_detector.implemented:
                rules.append(f'-A {ext} -m comment --comment "pod traffic for {S} external '
                             f'destinations" {" ".join(s.local_detector.if_local())} '
                             f"-j {svc_chain}")
            rules.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {S} '
                         f'external destinations" -m addrtype --src-type LOCAL -j {MARK_MASQ}')
            rules.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {S} '
                         f'external destinations" -m addrtype --src-type LOCAL -j {svc_chain}')
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    if uses_fw:
        b.chain(fw, write)
        head = f'-A {fw} -m comment --comment "{S} loadbalancer IP"'
        allow_from_node = False
        for cidr in svc.load_balancer_source_ranges:
            rules.append(f"{head} -s {cidr} -j {ext}")
            allow_from_node = allow_from_node or contains(cidr, s.node_ip)
        if allow_from_node:
            rules += [f"{head} -s {vip} -j {ext}" for vip in svc.load_balancer_ips]
        rules.append(f'-A {fw} -m comment --comment "other traffic to {S} will be dropped by '
                     f'{PROXY_FIREWALL}"')
    if uses_cluster_chain:
        b.chain(svc_chain, write)
        if write:
            rules += _to_endpoints(svc, svc_chain, cat.cluster, large)
    if uses_local_chain:
        b.chain(svl_chain, write)
        if write:
            rules += _to_endpoints(svc, svl_chain, cat.local, large)
    for ep in cat.all_reachable:
        sep = ep.sep_chain(svc.name)
        b.chain(sep, write)
        if not write:  # still active: only its name is needed
            continue
        comment = "" if large else f"-m comment --comment {S}"
        rules.append(_line(f"-A {sep}", comment, f"-s {ep.ip} -j {MARK_MASQ}"))
        recent = f"-m recent --name {sep} --set" if svc.session_affinity_timeout else ""
        rules.append(_line(f"-A {sep}", comment, recent, f"{pp} -j DNAT --to-destination {ep}"))
    if write:
        nat.extend(rules)


def _to_endpoints(svc: ServicePort, chain: str, eps: Sequence[Endpoint],
                  large: bool) -> list[str]:
    """writeServiceToEndpointRules: affinity checks, then the probability cascade."""
    S = str(svc.name)
    out: list[str] = []

    def comment(ep: Endpoint) -> str:
        return "" if large else f'-m comment --comment "{S} -> {ep}"'

    if svc.session_affinity_timeout:
        for ep in eps:
            sep = ep.sep_chain(svc.name)
            out.append(_line(f"-A {chain}", comment(ep), f"-m recent --name {sep} --rcheck "
                             f"--seconds {svc.session_affinity_timeout} --reap -j {sep}"))
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = ep.sep_chain(svc.name)
        prob = "" if i == n - 1 else \
            f"-m statistic --mode random --probability {1.0 / (n - i):.10f}"
        out.append(_line(f"-A {chain}", comment(ep), prob, f"-j {sep}"))
    return out
