#!/usr/bin/env python3
"""NetworkPolicy from Python: a default deny, a hole for labelled clients, a relabelled pod
locked out, and the rules on the node.

    sudo python3 examples/network_policy.py
"""

from pathlib import Path

from testbed import Cluster

HERE = Path(__file__).resolve().parents[1]

DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all-ingress"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ALLOW = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "pod-a-from-friends"},
         "spec": {"podSelector": {"matchLabels": {"app": "demo"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}],
                               "ports": [{"port": "http"}]}]}}

with Cluster(HERE / "topologies" / "two-node.yaml") as cluster:
    cluster.apply(HERE / "scenarios" / "manifests" / "pods-two-nodes.yaml")
    print("open:          ", cluster.probe("tcp", "pod-c", "pod-a:8080").text)
    cluster.apply(objects=[DENY])
    print("default deny:  ", cluster.probe("tcp", "pod-c", "pod-a:8080", timeout=1).text)
    cluster.label("Pod", "pod-c", {"role": "friend"})
    cluster.apply(objects=[ALLOW])
    print("friend:        ", cluster.probe("tcp", "pod-c", "pod-a:8080").text)
    cluster.label("Pod", "pod-c", {"role": None})
    print("not a friend:  ", cluster.probe("tcp", "pod-c", "pod-a:8080", timeout=1).text)
    print(cluster.netpol("w1"))
