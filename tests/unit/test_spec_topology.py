"""testbed.spec.topology: defaults, address placement, and every problem reported at once."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest

from testbed.spec.source import SpecError
from testbed.spec.topology import Topology, load_topology

from .conftest import ROOT

SHIPPED = sorted((ROOT / "topologies").glob("*.yaml"))


@pytest.fixture
def topo(write):
    """topo(text) -> Topology from a file `t.yaml` holding `text`."""
    return lambda text, name="t.yaml": load_topology(write(name, text))


@pytest.fixture
def problems(write, tmp_path):
    """problems(text) -> every problem as "t.yaml:LINE: field: reason" (no directory)."""

    def _problems(text: str) -> list[str]:
        path = write("t.yaml", text)
        with pytest.raises(SpecError) as info:
            load_topology(path)
        return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]

    return _problems


# --- defaults and placement -------------------------------------------------------------------

def test_empty_mapping_gives_the_classic_two_node_cluster(topo):
    t = topo("{}\n", name="classic.yaml")
    assert t.name == "classic"  # the file's stem
    assert t.network_mode == "routed"
    assert t.node_cidr == N("172.16.0.0/16")
    assert t.cluster_cidr == N("10.244.0.0/16")
    assert t.service_cidr == N("10.96.0.0/12")
    assert t.client_cidr == N("203.0.113.0/24")
    assert t.gateway_name == "gw"
    assert t.proxy_mode == "iptables"
    assert [n.name for n in t.nodes] == ["master", "w1", "w2"]
    assert [c.name for c in t.clients] == ["client"]
    assert t.dns_service_ip == A("10.96.0.10")


def test_routed_mode_gives_each_node_its_own_subnet(topo):
    t = topo("name: r\n")
    m, w1, w2 = t.nodes
    assert (m.role, m.subnet, m.gateway, m.address, m.pod_cidr) == (
        "master", N("172.16.0.0/24"), A("172.16.0.1"), A("172.16.0.2"), None)
    assert (w1.role, w1.subnet, w1.gateway, w1.address, w1.pod_cidr) == (
        "worker", N("172.16.1.0/24"), A("172.16.1.1"), A("172.16.1.2"), N("10.244.0.0/24"))
    assert (w2.subnet, w2.gateway, w2.address, w2.pod_cidr) == (
        N("172.16.2.0/24"), A("172.16.2.1"), A("172.16.2.2"), N("10.244.1.0/24"))
    assert m.bridge_address is None
    assert w1.bridge_address == A("10.244.0.1")
    assert w2.bridge_address == A("10.244.1.1")
    assert all(n.proxy_mode == "iptables" and n.labels == () for n in t.nodes)


def test_routed_mode_with_other_prefixes(topo):
    t = topo("""
        network:
          nodeCIDR: 192.168.0.0/24
          nodeSubnetPrefix: 30
          clusterCIDR: 10.0.0.0/20
          podCIDRPrefix: 26
        workers: [a, b, c]
    """)
    assert [(str(n.subnet), str(n.gateway), str(n.address)) for n in t.nodes] == [
        ("192.168.0.0/30", "192.168.0.1", "192.168.0.2"),
        ("192.168.0.4/30", "192.168.0.5", "192.168.0.6"),
        ("192.168.0.8/30", "192.168.0.9", "192.168.0.10"),
        ("192.168.0.12/30", "192.168.0.13", "192.168.0.14"),
    ]
    assert [str(w.pod_cidr) for w in t.workers] == ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26"]


def test_shared_mode_puts_every_node_on_one_lan(topo):
    t = topo("""
        network:
          mode: shared
          nodeCIDR: 192.168.50.0/24
        workers: [w1, w2, w3]
    """)
    assert t.network_mode == "shared"
    assert [str(n.address) for n in t.nodes] == [
        "192.168.50.2", "192.168.50.3", "192.168.50.4", "192.168.50.5"]
    assert {n.subnet for n in t.nodes} == {N("192.168.50.0/24")}
    assert {n.gateway for n in t.nodes} == {A("192.168.50.1")}
    assert [str(w.pod_cidr) for w in t.workers] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]


def test_shared_mode_fills_a_small_lan_exactly(topo):
    # /29: .0 network, .1 gateway, .7 broadcast -> five nodes at .2 .. .6
    t = topo("""
        network: {mode: shared, nodeCIDR: 10.9.0.0/29}
        workers: [a, b, c, d]
    """)
    assert [str(n.address) for n in t.nodes][-1] == "10.9.0.6"


def test_clients_are_placed_after_the_gateway(topo):
    t = topo("clients: [c1, {name: c2}, {name: c3, address: 203.0.113.50}]\n")
    assert [(c.name, str(c.address)) for c in t.clients] == [
        ("c1", "203.0.113.2"), ("c2", "203.0.113.3"), ("c3", "203.0.113.50")]
    assert all(c.subnet == N("203.0.113.0/24") and c.gateway == A("203.0.113.1") for c in t.clients)


def test_no_clients(topo):
    assert topo("clients: []\n").clients == ()


def test_explicit_pod_cidr_and_address(topo):
    t = topo("""
        workers:
          - w1
          - {name: w2, podCIDR: 10.244.0.0/24, address: 172.16.2.9}
    """)
    w1, w2 = t.workers
    assert w2.pod_cidr == N("10.244.0.0/24")
    assert w2.address == A("172.16.2.9")
    # the automatic one skips the CIDR taken explicitly, even by a later worker
    assert w1.pod_cidr == N("10.244.1.0/24")
    assert w2.bridge_address == A("10.244.0.1")


def test_explicit_pod_cidr_of_another_size(topo):
    t = topo("workers: [{name: w1, podCIDR: 10.244.0.0/23}, w2]\n")
    assert [str(w.pod_cidr) for w in t.workers] == ["10.244.0.0/23", "10.244.2.0/24"]


def test_master_forms_gateway_name_and_proxy_modes(topo):
    t = topo("""
        name: my-cluster
        master: {name: cp, labels: {tier: control}}
        workers:
          - {name: a, kubeProxy: {mode: nftables}, labels: {zone: b, disk: ssd}}
          - b
        gateway: {name: router}
        kubeProxy: {mode: userspace}
    """)
    assert t.name == "my-cluster"
    assert t.master.name == "cp"
    assert t.master.labels == (("tier", "control"),)
    assert t.gateway_name == "router"
    assert t.proxy_mode == "userspace"
    assert [(n.name, n.proxy_mode) for n in t.nodes] == [
        ("cp", "userspace"), ("a", "nftables"), ("b", "userspace")]
    assert t.node("a").labels == (("disk", "ssd"), ("zone", "b"))  # sorted


def test_node_lookup_and_frozen(topo):
    t = topo("{}\n")
    assert t.node("w2").address == A("172.16.2.2")
    with pytest.raises(KeyError):
        t.node("w9")
    with pytest.raises(KeyError):
        t.node("client")  # clients are not nodes
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.master.address = A("1.2.3.4")  # type: ignore[misc]


def test_file_is_recorded(write):
    path = write("sub/x.yaml", "name: x\n")
    assert load_topology(path).file == str(path)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_topologies_load(path: Path):
    t = load_topology(path)
    assert isinstance(t, Topology)
    assert t.name == path.stem
    assert len(t.workers) >= 2
    pod_cidrs = [w.pod_cidr for w in t.workers]
    assert all(c is not None and c.subnet_of(t.cluster_cidr) for c in pod_cidrs)
    assert len(set(pod_cidrs)) == len(pod_cidrs)
    assert len({n.address for n in t.nodes}) == len(t.nodes)


def test_shipped_two_node_matches_its_comments():
    t = load_topology(ROOT / "topologies" / "two-node.yaml")
    assert [(n.name, str(n.address)) for n in t.nodes] == [
        ("master", "172.16.0.2"), ("w1", "172.16.1.2"), ("w2", "172.16.2.2")]
    assert [str(w.pod_cidr) for w in t.workers] == ["10.244.0.0/24", "10.244.1.0/24"]


def test_shipped_shared_lan_matches_its_comments():
    t = load_topology(ROOT / "topologies" / "shared-lan.yaml")
    assert t.network_mode == "shared"
    assert [(n.name, str(n.address)) for n in t.nodes] == [
        ("master", "10.100.0.2"), ("w1", "10.100.0.3"), ("w2", "10.100.0.4")]
    assert t.dns_service_ip == A("10.3.240.10")


def test_shipped_ten_node():
    t = load_topology(ROOT / "topologies" / "ten-node.yaml")
    assert len(t.workers) == 10
    assert t.node("w10").labels == (("zone", "b"),)
    assert t.node("w10").pod_cidr == N("10.244.9.0/24")
    assert [c.name for c in t.clients] == ["client", "client2"]


# --- errors -----------------------------------------------------------------------------------

def test_unknown_keys_at_every_level(problems):
    assert problems("""
        name: t
        bogus: 1
        network:
          colour: red
        master: m
        workers:
          - {name: w1, zone: a}
        clients:
          - {name: c, port: 3}
        gateway: {name: gw, x: 1}
        kubeProxy: {mode: iptables, y: 2}
    """) == [
        't.yaml:2: bogus: unknown field "bogus"',
        't.yaml:4: network.colour: unknown field "colour"',
        't.yaml:11: kubeProxy.y: unknown field "y"',
        't.yaml:10: gateway.x: unknown field "x"',
        't.yaml:7: workers[0].zone: unknown field "zone"',
        't.yaml:9: clients[0].port: unknown field "port"',
    ]


def test_master_problems_name_the_master_field(problems):
    assert problems("master: {name: m, extra: 1}\n") == [
        't.yaml:1: master.extra: unknown field "extra"']


def test_node_level_kube_proxy_unknown_key(problems):
    assert problems("workers: [{name: w1, kubeProxy: {mode: nftables, z: 1}}, w2]\n") == [
        't.yaml:1: workers[0].kubeProxy.z: unknown field "z"']


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("nodeCIDR", "10.0.0.0/33", 'Invalid value: "10.0.0.0/33": must be a valid CIDR value'),
    ("clusterCIDR", "10.244.0.1/16", 'Invalid value: "10.244.0.1/16": must be a network address: '
                                     "host bits are set (the network is 10.244.0.0/16)"),
    ("serviceCIDR", "fd00::/108", 'Invalid value: "fd00::/108": must be an IPv4 CIDR'),
    ("clientCIDR", "nonsense", 'Invalid value: "nonsense": must be a valid CIDR value'),
    ("nodeCIDR", "300.1.0.0/16", 'Invalid value: "300.1.0.0/16": must be a valid CIDR value'),
    ("nodeCIDR", "10.0.0.0", 'Invalid value: "10.0.0.0": must be a valid CIDR value'),
    ("nodeCIDR", "24", "Invalid value: 24: must be a valid CIDR value"),
])
def test_malformed_cidrs(problems, key, value, reason):
    [problem] = problems(f"name: t\nnetwork:\n  {key}: {value}\n")
    assert problem.startswith(f"t.yaml:3: network.{key}: {reason}")


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("nodeSubnetPrefix", "31", "31: must be between 8 and 30, inclusive"),
    ("nodeSubnetPrefix", "7", "7: must be between 8 and 30, inclusive"),
    ("podCIDRPrefix", "true", "true: must be an integer"),
    ("podCIDRPrefix", "'24'", '"24": must be an integer'),
    ("podCIDRPrefix", "24.5", "24.5: must be an integer"),
])
def test_bad_prefixes(problems, key, value, reason):
    assert problems(f"network:\n  {key}: {value}\n") == [
        f"t.yaml:2: network.{key}: Invalid value: {reason}"]


def test_bad_network_mode(problems):
    assert problems("network: {mode: star}\n") == [
        't.yaml:1: network.mode: Unsupported value: "star": supported values: "routed", "shared"']


def test_network_must_be_a_mapping(problems):
    assert problems("network: [a]\n") == ['t.yaml:1: network: Invalid value: ["a"]: must be an object']


@pytest.mark.parametrize(("key", "cidr", "words"), [
    ("clientCIDR", "224.1.0.0/24", "the multicast range (224.0.0.0/4, ff00::/8)"),
    ("serviceCIDR", "127.0.0.0/16", "the loopback range (127.0.0.0/8, ::1/128)"),
    ("nodeCIDR", "169.254.0.0/16", "the link-local range (169.254.0.0/16, fe80::/10)"),
    ("clusterCIDR", "0.0.0.0/0", "the unspecified range (0.0.0.0/8)"),
    ("clientCIDR", "240.0.0.0/24", "the reserved range (240.0.0.0/4)"),
    ("serviceCIDR", "96.0.0.0/3", "the loopback range (127.0.0.0/8, ::1/128)"),  # holds 127/8
])
def test_special_ranges_are_refused(problems, key, cidr, words):
    assert problems(f"network: {{{key}: {cidr}}}\n") == [
        f't.yaml:1: network.{key}: Invalid value: "{cidr}": may not be in {words}']


@pytest.mark.parametrize("cidr", ["126.0.0.0/8", "128.0.0.0/16", "223.255.0.0/16", "1.0.0.0/8"])
def test_ranges_beside_the_special_ones_are_fine(topo, cidr):
    assert str(topo(f"network: {{clientCIDR: {cidr}}}\n").client_cidr) == cidr


def test_a_load_balancer_pool_in_a_special_range_is_refused(problems):
    assert problems("loadBalancer: {pool: [127.0.0.5]}\n") == [
        't.yaml:1: loadBalancer.pool[0]: Invalid value: "127.0.0.5/32": may not be in the '
        "loopback range (127.0.0.0/8, ::1/128)"]


@pytest.mark.parametrize(("net", "expected"), [
    ("{nodeCIDR: 10.244.0.0/20}",
     't.yaml:1: network.clusterCIDR: Invalid value: "10.244.0.0/16": overlaps nodeCIDR 10.244.0.0/20'),
    ("{serviceCIDR: 10.244.128.0/20}",
     't.yaml:1: network.serviceCIDR: Invalid value: "10.244.128.0/20": overlaps clusterCIDR 10.244.0.0/16'),
    ("{clientCIDR: 172.16.5.0/24}",
     't.yaml:1: network.clientCIDR: Invalid value: "172.16.5.0/24": overlaps nodeCIDR 172.16.0.0/16'),
])
def test_overlapping_cidrs(problems, net, expected):
    assert problems(f"network: {net}\n") == [expected]


def test_every_overlap_is_reported(problems):
    assert problems("network: {nodeCIDR: 10.0.0.0/8, serviceCIDR: 10.96.0.0/12}\n") == [
        't.yaml:1: network.clusterCIDR: Invalid value: "10.244.0.0/16": overlaps nodeCIDR 10.0.0.0/8',
        't.yaml:1: network.serviceCIDR: Invalid value: "10.96.0.0/12": overlaps nodeCIDR 10.0.0.0/8',
    ]


def test_pod_cidr_outside_the_cluster_cidr(problems):
    assert problems("""
        workers:
          - w1
          - name: w2
            podCIDR: 10.245.0.0/24
    """) == ['t.yaml:4: workers[1].podCIDR: Invalid value: "10.245.0.0/24": is outside clusterCIDR '
             "10.244.0.0/16"]


def test_malformed_explicit_pod_cidr(problems):
    [problem] = problems("workers: [{name: w1, podCIDR: 10.244.0.1/24}, w2]\n")
    assert problem.startswith('t.yaml:1: workers[0].podCIDR: Invalid value: "10.244.0.1/24": must be '
                              "a network address")


def test_overlapping_explicit_pod_cidrs(problems):
    [problem] = problems("""
        workers:
          - {name: w1, podCIDR: 10.244.0.0/23}
          - {name: w2, podCIDR: 10.244.1.0/24}
    """)
    assert problem.startswith(
        't.yaml:3: workers[1].podCIDR: Invalid value: "10.244.1.0/24": overlaps the podCIDR of '
        "workers[0] (10.244.0.0/23)")


def test_master_takes_no_pod_cidr(problems):
    assert problems("master: {name: m, podCIDR: 10.244.9.0/24}\n") == [
        "t.yaml:1: master.podCIDR: Forbidden: the master runs no pods here; podCIDR is for workers"]


def test_more_nodes_than_routed_node_cidr_holds(problems):
    assert problems("""
        network: {nodeCIDR: 172.16.0.0/24, nodeSubnetPrefix: 26}
        workers: [a, b, c, d]
    """) == ['t.yaml:1: network.nodeCIDR: Invalid value: "172.16.0.0/24": holds 4 nodes, the '
             "topology has 5"]


def test_more_nodes_than_shared_lan_holds(problems):
    assert problems("""
        network: {mode: shared, nodeCIDR: 10.9.0.0/29}
        workers: [a, b, c, d, e]
    """) == ['t.yaml:1: network.nodeCIDR: Invalid value: "10.9.0.0/29": holds 5 nodes besides '
             "its network, broadcast and gateway addresses, the topology has 6"]


def test_node_subnet_larger_than_node_cidr(problems):
    assert problems("network: {nodeCIDR: 172.16.0.0/16, nodeSubnetPrefix: 12}\n") == [
        "t.yaml:1: network.nodeSubnetPrefix: Invalid value: 12: a /12 subnet does not fit in "
        "nodeCIDR 172.16.0.0/16"]


def test_pod_prefix_larger_than_cluster_cidr(problems):
    assert problems("network: {clusterCIDR: 10.244.0.0/16, podCIDRPrefix: 15}\n") == [
        "t.yaml:1: network.podCIDRPrefix: Invalid value: 15: a /15 pod CIDR does not fit in "
        "clusterCIDR 10.244.0.0/16"]


def test_more_workers_than_cluster_cidr_holds(problems):
    assert problems("""
        network: {clusterCIDR: 10.244.0.0/23, podCIDRPrefix: 24}
        workers: [a, b, c]
    """) == ['t.yaml:1: network.clusterCIDR: Invalid value: "10.244.0.0/23": holds 2 pod CIDRs '
             "of /24, the topology has 3 workers"]


def test_explicit_pod_cidrs_can_leave_none_for_the_rest(problems):
    assert problems("""
        network: {clusterCIDR: 10.244.0.0/23}
        workers: [a, {name: b, podCIDR: 10.244.0.0/23}]
    """) == ['t.yaml:1: network.clusterCIDR: Invalid value: "10.244.0.0/23": has no pod CIDR '
             "left for a"]


@pytest.mark.parametrize(("where", "expected"), [
    ("master: w1\nworkers: [w1, w2]\n",
     't.yaml:2: workers[0].name: Duplicate value: "w1": also the name of master (line 1)'),
    ("workers: [w1, w2, w1]\n",
     't.yaml:1: workers[2].name: Duplicate value: "w1": also the name of workers[0] (line 1)'),
    ("workers:\n  - w1\n  - client\nclients: [client]\n",
     't.yaml:4: clients[0].name: Duplicate value: "client": also the name of workers[1] (line 3)'),
    ("clients: [c, {name: c}]\n",
     't.yaml:1: clients[1].name: Duplicate value: "c": also the name of clients[0] (line 1)'),
])
def test_duplicate_names_across_roles(problems, where, expected):
    assert problems(where) == [expected]


@pytest.mark.parametrize(("where", "expected"), [
    ("clients: [gw]\n",
     't.yaml:1: gateway.name: Duplicate value: "gw": also the name of clients[0] (line 1)'),
    ("master: m\ngateway: {name: m}\n",
     't.yaml:2: gateway.name: Duplicate value: "m": also the name of master (line 1)'),
])
def test_gateway_name_clash(problems, where, expected):
    assert problems(where) == [expected]


def test_gateway_name_clash_is_reported(problems):
    [problem] = problems("master: m\ngateway: {name: m}\n")
    assert problem.startswith("t.yaml:2: gateway.name")
    assert problem.endswith("also the name of master (line 1)")


@pytest.mark.parametrize(("text", "field"), [
    ("name: My_Cluster\n", "name"),
    ("master: Master\n", "master.name"),
    ("workers: [w1, W_2]\n", "workers[1].name"),
    ("clients: [client.example]\n", "clients[0].name"),
    ("gateway: {name: -gw}\n", "gateway.name"),
    ("workers: [w1, " + "x" * 64 + "]\n", "workers[1].name"),
])
def test_non_dns_1123_names(problems, text, field):
    [problem] = problems(text)
    assert problem.startswith(f"t.yaml:1: {field}: Invalid value: ")
    assert ("RFC 1123 label" in problem or "no more than 63 characters" in problem
            or problem.endswith("must not contain dots"))


def test_name_from_file_stem_must_be_a_label(write):
    path = write("My_Topology.yaml", "{}\n")
    with pytest.raises(SpecError) as info:
        load_topology(path)
    [problem] = info.value.problems
    assert problem.field == "name"
    assert problem.message.startswith('Invalid value: "My_Topology": a lowercase RFC 1123 label')


def test_worker_without_name(problems):
    assert problems("workers: [{address: 172.16.1.5}, w2]\n") == [
        "t.yaml:1: workers[0].name: Required value"]


def test_worker_that_is_no_mapping(problems):
    assert problems("workers: [5, w2]\n") == [
        "t.yaml:1: workers[0]: Invalid value: 5: must be an object",
        "t.yaml:1: workers[0].name: Required value",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("workers: []\n", "t.yaml:1: workers: Required value: at least one worker is needed"),
    ("workers: w1\n", 't.yaml:1: workers: Invalid value: "w1": must be a list'),
    ("clients: client\n", 't.yaml:1: clients: Invalid value: "client": must be a list'),
])
def test_worker_and_client_lists(problems, text, expected):
    assert expected in problems(text)


@pytest.mark.parametrize(("where", "expected"), [
    ("kubeProxy: {mode: ipvs}\n",
     't.yaml:1: kubeProxy.mode: Unsupported value: "ipvs": supported values: "iptables", '
     '"nftables", "userspace"'),
    ("workers: [w1, {name: w2, kubeProxy: {mode: bpf}}]\n",
     't.yaml:1: workers[1].kubeProxy.mode: Unsupported value: "bpf": supported values: '
     '"iptables", "nftables", "userspace"'),
    ("kubeProxy: iptables\n", 't.yaml:1: kubeProxy: Invalid value: "iptables": must be an object'),
])
def test_bad_proxy_modes(problems, where, expected):
    assert problems(where) == [expected]


@pytest.mark.parametrize(("labels", "field", "reason"), [
    ("{zone: 1}", "labels.zone", "Invalid value: 1: must be a string"),
    ("[a, b]", "labels", 'Invalid value: ["a", "b"]: must be an object'),
    ("{zone: [a]}", "labels.zone", 'Invalid value: ["a"]: must be a string'),
    ("zone", "labels", 'Invalid value: "zone": must be an object'),
])
def test_bad_labels(problems, labels, field, reason):
    assert problems(f"workers:\n  - w1\n  - name: w2\n    labels: {labels}\n") == [
        f"t.yaml:4: workers[1].{field}: {reason}"]


LABEL_VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")


@pytest.mark.parametrize(("labels", "field", "reason"), [
    # ValidateLabels reports values, as keys, at the map (on the key's line here)
    ('{zone: "a b"}', "labels", f'Invalid value: "a b": {LABEL_VALUE_RULE}'),
    ("{zone: " + "v" * 64 + "}", "labels",
     f'Invalid value: "{"v" * 64}": must be no more than 63 bytes'),
    ("{zone: зона}", "labels", f'Invalid value: "зона": {LABEL_VALUE_RULE}'),
    ("{зона: a}", "labels", 'Invalid value: "зона": name part must consist of alphanumeric'),
    ("{a/b/c: x}", "labels", 'Invalid value: "a/b/c": a valid label key must consist of'),
    ("{Example.COM/zone: x}", "labels", 'Invalid value: "Example.COM/zone": prefix part a '
                                        "lowercase RFC 1123 subdomain"),
    ("{-zone: x}", "labels", 'Invalid value: "-zone": name part must consist of'),
])
def test_labels_follow_the_api_servers_rules(problems, labels, field, reason):
    [problem] = problems(f"workers:\n  - w1\n  - name: w2\n    labels: {labels}\n")
    assert problem.startswith(f"t.yaml:4: workers[1].{field}: {reason}")


@pytest.mark.parametrize("labels", [
    "{zone: a}", "{topology.kubernetes.io/zone: eu-1a}", "{zone: ''}", "{a: " + "v" * 63 + "}",
    "{x.example.com/Some_Key-1: A.b_c-9}",
])
def test_good_labels_are_kept(topo, labels):
    t = topo(f"workers:\n  - w1\n  - name: w2\n    labels: {labels}\n")
    assert t.workers[1].labels and t.workers[0].labels == ()


@pytest.mark.parametrize(("worker", "expected"), [
    ("{name: w1, address: 172.16.1.1}",
     't.yaml:1: workers[0].address: Invalid value: "172.16.1.1": is not a free host address of '
     "172.16.1.0/24"),
    ("{name: w1, address: 172.16.1.255}",
     't.yaml:1: workers[0].address: Invalid value: "172.16.1.255": is not a free host address of '
     "172.16.1.0/24"),
    ("{name: w1, address: 172.16.1}",
     't.yaml:1: workers[0].address: Invalid value: "172.16.1": must be a valid IPv4 address, '
     "(e.g. 10.9.8.7)"),
])
def test_bad_node_addresses(problems, worker, expected):
    assert problems(f"workers: [{worker}, w2]\n") == [expected]


def test_address_in_another_nodes_subnet_is_reported_twice(problems):
    # not w1's subnet, and the address w2 would get
    first, second = problems("workers: [{name: w1, address: 172.16.2.2}, w2]\n")
    assert first == ('t.yaml:1: workers[0].address: Invalid value: "172.16.2.2": is not a free '
                     "host address of 172.16.1.0/24")
    assert second == ('t.yaml:1: workers[1].address: Duplicate value: "172.16.2.2": already the '
                      "address of workers[0]")


def test_shared_mode_address_clash(problems):
    [problem] = problems("""
        network: {mode: shared, nodeCIDR: 10.100.0.0/24, serviceCIDR: 10.96.0.0/16}
        workers:
          - w1
          - {name: w2, address: 10.100.0.3}
    """)
    assert problem == ('t.yaml:4: workers[1].address: Duplicate value: "10.100.0.3": already the '
                       "address of workers[0]")


def test_shared_mode_gateway_address_is_not_free(problems):
    assert problems("""
        network: {mode: shared, nodeCIDR: 10.100.0.0/24, serviceCIDR: 10.96.0.0/16}
        master: {name: m, address: 10.100.0.1}
    """) == ['t.yaml:2: master.address: Invalid value: "10.100.0.1": is not a free host address '
             "of 10.100.0.0/24"]


@pytest.mark.parametrize(("clients", "expected"), [
    ("[{name: c, address: 203.0.113.1}]",
     't.yaml:1: clients[0].address: Invalid value: "203.0.113.1": is not a free host address of '
     "203.0.113.0/24"),
    ("[{name: c, address: 198.51.100.7}]",
     't.yaml:1: clients[0].address: Invalid value: "198.51.100.7": is not a free host address of '
     "203.0.113.0/24"),
    ("[{name: c, address: x}]",
     't.yaml:1: clients[0].address: Invalid value: "x": must be a valid IPv4 address, (e.g. 10.9.8.7)'),
])
def test_bad_client_addresses(problems, clients, expected):
    assert problems(f"clients: {clients}\n") == [expected]


def test_client_address_clash(problems):
    [problem] = problems("clients: [c1, {name: c2, address: 203.0.113.2}]\n")
    assert problem == ('t.yaml:1: clients[1].address: Duplicate value: "203.0.113.2": already the '
                       "address of clients[0]")


def test_more_clients_than_client_cidr_holds(problems):
    assert problems("network: {clientCIDR: 198.51.100.0/30}\nclients: [a, b]\n") == [
        't.yaml:1: network.clientCIDR: Invalid value: "198.51.100.0/30": holds 1 client besides '
        "its network, broadcast and gateway addresses, the topology has 2"]


@pytest.mark.parametrize("cidr", ["203.0.113.0/31", "203.0.113.0/32"])
def test_client_cidr_without_room_for_a_client(problems, cidr):
    assert problems(f"network: {{clientCIDR: {cidr}}}\nclients: [a]\n") == [
        f't.yaml:1: network.clientCIDR: Invalid value: "{cidr}": holds no clients besides its '
        "network, broadcast and gateway addresses, the topology has 1"]


def test_all_problems_are_reported_at_once(problems):
    found = problems("""
        name: Bad_Name
        network:
          mode: star
          nodeCIDR: 10.0.0.0/33
          serviceCIDR: 10.244.0.0/20
          colour: red
        master: {name: m}
        workers:
          - {name: w1, kubeProxy: {mode: ipvs}}
          - w1
        clients: [{name: c2, address: nope}]
        kubeProxy: {mode: bpf}
    """)
    assert found == [
        't.yaml:1: name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of '
        "lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
        "character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        't.yaml:6: network.colour: unknown field "colour"',
        't.yaml:3: network.mode: Unsupported value: "star": supported values: "routed", "shared"',
        't.yaml:4: network.nodeCIDR: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
        't.yaml:5: network.serviceCIDR: Invalid value: "10.244.0.0/20": overlaps clusterCIDR '
        "10.244.0.0/16",
        't.yaml:12: kubeProxy.mode: Unsupported value: "bpf": supported values: "iptables", '
        '"nftables", "userspace"',
        't.yaml:10: workers[1].name: Duplicate value: "w1": also the name of workers[0] (line 9)',
        't.yaml:11: clients[0].address: Invalid value: "nope": must be a valid IPv4 address, '
        "(e.g. 10.9.8.7)",
    ]


def test_placement_problems_of_many_nodes_are_reported_together(problems):
    found = problems("""
        workers:
          - {name: w1, address: 172.16.9.9, labels: {zone: 1}}
          - {name: w2, podCIDR: 10.99.0.0/24, kubeProxy: {mode: x}}
    """)
    assert found == [
        't.yaml:3: workers[1].podCIDR: Invalid value: "10.99.0.0/24": is outside clusterCIDR '
        "10.244.0.0/16",
        't.yaml:2: workers[0].address: Invalid value: "172.16.9.9": is not a free host address of '
        "172.16.1.0/24",
        "t.yaml:2: workers[0].labels.zone: Invalid value: 1: must be a string",
        't.yaml:3: workers[1].kubeProxy.mode: Unsupported value: "x": supported values: '
        '"iptables", "nftables", "userspace"',
    ]


def test_load_balancer_pool_and_addons(problems):
    from testbed.spec.source import parse_documents
    from testbed.spec.topology import build_topology

    topo = build_topology(parse_documents(
        "loadBalancer: {pool: [198.51.100.0/28, 192.0.2.7]}\naddons: [ingress-nginx]\n", "t.yaml")[0])
    assert [str(n) for n in topo.lb_pool] == ["198.51.100.0/28", "192.0.2.7/32"]
    assert topo.addons == ("ingress-nginx",)
    found = problems("loadBalancer: {pool: [10.244.3.0/24, 198.51.100.0/28, 198.51.100.8/29]}\n"
                     "addons: [ingress-nginx, istio]\n")
    assert ('t.yaml:1: loadBalancer.pool[0]: Invalid value: "10.244.3.0/24": overlaps clusterCIDR '
            "10.244.0.0/16") in found
    assert ('t.yaml:1: loadBalancer.pool[2]: Invalid value: "198.51.100.8/29": overlaps '
            "198.51.100.0/28, earlier in the pool") in found
    assert 't.yaml:2: addons[1]: Unsupported value: "istio": supported values: "ingress-nginx"' in found


def test_a_topology_survives_its_json_form():
    from dataclasses import replace

    from testbed.spec.topology import load_topology, topology_from_dict, topology_to_dict

    topo = load_topology(Path(__file__).resolve().parents[2] / "topologies" / "article.yaml")
    topo = replace(topo, name="renamed", addons=("ingress-nginx",))
    data = json.loads(json.dumps(topology_to_dict(topo)))
    assert topology_from_dict(data) == topo


# --- the NetworkPolicy agent's mode -----------------------------------------------------------

def test_policy_mode_follows_each_nodes_kube_proxy_by_default(topo):
    t = topo("""
        workers:
          - {name: a, kubeProxy: {mode: nftables}}
          - {name: b, kubeProxy: {mode: userspace}}
          - c
    """)
    assert [(w.name, w.proxy_mode, w.policy_mode, w.policy_follows_proxy) for w in t.workers] == [
        ("a", "nftables", "nftables", True), ("b", "userspace", "iptables", True),
        ("c", "iptables", "iptables", True)]
    t = topo("kubeProxy: {mode: nftables}\n")
    assert [w.policy_mode for w in t.workers] == ["nftables", "nftables"]


def test_policy_mode_top_level_and_per_node(topo):
    t = topo("""
        kubeProxy: {mode: nftables}
        networkPolicy: {mode: iptables}
        workers:
          - a
          - {name: b, networkPolicy: {mode: none}}
          - {name: c, kubeProxy: {mode: iptables}, networkPolicy: {mode: nftables}}
    """)
    assert [(w.name, w.proxy_mode, w.policy_mode, w.policy_follows_proxy) for w in t.workers] == [
        ("a", "nftables", "iptables", False), ("b", "nftables", "none", False),
        ("c", "iptables", "nftables", False)]


def test_with_modes_overrides_and_keeps_a_following_policy_mode_following(topo):
    from testbed.spec.topology import with_modes

    t = topo("""
        workers:
          - a
          - {name: b, networkPolicy: {mode: iptables}}
          - {name: c, kubeProxy: {mode: userspace}}
    """)
    modes = lambda t: [(w.proxy_mode, w.policy_mode) for w in t.workers]   # noqa: E731
    # kube-proxy for every worker: a and c follow it, b keeps its own policy mode
    t2 = with_modes(t, proxy={"*": "nftables"})
    assert modes(t2) == [("nftables", "nftables"), ("nftables", "iptables"), ("nftables", "nftables")]
    assert t2.proxy_mode == "nftables" and t2.master == t.master
    # a named worker wins over "*"
    assert modes(with_modes(t, proxy={"*": "nftables", "c": "iptables"})) == [
        ("nftables", "nftables"), ("nftables", "iptables"), ("iptables", "iptables")]
    # a policy mode given stops following: a later kube-proxy change leaves it
    t3 = with_modes(t, policy={"a": "none"})
    assert modes(t3) == [("iptables", "none"), ("iptables", "iptables"), ("userspace", "iptables")]
    assert modes(with_modes(t3, proxy={"*": "nftables"})) == [
        ("nftables", "none"), ("nftables", "iptables"), ("nftables", "nftables")]
    # both at once: the policy flag wins over following
    assert modes(with_modes(t, proxy={"*": "nftables"}, policy={"*": "iptables"})) == [
        ("nftables", "iptables")] * 3
    assert with_modes(t) == t


def test_a_node_spec_without_a_policy_mode_takes_the_one_its_proxy_mode_implies():
    from testbed.spec.topology import NodeSpec

    def node(proxy: str, **kw) -> NodeSpec:
        return NodeSpec("w1", "worker", A("10.0.0.2"), N("10.0.0.0/24"), A("10.0.0.1"),
                        N("10.244.0.0/24"), proxy, **kw)

    assert [node(m).policy_mode for m in ("iptables", "nftables", "userspace")] == [
        "iptables", "nftables", "iptables"]
    assert node("nftables", policy_mode="none").policy_mode == "none"


def test_policy_modes_survive_the_json_form(topo):
    from testbed.spec.topology import topology_from_dict, topology_to_dict, with_modes

    t = with_modes(topo("workers: [a, {name: b, networkPolicy: {mode: none}}]\n"),
                   proxy={"a": "nftables"})
    data = json.loads(json.dumps(topology_to_dict(t)))
    assert topology_from_dict(data) == t
    for node in data["workers"]:        # a cluster.json written before policy modes existed
        del node["policy_mode"], node["policy_follows_proxy"]
    assert [w.policy_mode for w in topology_from_dict(data).workers] == ["nftables", "iptables"]


@pytest.mark.parametrize(("where", "expected"), [
    ("networkPolicy: {mode: calico}\n",
     't.yaml:1: networkPolicy.mode: Unsupported value: "calico": supported values: "iptables", '
     '"nftables", "none"'),
    ("workers: [w1, {name: w2, networkPolicy: {mode: userspace}}]\n",
     't.yaml:1: workers[1].networkPolicy.mode: Unsupported value: "userspace": supported '
     'values: "iptables", "nftables", "none"'),
    ("networkPolicy: none\n", 't.yaml:1: networkPolicy: Invalid value: "none": must be an object'),
    ("networkPolicy: {}\n",
     "t.yaml:1: networkPolicy.mode: Required value: iptables, nftables or none"),
    ("networkPolicy: {mode: iptables, nodes: {w1: none}}\n",
     't.yaml:1: networkPolicy.nodes: unknown field "nodes"'),
    ("networkPolicy: {mode: 1}\n", "t.yaml:1: networkPolicy.mode: Invalid value: 1: must be a string"),
])
def test_bad_policy_modes(problems, where, expected):
    assert problems(where) == [expected]
