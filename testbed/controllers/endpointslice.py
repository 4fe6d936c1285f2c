"""Pure: the EndpointSlice controller: Service selector + Pod status -> EndpointSlices.

As in Kubernetes (pkg/controller/endpointslice): every Pod the selector matches that has an IP
and has not finished becomes an endpoint, terminating ones included:

* ready = publishNotReadyAddresses or (Pod Ready and not terminating)
* serving = publishNotReadyAddresses or Pod Ready;  terminating = deletionTimestamp is set
* a named targetPort is resolved per Pod from its containers' port names (and protocol); Pods
  that resolve to different port numbers land in different slices; a Pod that does not have
  the named port is left out of that port (and so may land in a slice with fewer ports)
* nodeName, zone (the Node's topology.kubernetes.io/zone label), hostname when the Pod's
  hostname is set and its subdomain is the Service's name, targetRef to the Pod
* slices are labelled kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by,
  owned by the Service, addressType IPv4, at most 100 endpoints each (the controller default),
  and one empty slice remains when there are no endpoints.

Services without a selector (and ExternalName Services) are left alone: their slices are the
user's. Slices managed here whose Service is gone are deleted.
"""

from __future__ import annotations

import random

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of, object_key, selector_matches
from testbed.api.store import Store
from testbed.controllers.common import (
    Change,
    is_ready,
    is_terminal,
    is_terminating,
    name_of,
    owner_reference,
    random_suffix,
)

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100


def resolve_port(pod: dict, target: int | str, protocol: str) -> int | None:
    """A Service targetPort on this Pod: numbers as they are, names via container ports."""
    if isinstance(target, int):
        return target
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return port["containerPort"]
    return None


def _endpoint(pod: dict, service: dict, zones: dict[str, str]) -> dict:
    publish = bool(service["spec"].get("publishNotReadyAddresses"))
    ready, terminating = is_ready(pod), is_terminating(pod)
    endpoint: dict = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": publish or (ready and not terminating),
                       "serving": publish or ready, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                      "uid": pod["metadata"].get("uid", "")},
    }
    spec = pod["spec"]
    if spec.get("hostname") and spec.get("subdomain") == name_of(service):
        endpoint["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
        if zones.get(spec["nodeName"]):
            endpoint["zone"] = zones[spec["nodeName"]]
    return endpoint


def desired_slices(service: dict, pods: list[dict], zones: dict[str, str]) -> list[dict]:
    """The slices' `ports` and `endpoints` (no names yet), grouped by resolved ports."""
    spec = service["spec"]
    groups: dict[tuple, list[dict]] = {}
    for pod in sorted(pods, key=name_of):
        if not (pod.get("status") or {}).get("podIP") or is_terminal(pod):
            continue
        if not selector_matches(spec.get("selector"), pod["metadata"].get("labels")):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            protocol = sp.get("protocol", "TCP")
            number = resolve_port(pod, sp.get("targetPort", sp.get("port")), protocol)
            if number is not None:
                ports.append((sp.get("name", ""), number, protocol))
        groups.setdefault(tuple(ports), []).append(_endpoint(pod, service, zones))
    if not groups:
        groups[()] = []
    out = []
    for ports, endpoints in sorted(groups.items()):
        chunks = [endpoints[i:i + MAX_ENDPOINTS_PER_SLICE]
                  for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)] or [[]]
        for chunk in chunks:
            out.append({"ports": [{"name": n, "port": p, "protocol": proto}
                                  for n, p, proto in ports],
                        "endpoints": chunk})
    return out


def node_zones(store: Store) -> dict[str, str]:
    """Node name -> its topology zone ("" when unlabelled)."""
    nodes, _ = store.list("Node", copy=False)
    return {name_of(n): (n["metadata"].get("labels") or {}).get(ZONE_LABEL, "") for n in nodes}


def reconcile_service(store: Store, service: dict, rng: random.Random,
                      zones: dict[str, str] | None = None) -> list[Change]:
    """`zones`: node_zones(store), when the caller reconciles many Services in one pass."""
    ns, name = object_key(service)
    existing, _ = store.list("EndpointSlice", ns, {SERVICE_NAME_LABEL: name,
                                                   MANAGED_BY_LABEL: MANAGED_BY})
    pods, _ = store.list("Pod", ns, copy=False)  # read only
    zones = node_zones(store) if zones is None else zones
    wanted = desired_slices(service, pods, zones)
    changes: list[Change] = []
    # Reuse slices with the same ports first, then any other, so a change rewrites a slice
    # rather than replacing it (fewer events for kube-proxy, stable names for users).
    unused = sorted(existing, key=name_of)
    reuse: list[dict | None] = []
    for slice_ in wanted:
        match = next((s for s in unused if s.get("ports") == slice_["ports"]), None)
        if match is not None:
            unused.remove(match)
        reuse.append(match)
    for i, match in enumerate(reuse):
        if match is None and unused:
            reuse[i] = unused.pop(0)
    for slice_, match in zip(wanted, reuse, strict=True):
        body = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name_of(match) if match else f"{name}-{random_suffix(rng)}",
                         "namespace": ns,
                         "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                         "ownerReferences": [owner_reference(service)]},
            "addressType": "IPv4", **slice_,
        }
        if match is not None:
            after = store.apply(body)
            if after["metadata"]["resourceVersion"] != match["metadata"]["resourceVersion"]:
                changes.append(Change("update", "EndpointSlice", ns, name_of(after)))
        else:
            created = store.create(body)
            changes.append(Change("create", "EndpointSlice", ns, name_of(created)))
    for stale in unused:
        store.delete("EndpointSlice", ns, name_of(stale))
        changes.append(Change("delete", "EndpointSlice", ns, name_of(stale)))
    return changes


def reconcile_endpointslices(store: Store, rng: random.Random) -> list[Change]:
    """Every Service with a selector; and the managed slices of Services that are gone."""
    services, _ = store.list("Service", copy=False)  # read only
    zones = node_zones(store)  # once per pass, not once per Service
    changes: list[Change] = []
    live = set()
    for service in services:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName" or not spec.get("selector"):
            continue
        live.add(object_key(service))
        changes.extend(reconcile_service(store, service, rng, zones))
    slices, _ = store.list("EndpointSlice", selector={MANAGED_BY_LABEL: MANAGED_BY})
    for slice_ in slices:
        owner = (namespace_of(slice_), slice_["metadata"]["labels"].get(SERVICE_NAME_LABEL))
        if owner not in live:
            store.delete("EndpointSlice", *object_key(slice_))
            changes.append(Change("delete", "EndpointSlice", owner[0], name_of(slice_)))
    return changes
