"""flanneld's syncer over a fake node (testbed.routing.syncer over testbed.routing.fakes):
nodes joining and leaving change the routes and VTEP entries, a second sync writes nothing,
a restarted syncer adopts what is there, drift is repaired, the lease is published once,
the masquerade rules are written when they change, and a failed sync makes the next full."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

from testbed.routing import flannel
from testbed.routing.fakes import FakeNode
from testbed.routing.flannel import Config, FdbEntry, Neighbour, Route, VxlanDevice
from testbed.routing.syncer import RouteSyncer

from .test_routing_flannel import MAC2, MAC3, node

CLUSTER = IPv4Network("10.244.0.0/16")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """The annotations written to Nodes; with `echo`, the informer then delivers the Node as
    it is afterwards to that syncer, as the API server's watch would."""

    def __init__(self) -> None:
        self.written: list[tuple[str, dict]] = []
        self.echo: RouteSyncer | None = None
        self.nodes: dict[str, dict] = {}

    def __call__(self, name: str, annotations: dict) -> None:
        self.written.append((name, dict(annotations)))
        if self.echo is not None and name in self.nodes:
            old = self.nodes[name]
            new = {**old, "metadata": {**old["metadata"],
                                       "annotations": {**old["metadata"]["annotations"], **annotations}}}
            self.nodes[name] = new
            self.echo.node_changes.on_update(old, new)


def syncer(backend: str, fake: FakeNode, name: str = "w1", public: str = "10.100.0.2",
           api: Api | None = None, clock: Clock | None = None) -> RouteSyncer:
    cfg = Config(backend, name, "eth0", CLUSTER, IPv4Address(public))
    api = api or Api()
    s = RouteSyncer(fake, cfg, api, clock=clock or Clock())
    api.echo = s
    return s


def hostgw_nodes() -> list[dict]:
    return [node("w1", "10.244.1.0/24", "10.100.0.2"), node("w2", "10.244.2.0/24", "10.100.0.3"),
            node("w3", "10.244.3.0/24", "10.100.0.4")]


def vxlan_nodes(w1_mac: str = "") -> list[dict]:
    return [node("w1", "10.244.1.0/24", "10.100.0.2", "vxlan" if w1_mac else None, w1_mac),
            node("w2", "10.244.2.0/24", "10.100.0.3", "vxlan", MAC2),
            node("w3", "10.244.3.0/24", "10.100.0.4", "vxlan", MAC3)]


def feed(s: RouteSyncer, objs: list[dict]) -> None:
    for obj in objs:
        s.node_changes.on_add(obj)
        if isinstance(s.annotate, Api):
            s.annotate.nodes[obj["metadata"]["name"]] = obj


def R(dst: str, via: str, dev: str = "eth0", onlink: bool = False) -> Route:
    return Route(IPv4Network(dst), IPv4Address(via), dev, onlink)


# -- host-gw -------------------------------------------------------------------------------------------

def test_host_gw_routes_each_remote_pod_cidr_and_a_second_sync_writes_nothing():
    fake, api = FakeNode(address="10.100.0.2/24"), Api()
    s = syncer("host-gw", fake, api=api)
    feed(s, hostgw_nodes())
    result = s.sync()
    assert result.ok and result.full and result.subnet == "10.244.1.0/24"
    assert fake.routes() == [R("10.244.2.0/24", "10.100.0.3"), R("10.244.3.0/24", "10.100.0.4")]
    assert result.remotes == (("w2", "10.244.2.0/24"), ("w3", "10.244.3.0/24"))
    assert api.written == []      # the Node already carries these annotations
    fake.writes.clear()
    again = s.sync()
    assert again.ok and not again.full and again.changes == () and fake.writes == []


def test_a_node_that_joins_is_routed_and_one_that_leaves_is_unrouted():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes()[:2])
    s.sync()
    assert [r.dst for r in fake.routes()] == [IPv4Network("10.244.2.0/24")]
    w3 = hostgw_nodes()[2]
    s.node_changes.on_add(w3)
    assert "route add 10.244.3.0/24 via 10.100.0.4 dev eth0" in s.sync().changes
    s.node_changes.on_delete(w3)
    result = s.sync()
    assert result.changes == ("route delete 10.244.3.0/24 via 10.100.0.4 dev eth0",)
    assert fake.routes() == [R("10.244.2.0/24", "10.100.0.3")]


