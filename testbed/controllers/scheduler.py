"""Pure: the scheduler: binds pending Pods to Nodes.

A Pod with spec.nodeName is already placed (the kubelet of that node runs it). Otherwise the
candidate Nodes are those not cordoned (spec.unschedulable), not NotReady, and whose labels
match spec.nodeSelector; the one running the fewest active Pods wins, ties broken by name.
When none fits, the Pod gets condition PodScheduled=False, reason Unschedulable, with the
message the Kubernetes scheduler prints ("0/3 nodes are available: ...").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from testbed.api.events import Note, reference
from testbed.api.meta import object_key
from testbed.api.store import Store
from testbed.controllers.common import Change, is_active, name_of


@dataclass(frozen=True)
class Decision:
    node: str | None
    reason: str = ""


def _node_ready(node: dict) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True  # a Node without conditions yet is taken as ready


def node_load(pods: list[dict]) -> Counter[str]:
    """How many active pods each node runs."""
    return Counter(p["spec"].get("nodeName") for p in pods
                   if is_active(p) and p["spec"].get("nodeName"))


def choose_node(pod: dict, nodes: list[dict], pods: list[dict],
                load: Counter[str] | None = None) -> Decision:
    """Where `pod` should run, given every Node and every Pod (to count load; `load` is
    `node_load(pods)` when the caller keeps it)."""
    if pod["spec"].get("nodeName"):
        return Decision(pod["spec"]["nodeName"])
    selector = pod["spec"].get("nodeSelector") or {}
    load = node_load(pods) if load is None else load
    failures: Counter[str] = Counter()
    fits = []
    for node in nodes:
        labels = node["metadata"].get("labels") or {}
        if (node.get("spec") or {}).get("unschedulable"):
            failures["node(s) were unschedulable"] += 1
        elif not _node_ready(node):
            failures["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"] += 1
        elif any(labels.get(k) != v for k, v in selector.items()):
            failures["node(s) didn't match Pod's node affinity/selector"] += 1
        else:
            fits.append(node)
    if not fits:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(failures.items()))
        return Decision(None, f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail
                                                                       else "."))
    best = min(fits, key=lambda n: (load[name_of(n)], name_of(n)))
    return Decision(name_of(best))


def _condition(status: str, reason: str = "", message: str = "") -> dict:
    out = {"type": "PodScheduled", "status": status}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def schedule_pending(store: Store) -> list[Change]:
    """Bind every unscheduled active Pod, or record why it cannot be; returns what changed."""
    # Read-only views (copy=False): a bound Pod is replaced in `pods`, never changed.
    nodes, _ = store.list("Node", copy=False)
    pods, _ = store.list("Pod", copy=False)
    changes: list[Change] = []
    load = node_load(pods)  # kept up to date below, not recounted for every pending pod
    for index, pod in enumerate(pods):
        if pod["spec"].get("nodeName") or not is_active(pod):
            continue
        decision = choose_node(pod, nodes, pods, load)
        status = dict(pod.get("status") or {})
        others = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        status.setdefault("phase", "Pending")
        if decision.node is None:
            status["conditions"] = others + [_condition("False", "Unschedulable",
                                                        decision.reason)]
            if status != pod.get("status"):
                store.update_status(dict(pod, status=status))
                changes.append(Change("status", "Pod", *object_key(pod),
                                      decision.reason, Note(reference(pod), "Warning",
                                                            "FailedScheduling", decision.reason)))
            continue
        bound = store.update(dict(pod, spec=dict(pod["spec"], nodeName=decision.node)))
        status["conditions"] = others + [_condition("True")]
        store.update_status(dict(bound, status=status))
        pods[index] = bound
        load[decision.node] += 1  # later decisions in this pass count this pod on its node
        changes.append(Change("bind", "Pod", *object_key(pod), decision.node,
                              Note(reference(bound), "Normal", "Scheduled",
                                   f"Successfully assigned {'/'.join(object_key(pod))} "
                                   f"to {decision.node}")))
    return changes
