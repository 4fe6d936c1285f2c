"""A pytest plugin: write your own reachability tests against an emulated cluster.

Installed with the package (entry point `pytest11`), it offers a `cluster` fixture that builds
a topology once per test module, tears it down afterwards, and wraps it in small helpers:

    import pytest

    pytestmark = pytest.mark.topology("topologies/two-node.yaml")   # default: two-node

    def test_pods_reach_each_other(cluster):
        cluster.apply("scenarios/manifests/pods-two-nodes.yaml")
        seen = cluster.probe("tcp", "pod-a", "pod-c:8080")
        assert seen.reachable and seen.source_ip == str(cluster.ip("pod-a"))
        cluster.kill("kube-proxy", "w1")
        cluster.partition(["w1"], ["w2"])
        assert not cluster.probe("icmp", "pod-a", "pod-c").reachable

Tests using it need root (network namespaces) and are skipped with that reason otherwise.
Paths are relative to pytest's root directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


class TestCluster:
    """What a test does with a running cluster; `.cluster` is the full Cluster object."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, cluster, root: Path):
        self.cluster = cluster
        self.root = root

    def _path(self, path: str | Path) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else self.root / p)

    def apply(self, *paths: str | Path, objects: list[dict] | None = None, timeout: float = 90) -> list[dict]:
        """Apply manifest files (and/or objects) through the API server; wait for their pods."""
        from testbed.api.manifests import load_manifests

        objs = (load_manifests([self._path(p) for p in paths]) if paths else []) + list(objects or [])
        self.cluster.apply(objs)
        self.cluster.wait_ready(objs, timeout=timeout)
        return objs

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self.cluster.client.delete(kind, namespace, name)

    def ip(self, name: str):
        """The address of a pod, node, client or Service (ClusterIP)."""
        return self.cluster.address_of(name)

    def probe(self, kind: str, source: str, target: str, **options):
        """One probe (icmp, tcp, udp, http, dns) as a scenario step writes it; the Observation.

        options: timeout, payload, headers, record (dns), retry_for (seconds to keep trying
        until it is reachable). The Observation has reachable, text, source_ip (as the server
        saw it), served_by (the namespace that answered), status, body.
        """
        import time

        deadline = time.monotonic() + float(options.pop("retry_for", 0))
        while True:
            seen = self._probe_once(kind, source, target, **options)
            if seen.reachable or time.monotonic() >= deadline:
                return seen
            time.sleep(0.2)

    def _probe_once(self, kind: str, source: str, target: str, **options):
        from testbed.scenario.probes import run_probe
        from testbed.scenario.spec import Expect, Probe, Target

        host, _, port = target.rpartition(":") if ":" in target and kind in ("tcp", "udp") else (target, "", "")
        if kind == "http":
            from urllib.parse import urlsplit

            url = urlsplit(target if "://" in target else f"http://{target}")
            t = Target(url.hostname, url.port or 80, url.path or "/")
        else:
            t = Target(host, int(port) if port else None)
        probe = Probe(kind, source, t, Expect(), float(options.get("timeout", 2.0)),
                      payload=str(options.get("payload", "hostname")),
                      headers=tuple((k, str(v)) for k, v in (options.get("headers") or {}).items()),
                      record=options.get("record", "A"))
        c = self.cluster
        origin = c.endpoint(source)
        address = None if kind == "dns" else c.address_of(t.host)
        namespaces = {p.key: p.pid for p in c.all_pods() if p.pid}
        namespaces.update({h.name: h.pid for h in c.network.hosts.values()})
        files = c.pod_files(origin.name) if origin.kind == "pod" else None
        return run_probe(probe, origin.pid, address, namespaces, files)

    def kill(self, agent: str, node: str) -> None:
        self.cluster.cp.kill(agent, node)

    def restart(self, agent: str, node: str) -> None:
        self.cluster.cp.restart(agent, node)

    def partition(self, *groups: list[str]) -> str:
        from testbed.emu import faults

        return faults.partition(self.cluster, [list(g) for g in groups])

    def heal(self) -> str:
        from testbed.emu import faults

        return faults.heal(self.cluster)

    def link(self, node: str, up: bool) -> str:
        from testbed.emu import faults

        return faults.link(self.cluster, node, up)

    def run(self, node: str, argv: list[str]) -> str:
        """Run a command in a node's (or the gateway's, or a client's) namespace; its output."""
        from testbed.net.run import run

        return run(argv, netns=self.cluster.network.pid(node)).stdout


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "topology(path): the topology file the `cluster` fixture builds")


@pytest.fixture(scope="module")
def cluster(request):
    """A running cluster for this test module (root only); torn down after its last test."""
    if os.geteuid() != 0:
        pytest.skip("the cluster fixture builds network namespaces: run the tests as root")
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    marker = request.node.get_closest_marker("topology")
    root = Path(str(request.config.rootpath))
    path = Path(marker.args[0]) if marker else Path(__file__).resolve().parents[1] / "topologies" / "two-node.yaml"
    built = Cluster(load_topology(path if path.is_absolute() else root / path)).up()
    try:
        yield TestCluster(built, root)
    finally:
        built.down()