def test_a_node_whose_address_changed_is_routed_via_the_new_one():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes())
    s.sync()
    moved = node("w2", "10.244.2.0/24", "10.100.0.9")
    s.node_changes.on_update(hostgw_nodes()[1], moved)
    s.sync()
    assert R("10.244.2.0/24", "10.100.0.9") in fake.routes()
    assert R("10.244.2.0/24", "10.100.0.3") not in fake.routes()


def test_a_heartbeat_asks_for_no_sync_and_any_sync_repairs_drift():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes())
    s.sync()
    del fake.table[IPv4Network("10.244.2.0/24")]                       # drift
    assert s.node_changes.on_update(hostgw_nodes()[1], hostgw_nodes()[1]) is False   # a heartbeat
    result = s.sync()                                                   # the periodic sync
    assert result.ok and not result.full and len(fake.routes()) == 2
    assert s.node_changes.on_add(node("w4", "10.244.4.0/24", "10.100.0.5")) is True
    assert s.sync().ok and len(fake.routes()) == 3


def test_routes_that_are_not_flanneds_are_left_alone_and_drift_is_repaired():
    fake = FakeNode(address="10.100.0.2/24")
    default = R("0.0.0.0/0", "10.100.0.1")
    fake.table[default.dst] = default
    outside = R("198.51.100.0/28", "10.100.0.3")
    fake.table[outside.dst] = outside
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes())
    s.sync()
    del fake.table[IPv4Network("10.244.2.0/24")]                       # someone removed it
    stray = R("10.244.9.0/24", "10.100.0.7")                            # a node long gone
    fake.table[stray.dst] = stray
    s.sync()                                                            # the periodic sync
    assert fake.routes() == sorted([default, outside, R("10.244.2.0/24", "10.100.0.3"),
                                    R("10.244.3.0/24", "10.100.0.4")])


def test_the_lease_is_published_when_the_node_lacks_it_and_heartbeats_cost_nothing():
    fake, api = FakeNode(address="10.100.0.2/24"), Api()
    s = syncer("host-gw", fake, api=api)
    bare = node("w1", "10.244.1.0/24", "10.100.0.2", backend=None)
    feed(s, [bare, *hostgw_nodes()[1:]])
    s.sync()
    assert api.written == [("w1", flannel.own_annotations("host-gw", IPv4Address("10.100.0.2")))]
    annotated = node("w1", "10.244.1.0/24", "10.100.0.2")
    s.node_changes.on_update(bare, annotated)
    s.sync()
    assert len(api.written) == 1
    beat = {**annotated, "status": {**annotated["status"], "conditions": [{"type": "Ready"}]}}
    assert s.node_changes.on_update(annotated, beat) is False


def test_a_node_without_its_own_node_object_publishes_nothing_and_masquerades_nothing():
    fake, api = FakeNode(address="10.100.0.10/24"), Api()
    s = syncer("host-gw", fake, name="master", public="10.100.0.10", api=api)
    feed(s, hostgw_nodes())
    result = s.sync()
    assert result.ok and result.subnet == "" and len(fake.routes()) == 3
    assert api.written == [] and fake.iptables.nat_chains() == set()


def test_masquerading_is_written_when_it_changes_with_the_jump_appended_once():
    fake = FakeNode(address="10.100.0.2/24")
    clock = Clock()
    s = syncer("host-gw", fake, clock=clock)
    feed(s, hostgw_nodes())
    s.sync()
    assert fake.iptables.rules("nat", "FLANNEL-POSTRTG")[-1].endswith("-j MASQUERADE --random-fully")
    assert len(fake.iptables.rules("nat", "FLANNEL-POSTRTG")) == 6
    assert fake.iptables.rules("nat", "POSTROUTING") == ['-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG']
    fake.writes.clear()
    s.node_changes.on_add(node("w4", "10.244.4.0/24", "10.100.0.5"))
    s.sync()
    assert "iptables-restore" not in fake.writes         # the rules did not change
    clock.now += s.full_sync_period
    fake.iptables.restore("*nat\n:POSTROUTING - [0:0]\nCOMMIT\n")   # someone flushed POSTROUTING
    assert s.sync().full
    assert fake.iptables.rules("nat", "POSTROUTING") == ['-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG']


def test_a_node_object_that_appears_later_gets_its_rules_and_jump_at_once():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes()[1:])                # the kubelet has not registered w1 yet
    s.sync()
    assert "FLANNEL-POSTRTG" not in fake.iptables.nat_chains()
    feed(s, hostgw_nodes()[:1])
    result = s.sync()
    assert not result.full and result.subnet == "10.244.1.0/24"
    assert len(fake.iptables.rules("nat", "FLANNEL-POSTRTG")) == 6
    assert fake.iptables.rules("nat", "POSTROUTING") == ['-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG']


