"""One test per condition the controllers decide on, written so that flipping the condition
(or planting the bug the review planted) fails it: pure functions called directly, one input on
each side of the condition. The broader behaviour is in test_controllers_reconcile.py."""

from __future__ import annotations

from collections import Counter

import pytest

from testbed.controllers.endpointslice import desired_slices
from testbed.controllers.scheduler import choose_node, node_load

# -- scheduler: which nodes can take a pod ------------------------------------------------------


def node(name: str, ready: str | None = "True", unschedulable: bool = False,
         **labels: str) -> dict:
    status = {} if ready is None else {"conditions": [
        {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}]}
    return {"kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": True} if unschedulable else {}, "status": status}


def pending(name: str = "p", **spec: object) -> dict:
    return {"kind": "Pod", "metadata": {"namespace": "default", "name": name},
            "spec": {"containers": [{"name": "c"}], **spec}}


def bound(name: str, node_name: str, phase: str = "Running", deleting: bool = False) -> dict:
    p = pending(name, nodeName=node_name)
    p["status"] = {"phase": phase}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


@pytest.mark.parametrize("ready,schedulable", [
    ("True", True), ("False", False), ("Unknown", False), (None, True)])
def test_only_a_node_whose_ready_condition_is_true_takes_pods(ready, schedulable):
    """Ready=Unknown (a node that stopped posting status) is as unschedulable as Ready=False;
    a Node that has no conditions yet is taken as ready."""
    decision = choose_node(pending(), [node("w1", ready)], [])
    assert (decision.node == "w1") is schedulable
    if not schedulable:
        assert decision.reason == ("0/1 nodes are available: 1 node(s) had untolerated taint "
                                   "{node.kubernetes.io/not-ready: }.")


def test_an_unknown_node_is_passed_over_for_a_ready_one_even_when_emptier():
    nodes = [node("w1", "Unknown"), node("w2")]
    assert choose_node(pending(), nodes, [bound("x", "w2"), bound("y", "w2")]).node == "w2"


def test_cordoned_nodes_and_selector_mismatches_take_no_pods():
    assert choose_node(pending(), [node("w1", unschedulable=True)], []).node is None
    assert choose_node(pending(), [node("w1", unschedulable=False)], []).node == "w1"
    sel = pending(nodeSelector={"zone": "a"})
    assert choose_node(sel, [node("w1", zone="b")], []).node is None
    assert choose_node(sel, [node("w1", zone="a")], []).node == "w1"


def test_the_least_loaded_node_wins_ties_by_name():
    nodes = [node("w2"), node("w1"), node("w3")]
    assert choose_node(pending(), nodes, [bound("a", "w1"), bound("b", "w2")]).node == "w3"
    assert choose_node(pending(), nodes, [bound("a", "w1")]).node == "w2"
    assert choose_node(pending(), nodes, []).node == "w1"


def test_a_pod_with_a_node_stays_there():
    assert choose_node(pending(nodeName="w9"), [node("w1")], []).node == "w9"


def test_only_active_bound_pods_count_as_load():
    pods = [bound("a", "w1"), bound("b", "w1", phase="Succeeded"), bound("c", "w1", phase="Failed"),
            bound("d", "w1", deleting=True), pending("e")]
    assert node_load(pods) == Counter({"w1": 1})
    # w1 has one active pod, w2 two: the finished and terminating ones on w1 do not count
    nodes = [node("w1"), node("w2")]
    assert choose_node(pending(), nodes, pods + [bound("f", "w2"), bound("g", "w2")]).node == "w1"


# -- EndpointSlices: which pods are endpoints ---------------------------------------------------

SERVICE = {"kind": "Service", "metadata": {"namespace": "default", "name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def web(name: str, ip: str | None = "10.244.1.2", phase: str = "Running", ready: bool = True,
        deleting: bool = False, **labels: str) -> dict:
    p = bound(name, "w1", phase, deleting)
    p["metadata"]["labels"] = labels or {"app": "web"}
    p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if ip:
        p["status"]["podIP"] = ip
    return p


def endpoints(pods: list[dict], service: dict = SERVICE) -> dict[str, dict]:
    return {e["targetRef"]["name"]: e["conditions"]
            for s in desired_slices(service, pods, {}) for e in s["endpoints"]}


def test_finished_pods_are_no_endpoints_running_ones_are():
    pods = [web("done", "10.244.1.2", phase="Succeeded"), web("crashed", "10.244.1.3", phase="Failed"),
            web("up", "10.244.1.4")]
    assert list(endpoints(pods)) == ["up"]


def test_a_pod_without_an_address_or_not_selected_is_no_endpoint():
    assert endpoints([web("a", ip=None), web("b", app="db")]) == {}
    assert list(endpoints([web("a")])) == ["a"]


def test_endpoint_conditions_ready_serving_terminating():
    assert endpoints([web("a")])["a"] == {"ready": True, "serving": True, "terminating": False}
    assert endpoints([web("a", ready=False)])["a"] == {"ready": False, "serving": False,
                                                       "terminating": False}
    assert endpoints([web("a", deleting=True)])["a"] == {"ready": False, "serving": True,
                                                         "terminating": True}
    publish = {**SERVICE, "spec": {**SERVICE["spec"], "publishNotReadyAddresses": True}}
    assert endpoints([web("a", ready=False, deleting=True)], publish)["a"] == {
        "ready": True, "serving": True, "terminating": True}
