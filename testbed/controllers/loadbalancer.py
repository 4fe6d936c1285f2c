"""Pure: the emulated cloud's decisions for Services of type LoadBalancer.

`PoolAllocator` hands out addresses from the topology's `loadBalancer.pool`, as a cloud (or
MetalLB) does:

* a Service keeps the address it has; addresses go lowest free first (for a pool wider than
  /31 the network and broadcast addresses are skipped);
* spec.loadBalancerIP is honoured when it is in the pool and free; when it is in the pool but
  taken, the Service stays pending; when it is outside the pool the field is ignored, like a
  cloud that does not support it, and a Warning says so;
* an exhausted pool leaves the Service pending with a Warning naming the pool.

Every decision carries the events a cloud controller would record (`LBEvent`); the agent
(testbed/agents/cloud.py) decides how to publish them. `plan_routes` and `route_changes` turn
the allocated addresses into the gateway's equal-cost multipath routes over the node IPs (for
externalTrafficPolicy Local, only the nodes with a ready local endpoint, as BGP-mode load
balancers announce the address only from those nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of, object_key

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class LBEvent:
    type: str      # Normal | Warning
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.type} {self.reason}: {self.message}"


# As upstream's service controller words it once the cloud has the load balancer.
ENSURED = LBEvent("Normal", "EnsuredLoadBalancer", "Ensured load balancer")


@dataclass(frozen=True)
class Decision:
    ip: str | None                          # None: pending
    events: tuple[LBEvent, ...] = field(default_factory=tuple)


def wants_load_balancer(service: dict) -> bool:
    """A Service this cloud serves: type LoadBalancer and no loadBalancerClass of another."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def status_ips(service: dict) -> list[str]:
    """status.loadBalancer.ingress[].ip of a Service."""
    lb = ((service.get("status") or {}).get("loadBalancer") or {})
    return [i["ip"] for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


def pool_addresses(pool: Iterable[IPv4Network | str]) -> list[IPv4Address]:
    out: list[IPv4Address] = []
    for net in pool:
        net = IPv4Network(net, strict=False)
        out.extend(net.hosts() if net.prefixlen < 31 else net)
    return list(dict.fromkeys(out))


class PoolAllocator:
    def __init__(self, pool: Iterable[IPv4Network | str]):
        self.pool = tuple(IPv4Network(n, strict=False) for n in pool)
        self.addresses = pool_addresses(self.pool)
        self._members = {str(a) for a in self.addresses}
        self._owners: dict[str, Key] = {}

    @property
    def pool_text(self) -> str:
        return ", ".join(str(n) for n in self.pool) or "(empty)"

    def owner(self, ip: str) -> Key | None:
        return self._owners.get(ip)

    def ip_of(self, key: Key) -> str | None:
        return next((ip for ip, owner in self._owners.items() if owner == key), None)

    def in_pool(self, ip: str) -> bool:
        return ip in self._members

    def restore(self, key: Key, ip: str) -> bool:
        """Take back an address a Service already shows (at start); False if it cannot be."""
        if not self.in_pool(ip) or self._owners.get(ip, key) != key or self.ip_of(key) not in (None, ip):
            return False
        self._owners[ip] = key
        return True

    def release(self, key: Key) -> str | None:
        ip = self.ip_of(key)
        if ip is not None:
            del self._owners[ip]
        return ip

    def ensure(self, key: Key, requested: str | None = None) -> Decision:
        """The address Service `key` should have now, and what to tell its owner."""
        where = f"{key[0]}/{key[1]}"
        current = self.ip_of(key)
        events: list[LBEvent] = []
        if requested and not self.in_pool(requested):
            events.append(LBEvent("Warning", "LoadBalancerIPIgnored",
                                  f"spec.loadBalancerIP {requested} is not in the pool "
                                  f"({self.pool_text}); this cloud does not support choosing "
                                  "other addresses and ignores the field"))
            requested = None
        if requested and requested != current:
            holder = self._owners.get(requested)
            if holder is not None:
                return Decision(current, (*events, LBEvent(
                    "Warning", "SyncLoadBalancerFailed",
                    f"Error syncing load balancer: requested IP {requested} is already "
                    f"allocated to {holder[0]}/{holder[1]}")))
            if current is not None:
                del self._owners[current]
            self._owners[requested] = key
            return Decision(requested, (*events, ENSURED))
        if current is not None:
            return Decision(current, tuple(events))
        for addr in self.addresses:
            ip = str(addr)
            if ip not in self._owners:
                self._owners[ip] = key
                return Decision(ip, (*events, ENSURED))
        return Decision(None, (*events, LBEvent(
            "Warning", "SyncLoadBalancerFailed",
            f"Error syncing load balancer: no addresses left in pool {self.pool_text} "
            f"({len(self.addresses)} in use); {where} stays pending until one is released")))



# -- gateway routes ------------------------------------------------------------------------------

def local_nodes(service: dict, slices: Iterable[dict]) -> set[str]:
    """Nodes with a ready endpoint of `service` (EndpointSlices labelled with its name)."""
    ns, name = object_key(service)
    out = set()
    for s in slices:
        meta = s.get("metadata") or {}
        if namespace_of(s) != ns or (meta.get("labels") or {}).get(
                SERVICE_NAME_LABEL) != name:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True) and ep.get("nodeName"):
                out.add(ep["nodeName"])
    return out


def plan_routes(assigned: Mapping[str, dict], node_ips: Mapping[str, str],
                slices: Iterable[dict] = ()) -> dict[str, tuple[str, ...]]:
    """address -> sorted next hops: every node, or for eTP Local the nodes with local endpoints.

    A Local Service with no ready endpoint anywhere keeps every node (kube-proxy drops the
    traffic there), so the address never silently disappears from the gateway.
    """
    slices = list(slices)
    every = tuple(sorted(node_ips.values(), key=lambda ip: IPv4Address(ip)))
    out: dict[str, tuple[str, ...]] = {}
    for ip, service in assigned.items():
        hops = every
        if (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
            nodes = local_nodes(service, slices)
            local = tuple(sorted((node_ips[n] for n in nodes if n in node_ips),
                                 key=lambda a: IPv4Address(a)))
            hops = local or every
        if hops:
            out[ip] = hops
    return out


def route_changes(desired: Mapping[str, tuple[str, ...]], current: Mapping[str, tuple[str, ...]]
                  ) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """(routes to replace, addresses whose route to delete) to go from `current` to `desired`."""
    replace = {ip: hops for ip, hops in desired.items() if tuple(current.get(ip, ())) != hops}
    delete = sorted(ip for ip in current if ip not in desired)
    return replace, delete
