"""Pure: what upstream's registry strategies do to an object before it is stored.

Each kind's PrepareForCreate / PrepareForUpdate (k8s.io/kubernetes pkg/registry/*/*/strategy.go)
and its status strategy's PrepareForUpdate, for the kinds the testbed serves:

* create (`prepare_for_create`): a client cannot write status. It is reset to what the API
  server starts each kind with: a Pod is Pending with its QoS class (the schema has no
  schedulingGates, so no SchedulingGated condition is ever due); a Service's or an
  Ingress's status is an empty load-balancer status; a Deployment's is empty; a Namespace is
  Active and its spec.finalizers holds "kubernetes". Nodes keep what they are created with
  ("Nodes allow *all* fields, including status, to be set on create"). Kinds without a status
  (EndpointSlice, Endpoints, Event, Lease, NetworkPolicy, whose status upstream removed) lose
  any they are sent.
* update of the main resource (`prepare_for_update`): the stored status is kept (the store
  keeps it: Store.update); a Namespace keeps its spec.finalizers (only the finalize
  subresource changes them); a Service drops what its new type no longer uses when the client
  left it as it was (`drop_type_dependent_fields`, run before validation as upstream runs
  PrepareForUpdate before ValidateUpdate).
* the status subresource (`prepare_status_update`): only status is written (the store keeps
  spec and metadata: Store.update_status); a Pod keeps its QoS class when the writer leaves it
  out, and the observedGeneration of its status and conditions when the writer sends none.

Namespaces always carry the `kubernetes.io/metadata.name` label with their own name, as upstream
sets it since 1.21.
"""

from __future__ import annotations

from collections.abc import Callable

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
FINALIZER_KUBERNETES = "kubernetes"


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


# What each kind's status is reset to on create (Go's zero status, as it serializes: a
# Service's and an Ingress's loadBalancer is a struct, so an empty object; a Deployment's
# fields are all omitempty).
INITIAL_STATUS: dict[str, Callable[[dict], dict]] = {
    "Pod": lambda pod: {"phase": "Pending", "qosClass": qos_class(pod)},
    "Service": lambda _: {"loadBalancer": {}},
    "Ingress": lambda _: {"loadBalancer": {}},
    "Deployment": lambda _: {},
    "Namespace": lambda _: {"phase": "Active"},
}
KEEPS_STATUS_ON_CREATE = frozenset({"Node"})


def prepare_for_create(obj: dict) -> dict:
    """`obj` (changed in place, and returned) as the API server stores a new object."""
    kind = obj.get("kind")
    initial = INITIAL_STATUS.get(kind)  # type: ignore[arg-type]
    if initial is not None:
        obj["status"] = initial(obj)
    elif kind not in KEEPS_STATUS_ON_CREATE:
        obj.pop("status", None)
    if kind == "Namespace":
        label_namespace(obj)
        spec = obj.get("spec")
        spec = obj["spec"] = dict(spec) if isinstance(spec, dict) else {}
        finalizers = list(spec.get("finalizers") or [])
        if FINALIZER_KUBERNETES not in finalizers:
            spec["finalizers"] = [*finalizers, FINALIZER_KUBERNETES]
    return obj


def prepare_for_update(obj: dict, old: dict | None = None) -> dict:
    """`obj` (changed in place, and returned) before an update of the main resource that
    replaces `old`; its status is the store's business (Store.update keeps the stored one)."""
    if obj.get("kind") == "Namespace":
        label_namespace(obj)
        if old is not None:
            spec = obj.get("spec")
            spec = obj["spec"] = dict(spec) if isinstance(spec, dict) else {}
            old_finalizers = (old.get("spec") or {}).get("finalizers")
            if old_finalizers is None:
                spec.pop("finalizers", None)
            else:
                spec["finalizers"] = list(old_finalizers)
    return obj


def prepare_status_update(obj: dict, old: dict) -> dict:
    """`obj` (changed in place, and returned) before a write of the status subresource over
    `old`: what each kind's status strategy fills in from the stored status."""
    if obj.get("kind") != "Pod" or not isinstance(obj.get("status"), dict):
        return obj
    status, old_status = obj["status"], old.get("status") or {}
    # "the Pod QoS is immutable and populated at creation time by the kube-apiserver"
    if not status.get("qosClass") and old_status.get("qosClass"):
        status["qosClass"] = old_status["qosClass"]
    # preserveOldObservedGeneration: a writer that sends none keeps the stored values
    if not status.get("observedGeneration") and old_status.get("observedGeneration"):
        status["observedGeneration"] = old_status["observedGeneration"]
    remembered: dict[str, list[int]] = {}
    for cond in old_status.get("conditions") or []:
        if isinstance(cond, dict):
            remembered.setdefault(cond.get("type", ""), []).append(
                cond.get("observedGeneration") or 0)
    for cond in status.get("conditions") or []:
        if not isinstance(cond, dict):
            continue
        olds = remembered.get(cond.get("type", ""))
        generation = olds.pop(0) if olds else 0
        if not cond.get("observedGeneration") and generation:
            cond["observedGeneration"] = generation
    return obj


def label_namespace(namespace: dict) -> None:
    meta = namespace.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    meta["labels"] = {**labels, NAMESPACE_NAME_LABEL: meta.get("name", "")}


# -- Services: dropTypeDependentFields ---------------------------------------------------------

def _type(svc: dict) -> str:
    return (svc.get("spec") or {}).get("type") or "ClusterIP"


def _node_ports(svc: dict) -> set:
    return {p.get("nodePort") for p in (svc.get("spec") or {}).get("ports") or []
            if isinstance(p, dict) and p.get("nodePort")}


def _needs_health_check(svc: dict) -> bool:
    return _type(svc) == "LoadBalancer" and \
        (svc.get("spec") or {}).get("externalTrafficPolicy") == "Local"


def drop_type_dependent_fields(new: dict, old: dict) -> dict:
    """`new` (a Service update, changed in place, and returned) without what its type no
    longer uses, where the client left the value as `old` has it (upstream's
    dropTypeDependentFields): the clusterIP(s), ipFamilies and ipFamilyPolicy of a Service
    turning ExternalName; node ports (none added), healthCheckNodePort,
    allocateLoadBalancerNodePorts, loadBalancerClass and externalTrafficPolicy of one that no
    longer needs them. A value the client changed is left for validation to refuse."""
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return new
    new_type, old_type = _type(new), _type(old)
    if old_type != "ExternalName" and new_type == "ExternalName":
        if spec.get("clusterIP") == old_spec.get("clusterIP") and \
                spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    uses_node_ports = ("NodePort", "LoadBalancer")
    if old_type in uses_node_ports and new_type not in uses_node_ports:
        if _node_ports(new) <= _node_ports(old):
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.pop("nodePort", None)
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
    if _needs_health_check(old) and not _needs_health_check(new) and \
            spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if old_type == "LoadBalancer" and new_type != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if key in spec and spec.get(key) == old_spec.get(key):
                spec.pop(key)
    return new
