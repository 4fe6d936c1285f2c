"""Pure: validation and defaults for Services (v1).

Follows k8s ValidateService for the fields kube-proxy and the controllers act on. Defaults as
the API server fills them: type ClusterIP, port protocol TCP, targetPort = port,
sessionAffinity None (ClientIP gets sessionAffinityConfig.clientIP.timeoutSeconds 10800),
internalTrafficPolicy Cluster, externalTrafficPolicy Cluster for NodePort and LoadBalancer.
Whether a clusterIP or nodePort is inside the cluster's ranges and free is the allocators'
business (testbed/api/allocators.py), as in Kubernetes.
"""

from __future__ import annotations

from testbed.api.meta import check_metadata
from testbed.api.pods import PROTOCOLS
from testbed.api.schema import field_names
from testbed.api.schema_base import CORE
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    check_labels,
    is_cidr,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ipv4,
    is_non_special_ip,
    is_port_name,
    is_port_number,
)

# Sorted, as upstream lists them (sets.List)
SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
SESSION_AFFINITIES = ["ClientIP", "None"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400

# What each object may hold: the schema's fields (testbed/api/schema_core.py).
SERVICE_SPEC_FIELDS = field_names(CORE + "ServiceSpec")
SERVICE_PORT_FIELDS = field_names(CORE + "ServicePort")
AFFINITY_CONFIG_FIELDS = field_names(CORE + "SessionAffinityConfig")
CLIENT_IP_FIELDS = field_names(CORE + "ClientIPConfig")


def check_service(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj, name_rule="dns1035")
    spec = ck.obj(obj, "spec", path, SERVICE_SPEC_FIELDS)
    if spec is None:
        if obj.get("spec") is None:
            obj["spec"] = spec = {}
        else:
            return
    p = path + ("spec",)
    kind = ck.enum(spec, "type", p, SERVICE_TYPES, default="ClusterIP")
    external = kind in ("NodePort", "LoadBalancer")
    check_labels(ck, p + ("selector",), spec.get("selector"))
    ck.get(spec, "publishNotReadyAddresses", p, "boolean")

    cluster_ip = ck.get(spec, "clusterIP", p, "string")
    headless = cluster_ip == "None"
    if cluster_ip and not headless:
        ck.names(p + ("clusterIP",), cluster_ip, is_ipv4(cluster_ip))
    if headless and external:
        ck.invalid(p + ("clusterIP",), cluster_ip,
                   "may not be set to 'None' for LoadBalancer or NodePort services")
    if kind == "ExternalName":
        name = ck.get(spec, "externalName", p, "string", required=True)
        if name is not None:
            ck.names(p + ("externalName",), name.rstrip("."), is_dns1123_subdomain(name.rstrip(".")))
        if cluster_ip:
            ck.forbidden(p + ("clusterIP",), "may not be set for ExternalName services")
    for ipath, ip in ck.items(spec, "externalIPs", p):
        if ck.is_type(ipath, ip, "string") and ck.names(ipath, ip, is_ipv4(ip)):
            ck.names(ipath, ip, is_non_special_ip(ip))
    _check_ip_families(ck, p, spec)

    _check_ports(ck, p, spec, kind, headless)
    _check_affinity(ck, p, spec)
    _check_traffic_policies(ck, p, spec, kind)
    _check_load_balancer(ck, p, spec, kind)


def _check_ip_families(ck: Checker, p: Path_, spec: dict) -> None:
    """validateServiceFields' ipFamilies (each IPv4 or IPv6, none twice) and ipFamilyPolicy."""
    seen: set[str] = set()
    for fpath, family in ck.items(spec, "ipFamilies", p):
        if not ck.is_type(fpath, family, "string"):
            continue
        if family not in IP_FAMILIES:
            ck.unsupported(fpath, family, IP_FAMILIES)
        if family in seen:
            ck.duplicate(fpath, family)
        seen.add(family)
    ck.enum(spec, "ipFamilyPolicy", p, IP_FAMILY_POLICIES)


def _check_ports(ck: Checker, p: Path_, spec: dict, kind: str | None, headless: bool) -> None:
    ports = ck.items(spec, "ports", p)
    # As upstream: a Service needs a port (an empty list as much as none), unless it is
    # headless or an ExternalName.
    if not ports and kind != "ExternalName" and not headless:
        ck.required(p + ("ports",))
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for pp, item in ports:
        port = ck.fields(pp, item, SERVICE_PORT_FIELDS)
        if port is None:
            continue
        name = ck.get(port, "name", pp, "string")
        if not name and len(ports) > 1:
            ck.required(pp + ("name",))
        elif name:
            if ck.names(pp + ("name",), name, is_dns1123_label(name)) and name in names:
                ck.duplicate(pp + ("name",), name)
            names.add(name)
        number = ck.port(port, "port", pp, required=True)
        protocol = ck.enum(port, "protocol", pp, PROTOCOLS, default="TCP")
        if number is not None and protocol is not None:
            if (number, protocol) in seen:
                ck.duplicate(pp, f"{number}/{protocol}")
            seen.add((number, protocol))
        target = port.get("targetPort")
        if target is None:
            if number is not None:
                port["targetPort"] = number
        elif isinstance(target, str):
            ck.names(pp + ("targetPort",), target, is_port_name(target))
        elif type(target) is int:
            ck.names(pp + ("targetPort",), target, is_port_number(target))
        else:
            ck.invalid(pp + ("targetPort",), target, "must be an integer or a port name")
        node_port = ck.get(port, "nodePort", pp, "integer")
        if node_port is not None and node_port != 0:
            if kind not in ("NodePort", "LoadBalancer"):
                ck.forbidden(pp + ("nodePort",), f"may not be used when `type` is '{kind}'")
            elif ck.names(pp + ("nodePort",), node_port, is_port_number(node_port)):
                if protocol and (node_port, protocol) in node_ports:
                    ck.duplicate(pp + ("nodePort",), node_port)
                node_ports.add((node_port, protocol or "TCP"))
        ck.get(port, "appProtocol", pp, "string")


def _check_affinity(ck: Checker, p: Path_, spec: dict) -> None:
    affinity = ck.enum(spec, "sessionAffinity", p, SESSION_AFFINITIES, default="None")
    config = ck.obj(spec, "sessionAffinityConfig", p, AFFINITY_CONFIG_FIELDS)
    if affinity == "None" and config:
        ck.invalid(p + ("sessionAffinityConfig",), config,
                   "must not be set when `sessionAffinity` is None")
        return
    if affinity != "ClientIP":
        return
    if config is None:
        config = spec["sessionAffinityConfig"] = {}
    cp = p + ("sessionAffinityConfig",)
    client = ck.obj(config, "clientIP", cp, CLIENT_IP_FIELDS)
    if client is None:
        client = config["clientIP"] = {}
    timeout = ck.get(client, "timeoutSeconds", cp + ("clientIP",), "integer")
    if timeout is None and "timeoutSeconds" not in client:
        client["timeoutSeconds"] = DEFAULT_AFFINITY_TIMEOUT
    elif timeout is not None and not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
        ck.invalid(cp + ("clientIP", "timeoutSeconds"), timeout,
                   f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}")


def _check_traffic_policies(ck: Checker, p: Path_, spec: dict, kind: str | None) -> None:
    external = kind in ("NodePort", "LoadBalancer")
    etp = ck.enum(spec, "externalTrafficPolicy", p, TRAFFIC_POLICIES,
                  default="Cluster" if external else None)
    if etp is not None and not external:
        ck.invalid(p + ("externalTrafficPolicy",), etp,
                   "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
    ck.enum(spec, "internalTrafficPolicy", p, TRAFFIC_POLICIES,
            default="Cluster" if kind != "ExternalName" else None)
    hc = ck.get(spec, "healthCheckNodePort", p, "integer")
    if hc:
        if kind != "LoadBalancer" or etp != "Local":
            ck.invalid(p + ("healthCheckNodePort",), hc, "may only be set when `type` is "
                       "'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
        else:
            ck.names(p + ("healthCheckNodePort",), hc, is_port_number(hc))


def _check_load_balancer(ck: Checker, p: Path_, spec: dict, kind: str | None) -> None:
    lb_ip = ck.get(spec, "loadBalancerIP", p, "string")
    ranges = ck.items(spec, "loadBalancerSourceRanges", p)
    if kind != "LoadBalancer":
        if lb_ip:
            ck.forbidden(p + ("loadBalancerIP",), "may only be used when `type` is 'LoadBalancer'")
        if ranges:
            ck.forbidden(p + ("loadBalancerSourceRanges",),
                         "may only be used when `type` is 'LoadBalancer'")
        return
    if lb_ip:
        ck.names(p + ("loadBalancerIP",), lb_ip, is_ipv4(lb_ip))
    for rp, cidr in ranges:
        if ck.is_type(rp, cidr, "string"):
            ck.names(rp, cidr, is_cidr(cidr.strip()))
