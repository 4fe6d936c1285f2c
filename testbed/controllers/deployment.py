"""Pure: the Deployment controller, without ReplicaSets in between.

Pods are named <deployment>-<pod-template-hash>-<5 random chars>, carry the template's labels
plus `pod-template-hash`, and an ownerReference (controller: true) to the Deployment, so they
look like the ones a real cluster shows. The hash is FNV-1a over the template, encoded the way
Kubernetes encodes it (digits mapped onto a vowel-free alphabet).

Reconcile keeps `spec.replicas` active Pods of the current template: it replaces deleted or
finished Pods, scales down (not-ready and unscheduled Pods first, then newest), and on a
template change rolls: RollingUpdate creates new Pods up to replicas+maxSurge and deletes old
ones only as far as maxUnavailable allows (counting ready Pods); Recreate deletes all old Pods
and creates new ones once they are gone. Deletion is graceful (terminationGracePeriodSeconds),
so Pods pass through Terminating as on a real cluster.
"""

from __future__ import annotations

import copy
import json
import math
import random

from testbed.api.events import Note, reference
from testbed.api.meta import namespace_of, object_key, selector_matches
from testbed.api.store import Store
from testbed.api.strategy import prepare_for_create
from testbed.controllers.common import (
    NAME_ALPHABET,
    Change,
    is_active,
    is_owned_by,
    is_ready,
    is_terminating,
    name_of,
    owner_reference,
    random_suffix,
)

HASH_LABEL = "pod-template-hash"


def template_hash(template: dict, collision_count: int = 0) -> str:
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    value = 0x811C9DC5
    for byte in data + str(collision_count).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    # k8s SafeEncodeString: each decimal digit mapped onto the alphabet without vowels.
    return "".join(NAME_ALPHABET[int(d) % len(NAME_ALPHABET)] for d in str(value))