def test_deleting_an_unknown_node_changes_nothing_and_a_known_one_does():
    s = syncer("host-gw", FakeNode(address="10.100.0.2/24"))
    feed(s, hostgw_nodes())
    s.sync()
    assert s.node_changes.on_delete(node("w9", "10.244.9.0/24", "10.100.0.9")) is False
    assert s.node_changes.on_delete(hostgw_nodes()[2]) is True


def test_a_device_that_cannot_be_made_fails_the_sync_with_the_reason():
    class Broken(FakeNode):
        def create_vxlan(self, device, mac):
            self._write(f"create {device.name}")      # and nothing is made

    s = syncer("vxlan", Broken(address="10.100.0.2/24"))
    feed(s, vxlan_nodes())
    result = s.sync()
    assert not result.ok and "flannel.1 is missing right after it was made" in result.error


def test_a_failed_sync_is_reported_and_the_next_one_is_full_and_repairs():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("host-gw", fake)
    feed(s, hostgw_nodes())
    fake.fail_next = 1
    failed = s.sync()
    assert not failed.ok and "injected failure" in failed.error
    again = s.sync()
    assert again.ok and again.full and len(fake.routes()) == 2


def test_host_gw_removes_a_flannel_1_the_vxlan_backend_left():
    fake = FakeNode(address="10.100.0.2/24")
    v = syncer("vxlan", fake)
    feed(v, vxlan_nodes())
    v.sync()
    assert "flannel.1" in fake.links
    h = syncer("host-gw", fake)
    feed(h, hostgw_nodes())
    result = h.sync()
    assert "link delete flannel.1" in result.changes and "flannel.1" not in fake.links
    assert fake.routes() == [R("10.244.2.0/24", "10.100.0.3"), R("10.244.3.0/24", "10.100.0.4")]


# -- vxlan ------------------------------------------------------------------------------------------------

def test_vxlan_makes_flannel_1_and_an_entry_set_per_remote_node_then_publishes_its_mac():
    fake, api = FakeNode(address="10.100.0.2/24"), Api()
    s = syncer("vxlan", fake, api=api)
    feed(s, vxlan_nodes())
    result = s.sync()
    assert result.ok
    dev = fake.links["flannel.1"]
    assert dev.device == VxlanDevice("flannel.1", 1, 8472, IPv4Address("10.100.0.2"), "eth0", 1450)
    assert dev.mtu == 1450 and dev.up and dev.addresses == {IPv4Network("10.244.1.0/32")}
    assert dev.neighbours == {Neighbour(IPv4Address("10.244.2.0"), MAC2),
                              Neighbour(IPv4Address("10.244.3.0"), MAC3)}
    assert dev.fdb == {FdbEntry(MAC2, IPv4Address("10.100.0.3")),
                       FdbEntry(MAC3, IPv4Address("10.100.0.4"))}
    assert fake.routes() == [R("10.244.2.0/24", "10.244.2.0", "flannel.1", True),
                             R("10.244.3.0/24", "10.244.3.0", "flannel.1", True)]
    ((name, notes),) = api.written
    assert name == "w1" and json.loads(notes[flannel.BACKEND_DATA]) == {"VNI": 1, "VtepMAC": dev.mac}
    assert result.vtep_mac == dev.mac and result.subnet == "10.244.1.0/24"
    # the entries go in before the route that needs them, as flannel orders them
    writes = [w.split()[0] for w in fake.writes]
    assert writes.index("neigh") < writes.index("fdb") < writes.index("route")


def test_a_restarted_syncer_adopts_the_device_and_entries_and_writes_nothing_but_its_rules():
    fake = FakeNode(address="10.100.0.2/24")
    first = syncer("vxlan", fake)
    feed(first, vxlan_nodes())
    first.sync()
    mac = fake.links["flannel.1"].mac
    fake.writes.clear()
    second = syncer("vxlan", fake)
    feed(second, vxlan_nodes(mac))
    result = second.sync()
    assert result.ok and fake.writes == ["iptables-restore"]     # a full sync rewrites the chain
    assert fake.links["flannel.1"].mac == mac


