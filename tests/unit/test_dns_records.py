"""testbed.dns.records: every record type from Services, EndpointSlices and Pods (pure)."""

from __future__ import annotations

import random

from testbed.dns.records import (
    AddressRecord,
    CnameRecord,
    PtrRecord,
    Records,
    SrvRecord,
    build_records,
)


def service(name: str, namespace: str = "default", cluster_ip: str | None = "10.96.0.20",
            ports: list[dict] | None = None, **spec) -> dict:
    spec = {"type": "ClusterIP", "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoint_slice(service_name: str, endpoints: list[dict], namespace: str = "default",
                   ports: list[dict] | None = None, suffix: str = "abc") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": ports or []}


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict:
    out: dict = {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


def pod(name: str, ip: str | None, namespace: str = "default", phase: str = "Running") -> dict:
    status: dict = {"phase": phase}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": []}, "status": status}


SVC = "service-test.default.svc.cluster.local"


def test_cluster_ip_service_a_and_ptr():
    records = build_records([service("service-test", cluster_ip="10.96.0.20")], [])
    assert records.addresses == (AddressRecord(SVC, "10.96.0.20"),)
    assert records.ptrs == (PtrRecord("10.96.0.20", SVC),)
    assert records.srvs == () and records.cnames == () and records.pods == ()


def test_names_carry_the_namespace():
    records = build_records([service("web", "team-a", "10.96.0.21"),
                             service("web", "team-b", "10.96.0.22")], [])
    assert [(a.name, a.address) for a in records.addresses] == [
        ("web.team-a.svc.cluster.local", "10.96.0.21"),
        ("web.team-b.svc.cluster.local", "10.96.0.22")]


def test_missing_namespace_means_default_and_domain_is_configurable():
    svc = service("web")
    del svc["metadata"]["namespace"]
    records = build_records([svc], [], domain="example.internal.")
    assert records.addresses == (AddressRecord("web.default.svc.example.internal", "10.96.0.20"),)


def test_named_ports_get_srv_records_unnamed_do_not():
    ports = [{"name": "http", "port": 80, "protocol": "TCP"},
             {"name": "dns", "port": 53, "protocol": "UDP"},
             {"port": 8080, "protocol": "TCP"}]
    records = build_records([service("service-test", ports=ports)], [])
    assert records.srvs == (
        SrvRecord("_dns._udp." + SVC, SVC, 53),
        SrvRecord("_http._tcp." + SVC, SVC, 80),
    )


def test_port_protocol_defaults_to_tcp():
    records = build_records([service("s", ports=[{"name": "web", "port": 81}])], [])
    assert records.srvs == (SrvRecord("_web._tcp.s.default.svc.cluster.local",
                                      "s.default.svc.cluster.local", 81),)


def test_service_without_cluster_ip_yet_has_no_records():
    records = build_records([service("pending", cluster_ip="",
                                     ports=[{"name": "http", "port": 80}])], [])
    assert records == Records()


def test_dual_stack_cluster_ips():
    svc = service("web", cluster_ip="10.96.0.30", clusterIPs=["10.96.0.30", "fd00::30"])
    records = build_records([svc], [])
    name = "web.default.svc.cluster.local"
    assert records.addresses == (AddressRecord(name, "10.96.0.30"), AddressRecord(name, "fd00::30"))
    assert records.ptrs == (PtrRecord("10.96.0.30", name), PtrRecord("fd00::30", name))


def test_headless_service_one_a_per_ready_endpoint_with_names_and_ptrs():
    svc = service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}])
    eps = endpoint_slice("db", [endpoint("10.244.1.5", hostname="db-0"),
                                endpoint("10.244.2.6"),
                                endpoint("10.244.2.7", ready=False),
                                endpoint("10.244.1.8", ready=None)],
                         ports=[{"name": "pg", "port": 5433, "protocol": "TCP"}])
    records = build_records([svc], [eps])
    base = "db.default.svc.cluster.local"
    assert records.addresses == tuple(sorted([
        AddressRecord(base, "10.244.1.5"), AddressRecord(base, "10.244.2.6"),
        AddressRecord(base, "10.244.1.8"),
        AddressRecord("db-0." + base, "10.244.1.5"),
        AddressRecord("10-244-2-6." + base, "10.244.2.6"),
        AddressRecord("10-244-1-8." + base, "10.244.1.8"),
    ]))
    assert records.ptrs == (PtrRecord("10.244.1.5", "db-0." + base),
                            PtrRecord("10.244.1.8", "10-244-1-8." + base),
                            PtrRecord("10.244.2.6", "10-244-2-6." + base))
    # SRV targets are the endpoints, with the endpoint port (from the slice), not the Service's.
    assert records.srvs == tuple(sorted(
        SrvRecord("_pg._tcp." + base, target + base, 5433)
        for target in ("db-0.", "10-244-2-6.", "10-244-1-8.")))


