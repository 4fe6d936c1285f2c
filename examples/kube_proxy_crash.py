#!/usr/bin/env python3
"""kube-proxy dies: the rules it wrote keep serving; a Service changed meanwhile does not.

    sudo python3 examples/kube_proxy_crash.py
"""

from pathlib import Path

from testbed import Cluster

HERE = Path(__file__).resolve().parents[1]

with Cluster(HERE / "topologies" / "two-node.yaml") as cluster:
    cluster.apply(HERE / "scenarios" / "manifests" / "article-service-test.yaml",
                  HERE / "scenarios" / "manifests" / "pods-two-nodes.yaml")
    print("before:", cluster.probe("http", "pod-a", "http://service-test/").text)
    cluster.kill("kube-proxy", "w1")
    print("kube-proxy on w1 killed; the iptables rules stay:")
    print("  ", cluster.probe("http", "pod-a", "http://service-test/").text)
    cluster.restart("kube-proxy", "w1")
    print("restarted:", cluster.probe("http", "pod-a", "http://service-test/", retry_for=5).text)
