"""A pytest plugin: write your own reachability tests against an emulated cluster.

Installed with the package (entry point `pytest11`), it offers a `cluster` fixture that builds
a topology once per test module and tears it down afterwards. The fixture is the public
Python API's `testbed.Cluster` (testbed/experiment.py), the same object scripts use:

    import pytest

    pytestmark = pytest.mark.topology("topologies/two-node.yaml")   # default: two-node

    def test_pods_reach_each_other(cluster):
        cluster.apply("scenarios/manifests/pods-two-nodes.yaml")
        seen = cluster.probe("tcp", "pod-a", "pod-c:8080")
        assert seen.reachable and seen.source_ip == str(cluster.ip("pod-a"))
        cluster.kill("kube-proxy", "w1")
        with cluster.partitioned(["w1"], ["w2"]):
            assert not cluster.probe("icmp", "pod-a", "pod-c").reachable

Tests using it need root (network namespaces) and are skipped with that reason otherwise.
Paths are relative to pytest's root directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "topology(path): the topology file the `cluster` fixture builds")


@pytest.fixture(scope="module")
def cluster(request):
    """A running cluster for this test module (root only); torn down after its last test."""
    if os.geteuid() != 0:
        pytest.skip("the cluster fixture builds network namespaces: run the tests as root")
    from testbed.experiment import Cluster

    marker = request.node.get_closest_marker("topology")
    root = Path(str(request.config.rootpath))
    path = Path(marker.args[0]) if marker else Path(__file__).resolve().parents[1] / "topologies" / "two-node.yaml"
    built = Cluster(path if path.is_absolute() else root / path, root=root, progress=False).start()
    try:
        yield built
    finally:
        built.stop()