def test_headless_endpoints_come_only_from_the_services_own_slices():
    svc = service("db", cluster_ip="None")
    other_ns = endpoint_slice("db", [endpoint("10.244.9.9")], namespace="other")
    other_svc = endpoint_slice("cache", [endpoint("10.244.9.8")])
    unlabelled = endpoint_slice("db", [endpoint("10.244.9.7")])
    unlabelled["metadata"]["labels"] = {}
    assert build_records([svc], [other_ns, other_svc, unlabelled]) == Records()


def test_headless_fqdn_slices_are_ignored():
    eps = endpoint_slice("db", [{"addresses": ["db.example.com"]}])
    eps["addressType"] = "FQDN"
    assert build_records([service("db", cluster_ip="None")], [eps]) == Records()


def test_cluster_ip_service_ignores_its_endpoints():
    eps = endpoint_slice("service-test", [endpoint("10.244.1.5")])
    records = build_records([service("service-test")], [eps])
    assert [a.address for a in records.addresses] == ["10.96.0.20"]


def test_external_name_is_a_cname_without_srv():
    svc = service("db", cluster_ip=None, ports=[{"name": "pg", "port": 5432}],
                  type="ExternalName", externalName="My.Database.Example.com.")
    records = build_records([svc], [])
    assert records.cnames == (CnameRecord("db.default.svc.cluster.local", "my.database.example.com"),)
    assert records.addresses == () and records.srvs == () and records.ptrs == ()


def test_pod_records_for_pod_ips_only():
    records = build_records([], [], [pod("a", "10.244.1.5"), pod("b", "10.244.2.6", "kube-system"),
                                     pod("pending", None),
                                     pod("done", "10.244.1.9", phase="Succeeded")])
    assert records.pods == (AddressRecord("10-244-1-5.default.pod.cluster.local", "10.244.1.5"),
                            AddressRecord("10-244-2-6.kube-system.pod.cluster.local", "10.244.2.6"))
    assert records.addresses == () and records.ptrs == ()


def test_names_that_are_not_dns_labels_are_skipped():
    bad = [service("Bad_Name"), service("evil\nno-resolv"), service("ok", namespace="x y"),
           service("ext", type="ExternalName", externalName="a b\nserver=1.2.3.4")]
    eps = endpoint_slice("db", [endpoint("10.244.1.5", hostname="not a label")])
    records = build_records(bad + [service("db", cluster_ip="None")], [eps])
    assert records.cnames == ()
    assert [a.name for a in records.addresses] == ["10-244-1-5.db.default.svc.cluster.local",
                                                   "db.default.svc.cluster.local"]


def test_output_is_deterministic_whatever_the_input_order():
    services = [service(f"s{i}", cluster_ip=f"10.96.1.{i}", ports=[{"name": "p", "port": 80}])
                for i in range(20)] + [service("h", cluster_ip="None")]
    slices = [endpoint_slice("h", [endpoint(f"10.244.0.{i}")], suffix=str(i)) for i in range(10)]
    pods = [pod(f"p{i}", f"10.244.3.{i}") for i in range(10)]
    first = build_records(services, slices, pods)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(services)
        rng.shuffle(slices)
        rng.shuffle(pods)
        assert build_records(services, slices, pods) == first
    assert list(first.addresses) == sorted(first.addresses)
    assert len(first.addresses) == 20 + 10 * 2
