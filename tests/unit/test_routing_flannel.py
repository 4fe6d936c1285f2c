"""flannel's plan from the Node objects (testbed.routing.flannel): leases read as flannel's
kube subnet manager reads them, the annotations a node publishes, host-gw routes, the VXLAN
device and its entries, flannel's masquerade rules, and which kernel routes are flanneld's."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.routing import flannel
from testbed.routing.flannel import (
    Config,
    FdbEntry,
    Neighbour,
    Route,
    VxlanDevice,
    VxlanState,
)

CLUSTER = IPv4Network("10.244.0.0/16")
MAC1, MAC2, MAC3 = "0a:58:0a:f4:00:01", "0a:58:0a:f4:01:01", "0a:58:0a:f4:02:01"


def node(name: str, cidr: str | None, ip: str, backend: str | None = "host-gw", mac: str = "",
         **extra) -> dict:
    notes = {}
    if backend is not None:
        notes = flannel.own_annotations(backend, IPv4Address(ip), mac)
    notes.update(extra)
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"kind": "Node", "metadata": {"name": name, "annotations": notes,
                                         "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}}


def views(*nodes: dict) -> list[flannel.NodeView]:
    return [flannel.node_view(n) for n in nodes]


def hostgw(name: str = "w1", public: str | None = "172.16.0.2") -> Config:
    return Config("host-gw", name, "eth0", CLUSTER, IPv4Address(public) if public else None)


def vxlan(name: str = "w1", public: str | None = "172.16.1.2") -> Config:
    return Config("vxlan", name, "eth0", CLUSTER, IPv4Address(public) if public else None)


# -- reading Nodes ---------------------------------------------------------------------------------

def test_a_node_view_keeps_the_pod_cidrs_internal_ip_and_only_flannels_annotations():
    obj = node("w1", "10.244.0.0/24", "172.16.1.2", **{"other.io/x": "y"})
    view = flannel.node_view(obj)
    assert view.name == "w1" and view.pod_cidrs == ("10.244.0.0/24",)
    assert view.internal_ip == "172.16.1.2"
    assert {k for k, _ in view.annotations} == {flannel.BACKEND_DATA, flannel.BACKEND_TYPE,
                                                flannel.KUBE_SUBNET_MANAGER, flannel.PUBLIC_IP}
    # a heartbeat (new conditions, a new resourceVersion) reads the same
    beat = {**obj, "status": {**obj["status"], "conditions": [{"type": "Ready"}]},
            "metadata": {**obj["metadata"], "resourceVersion": "99"}}
    assert flannel.node_view(beat) == view


def test_the_internal_ip_is_that_address_whatever_the_order_of_the_addresses():
    obj = node("w1", "10.244.0.0/24", "172.16.1.2")
    obj["status"]["addresses"].reverse()      # Hostname first
    obj["status"]["addresses"].insert(0, "garbage")
    assert flannel.node_view(obj).internal_ip == "172.16.1.2"


def test_pod_cidr_takes_the_first_ipv4_of_pod_cidrs_else_pod_cidr():
    v = flannel.NodeView("a", ("fd00::/64", "10.244.3.0/24"))
    assert flannel.pod_cidr(v) == IPv4Network("10.244.3.0/24")
    only = flannel.node_view({"metadata": {"name": "b"}, "spec": {"podCIDR": "10.244.4.0/24"}})
    assert flannel.pod_cidr(only) == IPv4Network("10.244.4.0/24")
    assert flannel.pod_cidr(flannel.NodeView("c")) is None


def test_a_lease_needs_the_kube_subnet_manager_annotation_a_pod_cidr_and_a_public_ip():
    lease, why = flannel.parse_lease(flannel.node_view(node("w2", "10.244.1.0/24", "172.16.2.2")))
    assert lease == flannel.Lease("w2", IPv4Network("10.244.1.0/24"), IPv4Address("172.16.2.2"),
                                  "host-gw") and why == ""
    bare = node("w3", "10.244.2.0/24", "172.16.3.2", backend=None)
    lease, why = flannel.parse_lease(flannel.node_view(bare))
    assert lease is None and "kube-subnet-manager" in why
    no_cidr = node("w4", None, "172.16.4.2")
    assert "pod CIDR" in flannel.parse_lease(flannel.node_view(no_cidr))[1]
    bad_ip = node("w5", "10.244.5.0/24", "172.16.5.2", **{flannel.PUBLIC_IP: "nope"})
    assert "public-ip" in flannel.parse_lease(flannel.node_view(bad_ip))[1]


def test_a_vxlan_lease_carries_the_vtep_mac_of_its_backend_data():
    lease, _ = flannel.parse_lease(flannel.node_view(
        node("w2", "10.244.1.0/24", "172.16.2.2", "vxlan", MAC2.upper())))
    assert lease.backend_type == "vxlan" and lease.vtep_mac == MAC2
    broken = node("w2", "10.244.1.0/24", "172.16.2.2", "vxlan", MAC2,
                  **{flannel.BACKEND_DATA: '{"VNI":1}'})
    lease, why = flannel.parse_lease(flannel.node_view(broken))
    assert lease is None and "VtepMAC" in why
    assert "not JSON" in flannel.parse_lease(flannel.node_view(
        node("w2", "10.244.1.0/24", "172.16.2.2", "vxlan", MAC2, **{flannel.BACKEND_DATA: "{"})))[1]


def test_own_annotations_are_flannels_for_each_backend():
    assert flannel.own_annotations("host-gw", IPv4Address("10.100.0.2")) == {
        "flannel.alpha.coreos.com/backend-data": "null",
        "flannel.alpha.coreos.com/backend-type": "host-gw",
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": "10.100.0.2"}
    notes = flannel.own_annotations("vxlan", IPv4Address("172.16.1.2"), MAC1)
    assert notes[flannel.BACKEND_DATA] == '{"VNI":1,"VtepMAC":"0a:58:0a:f4:00:01"}'
    assert json.loads(notes[flannel.BACKEND_DATA]) == {"VNI": 1, "VtepMAC": MAC1}
    assert notes[flannel.BACKEND_TYPE] == "vxlan"


def test_the_stored_vtep_mac_is_the_one_a_node_published_before():
    assert flannel.stored_vtep_mac(flannel.node_view(
        node("w1", "10.244.0.0/24", "172.16.1.2", "vxlan", MAC1))) == MAC1
    assert flannel.stored_vtep_mac(flannel.node_view(node("w1", "10.244.0.0/24", "172.16.1.2"))) == ""
    assert flannel.stored_vtep_mac(None) == ""


# -- host-gw -----------------------------------------------------------------------------------------

def cluster_of(backend: str = "host-gw") -> list[flannel.NodeView]:
    macs = {"w1": MAC1, "w2": MAC2, "w3": MAC3}
    return views(*(node(n, f"10.244.{i}.0/24", f"172.16.{i + 1}.2", backend, macs[n])
                   for i, n in enumerate(("w1", "w2", "w3"))))


def test_host_gw_routes_every_other_nodes_pod_cidr_via_its_public_ip_on_the_uplink():
    p = flannel.plan(hostgw(), cluster_of())
    assert p.routes == {Route(IPv4Network("10.244.1.0/24"), IPv4Address("172.16.2.2"), "eth0"),
                        Route(IPv4Network("10.244.2.0/24"), IPv4Address("172.16.3.2"), "eth0")}
    assert p.fdb == set() and p.neighbours == set()
    assert flannel.device_addresses(hostgw(), cluster_of()[0]) == set()
    assert p.subnet == IPv4Network("10.244.0.0/24")
    assert p.remotes == (("w2", "10.244.1.0/24"), ("w3", "10.244.2.0/24"))
    assert p.annotations == flannel.own_annotations("host-gw", IPv4Address("172.16.0.2"))
    assert p.masq == flannel.masq_rules(CLUSTER, IPv4Network("10.244.0.0/24"))
    assert str(sorted(p.routes)[0]) == "10.244.1.0/24 via 172.16.2.2 dev eth0"


def test_nodes_of_another_backend_or_without_a_lease_are_ignored_with_the_reason():
    nodes = views(node("w1", "10.244.0.0/24", "172.16.1.2"),
                  node("w2", "10.244.1.0/24", "172.16.2.2", "vxlan", MAC2),
                  node("w3", "10.244.2.0/24", "172.16.3.2", backend=None),
                  node("w4", "10.244.0.0/25", "172.16.4.2"))
    p = flannel.plan(hostgw(), nodes)
    assert p.routes == set() and p.remotes == ()
    why = dict(p.ignored)
    assert "backend-type vxlan" in why["w2"] and "kube-subnet-manager" in why["w3"]
    assert "overlaps" in why["w4"]


def test_a_node_without_a_node_object_reaches_the_others_and_publishes_nothing():
    """The master: no kubelet, no Node, no pod CIDR."""
    p = flannel.plan(hostgw("master", "172.16.0.10"), cluster_of())
    assert len(p.routes) == 3 and p.subnet is None
    assert p.annotations == {} and p.masq == ()


def test_no_lease_is_taken_before_the_kubelet_has_registered_the_node():
    """The kubelet creates the Node, then updates it, then writes its status (addresses): a
    patch in between would make its next write conflict."""
    created = node("w1", "10.244.0.0/24", "172.16.1.2", backend=None)
    created["status"] = {}
    p = flannel.plan(hostgw(), views(created, node("w2", "10.244.1.0/24", "172.16.2.2")))
    assert p.annotations == {} and p.subnet is None and p.masq == ()
    assert len(p.routes) == 1


def test_the_public_ip_defaults_to_the_nodes_internal_ip():
    p = flannel.plan(hostgw(public=None), cluster_of())
    assert p.annotations[flannel.PUBLIC_IP] == "172.16.1.2"


# -- vxlan ---------------------------------------------------------------------------------------------

def test_vxlan_holds_a_neighbour_an_fdb_entry_and_an_onlink_route_per_remote_node():
    p = flannel.plan(vxlan(), cluster_of("vxlan"), MAC1)
    assert p.neighbours == {Neighbour(IPv4Address("10.244.1.0"), MAC2),
                            Neighbour(IPv4Address("10.244.2.0"), MAC3)}
    assert p.fdb == {FdbEntry(MAC2, IPv4Address("172.16.2.2")), FdbEntry(MAC3, IPv4Address("172.16.3.2"))}
    assert p.routes == {Route(IPv4Network("10.244.1.0/24"), IPv4Address("10.244.1.0"), "flannel.1", True),
                        Route(IPv4Network("10.244.2.0/24"), IPv4Address("10.244.2.0"), "flannel.1", True)}
    assert flannel.device_addresses(vxlan(), cluster_of("vxlan")[0]) == {IPv4Network("10.244.0.0/32")}
    assert flannel.device_addresses(vxlan("master"), None) == set()      # no pod CIDR, no address
    assert json.loads(p.annotations[flannel.BACKEND_DATA])["VtepMAC"] == MAC1
    assert str(sorted(p.routes)[0]) == "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"


def test_vxlan_publishes_no_lease_before_its_device_has_a_mac():
    p = flannel.plan(vxlan(), cluster_of("vxlan"), "")
    assert p.annotations == {} and p.subnet is None and p.masq == ()
    assert len(p.routes) == 2     # the others are reached all the same


def test_the_vxlan_device_is_flannels():
    dev = flannel.vxlan_device(vxlan(), IPv4Address("172.16.1.2"), 1500)
    assert dev == VxlanDevice("flannel.1", 1, 8472, IPv4Address("172.16.1.2"), "eth0", 1450, False)


def test_a_device_with_another_vni_port_local_address_uplink_or_learning_must_be_made_again():
    want = flannel.vxlan_device(vxlan(), IPv4Address("172.16.1.2"), 1500)
    same = VxlanState("vxlan", want, MAC1)
    assert flannel.vxlan_incompatible(want, same) == ""
    assert flannel.vxlan_incompatible(want, VxlanState("vxlan", VxlanDevice(
        "flannel.1", 1, 8472, IPv4Address("172.16.1.2"), "eth0", 1400), MAC1)) == ""   # MTU: set
    for change, words in ((dict(vni=2), "VNI"), (dict(port=4789), "port"),
                          (dict(local=IPv4Address("172.16.9.9")), "local address"),
                          (dict(link="eth1"), "uplink"), (dict(learning=True), "learning")):
        other = VxlanState("vxlan", VxlanDevice(**{**want.__dict__, **change}), MAC1)
        assert words in flannel.vxlan_incompatible(want, other)
    assert "bridge" in flannel.vxlan_incompatible(want, VxlanState("bridge"))
    assert "bridge" in flannel.vxlan_incompatible(want, VxlanState("bridge", want))
    assert flannel.vxlan_incompatible(want, VxlanState("vxlan")) != ""    # nothing known of it


# -- masquerading and ownership --------------------------------------------------------------------------

def test_masquerade_rules_are_flannels_in_flannels_order():
    rules = flannel.masq_rules(CLUSTER, IPv4Network("10.244.1.0/24"))
    text = flannel.masq_restore(rules)
    assert text == (
        "*nat\n"
        ":FLANNEL-POSTRTG - [0:0]\n"
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN\n'
        '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN\n'
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN\n'
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN\n'
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" '
        "-j MASQUERADE --random-fully\n"
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" '
        "-j MASQUERADE --random-fully\n"
        "COMMIT\n")
    assert flannel.MASQ_JUMP.chain == "POSTROUTING" and flannel.MASQ_JUMP.args[-1] == "FLANNEL-POSTRTG"


def test_a_masquerade_off_plan_has_no_rules():
    cfg = Config("host-gw", "w1", "eth0", CLUSTER, IPv4Address("172.16.0.2"), ip_masq=False)
    assert flannel.plan(cfg, cluster_of()).masq == ()


@pytest.mark.parametrize("route, ours", [
    (Route(IPv4Network("10.244.1.0/24"), IPv4Address("172.16.2.2"), "eth0"), True),
    (Route(IPv4Network("10.244.1.0/24"), IPv4Address("10.244.1.0"), "flannel.1", True), True),
    (Route(IPv4Network("10.244.0.0/24"), IPv4Address("172.16.2.2"), "eth0"), False),   # own CIDR
    (Route(IPv4Network("0.0.0.0/0"), IPv4Address("172.16.1.1"), "eth0"), False),       # default
    (Route(IPv4Network("10.244.1.0/24"), IPv4Address("10.244.0.9"), "cni0"), False),    # a CNI's
    (Route(IPv4Network("198.51.100.0/28"), IPv4Address("172.16.2.2"), "eth0"), False),
])
def test_flanneld_owns_gateway_routes_into_the_cluster_network_on_its_links_only(route, ours):
    assert flannel.owned_route(route, vxlan(), IPv4Network("10.244.0.0/24")) is ours


def test_annotations_are_stale_when_any_is_missing_or_different():
    own = flannel.node_view(node("w1", "10.244.0.0/24", "172.16.1.2"))
    wanted = flannel.own_annotations("host-gw", IPv4Address("172.16.1.2"))
    assert not flannel.annotations_stale(own, wanted)
    assert flannel.annotations_stale(own, {**wanted, flannel.PUBLIC_IP: "172.16.9.9"})
    assert flannel.annotations_stale(flannel.node_view(node("w1", "10.244.0.0/24", "172.16.1.2",
                                                            backend=None)), wanted)
    assert not flannel.annotations_stale(None, wanted) and not flannel.annotations_stale(own, {})
