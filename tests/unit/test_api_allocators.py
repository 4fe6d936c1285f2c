"""ClusterIPs from the service CIDR, NodePorts from 30000-32767 (pod IPs: tests/unit/test_emu_ipam.py)."""

from __future__ import annotations

import pytest

from testbed.api.allocators import AllocationError, ServiceAllocator


def service(name: str, ns: str = "default", kind: str = "ClusterIP", ip: str | None = None,
            ports: list[dict] | None = None, **spec: object) -> dict:
    spec = {"type": kind, "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def test_cluster_ips_reserved_and_dynamic_band() -> None:
    alloc = ServiceAllocator("10.96.0.0/24")
    assert alloc.admit(service("kubernetes"))["spec"]["clusterIP"] == "10.96.0.1"
    assert alloc.admit(service("kube-dns", "kube-system"))["spec"]["clusterIP"] == "10.96.0.10"
    web = alloc.admit(service("web"))
    assert web["spec"]["clusterIP"] == "10.96.0.17"  # static band of 16 is skipped
    assert web["spec"]["clusterIPs"] == ["10.96.0.17"]
    assert alloc.admit(service("fixed", ip="10.96.0.5"))["spec"]["clusterIP"] == "10.96.0.5"
    assert alloc.admit(service("headless", ip="None"))["spec"]["clusterIP"] == "None"
    assert alloc.admit(web, web)["spec"]["clusterIP"] == "10.96.0.17"  # update keeps it


def test_cluster_ip_rejections() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    alloc.admit(service("a", ip="10.96.0.50"))
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("b", ip="10.96.0.50"))
    assert str(info.value) == ('spec.clusterIPs: Invalid value: ["10.96.0.50"]: failed to allocate '
                               "IP 10.96.0.50: provided IP is already allocated")
    with pytest.raises(AllocationError, match="is not in the valid range. The range of valid "
                                              r"IPs is 10.96.0.0/12"):
        alloc.admit(service("c", ip="10.0.0.1"))
    old = alloc.admit(service("d"))
    assert old["spec"]["clusterIP"] == "10.96.1.1"  # /12: static band is .1 to .1.0
    with pytest.raises(AllocationError, match="field is immutable"):
        alloc.admit(service("d", ip="10.96.0.99"), old)


def test_node_ports() -> None:
    alloc = ServiceAllocator("10.96.0.0/24")
    dns = alloc.admit(service("dns", kind="NodePort", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "TCP"}]))
    assert [p["nodePort"] for p in dns["spec"]["ports"]] == [30000, 30000, 30001]
    fixed = alloc.admit(service("web", kind="NodePort", ports=[
        {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
        {"name": "b", "port": 80, "protocol": "UDP", "nodePort": 30080}]))
    assert [p["nodePort"] for p in fixed["spec"]["ports"]] == [30080, 30080]
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("x", kind="NodePort", ports=[
            {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
            {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 80}]))
    assert [str(e) for e in info.value.errors] == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated",
        "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767",
    ]
    # the failed admit took nothing: the next Service gets the next free port
    lb = alloc.admit(service("lb", kind="LoadBalancer", externalTrafficPolicy="Local"))
    assert lb["spec"]["ports"][0]["nodePort"] == 30002
    assert lb["spec"]["healthCheckNodePort"] == 30003
    alloc.release(lb)
    assert alloc.admit(service("next", kind="NodePort"))["spec"]["ports"][0]["nodePort"] == 30002


def test_rebuild_from_stored_services() -> None:
    alloc = ServiceAllocator("10.96.0.0/24")
    stored = [alloc.admit(service("web", kind="NodePort"))]
    fresh = ServiceAllocator("10.96.0.0/24")
    fresh.rebuild(stored)
    other = fresh.admit(service("other", kind="NodePort"))
    assert other["spec"]["clusterIP"] != stored[0]["spec"]["clusterIP"]
    assert other["spec"]["ports"][0]["nodePort"] == 30001
    changed = fresh.admit(service("web", kind="ClusterIP"), stored[0])
    assert "nodePort" not in changed["spec"]["ports"][0]
    assert fresh.admit(service("third", kind="NodePort"))["spec"]["ports"][0]["nodePort"] == 30000
