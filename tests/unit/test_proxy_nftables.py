"""nftables renderer: fresh cases derived from nftables_structure.md."""

from __future__ import annotations

from typing import Any

import yaml

from testbed.proxy import iptables, names, nftables
from testbed.proxy.casefile import load_case
from testbed.spec.source import parse_documents

P80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
BASE = names.nft_service_base("ns1", "svc1", "tcp", "p80")
SVC, EXT = names.nft_service_chain(BASE), names.nft_external_chain(BASE)
FW, LOCAL = names.nft_firewall_chain(BASE), names.nft_local_chain(BASE)


def ep_base(ip: str) -> str:
    return names.nft_endpoint_base("ns1", "svc1", "tcp", "p80", ip, 80)


def render(spec: dict[str, Any], endpoints: list[dict[str, Any]], status: Any = None,
           family: str = "IPv4", **harness: Any) -> list[str]:
    service = {"kind": "Service", "metadata": {"namespace": "ns1", "name": "svc1"},
               "spec": {"ports": P80, **spec}}
    if status:
        service["status"] = status
    objects = [service, {"kind": "EndpointSlice", "addressType": family,
                         "metadata": {"namespace": "ns1", "name": "svc1-1",
                                      "labels": {"kubernetes.io/service-name": "svc1"}},
                         "endpoints": endpoints, "ports": P80}]
    text = yaml.safe_dump({"harness": {"ipFamily": family, **harness}, "objects": objects})
    settings, state = load_case(parse_documents(text, "t.yaml")[0])
    return nftables.render(state.services, state.endpoints, settings).splitlines()


def test_affinity_sets_and_rules() -> None:
    lines = render({"clusterIP": "172.30.0.41", "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}}},
                   [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.1"]}])
    a1, a2 = (names.nft_affinity_set(ep_base(ip)) for ip in ("10.0.0.1", "10.0.0.2"))
    e1, e2 = (names.nft_endpoint_chain(ep_base(ip)) for ip in ("10.0.0.1", "10.0.0.2"))
    p = "add rule ip kube-proxy"
    assert (f"add set ip kube-proxy {a1} {{ type ipv4_addr ; flags dynamic,timeout ; "
            "timeout 300s ; }") in lines
    svc_rules = [line for line in lines if line.startswith(f"{p} {SVC} ")]
    assert svc_rules == [
        f"{p} {SVC} ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        f"{p} {SVC} ip saddr @{a1} goto {e1}",
        f"{p} {SVC} ip saddr @{a2} goto {e2}",
        f"{p} {SVC} numgen random mod 2 vmap {{ 0 : goto {e1} , 1 : goto {e2} }}",
    ]
    assert [line for line in lines if line.startswith(f"{p} {e1} ")] == [
        f"{p} {e1} ip saddr 10.0.0.1 jump mark-for-masquerade",
        f"{p} {e1} update @{a1} {{ ip saddr }}",
        f"{p} {e1} meta l4proto tcp dnat to 10.0.0.1:80",
    ]


def test_etp_local_with_local_endpoint_and_firewall_allowing_node() -> None:
    lines = render({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                    "clusterIP": "172.30.0.41", "loadBalancerSourceRanges": ["192.168.0.0/24"]},
                   [{"addresses": ["10.0.0.1"]},
                    {"addresses": ["10.0.0.2"], "nodeName": "test-node"}],
                   status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    p = "add rule ip kube-proxy"
    assert [line for line in lines if line.startswith(f"{p} {EXT} ")] == [
        f'{p} {EXT} ip saddr 10.0.0.0/8 goto {SVC} comment "short-circuit pod traffic"',
        f'{p} {EXT} fib saddr type local jump mark-for-masquerade comment '
        '"masquerade local traffic"',
        f'{p} {EXT} fib saddr type local goto {SVC} comment "short-circuit local traffic"',
        f"{p} {EXT} goto {LOCAL}",
    ]
    assert f"{p} {FW} ip saddr != {{ 192.168.0.0/24 , 1.2.3.4 }} drop" in lines
    assert f"add element ip kube-proxy firewall-ips {{ 1.2.3.4 . tcp . 80 : goto {FW} }}" in lines
    assert f"add element ip kube-proxy service-ips {{ 1.2.3.4 . tcp . 80 : goto {EXT} }}" in lines
    e2 = names.nft_endpoint_chain(ep_base("10.0.0.2"))
    assert f"{p} {LOCAL} numgen random mod 1 vmap {{ 0 : goto {e2} }}" in lines


def test_internal_local_no_local_endpoints_and_masquerade_all() -> None:
    lines = render({"clusterIP": "172.30.0.41", "internalTrafficPolicy": "Local"},
                   [{"addresses": ["10.0.0.1"], "nodeName": "other"}], masqueradeAll=True)
    assert ('add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 '
            'comment "ns1/svc1:p80" : drop }') in lines
    assert not any(SVC in line or LOCAL in line for line in lines)
    lines = render({"clusterIP": "172.30.0.41"}, [{"addresses": ["10.0.0.1"]}],
                   masqueradeAll=True, localDetector={"mode": "None"})
    assert f"add rule ip kube-proxy {SVC} ip daddr 172.30.0.41 jump mark-for-masquerade" in lines


def test_ipv6() -> None:
    spec = {"clusterIP": "fd00:30::41", "type": "NodePort",
            "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}]}
    eps = [{"addresses": ["fd00:10::0001"]}]
    lines = render(spec, eps, family="IPv6", localIPs=["2001:db8::1"],
                   localDetector={"mode": "ClusterCIDR", "clusterCIDR": "fd00:10::/64"})
    ep = names.nft_endpoint_chain(ep_base("fd00:10::1"))
    assert ep.endswith("__fd00.10..1/80")
    assert f"add rule ip6 kube-proxy {ep} meta l4proto tcp dnat to [fd00:10::1]:80" in lines
    assert ("add rule ip6 kube-proxy services fib daddr type local ip6 daddr != ::1 "
            "meta l4proto . th dport vmap @service-nodeports") in lines

    text = yaml.safe_dump({"harness": {"ipFamily": "IPv6", "localIPs": ["2001:db8::1"],
                                       "localDetector": {"mode": "None"}},
                           "objects": [{"kind": "Service",
                                        "metadata": {"namespace": "ns1", "name": "svc1"},
                                        "spec": spec},
                                       {"kind": "Service",
                                        "metadata": {"namespace": "ns1", "name": "v4"},
                                        "spec": {"clusterIP": "10.0.0.1", "ports": P80}},
                                       {"kind": "EndpointSlice", "addressType": "IPv6",
                                        "metadata": {"namespace": "ns1", "name": "s",
                                                     "labels": {"kubernetes.io/service-name":
                                                                "svc1"}},
                                        "endpoints": eps, "ports": P80}]})
    settings, state = load_case(parse_documents(text, "t.yaml")[0])
    assert [str(s.name) for s in state.services] == ["ns1/svc1:p80"]  # v4 service skipped
    out = iptables.render(state.services, state.endpoints, settings)
    assert "-m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS" in out
    assert "KUBE-FIREWALL" not in out and "127.0.0.0/8" not in out
    assert "-j DNAT --to-destination [fd00:10::1]:80" in out
