"""Pure: the iptables-restore input kube-proxy writes for one sync (rule_structure.md).

Owns `render(services, endpoints, settings, changed=None)`, a port of upstream
`syncProxyRules`: fixed chains, then per service port the KUBE-SERVICES / KUBE-NODEPORTS /
filter verdict rules and the KUBE-SVC/SVL/EXT/FW/SEP chains, stale-chain deletion for
`settings.existing_nat_chains`, and the jump rules kube-proxy keeps in the built-in chains
(`JUMP_RULES`; `with_jump_rules` adds missing ones to a sync's text). Each service port's share
is rendered on its own (`service_rules`), so that `render_sync` can keep them between syncs
(`Applied`) and a partial sync renders only the services that changed and writes their chains
and, as upstream's does, the top-level chains whole (so a tampered one is repaired at the next
sync). Rules are written per service in upstream's order; `normalize` (from `restore.py`)
sorts like upstream's tests. Nothing here touches the system.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from testbed.proxy import names
from testbed.proxy.model import (
    CT_STATE_INVALID_COUNTER,
    LARGE_CLUSTER_ENDPOINTS,
    LOCALHOST_NODEPORT_COUNTER,
    Endpoint,
    EndpointsMap,
    ProxierSettings,
    ServicePort,
    ServicePortName,
    categorize,
    contains,
    node_port_ips,
    traffic_plan,
)
from testbed.proxy.restore import normalize

__all__ = ["JUMP_RULES", "Applied", "JumpRule", "normalize", "render", "RenderResult",
           "render_sync", "rule_text", "ServiceRules", "service_rules", "with_jump_rules"]

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


def rule_text(rule: JumpRule) -> str:
    """The rule's arguments as iptables-restore reads them (words with spaces quoted)."""
    return " ".join(f'"{a}"' if " " in a else a for a in rule.args)


def with_jump_rules(text: str, rules: Sequence[JumpRule]) -> str:
    """`text` with `-I CHAIN 1 ...` for each rule, in order (each prepended, as one EnsureRule
    after another would), right after the line declaring the last of their target chains in
    their table (every target must be declared in `text`)."""
    lines = text.split("\n")
    table = None
    at: dict[str, int] = {}  # table -> index of the last target declaration
    for i, line in enumerate(lines):
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and any(r.table == table and line.startswith(f":{r.args[-1]} ")
                                          for r in rules):
            at[table] = i
    for table in sorted(at, key=at.get, reverse=True):
        new = [f"-I {r.chain} 1 {rule_text(r)}" for r in rules if r.table == table]
        lines[at[table] + 1:at[table] + 1] = new
    return "\n".join(lines)


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


@dataclass(frozen=True)
class ServiceRules:
    """One service port's share of a sync, rendered on its own so that it can be kept.

    `filter` and `nat_top` are (chain, rule) pairs for the shared top-level chains, in order;
    `chains` are the service's own nat chains (KUBE-SVC/SVL/EXT/FW/SEP) and `rules` theirs.
    """

    filter: tuple[tuple[str, str], ...]
    nat_top: tuple[tuple[str, str], ...]
    chains: tuple[str, ...]
    rules: tuple[str, ...]


Key = tuple[str, str]  # (namespace, name) of a service


@dataclass(frozen=True)
class Applied:
    """What a sync leaves in the kernel: each service's rules and each top-level chain's."""

    services: Mapping[Key, Mapping[ServicePortName, ServiceRules]]
    top: Mapping[tuple[str, str], tuple[str, ...]]  # (table, chain) -> its "-A" lines

    def nat_chains(self) -> set[str]:
        return {c for ports in self.services.values() for r in ports.values() for c in r.chains}


@dataclass(frozen=True)
class RenderResult:
    """One sync's restore input, and the state it leaves once applied (for the next sync)."""

    text: str
    applied: Applied


