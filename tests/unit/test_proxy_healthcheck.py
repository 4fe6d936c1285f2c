"""Pure: the service health check answers (upstream pkg/proxy/healthcheck) and `testbed nat`."""

from __future__ import annotations

import json

from testbed.emu.inspect import conntrack_argv, nat_argv
from testbed.proxy.healthcheck import (
    HealthCheck,
    health_checks,
    healthz_response,
    service_response,
)
from testbed.proxy.model import Endpoint, ServicePort, ServicePortName


def _svc(name: str, hc: int, proto: str = "TCP", port_name: str = "") -> ServicePort:
    return ServicePort(ServicePortName("default", name, port_name, proto), "10.96.0.5", 80,
                       node_port=30080, external_policy_local=bool(hc), health_check_node_port=hc)


def test_only_services_with_a_health_check_node_port_are_served_with_local_ready_counts():
    a_http, a_dns = _svc("a", 31000, port_name="http"), _svc("a", 31000, "UDP", "dns")
    b, c = _svc("b", 32000), _svc("c", 0)
    eps = {
        a_http.name: [Endpoint("10.244.0.2", 8080, node_name="w1"),
                      Endpoint("10.244.0.3", 8080, ready=False, node_name="w1"),
                      Endpoint("10.244.1.2", 8080, node_name="w2")],
        a_dns.name: [Endpoint("10.244.0.2", 53, node_name="w1")],  # same pod: counted once
        c.name: [Endpoint("10.244.0.9", 80, node_name="w1")],
    }
    assert health_checks([a_http, a_dns, b, c], eps, "w1") == {
        31000: HealthCheck("default", "a", 1), 32000: HealthCheck("default", "b", 0)}
    assert health_checks([a_http, a_dns, b, c], eps, "w2")[31000].local_endpoints == 1


def test_service_response_is_upstreams_body_and_headers():
    status, headers, body = service_response(HealthCheck("default", "web", 2))
    assert status == 200
    assert ("X-Load-Balancing-Endpoint-Weight", "2") in headers
    assert ("Content-Type", "application/json") in headers
    assert body.decode() == ('{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "web"\n'
                             '\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}')
    assert json.loads(body)["localEndpoints"] == 2


def test_no_local_endpoints_or_an_unhealthy_proxy_is_503():
    assert service_response(HealthCheck("default", "web", 0))[0] == 503
    status, _, body = service_response(HealthCheck("default", "web", 1), proxy_healthy=False)
    assert status == 503 and json.loads(body)["serviceProxyHealthy"] is False


def test_healthz():
    status, _, body = healthz_response("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", True)
    assert status == 200 and json.loads(body)["nodeEligible"] is True
    assert healthz_response("", "x", False)[0] == 503


def test_nat_and_conntrack_commands_per_mode():
    assert nat_argv("iptables") == ["iptables", "-S", "-t", "nat"]
    assert nat_argv("userspace", "KUBE-PORTALS-CONTAINER") == [
        "iptables", "-S", "KUBE-PORTALS-CONTAINER", "-t", "nat"]
    assert nat_argv("nftables") == ["nft", "list", "table", "ip", "kube-proxy"]
    assert conntrack_argv("udp", "10.96.0.10") == ["conntrack", "-L", "-p", "udp",
                                                   "--orig-dst", "10.96.0.10"]


def test_testbed_nat_without_a_matching_cluster_exits_1(capsys):
    from testbed.cli import main

    assert main(["nat", "w1", "--cluster", "no-such-cluster-anywhere"]) == 1
    assert "no cluster named 'no-such-cluster-anywhere' is running" in capsys.readouterr().err
