"""Pure: Kubernetes Service and EndpointSlice dicts -> `ServicePort`s and endpoints.

Owns the reading of API objects the way kube-proxy's change trackers do (serviceport.go,
endpointslicecache.go): sloppy IP parsing (leading zeros are decimal, as Go's ParseIPSloppy),
IP-family filtering, endpoint de-duplication, skipping headless and ExternalName services.
Every problem is returned as an `Issue` with the path of the offending field, worded by the API
server's Checker (`IssueChecker`); the caller decides whether that is fatal (a case file:
SpecError) or a skipped object (a running kube-proxy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import object_key
from testbed.api.pods import PROTOCOLS
from testbed.proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    Endpoint,
    ServicePort,
    ServicePortName,
    in_family,
)
from testbed.spec.validation import Checker, is_cidr, is_ip, parse_ip

Path = tuple[str | int, ...]
IP_WORDS = is_ip("-")[0]      # the API server's words for a bad IP address,
CIDR_WORDS = is_cidr("-")[0]  # and for a bad CIDR


@dataclass(frozen=True)
class Issue:
    """One problem in one object: the path of the field (from the object list) and why."""

    path: Path
    message: str


def parse_cidr(text: Any) -> str | None:
    """Go ParseCIDRSloppy + IPNet.String(): the masked network, "203.0.113.000/025" -> .../25."""
    if not isinstance(text, str) or text.count("/") != 1:
        return None
    ip_text, _, bits = text.partition("/")
    ip = parse_ip(ip_text)
    if ip is None or not bits.isdigit() or not bits.isascii():
        return None
    try:
        return str(ipaddress.ip_network(f"{ip}/{int(bits, 10)}", strict=False))
    except ValueError:
        return None


class IssueChecker(Checker):
    """The API server's field reader (testbed.spec.validation.Checker), worded as it words
    faults, collecting `Issue`s (bare paths) for callers without a document: a running
    kube-proxy skips what is wrong, a case file turns them into file:line problems."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__()
        self.issues = issues

    def add(self, path: Path, message: str) -> None:
        self.issues.append(Issue(tuple(path), message))

    def mapping(self, obj: Any, path: Path, required: bool = False) -> Mapping[str, Any]:
        if obj is None:
            if required:
                self.required(path)
            return {}
        return obj if self.is_type(path, obj, "object") else {}

    def seq(self, obj: Any, path: Path) -> list[Any]:
        if obj is None:
            return []
        return obj if self.is_type(path, obj, "array") else []

    def choice(self, obj: Mapping[str, Any], key: str, path: Path, default: str | None = None,
               choices: Iterable[str] | None = None) -> str | None:
        """A string field (required when there is no default), from `choices` if given."""
        value = obj.get(key)
        if value is None:
            if default is None:
                self.required(path + (key,))
            return default
        if not self.is_type(path + (key,), value, "string"):
            return default
        if choices is not None and value not in choices:
            self.unsupported(path + (key,), value, list(choices))
            return default
        return value

    def port_number(self, obj: Mapping[str, Any], key: str, path: Path, required: bool) -> int:
        """Checker.port, with 0 for a missing or bad port."""
        return self.port(dict(obj), key, path, required) or 0

    def ips(self, values: Any, path: Path, family: str, cidr: bool = False) -> tuple[str, ...]:
        out: list[str] = []
        for i, raw in enumerate(self.seq(values, path)):
            text = raw.strip() if cidr and isinstance(raw, str) else raw
            ip = parse_cidr(text) if cidr else parse_ip(text)
            if ip is None:
                self.invalid(path + (i,), raw, CIDR_WORDS if cidr else IP_WORDS)
            elif in_family(ip, family):
                out.append(ip)
        return tuple(out)


