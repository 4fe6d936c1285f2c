"""Pure: what kube-proxy's service health check server answers (pkg/proxy/healthcheck).

For every Service of type LoadBalancer with externalTrafficPolicy Local, kube-proxy on each
node listens on `spec.healthCheckNodePort` and answers any request with 200 when the node has
ready local endpoints for the Service and 503 otherwise, so a cloud load balancer sends
traffic only to nodes that can keep the client IP. `health_checks()` computes, from the
proxier's maps after a sync, which ports to serve and each one's local endpoint count
(upstream's `svcPortMap.HealthCheckNodePorts()` and `endpointsMap.LocalReadyEndpoints()`);
`service_response()` renders upstream's reply byte for byte, and `healthz_response()` the
node-level `/healthz` of the proxy's healthz server (port 10256). The sockets live in
testbed/agents/kube_proxy.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from testbed.proxy.model import Endpoint, ServicePort, ServicePortName

HEALTHZ_PORT = 10256  # kube-proxy's --healthz-bind-address default port


@dataclass(frozen=True)
class HealthCheck:
    """One health check node port: the Service it speaks for and its local ready endpoints."""

    namespace: str
    name: str
    local_endpoints: int


def health_checks(services: Iterable[ServicePort],
                  endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
                  node_name: str) -> dict[int, HealthCheck]:
    """healthCheckNodePort -> HealthCheck, for the services that need one on this node."""
    ports: dict[tuple[str, str], int] = {}
    for svc in services:
        if svc.health_check_node_port:
            ports[svc.name.service] = svc.health_check_node_port
    local: dict[tuple[str, str], set[str]] = {}
    for spn, eps in endpoints.items():
        if spn.service not in ports:
            continue
        for ep in eps:
            if ep.ready and ep.is_local(node_name):
                local.setdefault(spn.service, set()).add(ep.ip)  # pods, not ports
    return {port: HealthCheck(ns, name, len(local.get((ns, name), ())))
            for (ns, name), port in sorted(ports.items())}


def service_response(check: HealthCheck, proxy_healthy: bool = True,
                     ) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) exactly as upstream's hcHandler.ServeHTTP writes them."""
    count = check.local_endpoints
    status = 200 if count and proxy_healthy else 503
    headers = [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
               ("X-Load-Balancing-Endpoint-Weight", str(count))]
    body = ("{\n"
            "\t\"service\": {\n"
            f"\t\t\"namespace\": {json.dumps(check.namespace)},\n"
            f"\t\t\"name\": {json.dumps(check.name)}\n"
            "\t},\n"
            f"\t\"localEndpoints\": {count},\n"
            f"\t\"serviceProxyHealthy\": {'true' if proxy_healthy else 'false'}\n"
            "}")
    return status, headers, body.encode()


def healthz_response(last_updated: str, now: str, healthy: bool,
                     ) -> tuple[int, list[tuple[str, str]], bytes]:
    """The proxy's own /healthz: 200 while its syncs keep up, 503 otherwise."""
    headers = [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
    body = (f'{{"lastUpdated": {json.dumps(last_updated)},"currentTime": {json.dumps(now)}, '
            f'"nodeEligible": {"true" if healthy else "false"}}}')
    return (200 if healthy else 503), headers, body.encode()
