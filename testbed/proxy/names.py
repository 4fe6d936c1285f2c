"""Pure: kube-proxy chain and set names (iptables KUBE-* chains, nftables chains and sets).

Owns the naming algorithm of /work/shared/fidelity/kube-proxy/naming_algorithm.md: a SHA-256 of
the service-port string, base32-encoded and truncated. Names are derived here and nowhere else,
so that a chain named in a rule and the chain line that creates it can never disagree.
"""

from __future__ import annotations

import functools
import hashlib

# iptables chain prefixes (pkg/proxy/iptables/proxier.go)
SVC = "KUBE-SVC-"
SVL = "KUBE-SVL-"
EXT = "KUBE-EXT-"
FW = "KUBE-FW-"
SEP = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC, SVL, EXT, FW, SEP)

# nftables: chain names may be at most 256 characters; knftables keeps 16 for prefixes.
_NFT_BASE_MAX = 256 - 16


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32, as Go's base32.StdEncoding
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two characters


@functools.lru_cache(maxsize=1 << 18)  # every sync names every chain again: hash each once
def _b32sha(text: str) -> str:
    """The first 16 base32 characters of SHA-256(text), all any name uses.

    16 characters are exactly the first 10 bytes (80 bits) of the digest, so this equals
    `base64.b32encode(digest)[:16]` without encoding the other 22 bytes (a full sync of
    10,000 Services names 60,000 chains).
    """
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    return "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in range(70, -1, -10)])


def port_proto_hash(spn: str, protocol: str) -> str:
    """The 16 characters shared by a service port's SVC/SVL/EXT/FW chains."""
    return _b32sha(spn + protocol.lower())[:16]


def svc_chain(spn: str, protocol: str) -> str:
    """KUBE-SVC-: the Cluster traffic policy chain."""
    return SVC + port_proto_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    """KUBE-SVL-: the Local traffic policy chain."""
    return SVL + port_proto_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    """KUBE-EXT-: the chain for external destinations (NodePort, external and LB IPs)."""
    return EXT + port_proto_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    """KUBE-FW-: the loadBalancerSourceRanges chain."""
    return FW + port_proto_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-: one endpoint of one service port; `endpoint` is "ip:port" ("[v6]:port")."""
    return SEP + _b32sha(spn + protocol.lower() + endpoint)[:16]


def is_service_chain(name: str) -> bool:
    """True for the per-service chains kube-proxy owns and may delete when stale."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def join_host_port(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 addresses get brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- nftables --------------------------------------------------------------------------------


def nft_hash_and_truncate(base: str) -> str:
    """`H(base)[:8] + "-" + base`, cut to fit nftables' name length limit."""
    name = _b32sha(base)[:8] + "-" + base
    if len(name) > _NFT_BASE_MAX:
        name = name[: _NFT_BASE_MAX - 3] + "..."
    return name


def nft_service_base(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """"ns/svc/proto/portName": the base of a service port's nftables chain names."""
    return f"{namespace}/{name}/{protocol.lower()}/{port_name}"


def nft_endpoint_base(namespace: str, name: str, protocol: str, port_name: str,
                      ip: str, port: int) -> str:
    """"ns/svc/proto/portName__ip/port" with IPv6 colons turned into dots."""
    svc = nft_service_base(namespace, name, protocol, port_name)
    return f"{svc}__{ip.replace(':', '.')}/{port}"


def nft_service_chain(base: str) -> str:
    return "service-" + nft_hash_and_truncate(base)


def nft_local_chain(base: str) -> str:
    return "local-" + nft_hash_and_truncate(base)


def nft_external_chain(base: str) -> str:
    return "external-" + nft_hash_and_truncate(base)


def nft_firewall_chain(base: str) -> str:
    return "firewall-" + nft_hash_and_truncate(base)


def nft_endpoint_chain(endpoint_base: str) -> str:
    return "endpoint-" + nft_hash_and_truncate(endpoint_base)


def nft_affinity_set(endpoint_base: str) -> str:
    return "affinity-" + nft_hash_and_truncate(endpoint_base)