def service_ports(obj: Mapping[str, Any], path: Path, family: str,
                  issues: list[Issue]) -> list[ServicePort]:
    """The ports of one Service as kube-proxy sees them; [] for services it skips."""
    r = IssueChecker(issues)
    meta = r.mapping(obj.get("metadata"), path + ("metadata",), required=True)
    spec = r.mapping(obj.get("spec"), path + ("spec",), required=True)
    status = r.mapping(obj.get("status"), path + ("status",))
    mpath, spath = path + ("metadata",), path + ("spec",)
    ns = r.choice(meta, "namespace", mpath, default="default")
    name = r.choice(meta, "name", mpath)
    svc_type = r.choice(spec, "type", spath, default="ClusterIP",
                        choices=("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"))
    if svc_type == "ExternalName":
        return []
    cluster_ip_raw = spec.get("clusterIP")
    if cluster_ip_raw is None:
        r.required(spath + ("clusterIP",), '"None" for a headless service')
        return []
    if cluster_ip_raw in ("", "None"):
        return []
    cluster_ip = parse_ip(cluster_ip_raw)
    if cluster_ip is None:
        r.invalid(spath + ("clusterIP",), cluster_ip_raw, IP_WORDS)
    external_ips = r.ips(spec.get("externalIPs"), spath + ("externalIPs",), family)
    ranges = r.ips(spec.get("loadBalancerSourceRanges"), spath + ("loadBalancerSourceRanges",),
                  family, cidr=True)
    lb_ips: list[str] = []
    lb = r.mapping(status.get("loadBalancer"), path + ("status", "loadBalancer"))
    ipath = path + ("status", "loadBalancer", "ingress")
    for i, ing in enumerate(r.seq(lb.get("ingress"), ipath)):
        ing = r.mapping(ing, ipath + (i,))
        if not ing.get("ip") or ing.get("ipMode") == "Proxy":
            continue
        ip = parse_ip(ing["ip"])
        if ip is None:
            r.invalid(ipath + (i, "ip"), ing["ip"], IP_WORDS)
        elif in_family(ip, family):
            lb_ips.append(ip)
    etp = r.choice(spec, "externalTrafficPolicy", spath, default="Cluster",
                   choices=("Cluster", "Local"))
    itp = r.choice(spec, "internalTrafficPolicy", spath, default="Cluster",
                   choices=("Cluster", "Local"))
    affinity = r.choice(spec, "sessionAffinity", spath, default="None",
                        choices=("None", "ClientIP"))
    timeout = None
    if affinity == "ClientIP":
        cfg = r.mapping(spec.get("sessionAffinityConfig"), spath + ("sessionAffinityConfig",))
        cpath = spath + ("sessionAffinityConfig", "clientIP")
        client = r.mapping(cfg.get("clientIP"), cpath)
        timeout = client.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            r.invalid(cpath + ("timeoutSeconds",), timeout, "must be greater than 0")
            timeout = DEFAULT_AFFINITY_TIMEOUT
    etp_local = svc_type in ("NodePort", "LoadBalancer") and etp == "Local"
    hc = r.port_number(spec, "healthCheckNodePort", spath, required=False)
    hc = hc if svc_type == "LoadBalancer" and etp_local else 0

    ports_raw = spec.get("ports")
    if ports_raw is None:
        r.required(spath + ("ports",))
    out: list[ServicePort] = []
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(r.seq(ports_raw, spath + ("ports",))):
        ppath = spath + ("ports", i)
        p = r.mapping(p, ppath)
        pname = r.choice(p, "name", ppath, default="")
        proto = r.choice(p, "protocol", ppath, default="TCP", choices=PROTOCOLS)
        port = r.port_number(p, "port", ppath, required=True)
        node_port = r.port_number(p, "nodePort", ppath, required=False)
        if (pname, proto) in seen:
            r.duplicate(ppath + ("name",), pname, f"a second {proto} port of that name")
        seen.add((pname or "", proto or "TCP"))
        if None in (ns, name, cluster_ip, pname, proto) or not port:
            continue
        out.append(ServicePort(
            name=ServicePortName(ns, name, pname, proto), cluster_ip=cluster_ip, port=port,
            node_port=node_port, external_ips=external_ips, load_balancer_ips=tuple(lb_ips),
            load_balancer_source_ranges=ranges, session_affinity_timeout=timeout,
            external_policy_local=etp_local, internal_policy_local=itp == "Local",
            health_check_node_port=hc))
    if cluster_ip is not None and not in_family(cluster_ip, family):
        return []  # a service of the other family belongs to the other proxier
    return out


