"""CNI results (testbed/cni/result.py): 1.0.0 and 0.4.0 read into one form, the pod's address
and host interface picked out, versions converted as libcni does for prevResult."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from testbed.cni.result import (
    PodAddress,
    ResultError,
    convert,
    host_interface,
    parse_result,
    pod_address,
)

NETNS = "/proc/4242/ns/net"

# The bridge plugin's answer (Debian's 1.1.1, cniVersion 1.0.0): bridge, host veth, the pod's end.
BRIDGE_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cbr0", "mac": "6a:1c:00:00:00:01"},
                   {"name": "veth5e1f2a3b", "mac": "6a:1c:00:00:00:02"},
                   {"name": "eth0", "mac": "6a:1c:00:00:00:03", "sandbox": NETNS}],
    "ips": [{"interface": 2, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}
# The same from a 0.4.0 list: each IP says its version.
BRIDGE_040 = {**BRIDGE_100, "cniVersion": "0.4.0",
              "ips": [{"version": "4", "interface": 2, "address": "10.244.1.2/24",
                       "gateway": "10.244.1.1"}]}


def test_100_and_040_read_into_one_form():
    new, old = parse_result(BRIDGE_100), parse_result(BRIDGE_040)
    assert new.cni_version == "1.0.0" and old.cni_version == "0.4.0"
    assert (new.interfaces, new.ips, new.routes) == (old.interfaces, old.ips, old.routes)
    assert new.interfaces[2].sandbox == NETNS and new.ips[0].interface == 2
    assert pod_address(new) == pod_address(old) == PodAddress(IPv4Address("10.244.1.2"), 24,
                                                              IPv4Address("10.244.1.1"))
    assert host_interface(new) == host_interface(old) == "veth5e1f2a3b"


def test_ptp_an_abbreviated_result_and_a_gateway_from_the_default_route():
    ptp = {"cniVersion": "1.0.0",
           "interfaces": [{"name": "veth0a"}, {"name": "eth0", "sandbox": NETNS}],
           "ips": [{"address": "fd00::5/64", "interface": 1},
                   {"address": "10.1.0.5/32", "interface": 1}],
           "routes": [{"dst": "10.1.0.0/16", "gw": "10.1.0.9"}, {"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]}
    assert pod_address(parse_result(ptp)) == PodAddress(IPv4Address("10.1.0.5"), 32,
                                                        IPv4Address("10.1.0.1"))
    assert host_interface(parse_result(ptp)) == "veth0a"
    ipam = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.2.0.7/24"}]}
    assert pod_address(parse_result(ipam)) == PodAddress(IPv4Address("10.2.0.7"), 24, None)
    assert host_interface(parse_result(ipam)) is None


def test_an_address_on_a_host_interface_is_not_the_pods():
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "cbr0"}],
              "ips": [{"address": "10.244.1.1/24", "interface": 0}]}
    assert pod_address(parse_result(result)) is None


def test_convert_adds_or_drops_the_ip_version_as_get_as_version_does():
    assert convert(BRIDGE_100, "0.4.0") == BRIDGE_040
    assert convert(BRIDGE_040, "1.0.0") == BRIDGE_100
    v6 = {"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}]}
    assert convert(v6, "0.3.1") == {"cniVersion": "0.3.1", "ips": [{"address": "fd00::2/64", "version": "6"}]}
    assert BRIDGE_100["ips"][0] == {"interface": 2, "address": "10.244.1.2/24",
                                    "gateway": "10.244.1.1"}          # not changed in place


@pytest.mark.parametrize("data, words", [
    ([], "must be a JSON object"),
    ({}, "cniVersion is missing"),
    ({"cniVersion": "0.2.0"}, "'0.2.0' is not supported"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}, "not an address in CIDR form"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}, "not an address in CIDR"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24", "interface": 1}]},
     "interface 1 is not in interfaces"),
    ({"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]}, "interfaces[0]: name is missing"),
    ({"cniVersion": "1.0.0", "routes": [{"dst": "x"}]}, "routes[0]: dst 'x' is not a CIDR"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24", "gateway": "gw"}]},
     "'gw' is not an IP address"),
])
def test_a_malformed_result_says_what_is_wrong(data, words):
    with pytest.raises(ResultError) as info:
        parse_result(data)
    assert words in str(info.value)
