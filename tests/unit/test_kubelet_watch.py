"""What the kubelet watches (agents/kubelet.py): only its own node's Pods, through the field
selector spec.nodeName=NODE, as upstream's kubelet does, so that a Pod written elsewhere
reaches no other kubelet (the API server's store wakes that node's watchers only)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from testbed.agents import kubelet


def test_the_kubelet_watches_only_the_pods_bound_to_its_node(monkeypatch, tmp_path):
    dummy = lambda *a, **k: SimpleNamespace()  # noqa: E731
    for name in ("Client", "make_pod_network", "PodRuntime", "EventRecorder", "PodSync",
                 "NodeRuntime", "ApiSink"):
        monkeypatch.setattr(kubelet, name, dummy)
    monkeypatch.setattr(kubelet.Record, "load", staticmethod(dummy))
    args = argparse.Namespace(node="w7", api="http://172.16.0.2:6443", run_dir=str(tmp_path),
                              pod_cidr="10.244.6.0/24", node_ip="172.16.7.2", cluster_dns="10.96.0.10",
                              label=[], pod_network="builtin", cni_conf=None, cni_bin_dir=None, mtu=1500)
    k = kubelet.Kubelet(args)
    try:
        assert k.informer.kind == "Pod"
        assert k.informer.fields == "spec.nodeName=w7"
        assert k.informer.namespace is None and k.informer.selector is None
    finally:
        k.probes.shutdown()
