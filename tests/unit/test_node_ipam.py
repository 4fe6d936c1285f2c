"""testbed.node.ipam: host-local IPAM over one node's pod CIDR."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from testbed.node.ipam import HostLocalIPAM, IPAMExhausted


def test_first_address_is_dot_two():
    ipam = HostLocalIPAM(N("10.244.1.0/24"))
    assert ipam.allocate("default/a") == A("10.244.1.2")
    assert ipam.allocate("default/b") == A("10.244.1.3")
    assert ipam.capacity == 253


def test_allocate_is_idempotent_per_key():
    ipam = HostLocalIPAM(N("10.244.1.0/24"))
    first = ipam.allocate("a")
    assert ipam.allocate("a") == first
    assert ipam.used() == {"a": first}


def test_whole_range_never_network_gateway_or_broadcast_and_never_twice():
    ipam = HostLocalIPAM(N("10.0.0.0/28"))
    got = [ipam.allocate(f"p{i}") for i in range(ipam.capacity)]
    assert ipam.capacity == 13
    assert got == [A(f"10.0.0.{i}") for i in range(2, 15)]
    assert len(set(got)) == len(got)
    assert not {A("10.0.0.0"), A("10.0.0.1"), A("10.0.0.15")} & set(got)
    with pytest.raises(IPAMExhausted, match=r"no free address left in 10\.0\.0\.0/28 \(13 in use\)"):
        ipam.allocate("one-too-many")


def test_release_frees_and_tolerates_unknown_keys():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    a = ipam.allocate("a")
    ipam.release("a")
    ipam.release("a")       # already gone
    ipam.release("never")   # never there
    assert ipam.used() == {}
    assert a not in ipam.by_ip


def test_round_robin_does_not_reuse_a_just_freed_address():
    ipam = HostLocalIPAM(N("10.0.0.0/24"))
    a = ipam.allocate("a")
    b = ipam.allocate("b")
    ipam.release("a")
    c = ipam.allocate("c")
    assert c not in (a, b)
    assert c == A("10.0.0.4")
    ipam.release("c")
    assert ipam.allocate("d") == A("10.0.0.5")


def test_round_robin_wraps_around_to_freed_addresses():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))  # .2 .. .6
    for key in "abcde":
        ipam.allocate(key)
    ipam.release("b")  # .3
    ipam.release("d")  # .5
    assert ipam.allocate("f") == A("10.0.0.3")  # wraps past .6 to the lowest free
    assert ipam.allocate("g") == A("10.0.0.5")
    with pytest.raises(IPAMExhausted):
        ipam.allocate("h")


def test_reserved_addresses_are_skipped():
    ipam = HostLocalIPAM(N("10.0.0.0/29"), reserved=(A("10.0.0.2"), A("10.0.0.4")))
    assert ipam.capacity == 3
    assert [ipam.allocate(k) for k in "abc"] == [A("10.0.0.3"), A("10.0.0.5"), A("10.0.0.6")]
    with pytest.raises(IPAMExhausted):
        ipam.allocate("d")


def test_assign_records_and_allocate_avoids_it():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    ipam.assign("found", A("10.0.0.2"))
    ipam.assign("found", A("10.0.0.2"))  # the same holder again is fine
    assert ipam.allocate("found") == A("10.0.0.2")
    assert ipam.allocate("new") == A("10.0.0.3")


def test_assign_clash():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    ipam.allocate("a")
    with pytest.raises(ValueError, match=r"^10\.0\.0\.2 is already held by a$"):
        ipam.assign("b", A("10.0.0.2"))
    assert ipam.used() == {"a": A("10.0.0.2")}


@pytest.mark.parametrize("ip", ["10.0.0.0", "10.0.0.1", "10.0.0.7", "10.0.1.2"])
def test_assign_refuses_non_pod_addresses(ip):
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    with pytest.raises(ValueError, match=rf"^{ip} is not a pod address of 10\.0\.0\.0/29$"):
        ipam.assign("a", A(ip))


def test_used_is_a_copy():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    ipam.allocate("a")
    ipam.used().clear()
    assert ipam.used() == {"a": A("10.0.0.2")}


def test_assign_moves_a_key_and_frees_its_old_address():
    ipam = HostLocalIPAM(N("10.0.0.0/29"))
    assert ipam.allocate("a") == A("10.0.0.2")
    ipam.assign("a", A("10.0.0.3"))
    ipam.release("a")
    # every address of the /29 (.2 .. .6) can be handed out again
    assert sorted(ipam.allocate(k) for k in "bcdef") == [A(f"10.0.0.{i}") for i in range(2, 7)]


def test_from_top_takes_the_highest_free_address_and_leaves_low_ones_to_workloads():
    from ipaddress import IPv4Address, IPv4Network

    from testbed.node.ipam import HostLocalIPAM

    ipam = HostLocalIPAM(IPv4Network("10.0.1.0/24"))
    assert ipam.allocate("kube-system/dns", from_top=True) == IPv4Address("10.0.1.254")
    assert ipam.allocate("kube-system/other", from_top=True) == IPv4Address("10.0.1.253")
    assert ipam.allocate("default/web") == IPv4Address("10.0.1.2")
    ipam.release("kube-system/dns")
    assert ipam.allocate("kube-system/dns2", from_top=True) == IPv4Address("10.0.1.254")
