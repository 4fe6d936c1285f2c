"""Pure: ClusterIP and NodePort allocation for Services, as the API server's allocators do.

ClusterIPs come from the service CIDR. Like Kubernetes (KEP-3070) the range is split: a lower
"static" band of min(max(16, size/16), 256) addresses is meant for addresses users ask for, and
dynamic allocation takes the lowest free address of the upper band first, falling back to the
lower band only when the upper one is full. By convention the first address (.1) belongs to
the `kubernetes` Service in `default` and the tenth (.10) to `kube-dns` in `kube-system`;
dynamic allocation never hands those out, and only those Services get them unasked. (Real
Kubernetes allocates at random within the band; lowest-free keeps addresses predictable.)

NodePorts come from 30000-32767 by default: a requested port must be in range and free; a
Service may use one number for a TCP and a UDP port (auto-allocation reuses it for ports with
the same `port` number, as Kubernetes does); otherwise lowest free. LoadBalancer Services with
externalTrafficPolicy Local also get a healthCheckNodePort.

`ServiceAllocator.admit(service, old)` is what the API server calls before storing a Service:
it returns the Service with addresses and ports filled in, or raises AllocationError with the
field paths and messages Kubernetes uses. State is rebuilt from the stored Services at start.

The refusals are worded as upstream's (pkg/registry/core/service/storage/alloc.go over the
ServiceCIDR allocator of ipallocator/cidrallocator.go, the only one since 1.34, and
portallocator), each a field error the API answers with 422:

    spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: failed to allocate IP 10.0.0.1: the provided network does not match the current range
    spec.clusterIPs: Invalid value: []string{"10.96.0.0"}: failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12
    spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: provided IP is already allocated
    spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated
    spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767

(an address outside every service CIDR matches no CIDR's allocator; the network and broadcast
addresses of the CIDR are outside its allocator's range), except where no field is wrong and
upstream answers 500 InternalError (`AllocationError.internal`): a full range ("failed to
allocate a serviceIP: range is full", "failed to allocate a nodePort: range is full") and the
healthCheckNodePort ("failed to allocate requested HealthCheck NodePort 30080: provided port
is already allocated"). A changed clusterIP is refused as validation refuses it:
`spec.clusterIPs[0]: Invalid value: []string{"10.96.0.6"}: may not change once set`.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
from dataclasses import dataclass

from testbed.api.meta import go_strings, object_key

KUBERNETES_SERVICE = ("default", "kubernetes")
DNS_SERVICE = ("kube-system", "kube-dns")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class AllocationError(Exception):
    """Field errors (422), or with `internal` the text of a 500 InternalError (no field is
    wrong: a range is full), which `errors` then holds as one error without a field."""

    def __init__(self, errors: list[FieldError], internal: str = ""):
        self.errors = errors
        self.internal = internal
        super().__init__("; ".join(str(e) for e in errors))


class RangeFull(ValueError):
    """No free value left (upstream's ErrFull, "range is full")."""

    def __init__(self) -> None:
        super().__init__("range is full")


# upstream's ErrMismatchedNetwork: an address outside every service CIDR (it names no range)
MISMATCHED_NETWORK = "the provided network does not match the current range"


class ClusterIPAllocator:
    def __init__(self, cidr: str):
        self.network = ipaddress.IPv4Network(cidr, strict=False)
        # calculateRangeOffset (KEP-3070) over the CIDR's size: no static band in a CIDR of
        # 16 addresses or fewer, else min(max(16, size/16), 256)
        size = self.network.num_addresses
        self.static_band = 0 if size <= 16 else min(max(16, size // 16), 256)
        base = int(self.network.network_address)
        self.reserved = {str(ipaddress.IPv4Address(base + 1)): KUBERNETES_SERVICE,
                         str(ipaddress.IPv4Address(base + 10)): DNS_SERVICE}
        self._owners: dict[str, tuple[str, str]] = {}

    def reserve(self, ip: str, owner: tuple[str, str]) -> None:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValueError(f"failed to allocate IP {ip}: not an IPv4 address") from None
        if addr not in self.network:   # no ServiceCIDR's allocator holds it: ErrMismatchedNetwork
            raise ValueError(f"failed to allocate IP {ip}: {MISMATCHED_NETWORK}")
        if addr in (self.network.network_address, self.network.broadcast_address):
            raise ValueError(f"failed to allocate IP {ip}: the provided IP ({ip}) is not in "
                             f"the valid range. The range of valid IPs is {self.network}")
        if self._owners.get(ip, owner) != owner:
            raise ValueError(f"failed to allocate IP {ip}: provided IP is already allocated")
        self._owners[ip] = owner

    def allocate(self, owner: tuple[str, str]) -> str:
        for ip, reserved_for in self.reserved.items():
            if reserved_for == owner and ip not in self._owners:
                self._owners[ip] = owner
                return ip
        base = int(self.network.network_address)
        first, last = base + 1, int(self.network.broadcast_address) - 1
        split = min(base + 1 + self.static_band, last + 1)
        for value in itertools.chain(range(split, last + 1), range(first, split)):   # lazily: a /12 is 1M
            ip = str(ipaddress.IPv4Address(value))
            if ip not in self._owners and ip not in self.reserved:
                self._owners[ip] = owner
                return ip
        raise RangeFull()

    def release(self, ip: str) -> None:
        self._owners.pop(ip, None)

    def owner(self, ip: str) -> tuple[str, str] | None:
        return self._owners.get(ip)


class NodePortAllocator:
    def __init__(self, first: int = 30000, last: int = 32767):
        self.first, self.last = first, last
        self._owners: dict[int, tuple[str, str]] = {}

    def reserve(self, port: int, owner: tuple[str, str]) -> None:
        if not self.first <= port <= self.last:
            raise ValueError(f"provided port is not in the valid range. The range of valid "
                             f"ports is {self.first}-{self.last}")
        if self._owners.get(port, owner) != owner:
            raise ValueError("provided port is already allocated")
        self._owners[port] = owner

    def allocate(self, owner: tuple[str, str]) -> int:
        for port in range(self.first, self.last + 1):
            if port not in self._owners:
                self._owners[port] = owner
                return port
        raise RangeFull()

    def release(self, port: int) -> None:
        self._owners.pop(port, None)

    def owner(self, port: int) -> tuple[str, str] | None:
        return self._owners.get(port)

    def held_by(self, owner: tuple[str, str]) -> set[int]:
        return {port for port, o in self._owners.items() if o == owner}


def _node_port_fields(service: dict) -> list[tuple[str, int]]:
    spec = service.get("spec") or {}
    out = [(f"spec.ports[{i}].nodePort", p["nodePort"]) for i, p in
           enumerate(spec.get("ports") or []) if p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        out.append(("spec.healthCheckNodePort", spec["healthCheckNodePort"]))
    return out


class ServiceAllocator:
    def __init__(self, service_cidr: str, node_ports: tuple[int, int] = (30000, 32767)):
        self.ips = ClusterIPAllocator(service_cidr)
        self.ports = NodePortAllocator(*node_ports)

    def rebuild(self, services: list[dict]) -> None:
        """Take over what stored Services already hold (at API server start)."""
        for service in services:
            owner = object_key(service)
            ip = (service.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                self.ips.reserve(ip, owner)
            for _, port in _node_port_fields(service):
                self.ports.reserve(port, owner)

    def admit(self, service: dict, old: dict | None = None, every: bool = False) -> dict:
        """The Service with clusterIP, nodePorts, healthCheckNodePort filled in; all or nothing.
        Refused at the first allocation that fails, as upstream refuses; with `every` (the
        testbed's own checks of a manifest, which name every problem at once), each clusterIP
        and node port is tried and every refusal named."""
        new = copy.deepcopy(service)
        spec = new.setdefault("spec", {})
        owner = object_key(new)
        kind = spec.get("type", "ClusterIP")
        errors: list[FieldError] = []
        taken_ips: list[str] = []
        taken_ports: list[int] = []
        old_spec = (old or {}).get("spec") or {}
        old_ip = old_spec.get("clusterIP")
        if kind == "ExternalName":
            spec.pop("clusterIP", None)
        elif old_ip and not spec.get("clusterIP"):
            spec["clusterIP"] = old_ip  # clusterIP is immutable; an update without one keeps it
        elif old_ip and spec.get("clusterIP") != old_ip:
            # ValidateServiceUpdate, after normalizeClusterIPs made clusterIPs follow clusterIP
            errors.append(FieldError("spec.clusterIPs[0]", f"Invalid value: "
                                     f'{go_strings([spec["clusterIP"]])}: may not change once set'))
        ip = spec.get("clusterIP")
        internal = ""
        if kind != "ExternalName" and ip != "None" and not errors:
            try:
                if ip:
                    if self.ips.owner(ip) != owner:
                        self.ips.reserve(ip, owner)
                        taken_ips.append(ip)
                else:
                    spec["clusterIP"] = self.ips.allocate(owner)
                    taken_ips.append(spec["clusterIP"])
            except RangeFull as err:
                internal = f"failed to allocate a serviceIP: {err}"
            except ValueError as err:
                # Upstream's allocator reports the whole list it was asked for.
                errors.append(FieldError("spec.clusterIPs",
                                         f"Invalid value: {go_strings([ip])}: {err}"))
        if ip != "None" and spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        if kind in ("NodePort", "LoadBalancer") and not internal and (every or not errors):
            # upstream allocates node ports only once the clusterIPs are allocated
            internal = self._admit_node_ports(spec, owner, old_spec, errors, taken_ports, every)
        elif kind not in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
        if errors or internal:
            for ip_ in taken_ips:
                self.ips.release(ip_)
            for port_ in taken_ports:
                self.ports.release(port_)
            if internal:   # a full range is no field's fault
                raise AllocationError([FieldError("", internal)], internal)
            raise AllocationError(errors)
        if old is not None:
            self._release_unused(old, new)
        return new

    def _admit_node_ports(self, spec: dict, owner: tuple[str, str], old_spec: dict,
                          errors: list[FieldError], taken: list[int], every: bool) -> str:
        """Node ports (and the healthCheckNodePort) into `spec`; field errors into `errors`;
        -> the text of an internal error ("" when none)."""
        ports = spec.get("ports") or []
        old_by_key = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                      for p in old_spec.get("ports") or []}
        mine = self.ports.held_by(owner)
        for i, port in enumerate(ports):
            wanted = port.get("nodePort") or old_by_key.get((port.get("port"),
                                                              port.get("protocol", "TCP")))
            if not wanted:
                continue
            try:
                if wanted not in mine:
                    self.ports.reserve(wanted, owner)
                    taken.append(wanted)
                    mine.add(wanted)
                port["nodePort"] = wanted
            except ValueError as err:   # upstream stops at the first refused port
                errors.append(FieldError(f"spec.ports[{i}].nodePort",
                                         f"Invalid value: {wanted}: {err}"))
                if not every:
                    return ""
        if errors:
            return ""
        for port in ports:
            if port.get("nodePort"):
                continue
            twin = next((p["nodePort"] for p in ports if p.get("nodePort")
                         and p.get("port") == port.get("port")
                         and p.get("protocol", "TCP") != port.get("protocol", "TCP")), None)
            try:
                port["nodePort"] = twin or self.ports.allocate(owner)
            except RangeFull as err:
                return f"failed to allocate a nodePort: {err}"
            if not twin:
                taken.append(port["nodePort"])
        if spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            wanted = spec.get("healthCheckNodePort") or old_spec.get("healthCheckNodePort")
            try:
                if wanted:
                    if wanted not in mine:
                        self.ports.reserve(wanted, owner)
                        taken.append(wanted)
                else:
                    wanted = self.ports.allocate(owner)
                    taken.append(wanted)
                spec["healthCheckNodePort"] = wanted
            except RangeFull as err:
                return f"failed to allocate a HealthCheck NodePort 0: {err}"
            except ValueError as err:
                # allocHealthCheckNodePort's error, which upstream answers as an internal one
                return f"failed to allocate requested HealthCheck NodePort {wanted}: {err}"
        else:
            spec.pop("healthCheckNodePort", None)
        return ""

    def _release_unused(self, old: dict, new: dict) -> None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and old_ip != (new.get("spec") or {}).get("clusterIP"):
            self.ips.release(old_ip)
        kept = {port for _, port in _node_port_fields(new)}
        for _, port in _node_port_fields(old):
            if port not in kept:
                self.ports.release(port)

    def release(self, service: dict) -> None:
        """The Service is deleted: its address and ports are free again."""
        ip = (service.get("spec") or {}).get("clusterIP")
        if ip and ip != "None" and self.ips.owner(ip) == object_key(service):
            self.ips.release(ip)
        for _, port in _node_port_fields(service):
            if self.ports.owner(port) == object_key(service):
                self.ports.release(port)
