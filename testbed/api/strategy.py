"""Pure: what upstream's registry strategies do to an object before it is stored.

On create, a client cannot write status: it is reset to what the API server starts each kind
with (a Pod is Pending, with its QoS class; a Service or Ingress has an empty load-balancer
status; a Deployment none; a Namespace is Active), except for Nodes, whose kubelet may write
everything. On update of the main resource the stored status is kept (the store does that);
only the status subresource writes it. Namespaces always carry the
`kubernetes.io/metadata.name` label with their own name, as upstream sets it since 1.21.
"""

from __future__ import annotations

from collections.abc import Callable

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def qos_class(pod: dict) -> str:
    """The Pod's QoS class, as k8s.io/kubernetes pkg/apis/core/helper/qos decides it:
    Guaranteed when every container limits cpu and memory and requests equal the limits,
    BestEffort when no container requests or limits anything, Burstable otherwise."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set, guaranteed = False, True
    for c in containers:
        resources = c.get("resources") or {}
        requests = {k: v for k, v in (resources.get("requests") or {}).items()
                    if k in ("cpu", "memory")}
        limits = {k: v for k, v in (resources.get("limits") or {}).items()
                  if k in ("cpu", "memory")}
        any_set = any_set or bool(requests or limits)
        # Requests default to the limits when only limits are given.
        if set(limits) != {"cpu", "memory"} or any(requests.get(k, limits[k]) != limits[k]
                                                   for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


INITIAL_STATUS: dict[str, Callable[[dict], dict]] = {
    "Pod": lambda pod: {"phase": "Pending", "qosClass": qos_class(pod)},
    "Service": lambda _: {"loadBalancer": {}},
    "Ingress": lambda _: {"loadBalancer": {}},
    "Deployment": lambda _: {},
    "Namespace": lambda _: {"phase": "Active"},
}


def prepare_for_create(obj: dict) -> dict:
    """`obj` (changed in place, and returned) as the API server stores a new object."""
    kind = obj.get("kind")
    initial = INITIAL_STATUS.get(kind)
    if initial is not None:
        obj["status"] = initial(obj)
    elif kind != "Node":
        obj.pop("status", None)
    if kind == "Namespace":
        label_namespace(obj)
    return obj


def prepare_for_update(obj: dict) -> dict:
    """`obj` (changed in place, and returned) before an update of the main resource."""
    if obj.get("kind") == "Namespace":
        label_namespace(obj)
    return obj


def label_namespace(namespace: dict) -> None:
    meta = namespace.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    meta["labels"] = {**labels, NAMESPACE_NAME_LABEL: meta.get("name", "")}
