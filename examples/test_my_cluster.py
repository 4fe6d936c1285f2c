"""An example of the testbed's pytest plugin: your own reachability tests, in Python.

Run it as root:  sudo .venv/bin/python -m pytest examples/
The `cluster` fixture comes from the plugin the package installs; it builds the topology
named by the `topology` marker once for this module and tears it down at the end.
"""

import pytest

pytestmark = pytest.mark.topology("topologies/two-node.yaml")


def test_pod_to_pod_keeps_the_source_ip(cluster):
    cluster.apply("scenarios/manifests/pods-two-nodes.yaml")
    seen = cluster.probe("tcp", "pod-a", "pod-c:8080")
    assert seen.reachable
    assert seen.source_ip == str(cluster.ip("pod-a"))      # no NAT between pods
    assert seen.served_by == "default/pod-c"


def test_a_service_survives_its_kube_proxy(cluster):
    cluster.apply("scenarios/manifests/article-service-test.yaml")
    cluster.kill("kube-proxy", "w1")
    try:
        answer = cluster.probe("http", "pod-a", "http://service-test/")   # pod-a runs on w1
        assert answer.status == 200 and "Hello from" in answer.body
    finally:
        cluster.restart("kube-proxy", "w1")


def test_a_partition_cuts_pod_traffic_between_nodes(cluster):
    cluster.partition(["w1"], ["w2"])
    try:
        assert not cluster.probe("icmp", "pod-a", "pod-c", timeout=1).reachable
        assert cluster.probe("icmp", "pod-a", "pod-b").reachable          # same node
    finally:
        cluster.heal()
    assert cluster.probe("icmp", "pod-a", "pod-c", retry_for=5).reachable  # flows again within seconds
