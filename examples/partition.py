#!/usr/bin/env python3
"""A network partition between the nodes: pod traffic across it stops, and flows again after.

    sudo python3 examples/partition.py
"""

from pathlib import Path

from testbed import Cluster

HERE = Path(__file__).resolve().parents[1]

with Cluster(HERE / "topologies" / "two-node.yaml") as cluster:
    cluster.apply(HERE / "scenarios" / "manifests" / "pods-two-nodes.yaml")
    print("pod-a -> pod-c:", cluster.probe("icmp", "pod-a", "pod-c").text)
    with cluster.partitioned(["w1"], ["w2"]):
        print("partitioned:   ", cluster.probe("icmp", "pod-a", "pod-c", timeout=1).text)
        print("same node:     ", cluster.probe("icmp", "pod-a", "pod-b").text)
    print("healed:        ", cluster.probe("icmp", "pod-a", "pod-c", retry_for=5).text)
