"""Root: nftables partial syncs leave the kernel exactly where a full sync would.

Two throwaway namespaces (each held by `testbed-pause pause`, which prints "ok" once it is in
a namespace of its own): the proxier applies a full sync and then partial ones in the first;
after each step the same state is applied as one full sync in the second, and `nft list table
ip kube-proxy` must read the same in both (line order aside).
"""

from __future__ import annotations

from testbed.net.netfilter import NftBackend
from testbed.net.run import run
from testbed.proxy.model import LocalDetector, ProxierSettings
from testbed.proxy.proxier import Proxier
from tests.unit.test_proxier import eps, svc

SETTINGS = ProxierSettings(node_name="w1", node_ip="192.168.0.2", local_ips=("192.168.0.2",),
                           local_detector=LocalDetector("ClusterCIDR", "10.0.0.0/8"),
                           service_cidrs=("10.96.0.0/16",))


def on_w1(slice_: dict) -> dict:
    for endpoint in slice_["endpoints"]:
        endpoint["nodeName"] = "w1"
    return slice_


def listing(pid: int) -> list[str]:
    text = run(["nft", "list", "table", "ip", "kube-proxy"], netns=pid).stdout
    return sorted(line.strip().rstrip(",") for line in text.replace(",", ",\n").splitlines()
                  if line.strip())


def test_partial_syncs_match_a_full_sync(netns_pair):
    a, b = netns_pair
    proxier = Proxier(NftBackend(a), SETTINGS)
    steps = [
        lambda p: (p.service_changes.on_add(svc("web", "10.96.0.10")),
                   p.endpoint_changes.on_add(eps("web", ["10.0.1.5", "10.0.2.5"])),
                   p.service_changes.on_add(svc("dns", "10.96.0.11", 53, "UDP")),
                   p.endpoint_changes.on_add(eps("dns", ["10.0.1.7"], 53, "UDP"))),
        lambda p: p.endpoint_changes.on_update(eps("web", ["10.0.1.5", "10.0.2.5"]),
                                               eps("web", ["10.0.1.5"])),
        lambda p: p.service_changes.on_add(svc("empty", "10.96.0.12")),
        lambda p: p.endpoint_changes.on_delete(eps("dns", ["10.0.1.7"], 53, "UDP")),
        lambda p: p.service_changes.on_delete(svc("web", "10.96.0.10")),
        lambda p: (p.service_changes.on_add(svc("loc", "10.96.0.13")),
                   p.endpoint_changes.on_add(on_w1(eps("loc", ["10.0.1.9"])))),
        # same map key, another value: goto the local chain instead of the cluster one
        lambda p: p.service_changes.on_update(
            svc("loc", "10.96.0.13"), svc("loc", "10.96.0.13", internalTrafficPolicy="Local")),
    ]
    for i, step in enumerate(steps):
        step(proxier)
        result = proxier.sync()
        assert result.ok, result.error
        assert result.full == (i == 0)
        reference = Proxier(NftBackend(b), SETTINGS)
        reference.services, reference.endpoints = proxier.services, proxier.endpoints
        reference._sorted = None
        assert reference.sync().ok
        assert listing(a) == listing(b), f"after step {i}"
