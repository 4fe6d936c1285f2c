#!/usr/bin/env python3
"""Build a cluster, use it from Python, then open Mininet's CLI in it (and kubectl there).

    sudo python3 examples/interactive.py

In the CLI: `pods`, `node1 ip route`, `client-1 curl -s service-test`, `kubectl get pods -o
wide`, `nat node1`. Leaving the CLI (exit or Ctrl-D) tears the cluster down.
"""

from pathlib import Path

from testbed import Cluster

HERE = Path(__file__).resolve().parents[1]

with Cluster(HERE / "topologies" / "article.yaml") as cluster:
    cluster.apply(HERE / "scenarios" / "manifests" / "article-service-test.yaml",
                  HERE / "scenarios" / "manifests" / "clients.yaml")
    print(f"kubectl works from this machine too: KUBECONFIG={cluster.kubeconfig} kubectl get pods")
    cluster.cli()
