"""Proxier: change tracking, full vs partial syncs, failed apply, stale chains, UDP conntrack."""

from __future__ import annotations

from typing import Any

from testbed.proxy import names, restore
from testbed.proxy.fakes import FakeIptables, FakeNft
from testbed.proxy.model import ProxierSettings, ServicePortName
from testbed.proxy.proxier import Proxier
from testbed.proxy.tracer import trace
from testbed.proxy.tracker import ConntrackFlush, ServiceChangeTracker

SETTINGS = ProxierSettings(node_name="w1", node_ip="192.168.0.2", local_ips=("192.168.0.2",),
                           masquerade_mark="0x00004000", nfacct_counters=frozenset())


def svc(name: str, ip: str, port: int = 80, proto: str = "TCP", ns: str = "default",
        **spec: Any) -> dict:
    return {"kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": port, "protocol": proto}],
                     **spec}}


def eps(name: str, ips: list[str], port: int = 8080, proto: str = "TCP", ns: str = "default",
        slice_name: str | None = None) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": ns, "name": slice_name or f"{name}-abc",
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "w2"}
                          for ip in ips],
            "ports": [{"name": "p", "port": port, "protocol": proto}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def proxier(backend=None, clock=None) -> tuple[Proxier, FakeIptables]:
    backend = backend or FakeIptables()
    return Proxier(backend, SETTINGS, full_sync_period=60, clock=clock or Clock()), backend


def declared(text: str) -> set[str]:
    return set(restore.parse(text)["nat"].chains)


def reach(fake: FakeIptables, dst: str, port: int, proto: str = "TCP") -> str:
    return trace(fake.dump(), ["192.168.0.2"], "10.0.1.9", proto, dst, port).output


def two_services() -> tuple[Proxier, FakeIptables]:
    p, fake = proxier()
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    p.endpoint_changes.on_add(eps("a", ["10.0.1.5", "10.0.2.5"]))
    p.service_changes.on_add(svc("b", "10.96.0.20"))
    p.endpoint_changes.on_add(eps("b", ["10.0.1.6"]))
    return p, fake


def test_first_sync_is_full_and_applies_once_with_jump_rules():
    p, fake = two_services()
    result = p.sync()
    assert result.ok and result.full
    assert len(fake.restores) == 1
    # the missing jump rules ride in the same restore as the chains they jump to
    inserted = [ln for ln in fake.restores[0].splitlines() if ln.startswith("-I ")]
    assert len(inserted) == 14 and not fake.jumps
    assert fake.rules("nat", "PREROUTING") == [
        '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    assert fake.rules("filter", "INPUT")[0] == "-j KUBE-FIREWALL"  # the last one prepended
    p.request_full_sync()
    assert p.sync().full and "-I " not in fake.restores[-1]  # in place: not written again
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080, 10.0.2.5:8080"
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"
    assert any(c.startswith("KUBE-SVC-") for c in fake.nat_chains())


def test_jump_rule_to_a_chain_the_sync_does_not_write_is_ensured_alone():
    from dataclasses import replace

    fake = FakeIptables()
    p = Proxier(fake, replace(SETTINGS, localhost_node_ports=False), clock=Clock())
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    assert p.sync().ok
    assert [j[0].args[-1] for j in fake.jumps] == ["KUBE-FIREWALL", "KUBE-FIREWALL"]
    assert fake.restores[0].count("\n-I ") == 12


def test_nothing_changed_means_no_apply_in_nftables_mode():
    nft = FakeNft()
    p = Proxier(nft, SETTINGS, full_sync_period=60, clock=Clock())
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    p.sync()
    result = p.sync()
    assert result.skipped and len(nft.restores) == 1


def test_partial_sync_rewrites_only_changed_service():
    p, fake = two_services()
    p.sync()
    b = ServicePortName("default", "b", "p", "TCP")
    b_chains = {names.svc_chain(str(b), "tcp"), names.sep_chain(str(b), "TCP", "10.0.1.6:8080")}
    assert b_chains <= fake.nat_chains()
    old = eps("a", ["10.0.1.5", "10.0.2.5"])
    p.endpoint_changes.on_update(old, eps("a", ["10.0.1.5", "10.0.2.5", "10.0.3.5"]))
    result = p.sync()
    assert result.ok and not result.full
    assert result.changed == {("default", "a")}
    text = fake.restores[-1]
    written = {c for c in declared(text) if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    assert len(written) == 4  # a's SVC chain and its three SEP chains, nothing of b
    assert not written & b_chains
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080, 10.0.2.5:8080, 10.0.3.5:8080"
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"  # b's chains stayed in place


TOP_LEVEL = {("filter", c) for c in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD",
                                      "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")} | \
    {("nat", c) for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")}


def written_top_level(text: str) -> set[tuple[str, str]]:
    """The top-level chains `text` declares (so flushes and writes whole)."""
    return {(t, c) for t, table in restore.parse(text).items() for c in table.chains
            if (t, c) in TOP_LEVEL}


def test_partial_sync_writes_every_top_level_chain_whole():
    p, fake = two_services()
    p.sync()
    # an endpoint change: a's own chains, and every top-level chain whole, as upstream's
    p.endpoint_changes.on_update(eps("a", ["10.0.1.5", "10.0.2.5"]), eps("a", ["10.0.1.5"]))
    result = p.sync()
    assert result.ok and not result.full
    text = fake.restores[-1]
    assert written_top_level(text) == TOP_LEVEL
    services = restore.parse(text)["nat"].chains["KUBE-SERVICES"].rules
    assert len([r for r in services if "cluster IP" in r]) == 2  # b's line too
    assert not {c for c in declared(text) if c.startswith("KUBE-SVC-")} - \
        {names.svc_chain("default/a:p", "tcp")}
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080"
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"
    # a new service, then its last endpoint going: the same, each time
    p.service_changes.on_add(svc("c", "10.96.0.30"))
    p.endpoint_changes.on_add(eps("c", ["10.0.1.8"]))
    assert p.sync().ok
    assert written_top_level(fake.restores[-1]) == TOP_LEVEL
    assert reach(fake, "10.96.0.30", 80) == "10.0.1.8:8080"
    p.endpoint_changes.on_delete(eps("c", ["10.0.1.8"]))
    assert p.sync().ok
    assert written_top_level(fake.restores[-1]) == TOP_LEVEL
    assert reach(fake, "10.96.0.30", 80) == "REJECT"
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"


def flush_chain(fake: FakeIptables, table: str, chain: str) -> None:
    """What `iptables -t TABLE -F CHAIN` does behind kube-proxy's back."""
    fake.tables[table].chains[chain].rules.clear()


def test_flushed_kube_services_is_repaired_at_the_next_partial_sync():
    p, fake = two_services()
    p.sync()
    want = {t: fake.rules(*t) for t in TOP_LEVEL}
    for table, chain in (("nat", "KUBE-SERVICES"), ("nat", "KUBE-MARK-MASQ"),
                         ("filter", "KUBE-FORWARD")):
        flush_chain(fake, table, chain)
    assert reach(fake, "10.96.0.20", 80) == ""  # nothing catches the ClusterIP any more
    # an EndpointSlice change of another service: kube-proxy syncs (partially) ...
    p.endpoint_changes.on_update(eps("a", ["10.0.1.5", "10.0.2.5"]), eps("a", ["10.0.1.5"]))
    result = p.sync()
    assert result.ok and not result.full
    # ... and every top-level chain is whole again, b's ClusterIP answering
    assert {t: fake.rules(*t) for t in TOP_LEVEL if t != ("nat", "KUBE-SERVICES")} == \
        {t: r for t, r in want.items() if t != ("nat", "KUBE-SERVICES")}
    assert len(fake.rules("nat", "KUBE-SERVICES")) == len(want[("nat", "KUBE-SERVICES")])
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080"


def test_periodic_sync_with_nothing_changed_repairs_top_level_chains():
    p, fake = two_services()
    p.sync()
    before = fake.rules("nat", "KUBE-SERVICES")
    flush_chain(fake, "nat", "KUBE-SERVICES")
    result = p.sync()  # the runner's sync at least every --sync-period, nothing recorded
    assert result.ok and not result.full and not result.skipped and not result.changed
    assert written_top_level(fake.restores[-1]) == TOP_LEVEL
    assert not {c for c in declared(fake.restores[-1]) if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
    assert fake.rules("nat", "KUBE-SERVICES") == before
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080, 10.0.2.5:8080"


def test_change_with_the_same_rules_writes_only_the_top_level_chains():
    p, fake = two_services()
    p.sync()
    # the slice is replaced by one of another name with the same endpoints
    p.endpoint_changes.on_delete(eps("b", ["10.0.1.6"]))
    p.endpoint_changes.on_add(eps("b", ["10.0.1.6"], slice_name="b-new"))
    result = p.sync()
    assert result.ok and not result.full and result.changed == {("default", "b")}
    assert len(fake.restores) == 2
    assert set(declared(fake.restores[-1])) == {c for t, c in TOP_LEVEL if t == "nat"}
    assert reach(fake, "10.96.0.20", 80) == "10.0.1.6:8080"


def test_deleted_service_chains_are_removed_in_partial_sync():
    p, fake = two_services()
    p.sync()
    before = fake.nat_chains()
    p.service_changes.on_delete(svc("b", "10.96.0.20"))
    p.endpoint_changes.on_delete(eps("b", ["10.0.1.6"]))
    result = p.sync()
    assert result.ok and not result.full
    gone = before - fake.nat_chains()
    assert len(gone) == 2 and all(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in gone)
    assert all(f"-X {c}" in fake.restores[-1] for c in gone)
    assert reach(fake, "10.96.0.20", 80) == ""
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080, 10.0.2.5:8080"


def test_service_without_endpoints_rejects_then_recovers():
    p, fake = proxier()
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    p.sync()
    assert reach(fake, "10.96.0.10", 80) == "REJECT"
    p.endpoint_changes.on_add(eps("a", ["10.0.1.5"]))
    p.sync()
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080"


def test_failed_apply_makes_next_sync_full():
    p, fake = two_services()
    p.sync()
    fake.fail_next = 1
    p.endpoint_changes.on_add(eps("a", ["10.0.9.9"], slice_name="a-second"))
    failed = p.sync()
    assert not failed.ok and not failed.full and "injected" in failed.error
    retry = p.sync()  # nothing new recorded, but the failure forces a full sync
    assert retry.ok and retry.full
    written = declared(fake.restores[-1])
    assert sum(c.startswith("KUBE-SVC-") for c in written) == 2  # both services rewritten
    assert reach(fake, "10.96.0.10", 80) == "10.0.1.5:8080, 10.0.2.5:8080, 10.0.9.9:8080"


def test_periodic_and_requested_full_sync():
    clock = Clock()
    p, fake = proxier(clock=clock)
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    assert p.sync().full
    clock.now += 30
    p.service_changes.on_add(svc("b", "10.96.0.20"))
    assert not p.sync().full
    clock.now += 31
    assert p.sync().full  # 61 s since the last full sync, even with nothing changed
    p.request_full_sync()
    assert p.sync().full


def test_nftables_services_sharing_an_address_and_port_sync_in_full():
    nft = FakeNft()
    p = Proxier(nft, SETTINGS, clock=Clock())
    # two services claim the same external IP and port (a conflict kube-proxy tolerates)
    for name, ip in (("a", "10.96.0.10"), ("b", "10.96.0.11")):
        p.service_changes.on_add(svc(name, ip, externalIPs=["192.168.9.9"]))
        p.endpoint_changes.on_add(eps(name, ["10.0.1.5"]))
    assert p.sync().full
    shared = [ln for ln in nft.restores[-1].splitlines() if "192.168.9.9 . tcp . 80 :" in ln]
    assert len(shared) == 1 and "default/a/" in shared[0]  # one element, the first service's
    # a goes: b must take the element over, which only a full sync can do
    p.service_changes.on_delete(svc("a", "10.96.0.10", externalIPs=["192.168.9.9"]))
    assert p.sync().full
    shared = [ln for ln in nft.restores[-1].splitlines() if "192.168.9.9 . tcp . 80 :" in ln]
    assert len(shared) == 1 and "default/b/" in shared[0]
    # b alone again: back to partial syncs
    p.endpoint_changes.on_add(eps("b", ["10.0.2.5"], slice_name="b-2"))
    assert not p.sync().full


def test_kernel_chains_are_read_at_start_and_after_a_failure_only():
    p, fake = two_services()
    assert p.sync().full and fake.chain_reads == 1
    p.request_full_sync()
    assert p.sync().full and fake.chain_reads == 1  # it knows what it wrote since
    fake.fail_next = 1
    p.service_changes.on_add(svc("c", "10.96.0.30"))
    assert not p.sync().ok
    assert p.sync().full and fake.chain_reads == 2


def test_restart_removes_stale_chains_left_by_predecessor():
    fake = FakeIptables()
    old, _ = proxier(fake)
    for o in (svc("a", "10.96.0.10"), svc("gone", "10.96.0.99")):
        old.service_changes.on_add(o)
    old.endpoint_changes.on_add(eps("gone", ["10.0.1.7"]))
    old.endpoint_changes.on_add(eps("a", ["10.0.1.5"]))
    old.sync()
    stale = {c for c in fake.nat_chains() if c.startswith("KUBE-S")}
    # kube-proxy dies; "gone" is deleted meanwhile; a new kube-proxy starts on the same kernel
    new, _ = proxier(fake)
    new.service_changes.on_add(svc("a", "10.96.0.10"))
    new.endpoint_changes.on_add(eps("a", ["10.0.1.5"]))
    assert new.sync().full
    left = {c for c in fake.nat_chains() if c.startswith("KUBE-S")}
    assert left < stale and len(stale - left) == 2
    assert reach(fake, "10.96.0.99", 80) == ""


def test_change_that_reverts_is_dropped():
    t = ServiceChangeTracker()
    a = svc("a", "10.96.0.10")
    t.on_add(a)
    assert t.pending() == 1
    t.on_delete(a)
    assert t.pending() == 0
    t.on_add(a)
    t.checkout()
    t.on_update(a, svc("a", "10.96.0.10", port=81))
    t.on_update(svc("a", "10.96.0.10", port=81), a)
    assert t.pending() == 0


def test_invalid_service_is_skipped_not_fatal():
    p, fake = proxier()
    p.service_changes.on_add(svc("a", "not-an-ip"))
    assert [i.path for i in p.service_changes.issues] == [("spec", "clusterIP")]
    p.service_changes.on_add(svc("b", "10.96.0.20"))
    assert p.sync().ok
    assert reach(fake, "10.96.0.20", 80) == "REJECT"


def udp_dns() -> tuple[Proxier, FakeIptables]:
    p, fake = proxier()
    p.service_changes.on_add(svc("dns", "10.96.0.10", 53, "UDP", ns="kube-system"))
    p.service_changes.on_add(svc("web", "10.96.0.20", 80, "TCP"))
    p.endpoint_changes.on_add(eps("dns", ["10.0.1.5", "10.0.2.5"], 53, "UDP", ns="kube-system"))
    p.endpoint_changes.on_add(eps("web", ["10.0.1.6", "10.0.2.6"]))
    p.sync()
    return p, fake


def test_udp_endpoint_removal_flushes_its_conntrack_entries():
    p, fake = udp_dns()
    fake.flushes.clear()
    p.endpoint_changes.on_update(
        eps("dns", ["10.0.1.5", "10.0.2.5"], 53, "UDP", ns="kube-system"),
        eps("dns", ["10.0.1.5"], 53, "UDP", ns="kube-system"))
    result = p.sync()
    assert result.ok and result.flushed == 1
    assert fake.flushes == [ConntrackFlush("udp", "10.96.0.10", 53, "10.0.2.5")]


def test_tcp_endpoint_removal_flushes_nothing():
    p, fake = udp_dns()
    fake.flushes.clear()
    p.endpoint_changes.on_update(eps("web", ["10.0.1.6", "10.0.2.6"]), eps("web", ["10.0.1.6"]))
    p.sync()
    assert fake.flushes == []


def test_udp_service_getting_first_endpoint_flushes_cluster_ip():
    """Every UDP entry to the ClusterIP, as upstream's ClearEntriesForIP (no port)."""
    p, fake = proxier()
    p.service_changes.on_add(svc("dns", "10.96.0.10", 53, "UDP"))
    p.sync()
    p.endpoint_changes.on_add(eps("dns", ["10.0.1.5"], 53, "UDP"))
    p.sync()
    assert fake.flushes == [ConntrackFlush("udp", "10.96.0.10")]


def test_udp_nodeport_getting_first_endpoint_flushes_its_addresses_and_node_port():
    """A packet to the NodePort while there was no endpoint left an entry with no DNAT, which
    blackholed the flow (upstream's conntrack e2e test for a NodePort): upstream clears the
    NodePort's entries too (ClearEntriesForPort), and those of external and LB IPs."""
    p, fake = proxier()
    p.service_changes.on_add(svc("dns", "10.96.0.10", 53, "UDP", type="LoadBalancer",
                                 externalIPs=["192.0.2.7"],
                                 ports=[{"name": "p", "port": 53, "protocol": "UDP",
                                         "nodePort": 30053}]))
    p.sync()
    p.endpoint_changes.on_add(eps("dns", ["10.0.1.5"], 53, "UDP"))
    p.sync()
    assert fake.flushes == [ConntrackFlush("udp", "10.96.0.10"), ConntrackFlush("udp", "192.0.2.7"),
                            ConntrackFlush("udp", None, 30053)]


def test_udp_nodeport_endpoint_removal_flushes_nodeport_too():
    p, fake = proxier()
    p.service_changes.on_add(svc("dns", "10.96.0.10", 53, "UDP", type="NodePort",
                                 ports=[{"name": "p", "port": 53, "protocol": "UDP",
                                         "nodePort": 30053}]))
    p.endpoint_changes.on_add(eps("dns", ["10.0.1.5"], 53, "UDP"))
    p.sync()
    fake.flushes.clear()
    p.endpoint_changes.on_delete(eps("dns", ["10.0.1.5"], 53, "UDP"))
    p.sync()
    assert fake.flushes == [ConntrackFlush("udp", "10.96.0.10", 53, "10.0.1.5"),
                            ConntrackFlush("udp", None, 30053, "10.0.1.5")]


def test_conntrack_flush_waits_for_a_successful_apply():
    p, fake = udp_dns()
    fake.flushes.clear()
    fake.fail_next = 1
    p.endpoint_changes.on_delete(eps("dns", ["10.0.1.5", "10.0.2.5"], 53, "UDP",
                                     ns="kube-system"))
    assert not p.sync().ok
    assert fake.flushes == []
    assert p.sync().ok
    assert {f.reply_src for f in fake.flushes} == {"10.0.1.5", "10.0.2.5"}


def test_nftables_mode_full_then_partial_syncs():
    nft = FakeNft()
    p = Proxier(nft, SETTINGS, clock=Clock())
    p.service_changes.on_add(svc("a", "10.96.0.10"))
    p.endpoint_changes.on_add(eps("a", ["10.0.1.5"]))
    p.service_changes.on_add(svc("b", "10.96.0.11"))
    p.endpoint_changes.on_add(eps("b", ["10.0.1.6"]))
    assert p.sync().full
    lines = nft.restores[-1].splitlines()
    assert lines[:2] == ["add table ip kube-proxy", "delete table ip kube-proxy"]
    # one endpoint more for a: a partial sync rewrites a's chains only; the maps still send
    # a's address to the same chain, so no element is touched
    p.endpoint_changes.on_add(eps("a", ["10.0.2.5"], slice_name="a-2"))
    result = p.sync()
    assert result.ok and not result.full
    text = nft.restores[-1]
    assert "delete table" not in text and "flush map" not in text and "element" not in text
    assert "dnat to 10.0.2.5:8080" in text and "dnat to 10.0.1.6" not in text
    # the endpoint goes again: its chain is deleted; so are b's chains and elements when b goes
    p.endpoint_changes.on_delete(eps("a", ["10.0.2.5"], slice_name="a-2"))
    p.service_changes.on_delete(svc("b", "10.96.0.11"))
    assert p.sync().ok
    lines = nft.restores[-1].splitlines()
    deleted = [ln for ln in lines if ln.startswith("delete chain")]
    assert any("10.0.2.5" in ln for ln in deleted) and any("default/b/" in ln for ln in deleted)
    assert not any("10.0.1.5" in ln for ln in deleted)
    assert sorted(ln for ln in lines if "element" in ln) == [
        "delete element ip kube-proxy cluster-ips { 10.96.0.11 }",
        "delete element ip kube-proxy service-ips { 10.96.0.11 . tcp . 80 }"]
    # a's last endpoint goes: its service-ips element is replaced by a reject verdict
    p.endpoint_changes.on_delete(eps("a", ["10.0.1.5"]))
    assert p.sync().ok
    lines = nft.restores[-1].splitlines()
    assert [ln for ln in lines if "element" in ln] == [
        "delete element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 }",
        'add element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 comment '
        '"default/a:p" : goto reject-chain }']
    # a failed apply makes the next sync full
    p.service_changes.on_add(svc("c", "10.96.0.12"))
    nft.fail_next = 1
    assert not p.sync().ok
    assert p.sync().full


def test_endpoint_total_follows_changes_and_switches_large_cluster_mode():
    p, fake = proxier()
    p.endpoint_changes.on_add(eps("orphan", [f"10.9.{i // 250}.{i % 250}" for i in range(600)]))
    for name in ("a", "b"):
        p.service_changes.on_add(svc(name, f"10.96.0.{10 + ord(name)}"))
        p.endpoint_changes.on_add(eps(name, [f"10.{ord(name)}.{i // 250}.{i % 250}"
                                             for i in range(501)]))
    p.sync()
    assert p.endpoint_total == 1002  # a's and b's; the orphan slice has no service
    sep_rules = [r for r in fake.rules("nat", next(c for c in fake.nat_chains()
                                                   if c.startswith("KUBE-SEP-")))]
    assert sep_rules and not any("--comment" in r for r in sep_rules)  # large cluster mode
    p.service_changes.on_delete(svc("b", "10.96.0.108"))
    p.request_full_sync()
    p.sync()
    assert p.endpoint_total == 501
    sep = next(c for c in fake.nat_chains() if c.startswith("KUBE-SEP-"))
    assert all("--comment" in r for r in fake.rules("nat", sep))
