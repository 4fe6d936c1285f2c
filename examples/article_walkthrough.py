#!/usr/bin/env python3
"""The article's walk-through as a script: pod to pod, pod to Service, the NAT rules between.

    sudo python3 examples/article_walkthrough.py

Builds the article's two-node cluster, runs its service-test Deployment behind the Service
10.3.241.152, sends traffic the way the article explains it, prints what the kernel did, and
tears everything down at the end (also on Ctrl-C).
"""

from pathlib import Path

from testbed import Cluster

HERE = Path(__file__).resolve().parents[1]
MANIFESTS = HERE / "scenarios" / "manifests"

with Cluster(HERE / "topologies" / "article.yaml") as cluster:
    cluster.apply(MANIFESTS / "service-test-deployment.yaml", MANIFESTS / "service-test-service.yaml",
                  MANIFESTS / "clients.yaml")
    for pod in cluster.pods():
        print(f"{pod.key:45} on {pod.node:6} {pod.ip}")

    # Pod to pod across nodes: routed through the gateway, the source address kept.
    seen = cluster.probe("tcp", "client-1", f"{cluster.ip('client-2')}:8080")
    print(f"client-1 -> client-2: {seen.text}")

    # Pod to Service: kube-proxy's rules turn 10.3.241.152 into either pod.
    answered = set()
    for _ in range(12):
        seen = cluster.probe("http", "client-1", "http://10.3.241.152/")
        answered.add(seen.served_by)
    print(f"10.3.241.152 was answered by: {', '.join(sorted(answered))}")
    print("node1's KUBE-SERVICES chain, as kube-proxy wrote it:")
    print(cluster.nat("node1", chain="KUBE-SERVICES"))
