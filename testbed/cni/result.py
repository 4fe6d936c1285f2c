"""Pure: CNI results, of versions 1.0.0 and 0.4.0 (and 0.3.x, shaped as 0.4.0), in one form.

A plugin answers ADD with a result (the CNI specification, section 5): the interfaces the
attachment made (`sandbox` set for those inside the pod), the IPs (each pointing at its
interface by index; 0.4.0 and older also say `"version": "4"` or `"6"`), routes and DNS.
`parse_result` reads any of them into `Result`; `convert` rewrites a result's JSON for another
version, as libcni's GetAsVersion does before it hands a cached result to a plugin as
prevResult. What the testbed takes from a result: the pod's IPv4 address, prefix and gateway
(`pod_address`) and the host end of its link (`host_interface`).
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

from testbed.spec.cniconf import SUPPORTED_VERSIONS, at_least

IPAddress = IPv4Address | IPv6Address


class ResultError(ValueError):
    """A result that is not one of the supported versions' shape."""


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""          # the pod's namespace path; "" for an interface on the host


@dataclass(frozen=True)
class IPConfig:
    address: IPv4Interface | IPv6Interface
    gateway: IPAddress | None = None
    interface: int | None = None     # index into the result's interfaces


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: IPAddress | None = None


@dataclass(frozen=True)
class Result:
    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PodAddress:
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address | None


def _get(data: dict, key: str, kind: type, where: str, required: bool = False) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise ResultError(f"{where}: {key} is missing")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ResultError(f"{where}: {key} must be {kind.__name__}, not {value!r}")
    return value


def _ip(text: str | None, where: str) -> IPAddress | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ResultError(f"{where}: {text!r} is not an IP address") from None


def parse_result(data: Any) -> Result:
    """A result's JSON data as a Result; ResultError says what is wrong with it."""
    if not isinstance(data, dict):
        raise ResultError(f"a result must be a JSON object, not {type(data).__name__}")
    version = _get(data, "cniVersion", str, "result", required=True)
    if version not in SUPPORTED_VERSIONS:
        raise ResultError(f"result version {version!r} is not supported (supported: "
                          f"{', '.join(SUPPORTED_VERSIONS)})")
    interfaces = []
    for i, item in enumerate(_get(data, "interfaces", list, "result") or []):
        where = f"interfaces[{i}]"
        if not isinstance(item, dict):
            raise ResultError(f"{where} must be an object")
        interfaces.append(Interface(_get(item, "name", str, where, required=True),
                                    _get(item, "mac", str, where) or "",
                                    _get(item, "sandbox", str, where) or ""))
    ips = []
    for i, item in enumerate(_get(data, "ips", list, "result") or []):
        where = f"ips[{i}]"
        if not isinstance(item, dict):
            raise ResultError(f"{where} must be an object")
        try:
            text = _get(item, "address", str, where, required=True)
            if "/" not in text:   # CIDR notation, as Go's net.ParseCIDR wants it
                raise ValueError(text)
            address = ipaddress.ip_interface(text)
        except ValueError:
            raise ResultError(f"{where}: address {item['address']!r} is not an address in CIDR "
                              "form") from None
        index = _get(item, "interface", int, where)
        if index is not None and not 0 <= index < len(interfaces):
            raise ResultError(f"{where}: interface {index} is not in interfaces "
                              f"({len(interfaces)} of them)")
        ips.append(IPConfig(address, _ip(_get(item, "gateway", str, where), where), index))
    routes = []
    for i, item in enumerate(_get(data, "routes", list, "result") or []):
        where = f"routes[{i}]"
        if not isinstance(item, dict):
            raise ResultError(f"{where} must be an object")
        try:
            dst = ipaddress.ip_network(_get(item, "dst", str, where, required=True), strict=False)
        except ValueError:
            raise ResultError(f"{where}: dst {item['dst']!r} is not a CIDR") from None
        routes.append(Route(dst, _ip(_get(item, "gw", str, where), where)))
    return Result(version, tuple(interfaces), tuple(ips), tuple(routes),
                  _get(data, "dns", dict, "result") or {})


def convert(data: dict, version: str) -> dict:
    """The result's JSON as version `version` gives it: 1.0.0 has no "version" in its IPs,
    0.4.0 and 0.3.x have one ("4" or "6"). Other fields have one shape in all of them."""
    out = copy.deepcopy(data)
    out["cniVersion"] = version
    for ip in out.get("ips") or []:
        if at_least(version, "1.0.0"):
            ip.pop("version", None)
        elif "version" not in ip:
            ip["version"] = str(ipaddress.ip_interface(ip["address"]).version)
    return out


def pod_address(result: Result) -> PodAddress | None:
    """The pod's IPv4 address: the first IPv4 of an interface inside the pod (or of no
    interface named, as an abbreviated result gives it), its gateway, else the default
    route's next hop."""
    default = next((r.gw for r in result.routes
                    if r.dst.prefixlen == 0 and r.dst.version == 4 and r.gw is not None), None)
    for ip in result.ips:
        if not isinstance(ip.address, IPv4Interface):
            continue
        if ip.interface is not None and not result.interfaces[ip.interface].sandbox:
            continue
        gateway = ip.gateway if isinstance(ip.gateway, IPv4Address) else default
        return PodAddress(ip.address.ip, ip.address.network.prefixlen, gateway)
    return None


def host_interface(result: Result) -> str | None:
    """The host end of the pod's link: the last interface not inside the pod (the bridge
    plugin lists the bridge, then the host veth, then the pod's end; ptp the host veth, then
    the pod's end)."""
    host = [i.name for i in result.interfaces if not i.sandbox]
    return host[-1] if host else None
