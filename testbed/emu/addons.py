"""Pure objects, one acting call: the optional add-ons a topology switches on.

* The emulated cloud (`loadBalancer: {pool: [...]}`): `start_cloud(cp)` starts
  `python -m testbed.agents.cloud` inside the gateway router's namespace as a recorded agent
  (kind "cloud"), so it reaches the API server over the emulated network and programs the
  gateway's routes. `cloud_argv` is its command line (ControlPlane._argv's "cloud" kind).
* `ingress-nginx` (`addons: [ingress-nginx]`): installed the way the article's installation
  guide did before its example: namespace `nginx-ingress`, a Deployment `nginx-ingress` of
  controller pods labelled `app: nginx-ingress` that run testbed/ingress/controller.py (a real
  nginx from the distribution, rendered from Ingresses), serving class `nginx` and, as the
  cluster's default class, every Ingress without one. Exposing the controller is left to the
  user, as in the guide: the article's NodePort Service (namespace nginx-ingress, selector
  app: nginx-ingress) selects these pods.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.spec.topology import Topology

INGRESS_NAMESPACE = "nginx-ingress"
INGRESS_LABELS = {"app": "nginx-ingress"}


@dataclass(frozen=True)
class GatewayRef:
    """What ControlPlane.start_agent needs of a host: its name (the gateway is no NodeSpec)."""

    name: str


def cloud_argv(topo: Topology, api: str) -> list[str]:
    return ["testbed.agents.cloud", "--api", api, *(f"--pool={net}" for net in topo.lb_pool)]


def start_cloud(cp):
    """Start the cloud agent in the gateway's namespace (cp: emu.controlplane.ControlPlane)."""
    cp.progress(f"starting the cloud load-balancer controller on {cp.topo.gateway_name} "
                f"(pool {', '.join(str(n) for n in cp.topo.lb_pool)})")
    return cp.start_agent("cloud", GatewayRef(cp.topo.gateway_name))


def dns_addon(topo: Topology, api: str) -> list[dict]:
    """The kube-dns Deployment and Service, as a cluster installs its DNS add-on."""
    labels = {"k8s-app": "kube-dns"}
    ports = [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": "dnsmasq", "image": "testbed/dnsmasq",
                      "command": ["python3", "-m", "testbed.dns.server", "--api", api, "--workdir", "."],
                      "ports": ports,
                      "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": str(topo.dns_service_ip), "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
    ]


def ingress_nginx_addon(topo: Topology, api: str, replicas: int = 1) -> list[dict]:
    """The namespace and controller Deployment of the ingress-nginx add-on."""
    container = {
        "name": "nginx-ingress", "image": "nginx/nginx-ingress:testbed",
        "command": ["python3", "-m", "testbed.ingress.controller", "--api", api, "--workdir", ".",
                    "--publish-pods", f"{INGRESS_NAMESPACE}/app={INGRESS_LABELS['app']}"],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        # Port 80 opens only once nginx runs a first good configuration.
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INGRESS_NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "nginx-ingress", "namespace": INGRESS_NAMESPACE, "labels": dict(INGRESS_LABELS)},
         "spec": {"replicas": replicas, "selector": {"matchLabels": dict(INGRESS_LABELS)},
                  "template": {"metadata": {"labels": dict(INGRESS_LABELS)},
                               "spec": {"containers": [container]}}}},
    ]