def _line(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def render(services: Sequence[ServicePort], endpoints: EndpointsMap,
           settings: ProxierSettings, changed: Collection[Key] | None = None) -> str:
    """The iptables-restore input for one sync.

    A full sync unless `settings.full_sync` is false and `changed` is given: then only the
    per-service nat chains of the (namespace, name) services in `changed` are written, as
    upstream's partial sync does; the top-level chains (`FILTER_TOP`, `NAT_TOP`, and
    KUBE-FIREWALL with localhost NodePorts) are always written in full, so that a flushed or
    edited one is repaired at the next sync, whatever kube-proxy remembers writing.
    """
    return render_sync(services, endpoints, settings, changed).text


# The top-level chains every sync writes (filter also KUBE-FIREWALL, with localhost NodePorts)
FILTER_TOP = (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, PROXY_FIREWALL)
NAT_TOP = (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)


def render_sync(services: Sequence[ServicePort], endpoints: EndpointsMap,
                settings: ProxierSettings, changed: Collection[Key] | None = None,
                previous: Applied | None = None) -> RenderResult:
    """`render`, also returning what the text leaves in place once applied.

    In a partial sync with `previous` (what the last successful sync left), only services in
    `changed` are rendered again and a changed service whose own chains came out the same is
    not written; the top-level chains are written whole on every sync, as upstream's
    syncProxyRules writes them (their lines are reused from `previous` when no service's share
    of them changed). Trusting memory there would leave a chain flushed by someone else (`iptables
    -t nat -F KUBE-SERVICES`) empty until the next full sync, an hour later. Stale chains are
    those of `settings.existing_nat_chains` no service uses, plus, with `previous`, the chains
    changed services used before and no longer do.
    """
    s = settings
    partial = not s.full_sync and changed is not None
    changed = set(changed or ())
    large = s.large_cluster_mode
    if large is None:
        total = sum(len(endpoints.get(svc.name, ())) for svc in services)
        large = total > LARGE_CLUSTER_ENDPOINTS

    before = previous.services if previous is not None and partial else {}
    now: dict[Key, dict[ServicePortName, ServiceRules]] = dict(before)
    for key in changed:
        now.pop(key, None)
    chains: list[str] = []
    rules: list[str] = []
    same_top = bool(before)  # whether the top-level chains can stay as they are
    for svc in services:
        key = svc.name.service
        if key in before and key not in changed:
            continue  # unchanged: kept from the last sync
        old = before.get(key, {}).get(svc.name)
        r = service_rules(svc, endpoints.get(svc.name, ()), s, large)
        now.setdefault(key, {})[svc.name] = r
        if (not partial or key in changed) and r != old:
            chains += r.chains
            rules += r.rules
        if old is None or (r.filter, r.nat_top) != (old.filter, old.nat_top):
            same_top = False
    stale: set[str] = set()
    if s.existing_nat_chains:
        active = Applied(now, {}).nat_chains()
        stale |= {c for c in s.existing_nat_chains if c not in active}
    for key in changed & before.keys():  # changed services as they were before
        for name, old in before[key].items():
            if name not in now.get(key, {}) and (old.filter or old.nat_top):
                same_top = False  # a port that went had lines in the top-level chains
        used = {c for r in now.get(key, {}).values() for c in r.chains}
        stale |= {c for r in before[key].values() for c in r.chains if c not in used}
    stale = {c for c in stale if names.is_service_chain(c)}

    top = dict(previous.top) if same_top and previous else _top_level(services, now, s)
    out: list[str] = []
    for table, own_chains, own_rules, deleted in (("filter", [], [], []),
                                                  ("nat", chains, rules, sorted(stale))):
        written = [c for (t, c) in top if t == table]  # every sync, as upstream
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in (*written, *own_chains, *deleted)]
        for c in written:
            out += top[(table, c)]
        out += own_rules
        out += [f"-X {c}" for c in deleted]
        out.append("COMMIT")
    return RenderResult("\n".join(out) + "\n", Applied(now, top))