def new_pod(deployment: dict, pod_hash: str, rng: random.Random) -> dict:
    template = deployment["spec"]["template"]
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {}, **{HASH_LABEL: pod_hash})
    meta = {"name": f"{name_of(deployment)}-{pod_hash}-{random_suffix(rng)}",
            "namespace": namespace_of(deployment), "labels": labels,
            "ownerReferences": [owner_reference(deployment)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    # Created straight in the store, so given the status the API server starts Pods with.
    return prepare_for_create({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                               "spec": copy.deepcopy(template["spec"])})


def _resolve(value: int | str, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    fraction = int(value.rstrip("%")) * replicas / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


def _deletion_order(pod: dict) -> tuple:
    """Which Pod goes first when scaling down: unscheduled, not ready, then the newest."""
    return (bool(pod["spec"].get("nodeName")), is_ready(pod),
            _negated(pod["metadata"].get("creationTimestamp") or ""), name_of(pod))


def _negated(text: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in text)


def reconcile_deployment(store: Store, deployment: dict, rng: random.Random) -> list[Change]:
    spec = deployment["spec"]
    replicas = spec.get("replicas", 1)
    pod_hash = template_hash(spec["template"])
    ns = namespace_of(deployment)
    owned = _owned_pods(store, deployment)
    active = [p for p in owned if is_active(p)]
    new = [p for p in active if p["metadata"]["labels"].get(HASH_LABEL) == pod_hash]
    # by the label, not `p not in new`: a list lookup compares whole Pods, N x N per pass
    old = [p for p in active if p["metadata"]["labels"].get(HASH_LABEL) != pod_hash]
    changes: list[Change] = []

    def create(count: int) -> int:
        for _ in range(max(0, count)):
            pod = store.create(new_pod(deployment, pod_hash, rng))
            changes.append(Change("create", "Pod", ns, name_of(pod), note=Note(
                reference(deployment), "Normal", "SuccessfulCreate",
                f"Created pod: {name_of(pod)}")))
        return max(0, count)

    def delete(victims: list[dict], count: int) -> None:
        for pod in sorted(victims, key=_deletion_order)[:max(0, count)]:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            store.delete("Pod", ns, name_of(pod), grace_seconds=grace or None)
            changes.append(Change("delete", "Pod", ns, name_of(pod), note=Note(
                reference(deployment), "Normal", "SuccessfulDelete",
                f"Deleted pod: {name_of(pod)}")))

    strategy = spec.get("strategy") or {}
    old_terminating = [p for p in owned if is_terminating(p)
                       and p["metadata"]["labels"].get(HASH_LABEL) != pod_hash]
    if strategy.get("type") == "Recreate" and (old or old_terminating):
        delete(old, len(old))  # new Pods come on a later pass, once every old Pod is gone
    elif not old:
        create(replicas - len(new))
        delete(new, len(new) - replicas)
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = _resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        created = create(min(replicas - len(new), replicas + surge - len(new) - len(old)))
        # Unready old Pods add nothing to availability: they may go at once.
        old_unready = [p for p in old if not is_ready(p)]
        delete(old_unready, len(old_unready))
        ready_old = [p for p in old if is_ready(p)]
        total = len(new) + created + len(ready_old)
        new_unavailable = sum(not is_ready(p) for p in new) + created
        delete(ready_old, total - (replicas - unavailable) - new_unavailable)
    changes.extend(_update_status(store, deployment, pod_hash))
    return changes


def _owned_pods(store: Store, deployment: dict) -> list[dict]:
    pods, _ = store.list("Pod", namespace_of(deployment), copy=False)  # read only
    return [p for p in pods if is_owned_by(p, deployment)
            and selector_matches(deployment["spec"]["selector"], p["metadata"].get("labels"))]


def conditions(deployment: dict, status: dict, pod_hash: str) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the Available and Progressing conditions, as
    upstream's deployment controller words them (the "replica set" is the pod-template-hash
    generation of Pods, which is what a ReplicaSet holds upstream)."""
    spec = deployment["spec"]
    replicas = spec.get("replicas", 1)
    strategy = spec.get("strategy") or {}
    unavailable = 0
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        unavailable = _resolve((strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
                               replicas, round_up=False)
    available = status["availableReplicas"] >= replicas - unavailable
    rs = f"{name_of(deployment)}-{pod_hash}"
    complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                and status["availableReplicas"] == replicas)
    return [
        ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        if available else
        ("Available", "False", "MinimumReplicasUnavailable",
         "Deployment does not have minimum availability."),
        ("Progressing", "True", "NewReplicaSetAvailable",
         f'ReplicaSet "{rs}" has successfully progressed.') if complete else
        ("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.'),
    ]


def _with_times(wanted: list[tuple[str, str, str, str]], old: list[dict], now: str) -> list[dict]:
    """Conditions with upstream's timestamps: lastTransitionTime moves only when the status
    does, lastUpdateTime when anything of the condition does."""
    before = {c.get("type"): c for c in old}
    out = []
    for kind, status, reason, message in wanted:
        prev = before.get(kind) or {}
        same = (prev.get("status"), prev.get("reason"), prev.get("message")) == (status, reason,
                                                                               message)
        out.append({"type": kind, "status": status,
                    "lastUpdateTime": prev.get("lastUpdateTime") if same else now,
                    "lastTransitionTime": prev.get("lastTransitionTime")
                    if prev.get("status") == status else now,
                    "reason": reason, "message": message})
    return out


def _update_status(store: Store, deployment: dict, pod_hash: str) -> list[Change]:
    active = [p for p in _owned_pods(store, deployment) if is_active(p)]
    updated = [p for p in active if p["metadata"]["labels"].get(HASH_LABEL) == pod_hash]
    status = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": len(active),
        "updatedReplicas": len(updated),
        "readyReplicas": sum(is_ready(p) for p in active),
        "availableReplicas": sum(is_ready(p) for p in active),
        "unavailableReplicas": max(0, deployment["spec"].get("replicas", 1)
                                   - sum(is_ready(p) for p in active)),
    }
    old = (deployment.get("status") or {}).get("conditions") or []
    status["conditions"] = _with_times(conditions(deployment, status, pod_hash), old, store.now())
    if deployment.get("status") == status:
        return []
    store.update_status(dict(deployment, status=status))
    return [Change("status", "Deployment", *object_key(deployment))]


def reconcile_deployments(store: Store, rng: random.Random) -> list[Change]:
    """Every Deployment, then every Pod whose owning Deployment is gone (garbage collection)."""
    changes: list[Change] = []
    deployments, _ = store.list("Deployment", copy=False)  # read only, as below
    for deployment in deployments:
        changes.extend(reconcile_deployment(store, deployment, rng))
    uids = {d["metadata"].get("uid") for d in deployments}
    pods, _ = store.list("Pod", copy=False)
    for pod in pods:
        refs = [r for r in pod["metadata"].get("ownerReferences") or []
                if r.get("kind") == "Deployment" and r.get("controller")]
        if refs and refs[0].get("uid") not in uids and not is_terminating(pod):
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            store.delete("Pod", *object_key(pod), grace_seconds=grace or None)
            changes.append(Change("delete", "Pod", *object_key(pod),
                                  "owner is gone"))
    return changes
