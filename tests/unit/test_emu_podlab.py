"""PodLab's placement (emu/podlab.py `least_loaded`), which the benchmarks rely on to spread
pods: spec.nodeName, else the least-loaded worker matching spec.nodeSelector. No root."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.emu.podlab import least_loaded
from testbed.emu.pods import PodError
from testbed.spec.topology import NodeSpec


def worker(name: str, index: int, **labels: str) -> NodeSpec:
    return NodeSpec(name, "worker", IPv4Address(f"10.100.0.{index + 1}"),
                    IPv4Network(f"10.100.{index}.0/24"), IPv4Address(f"10.100.{index}.1"),
                    IPv4Network(f"10.0.{index}.0/24"), "iptables", tuple(labels.items()))


WORKERS = [worker("w1", 1, zone="a"), worker("w2", 2, zone="b"), worker("w3", 3, zone="a")]


def manifest(**spec: object) -> dict:
    return {"metadata": {"namespace": "default", "name": "p"},
            "spec": {"containers": [{"name": "c"}], **spec}}


def test_the_least_loaded_worker_gets_the_pod_ties_to_the_first_listed():
    assert least_loaded(manifest(), WORKERS, {"w1": 3, "w2": 0, "w3": 1}) == "w2"
    assert least_loaded(manifest(), WORKERS, {"w1": 1, "w2": 2, "w3": 1}) == "w1"
    assert least_loaded(manifest(), WORKERS, {"w1": 0, "w2": 0, "w3": 0}) == "w1"


def test_spreading_a_batch_round_robins_the_workers():
    planned = {"w1": 0, "w2": 0, "w3": 0}
    placed = []
    for _ in range(6):
        node = least_loaded(manifest(), WORKERS, planned)
        planned[node] += 1
        placed.append(node)
    assert placed == ["w1", "w2", "w3", "w1", "w2", "w3"]


def test_node_selector_narrows_the_choice_and_node_name_decides():
    assert least_loaded(manifest(nodeSelector={"zone": "a"}), WORKERS,
                        {"w1": 2, "w2": 0, "w3": 1}) == "w3"
    assert least_loaded(manifest(nodeName="w1"), WORKERS, {"w1": 9, "w2": 0, "w3": 0}) == "w1"
    with pytest.raises(PodError, match="no worker matches nodeSelector"):
        least_loaded(manifest(nodeSelector={"zone": "c"}), WORKERS, {"w1": 0, "w2": 0, "w3": 0})
    with pytest.raises(PodError, match="is not a worker"):
        least_loaded(manifest(nodeName="master"), WORKERS, {"w1": 0, "w2": 0, "w3": 0})
