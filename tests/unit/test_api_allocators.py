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


def test_cluster_ip_rejections_worded_as_upstream() -> None:
    """alloc.go's field error over the ServiceCIDR allocator's words (cidrallocator.go,
    ipallocator.go), the value printed as Go's %#v prints a []string."""
    alloc = ServiceAllocator("10.96.0.0/12")
    alloc.admit(service("a", ip="10.96.0.50"))
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("b", ip="10.96.0.50"))
    assert str(info.value) == ('spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to '
                               "allocate IP 10.96.0.50: provided IP is already allocated")
    with pytest.raises(AllocationError) as info:   # in no ServiceCIDR: ErrMismatchedNetwork
        alloc.admit(service("c", ip="10.0.0.1"))
    assert str(info.value) == ('spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: failed to '
                               "allocate IP 10.0.0.1: the provided network does not match the "
                               "current range")
    for edge in ("10.96.0.0", "10.111.255.255"):   # the CIDR's, outside its allocator's range
        with pytest.raises(AllocationError) as info:
            alloc.admit(service("c", ip=edge))
        assert str(info.value) == (f'spec.clusterIPs: Invalid value: []string{{"{edge}"}}: failed '
                                   f"to allocate IP {edge}: the provided IP ({edge}) is not in the "
                                   "valid range. The range of valid IPs is 10.96.0.0/12")
    assert not info.value.internal
    old = alloc.admit(service("d"))
    assert old["spec"]["clusterIP"] == "10.96.1.1"  # /12: static band is .1 to .1.0
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("d", ip="10.96.0.99"), old)
    assert str(info.value) == ('spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may '
                               "not change once set")


def test_full_ranges_are_internal_errors() -> None:
    """No field is wrong when a range is full: upstream answers NewInternalError's 500."""
    alloc = ServiceAllocator("10.96.0.0/30")   # .1 and .2; .1 is the kubernetes Service's
    alloc.admit(service("a"))
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("b"))
    assert info.value.internal == "failed to allocate a serviceIP: range is full"
    ports = ServiceAllocator("10.96.0.0/24", node_ports=(30000, 30001))
    ports.admit(service("a", kind="NodePort", ports=[{"port": 80}, {"port": 81}]))
    with pytest.raises(AllocationError) as info:
        ports.admit(service("b", kind="NodePort"))
    assert info.value.internal == "failed to allocate a nodePort: range is full"
    assert ports.admit(service("c"))["spec"]["clusterIP"]   # b's clusterIP was given back
    lb = ServiceAllocator("10.96.0.0/24")
    lb.admit(service("a", kind="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(AllocationError) as info:
        lb.admit(service("b", kind="LoadBalancer", externalTrafficPolicy="Local",
                         healthCheckNodePort=30080))
    assert info.value.internal == ("failed to allocate requested HealthCheck NodePort 30080: "
                                   "provided port is already allocated")


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
    # upstream's initNodePorts stops at the first port it cannot have
    assert [str(e) for e in info.value.errors] == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"]
    with pytest.raises(AllocationError) as info:
        alloc.admit(service("x", kind="NodePort", ports=[
            {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 80}]))
    assert [str(e) for e in info.value.errors] == [
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"]
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