def slice_endpoints(obj: Mapping[str, Any], path: Path, family: str,
                    issues: list[Issue]) -> dict[ServicePortName, list[Endpoint]]:
    """The endpoints one EndpointSlice contributes, per service port name and protocol."""
    r = IssueChecker(issues)
    mpath = path + ("metadata",)
    meta = r.mapping(obj.get("metadata"), mpath, required=True)
    ns = r.choice(meta, "namespace", mpath, default="default")
    labels = r.mapping(meta.get("labels"), mpath + ("labels",))
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        r.required(mpath + ("labels",), f"the label {SERVICE_NAME_LABEL}")
    address_type = r.choice(obj, "addressType", path, default="IPv4",
                            choices=("IPv4", "IPv6", "FQDN"))
    ports: list[tuple[str, str, int]] = []
    for i, p in enumerate(r.seq(obj.get("ports"), path + ("ports",))):
        ppath = path + ("ports", i)
        p = r.mapping(p, ppath)
        pname = r.choice(p, "name", ppath, default="")
        proto = r.choice(p, "protocol", ppath, default="TCP", choices=PROTOCOLS)
        port = r.port_number(p, "port", ppath, required=True)
        if pname is not None and proto is not None and port:
            ports.append((pname, proto, port))
    eps: list[tuple[str, bool, bool, bool, str | None]] = []
    for i, ep in enumerate(r.seq(obj.get("endpoints"), path + ("endpoints",))):
        epath = path + ("endpoints", i)
        ep = r.mapping(ep, epath)
        addrs = r.seq(ep.get("addresses"), epath + ("addresses",))
        if not addrs:
            r.required(epath + ("addresses",))
            continue
        ip = parse_ip(addrs[0])
        if ip is None:
            r.invalid(epath + ("addresses", 0), addrs[0], IP_WORDS)
            continue
        cond = r.mapping(ep.get("conditions"), epath + ("conditions",))
        flags = []
        for key, default in (("ready", True), ("serving", True), ("terminating", False)):
            value = cond.get(key, default)
            if value is None:
                value = default
            if not r.is_type(epath + ("conditions", key), value, "boolean"):
                value = default
            flags.append(value)
        node = ep.get("nodeName")
        if node is not None and not r.is_type(epath + ("nodeName",), node, "string"):
            node = None
        eps.append((ip, flags[0], flags[1], flags[2], node))
    if not service or address_type != family:
        return {}
    out: dict[ServicePortName, list[Endpoint]] = {}
    for pname, proto, port in ports:
        spn = ServicePortName(ns or "default", service, pname, proto)
        out[spn] = [Endpoint(ip, port, ready, serving, term, node)
                    for ip, ready, serving, term, node in eps if in_family(ip, family)]
    return out


@dataclass(frozen=True)
class ProxyState:
    """Everything one sync renders from: service ports and their endpoints."""

    services: tuple[ServicePort, ...]
    endpoints: Mapping[ServicePortName, tuple[Endpoint, ...]]


def merge_slices(slices: Iterable[Mapping[ServicePortName, Sequence[Endpoint]]],
                 ) -> dict[ServicePortName, tuple[Endpoint, ...]]:
    """Slices' endpoints per service port, merged in the order given (slice name order);
    for a duplicate "ip:port" a non-terminating copy wins; each port's endpoints sorted."""
    merged: dict[ServicePortName, dict[str, Endpoint]] = {}
    for per_port in slices:
        for spn, eps in per_port.items():
            bucket = merged.setdefault(spn, {})
            for ep in eps:
                if str(ep) not in bucket or not ep.terminating:
                    bucket[str(ep)] = ep
    return {spn: tuple(sorted(b.values(), key=str)) for spn, b in merged.items()}


def build_state(objects: Iterable[Mapping[str, Any]], family: str, path: Path = ("objects",),
                ) -> tuple[ProxyState, list[Issue]]:
    """Services and EndpointSlices (any order, other kinds ignored) -> a ProxyState."""
    issues: list[Issue] = []
    r = IssueChecker(issues)
    services: list[ServicePort] = []
    slices: list[tuple[tuple[str, str], dict[ServicePortName, list[Endpoint]]]] = []
    for i, obj in enumerate(objects):
        if not r.is_type(path + (i,), obj, "object"):
            continue
        kind = obj.get("kind")
        if kind == "Service":
            ports = service_ports(obj, path + (i,), family, issues)
            if ports and any(p.name.service == ports[0].name.service for p in services):
                r.duplicate(path + (i, "metadata", "name"), ports[0].name.name,
                            f"Service {ports[0].name.namespace}/{ports[0].name.name} is "
                            "defined twice")
                continue
            services.extend(ports)
        elif kind == "EndpointSlice":
            key = object_key(obj) if isinstance(obj.get("metadata"), Mapping) else ("default", "")
            slices.append((key, slice_endpoints(obj, path + (i,), family, issues)))
        elif kind is None:
            r.required(path + (i, "kind"))
    endpoints = merge_slices(per_port for _, per_port in sorted(slices, key=lambda s: s[0]))
    services.sort(key=lambda s: (str(s.name), s.name.protocol))
    return ProxyState(tuple(services), endpoints), issues