def _top_level(services: Sequence[ServicePort],
               rules: Mapping[Key, Mapping[ServicePortName, ServiceRules]],
               s: ProxierSettings) -> dict[tuple[str, str], tuple[str, ...]]:
    """The rules of the shared chains, (table, chain) -> lines, from every service's share."""
    mark = s.masquerade_mark
    top: dict[tuple[str, str], list[str]] = {("filter", c): [] for c in FILTER_TOP}
    top.update({("nat", c): [] for c in NAT_TOP})
    top[("nat", POSTROUTING)] += [
        f"-A {POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
        f"-j MASQUERADE" + (" --random-fully" if s.has_random_fully else ""),
    ]
    top[("nat", MARK_MASQ)].append(f"-A {MARK_MASQ} -j MARK --or-mark {mark}")
    if not s.is_ipv6 and s.localhost_node_ports:
        top[("filter", KUBELET_FIREWALL)] = [
            f'-A {KUBELET_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
            "-j DROP"]
    for svc in services:
        r = rules[svc.name.service][svc.name]
        for chain, rule in r.filter:
            top[("filter", chain)].append(rule)
        for chain, rule in r.nat_top:
            top[("nat", chain)].append(rule)

    last = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last ' \
        'rule in this chain"'
    ips = node_port_ips(s)
    if ips is None:
        dest = "-m addrtype --dst-type LOCAL"
        if s.is_ipv6:
            dest += " ! -d ::1/128"
        elif not s.localhost_node_ports:
            dest += " ! -d 127.0.0.0/8"
        top[("nat", SERVICES)].append(f"-A {SERVICES} {last} {dest} -j {NODEPORTS}")
    else:
        for ip in ips:
            loopback = ip == "::1" or ip.startswith("127.")
            if loopback and (s.is_ipv6 or not s.localhost_node_ports):
                continue
            top[("nat", SERVICES)].append(f"-A {SERVICES} {last} -d {ip} -j {NODEPORTS}")

    forward = top[("filter", FORWARD)]
    if not s.conntrack_tcp_liberal:
        nfacct = ""
        if CT_STATE_INVALID_COUNTER in s.nfacct_counters:
            nfacct = f"-m nfacct --nfacct-name {CT_STATE_INVALID_COUNTER}"
        forward.append(_line(f"-A {FORWARD} -m conntrack --ctstate INVALID", nfacct, "-j DROP"))
    forward += [
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {mark}/{mark} -j ACCEPT",
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    return {where: tuple(lines) for where, lines in top.items()}


def service_rules(svc: ServicePort, eps: Sequence[Endpoint], s: ProxierSettings,
                  large: bool) -> ServiceRules:
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

    # what traffic gets where the rules send nowhere (internal and external alike)
    target = "DROP" if has_endpoints else "REJECT"
    comment = f'"{S} has no local endpoints"' if has_endpoints else f'"{S} has no endpoints"'
    pp = f"-m {P} -p {P}"
    port = svc.port
    nat: list[tuple[str, str]] = []
    flt: list[tuple[str, str]] = []

    def no_external(match: str) -> None:
        flt.append((EXTERNAL_SERVICES, f"-A {EXTERNAL_SERVICES} -m comment --comment {comment} "
                                       f"{match} -j {target}"))

    if has_internal:
        nat.append((SERVICES, f'-A {SERVICES} -m comment --comment "{S} cluster IP" {pp} '
                              f"-d {svc.cluster_ip} --dport {port} -j {internal_chain}"))
    else:
        flt.append((SERVICES, f"-A {SERVICES} -m comment --comment {comment} {pp} "
                              f"-d {svc.cluster_ip} --dport {port} -j {target}"))
    for eip in svc.external_ips:
        if has_endpoints:
            nat.append((SERVICES, f'-A {SERVICES} -m comment --comment "{S} external IP" {pp} '
                                  f"-d {eip} --dport {port} -j {ext}"))
        if not has_external:
            no_external(f"{pp} -d {eip} --dport {port}")
    for vip in svc.load_balancer_ips:
        if has_endpoints:
            nat.append((SERVICES, f'-A {SERVICES} -m comment --comment "{S} loadbalancer IP" '
                                  f"{pp} -d {vip} --dport {port} -j {lb_chain}"))
        if uses_fw:
            flt.append((PROXY_FIREWALL,
                        f'-A {PROXY_FIREWALL} -m comment --comment "{S} traffic not accepted '
                        f'by {fw}" {pp} -d {vip} --dport {port} -j DROP'))
        if not has_external:
            no_external(f"{pp} -d {vip} --dport {port}")
    if svc.node_port:
        np = svc.node_port
        if has_endpoints:
            if (s.localhost_node_ports and not s.is_ipv6
                    and LOCALHOST_NODEPORT_COUNTER in s.nfacct_counters):
                nat.append((NODEPORTS, f"-A {NODEPORTS} -m comment --comment {S} {pp} "
                                       f"-d 127.0.0.0/8 --dport {np} -m nfacct --nfacct-name "
                                       f"{LOCALHOST_NODEPORT_COUNTER} -j {ext}"))
            nat.append((NODEPORTS, f"-A {NODEPORTS} -m comment --comment {S} {pp} "
                                   f"--dport {np} -j {ext}"))
        if not has_external:
            no_external(f"-m addrtype --dst-type LOCAL {pp} --dport {np}")
    if svc.health_check_node_port:
        flt.append((NODEPORTS, f'-A {NODEPORTS} -m comment --comment "{S} health check node '
                               f'port" -m tcp -p tcp --dport {svc.health_check_node_port} '
                               "-j ACCEPT"))

    # The service's own nat chains.
    chains: list[str] = []
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
        chains.append(ext)
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
        chains.append(fw)
        head = f'-A {fw} -m comment --comment "{S} loadbalancer IP"'
        allow_from_node = False
        for cidr in svc.load_balancer_source_ranges:
            rules.append(f"{head} -s {cidr} -j {ext}")
            allow_from_node = allow_from_node or contains(cidr, s.node_ip)
        if allow_from_node:
            rules += [f"{head} -s {vip} -j {ext}" for vip in svc.load_balancer_ips]
        rules.append(f'-A {fw} -m comment --comment "other traffic to {S} will be dropped by '
                     f'{PROXY_FIREWALL}"')
    seps = {ep: ep.sep_chain(svc.name) for ep in cat.all_reachable}
    if uses_cluster_chain:
        chains.append(svc_chain)
        rules += _to_endpoints(svc, svc_chain, cat.cluster, seps, large)
    if uses_local_chain:
        chains.append(svl_chain)
        rules += _to_endpoints(svc, svl_chain, cat.local, seps, large)
    for ep in cat.all_reachable:
        sep = seps[ep]
        chains.append(sep)
        comment = "" if large else f"-m comment --comment {S}"
        rules.append(_line(f"-A {sep}", comment, f"-s {ep.ip} -j {MARK_MASQ}"))
        recent = f"-m recent --name {sep} --set" if svc.session_affinity_timeout else ""
        rules.append(_line(f"-A {sep}", comment, recent, f"{pp} -j DNAT --to-destination {ep}"))
    return ServiceRules(tuple(flt), tuple(nat), tuple(chains), tuple(rules))


def _to_endpoints(svc: ServicePort, chain: str, eps: Sequence[Endpoint],
                  seps: Mapping[Endpoint, str], large: bool) -> list[str]:
    """writeServiceToEndpointRules: affinity checks, then the probability cascade."""
    S = str(svc.name)
    out: list[str] = []

    def comment(ep: Endpoint) -> str:
        return "" if large else f'-m comment --comment "{S} -> {ep}"'

    if svc.session_affinity_timeout:
        for ep in eps:
            sep = seps[ep]
            out.append(_line(f"-A {chain}", comment(ep), f"-m recent --name {sep} --rcheck "
                             f"--seconds {svc.session_affinity_timeout} --reap -j {sep}"))
    n = len(eps)
    for i, ep in enumerate(eps):
        sep = seps[ep]
        prob = "" if i == n - 1 else \
            f"-m statistic --mode random --probability {1.0 / (n - i):.10f}"
        out.append(_line(f"-A {chain}", comment(ep), prob, f"-j {sep}"))
    return out
