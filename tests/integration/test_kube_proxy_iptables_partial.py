"""Root: iptables partial syncs leave the kernel exactly where a full sync would.

As the nftables test next to it: the proxier applies a full sync and then partial ones in one
throwaway namespace; after each step the same state is applied as one full sync in a second
one, and the KUBE-* chains of both tables must read the same (`iptables-save`, counters and
line order aside). With 400 Services the full syncs are long enough for the backend's
whole-table hint (`-S`, net/netfilter.py), so this also shows the hint changes nothing but
the time taken; the partial ones, which write the top-level chains whole as upstream's do but
declare only a few chains, go without it.
"""

from __future__ import annotations

from testbed.net.netfilter import WHOLE_TABLE_HINT, IptablesBackend, with_whole_table_cache
from testbed.net.run import run
from testbed.proxy import names
from testbed.proxy.model import LocalDetector, ProxierSettings
from testbed.proxy.proxier import Proxier
from tests.unit.test_proxier import eps, svc

SETTINGS = ProxierSettings(node_name="w1", node_ip="192.168.0.2", local_ips=("192.168.0.2",),
                           local_detector=LocalDetector("ClusterCIDR", "10.0.0.0/8"),
                           service_cidrs=("10.96.0.0/16",), nfacct_counters=frozenset())
MANY = 400
TOP_LEVEL = {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
             "KUBE-PROXY-FIREWALL", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-FIREWALL"}


def kube_rules(pid: int) -> dict[str, list[str]]:
    out = {}
    for table in ("filter", "nat"):
        text = run(["iptables-save", "-t", table], netns=pid).stdout
        out[table] = sorted(line.split(" [")[0] for line in text.splitlines()
                            if "KUBE-" in line and not line.startswith("#"))
    return out


def test_partial_syncs_match_a_full_sync(netns_pair):
    a, b = netns_pair
    proxier = Proxier(IptablesBackend(a), SETTINGS)

    def many(p: Proxier) -> None:
        for i in range(MANY):
            p.service_changes.on_add(svc(f"s{i}", f"10.96.{1 + i // 250}.{i % 250}"))
            p.endpoint_changes.on_add(eps(f"s{i}", [f"10.0.{1 + i // 250}.{i % 250}",
                                                    f"10.1.{1 + i // 250}.{i % 250}",
                                                    f"10.2.{1 + i // 250}.{i % 250}"]))

    steps = [
        many,
        lambda p: p.endpoint_changes.on_update(eps("s7", ["10.0.1.7", "10.1.1.7", "10.2.1.7"]),
                                               eps("s7", ["10.0.1.7"])),
        lambda p: p.service_changes.on_add(svc("empty", "10.96.0.12")),
        lambda p: p.endpoint_changes.on_delete(eps("s8", ["10.0.1.8", "10.1.1.8", "10.2.1.8"])),
        lambda p: p.service_changes.on_delete(svc("s9", "10.96.1.9")),
        lambda p: p.endpoint_changes.on_add(eps("empty", ["10.0.9.9"])),
    ]
    for i, step in enumerate(steps):
        step(proxier)
        result = proxier.sync()
        assert result.ok, result.error
        assert result.full == (i == 0)
        hinted = WHOLE_TABLE_HINT in with_whole_table_cache(proxier.last_text).splitlines()
        assert hinted == (i == 0)  # the full sync declares many chains, partial ones a few
        if i == 1:  # an endpoint change: the service's own chains, and the top-level ones
            declared = {line.split()[0][1:] for line in proxier.last_text.splitlines()
                        if line.startswith(":")}
            s7 = "default/s7:p"
            own = {names.svc_chain(s7, "tcp")} | {names.sep_chain(s7, "TCP", f"{ip}:8080")
                                                  for ip in ("10.0.1.7", "10.1.1.7", "10.2.1.7")}
            assert declared - TOP_LEVEL <= own and names.svc_chain(s7, "tcp") in declared
            assert TOP_LEVEL <= declared
            assert proxier.last_text.count("\n-A KUBE-SERVICES ") >= MANY  # written whole
        reference = Proxier(IptablesBackend(b), SETTINGS)
        reference.services, reference.endpoints = proxier.services, proxier.endpoints
        reference._sorted = None
        reference.endpoint_total = proxier.endpoint_total  # the same large-cluster mode
        assert reference.sync().ok
        assert kube_rules(a) == kube_rules(b), f"after step {i}"
