"""Pure: the cluster's DNS records from Services, EndpointSlices and Pods.

Follows the Kubernetes DNS-based service discovery specification (version 1.1.0), with
CoreDNS's choices where the specification leaves room:

- a Service with a ClusterIP: A (AAAA) `<svc>.<ns>.svc.<domain>` -> the ClusterIP(s); PTR for
  each ClusterIP; SRV `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for each named port, targeting
  the Service name;
- a headless Service (clusterIP None): one A per ready endpoint address; each endpoint has a
  name, its hostname or else its address with dashes (CoreDNS), with an A record
  `<name>.<svc>.<ns>.svc.<domain>` and a PTR from the address to that name; SRV per named port
  of the Service's EndpointSlices, one per ready endpoint, targeting the endpoint's name;
- an ExternalName Service: CNAME `<svc>.<ns>.svc.<domain>` -> externalName (no SRV);
- a Pod with an IP: A `a-b-c-d.<ns>.pod.<domain>` (CoreDNS `pods verified`: only IPs of Pods
  that exist).

An endpoint is ready unless `conditions.ready` is false (nil means ready, as in Kubernetes; the
EndpointSlice controller already sets ready for publishNotReadyAddresses). Objects whose names
are not DNS labels are skipped: the API server refuses them anyway, and the renderer must never
write a name that could break a configuration line. Output is sorted, so equal inputs give equal
records whatever the order of the objects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of

DEFAULT_DOMAIN = "cluster.local"
SRV_PRIORITY = 0
SRV_WEIGHT = 100

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class AddressRecord:
    """An A record (AAAA when the address is IPv6)."""

    name: str
    address: str


@dataclass(frozen=True, order=True)
class PtrRecord:
    """A PTR record: `address` is the plain IP; the reverse name is derived by the renderer."""

    address: str
    name: str


@dataclass(frozen=True, order=True)
class SrvRecord:
    name: str
    target: str
    port: int
    priority: int = SRV_PRIORITY
    weight: int = SRV_WEIGHT


@dataclass(frozen=True, order=True)
class CnameRecord:
    name: str
    target: str


@dataclass(frozen=True)
class Records:
    """Every record of the cluster zone, each tuple sorted and free of duplicates."""

    addresses: tuple[AddressRecord, ...] = ()
    ptrs: tuple[PtrRecord, ...] = ()
    srvs: tuple[SrvRecord, ...] = ()
    cnames: tuple[CnameRecord, ...] = ()
    pods: tuple[AddressRecord, ...] = ()


def is_label(text: object) -> bool:
    """A DNS-1123 label: what Kubernetes allows for namespaces, Service names and hostnames."""
    return isinstance(text, str) and bool(_LABEL.match(text))


def is_dns_name(text: object) -> bool:
    """A dotted name made of DNS labels (an ExternalName target), trailing dot allowed."""
    if not isinstance(text, str) or not text or len(text) > 253:
        return False
    labels = text.removesuffix(".").split(".")
    return all(_LABEL.match(label) or re.match(r"^[a-z0-9_]([a-z0-9_-]{0,62})$", label)
               for label in labels)


def dashed(address: str) -> str:
    """10.244.1.5 -> 10-244-1-5 (IPv6: colons become dashes, as CoreDNS does)."""
    return address.replace(".", "-").replace(":", "-")


def service_name(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def pod_name(address: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    return f"{dashed(address)}.{namespace}.pod.{domain}"


def build_records(services: Iterable[dict], slices: Iterable[dict], pods: Iterable[dict] = (),
                  domain: str = DEFAULT_DOMAIN) -> Records:
    """All records for these objects. Slices are matched to Services by namespace and label."""
    domain = domain.strip(".").lower()
    by_service: dict[tuple[str, str], list[dict]] = {}
    for item in slices:
        meta = item.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            by_service.setdefault((namespace_of(item), owner), []).append(item)

    addresses: set[AddressRecord] = set()
    ptrs: set[PtrRecord] = set()
    srvs: set[SrvRecord] = set()
    cnames: set[CnameRecord] = set()
    for svc in services:
        name = (svc.get("metadata") or {}).get("name")
        namespace = namespace_of(svc)
        if not is_label(name) or not is_label(namespace):
            continue
        spec = svc.get("spec") or {}
        fqdn = service_name(name, namespace, domain)
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").lower()
            if is_dns_name(target):
                cnames.add(CnameRecord(fqdn, target.removesuffix(".")))
            continue
        if spec.get("clusterIP") == "None":
            _headless(fqdn, by_service.get((namespace, name), []), addresses, ptrs, srvs)
            continue
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if _is_ip(ip)]
        for ip in ips:
            addresses.add(AddressRecord(fqdn, ip))
            ptrs.add(PtrRecord(ip, fqdn))
        if ips:
            for port in spec.get("ports") or []:
                srv = _srv_name(port, fqdn)
                if srv:
                    srvs.add(SrvRecord(srv, fqdn, int(port["port"])))

    pod_records: set[AddressRecord] = set()
    for pod in pods:
        namespace = namespace_of(pod)
        status = pod.get("status") or {}
        ips = [entry.get("ip") for entry in status.get("podIPs") or []] or [status.get("podIP")]
        if not is_label(namespace) or status.get("phase") in ("Succeeded", "Failed"):
            continue
        for ip in ips:
            if _is_ip(ip):
                pod_records.add(AddressRecord(pod_name(ip, namespace, domain), ip))

    return Records(addresses=tuple(sorted(addresses)), ptrs=tuple(sorted(ptrs)),
                   srvs=tuple(sorted(srvs)), cnames=tuple(sorted(cnames)),
                   pods=tuple(sorted(pod_records)))


def _headless(fqdn: str, slices: list[dict], addresses: set, ptrs: set, srvs: set) -> None:
    for item in slices:
        if item.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue  # FQDN slices carry no addresses to publish
        targets = []
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            hostname = endpoint.get("hostname")
            for ip in endpoint.get("addresses") or []:
                if not _is_ip(ip):
                    continue
                label = hostname if is_label(hostname) else dashed(ip)
                endpoint_fqdn = f"{label}.{fqdn}"
                addresses.add(AddressRecord(fqdn, ip))
                addresses.add(AddressRecord(endpoint_fqdn, ip))
                ptrs.add(PtrRecord(ip, endpoint_fqdn))
                targets.append(endpoint_fqdn)
        for port in item.get("ports") or []:
            srv = _srv_name(port, fqdn)
            if srv:
                for target in targets:
                    srvs.add(SrvRecord(srv, target, int(port["port"])))


def _srv_name(port: dict, fqdn: str) -> str | None:
    """`_<port>._<proto>.<fqdn>` for a named port with a number; None for unnamed ports."""
    name = port.get("name")
    protocol = str(port.get("protocol") or "TCP").lower()
    if not is_label(name) or protocol not in ("tcp", "udp", "sctp"):
        return None
    number = port.get("port")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
        return None
    return f"_{name}._{protocol}.{fqdn}"


def _is_ip(text: object) -> bool:
    if not isinstance(text, str) or not text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
