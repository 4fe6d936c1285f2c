"""Pure: pod IP allocation inside one node's pod CIDR, like CNI host-local IPAM.

The first usable address (.1) is the node's bridge (cbr0) gateway; pods get the lowest free
address from .2 up to the last before broadcast. An address is never held by two keys at once,
and allocating for a key that already holds one returns the same address (so a retried sandbox
setup is safe). `record()` / `from_record()` let the kubelet persist and reload the state.
Contract: the gateway address must match the bridge address the pod network setup assigns.
"""

from __future__ import annotations

import ipaddress


class AllocationError(Exception):
    pass


class PodIPAllocator:
    def __init__(self, cidr: str):
        self.network = ipaddress.IPv4Network(cidr, strict=False)
        if self.network.num_addresses < 4:
            raise AllocationError(f"pod CIDR {cidr} is too small")
        self.gateway = str(self.network.network_address + 1)
        self._by_key: dict[str, str] = {}
        self._by_ip: dict[str, str] = {}

    def allocate(self, key: str) -> str:
        if key in self._by_key:
            return self._by_key[key]
        first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address) - 1
        for value in range(first, last + 1):
            ip = str(ipaddress.IPv4Address(value))
            if ip not in self._by_ip:
                self._by_key[key], self._by_ip[ip] = ip, key
                return ip
        raise AllocationError(f"no free address left in pod CIDR {self.network} for {key}")

    def release(self, key: str) -> str | None:
        """Free the key's address; releasing an unknown key is fine ("already gone")."""
        ip = self._by_key.pop(key, None)
        if ip is not None:
            del self._by_ip[ip]
        return ip

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def used(self) -> dict[str, str]:
        """key -> address, for everything currently allocated."""
        return dict(self._by_key)

    def record(self) -> dict:
        return {"cidr": str(self.network), "allocations": dict(sorted(self._by_key.items()))}

    @classmethod
    def from_record(cls, record: dict) -> PodIPAllocator:
        alloc = cls(record["cidr"])
        for key, ip in (record.get("allocations") or {}).items():
            addr = ipaddress.IPv4Address(ip)
            usable = addr in alloc.network and addr not in (
                alloc.network.network_address, alloc.network.broadcast_address)
            if not usable or ip == alloc.gateway or ip in alloc._by_ip:
                raise AllocationError(f"record holds {ip} for {key}, which is outside the "
                                      f"usable part of {alloc.network}, the gateway, or held "
                                      "twice")
            alloc._by_key[key], alloc._by_ip[ip] = ip, key
        return alloc