def test_a_node_that_leaves_takes_its_route_fdb_and_neighbour_entries_with_it():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes())
    s.sync()
    s.node_changes.on_delete(vxlan_nodes()[2])
    changes = s.sync().changes
    assert changes == ("route delete 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
                       f"fdb delete {MAC3} dst 10.100.0.4 dev flannel.1",
                       f"neigh delete 10.244.3.0 lladdr {MAC3} dev flannel.1")
    dev = fake.links["flannel.1"]
    assert dev.fdb == {FdbEntry(MAC2, IPv4Address("10.100.0.3"))} and len(dev.neighbours) == 1


def test_a_node_whose_vtep_changed_gets_new_entries_and_loses_the_old():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes())
    s.sync()
    new_mac = "0a:58:0a:f4:02:99"
    s.node_changes.on_update(vxlan_nodes()[1], node("w2", "10.244.2.0/24", "10.100.0.3", "vxlan", new_mac))
    s.sync()
    dev = fake.links["flannel.1"]
    assert FdbEntry(new_mac, IPv4Address("10.100.0.3")) in dev.fdb
    assert FdbEntry(MAC2, IPv4Address("10.100.0.3")) not in dev.fdb
    assert Neighbour(IPv4Address("10.244.2.0"), new_mac) in dev.neighbours
    assert Neighbour(IPv4Address("10.244.2.0"), MAC2) not in dev.neighbours
    # the old entry went with the replace (the kernel keys neighbours by address): no delete
    # follows, which would take the new one too, as it does in the kernel (and the fake)
    assert s.sync().changes == ()
    assert Neighbour(IPv4Address("10.244.2.0"), new_mac) in dev.neighbours


def test_a_vtep_that_moved_has_its_fdb_entry_replaced_and_nothing_deleted():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes())
    s.sync()
    s.node_changes.on_update(vxlan_nodes()[1], node("w2", "10.244.2.0/24", "10.100.0.9", "vxlan", MAC2))
    assert s.sync().changes == (f"fdb add {MAC2} dst 10.100.0.9 dev flannel.1",)
    assert FdbEntry(MAC2, IPv4Address("10.100.0.9")) in fake.links["flannel.1"].fdb


def test_a_route_that_lost_its_onlink_flag_is_replaced_and_not_deleted_after():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes())
    s.sync()
    bare = R("10.244.2.0/24", "10.244.2.0", "flannel.1")
    fake.table[bare.dst] = bare                      # someone wrote it again without onlink
    s.node_changes.on_add(node("w4", "10.244.4.0/24", "10.100.0.5", "vxlan", "0a:58:0a:f4:04:01"))
    changes = s.sync().changes
    assert "route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in changes
    assert not any(c.startswith("route delete") for c in changes)
    # the kernel deletes a route by gateway and device whatever its flag: a delete of the old
    # one would have taken the new one
    assert R("10.244.2.0/24", "10.244.2.0", "flannel.1", True) in fake.routes()


def test_an_incompatible_device_is_made_again_with_the_mac_the_node_published():
    fake = FakeNode(address="10.100.0.2/24")
    published = "0a:58:0a:f4:01:77"
    fake.create_vxlan(VxlanDevice("flannel.1", 7, 8472, IPv4Address("10.100.0.2"), "eth0", 1450),
                      "0a:58:00:00:00:aa")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes(published))
    result = s.sync()
    assert any(c.startswith("link add flannel.1 (VNI 7 where 1 is wanted)") for c in result.changes)
    assert fake.links["flannel.1"].device.vni == 1 and fake.links["flannel.1"].mac == published


def test_a_device_whose_mtu_drifted_or_that_went_down_is_set_again():
    fake = FakeNode(address="10.100.0.2/24")
    s = syncer("vxlan", fake)
    feed(s, vxlan_nodes())
    s.sync()
    fake.links["flannel.1"].mtu, fake.links["flannel.1"].up = 1500, False
    assert "link set flannel.1 mtu 1450 up" in s.sync().changes
    assert fake.links["flannel.1"].mtu == 1450 and fake.links["flannel.1"].up


def test_the_master_has_a_device_without_an_address_and_reaches_every_worker():
    fake = FakeNode(address="10.100.0.10/24")
    s = syncer("vxlan", fake, name="master", public="10.100.0.10")
    feed(s, vxlan_nodes("0a:58:0a:f4:00:11"))
    result = s.sync()
    assert result.ok and result.subnet == ""
    assert fake.links["flannel.1"].addresses == set() and len(fake.routes()) == 3
