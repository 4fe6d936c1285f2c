"""Pure: host-local IP address management for one node's pod CIDR, as the CNI plugin does it.

The network address is never handed out, the first host address belongs to cbr0 (the pods'
gateway), and the broadcast address is skipped. Each address goes to one pod key at a time;
allocation takes the lowest free address after the one handed out last (host-local's
round-robin), so a just-freed address is not reused at once while conntrack may remember it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network


class IPAMExhausted(RuntimeError):
    pass


class HostLocalIPAM:
    def __init__(self, cidr: IPv4Network, reserved: tuple[IPv4Address, ...] = ()):
        self.cidr = cidr
        self.first = cidr.network_address + 2          # .1 is cbr0
        self.last = cidr.broadcast_address - 1
        self.reserved = set(reserved)
        self.by_key: dict[str, IPv4Address] = {}
        self.by_ip: dict[IPv4Address, str] = {}
        self.last_given: IPv4Address | None = None

    @property
    def capacity(self) -> int:
        return int(self.last) - int(self.first) + 1 - len(self.reserved)

    def allocate(self, key: str, from_top: bool = False) -> IPv4Address:
        """The address of `key`, allocating one if it has none (so a retry is harmless).

        `from_top` takes the highest free address instead (the testbed gives system pods
        addresses from the top, so workloads get the low numbers articles show).
        """
        if key in self.by_key:
            return self.by_key[key]
        if from_top:
            for value in range(int(self.last), int(self.first) - 1, -1):
                candidate = IPv4Address(value)
                if candidate not in self.by_ip and candidate not in self.reserved:
                    self.by_key[key] = candidate
                    self.by_ip[candidate] = key
                    return candidate
            raise IPAMExhausted(f"no free address left in {self.cidr} ({len(self.by_key)} in use)")
        size = int(self.last) - int(self.first) + 1
        start = 0 if self.last_given is None else (int(self.last_given) - int(self.first) + 1) % size
        for step in range(size):
            candidate = IPv4Address(int(self.first) + (start + step) % size)
            if candidate not in self.by_ip and candidate not in self.reserved:
                self.by_key[key] = candidate
                self.by_ip[candidate] = key
                self.last_given = candidate
                return candidate
        raise IPAMExhausted(f"no free address left in {self.cidr} ({len(self.by_key)} in use)")

    def assign(self, key: str, ip: IPv4Address) -> None:
        """Record an address already in use (a pod found running), refusing a clash."""
        if ip not in self.cidr or not self.first <= ip <= self.last:
            raise ValueError(f"{ip} is not a pod address of {self.cidr}")
        holder = self.by_ip.get(ip)
        if holder is not None and holder != key:
            raise ValueError(f"{ip} is already held by {holder}")
        self.release(key)  # a key moving to another address frees its old one
        self.by_key[key] = ip
        self.by_ip[ip] = key

    def release(self, key: str) -> None:
        ip = self.by_key.pop(key, None)
        if ip is not None:
            self.by_ip.pop(ip, None)

    def used(self) -> dict[str, IPv4Address]:
        return dict(self.by_key)
