"""The Python API checks manifests as every command does (testbed/checks.py), before it needs a
running cluster: a bad object, a nodePort outside the range, a clusterIP outside the topology's
service range, a command missing on the nodes are refused with SpecError, and nothing is sent."""

from __future__ import annotations

import pytest

from testbed import Cluster
from testbed.spec.source import SpecError

from .conftest import ROOT

TOPOLOGY = ROOT / "topologies" / "two-node.yaml"


def service(**spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}], **spec}}


@pytest.mark.parametrize("obj, wanted", [
    (service(ports=[{"port": 80, "nodePort": 80}], type="NodePort"),
     "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range"),
    (service(clusterIP="1.2.3.4"), "spec.clusterIPs: Invalid value: []string{\"1.2.3.4\"}: failed "
     "to allocate IP 1.2.3.4: the provided network does not match the current range (the "
     "service range of topology two-node is 10.96.0.0/12)"),
    (service(clusterIP="10.96.0.0"), "failed to allocate IP 10.96.0.0: the provided IP "
     "(10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
      "spec": {"containers": [{"name": "c", "image": "x", "command": ["/no/such/program"]}]}},
     "spec.containers[0].command: command '/no/such/program' is not found on the node"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}},
     "spec.ports: Required value"),
])
def test_cluster_apply_refuses_what_every_command_refuses(obj, wanted):
    cluster = Cluster(TOPOLOGY, progress=False)     # not started: a refusal must come first
    with pytest.raises(SpecError) as info:
        cluster.apply(objects=[obj])
    assert wanted in str(info.value)
    assert "<objects[0]>" in str(info.value)
