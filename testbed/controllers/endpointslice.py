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

Which endpoint goes into which slice follows upstream's reconciler (reconcileByPortMapping): an
endpoint stays in the slice that holds it (updated in place when it changed), one that is gone
leaves its slice, and new ones fill the slices being changed anyway, then those with room, and
only then new slices. So a pod becoming ready rewrites the one slice that holds it, not every
slice after it in name order (which would send each kube-proxy a burst of whole slices for
every pod that comes up).
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
    """The slices' `ports` and `endpoints` (no names yet), grouped by resolved ports, when no
    slice exists yet: each group's endpoints in pod name order, cut into slices of at most
    MAX_ENDPOINTS_PER_SLICE (place_endpoints with no slice to keep)."""
    plans, _ = place_endpoints([], desired_groups(service, pods, zones))
    return [{"ports": ports, "endpoints": endpoints} for _, ports, endpoints in plans]


def _ports(ports: tuple) -> list[dict]:
    return [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]


def desired_groups(service: dict, pods: list[dict],
                   zones: dict[str, str]) -> dict[tuple, list[dict]]:
    """Resolved ports ((name, number, protocol), ...) -> their endpoints in pod name order,
    sorted by ports; one group of no ports and no endpoints when nothing is selected."""
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
    return dict(sorted(groups.items()))


def _identity(endpoint: dict) -> tuple:
    """What makes two endpoints the same one: the pod (uid) and its addresses."""
    ref = endpoint.get("targetRef") or {}
    return (ref.get("namespace"), ref.get("name"), ref.get("uid"),
            tuple(endpoint.get("addresses") or ()))


def place_endpoints(existing: list[dict], groups: dict[tuple, list[dict]]
                    ) -> tuple[list[tuple[dict | None, list[dict], list[dict]]], list[dict]]:
    """Upstream's placement (reconcileByPortMapping): ([(the existing slice to rewrite or None
    for a new one, ports, endpoints)], [existing slices to delete]). Per group of ports, the
    slices with those ports keep the endpoints they hold that are still wanted, in their order
    (with the endpoint's new conditions); a slice left with no endpoints is deleted. The
    group's other endpoints then fill the slices that change anyway, fullest first; what is
    left goes, while fewer than a slice's worth remain, into the one unchanged slice it fits
    closest (getSliceToFill), else into a new slice. A new slice takes over an existing slice
    of other ports when one is left (rewritten rather than replaced), and the one empty slice
    of a Service without endpoints does too."""
    unused = sorted(existing, key=lambda s: s["metadata"]["name"])
    plans: list[tuple[dict | None, list[dict], list[dict]]] = []
    fresh: list[tuple[list[dict], list[dict]]] = []   # (ports, endpoints) with no slice yet
    for ports, endpoints in groups.items():
        port_list = _ports(ports)
        wanted = {_identity(e): e for e in endpoints}
        mine = [s for s in unused if (s.get("ports") or []) == port_list]
        kept: list[tuple[dict, list[dict]]] = []
        for slice_ in mine:
            unused.remove(slice_)
            held = [wanted.pop(i) for e in slice_.get("endpoints") or []
                    if (i := _identity(e)) in wanted]
            kept.append((slice_, held))
        rest = list(wanted.values())
        changing = [(s, held) for s, held in kept if held and held != (s.get("endpoints") or [])]
        unchanged = [(s, held) for s, held in kept if held and held == (s.get("endpoints") or [])]
        # 2. the slices that change anyway, fullest first
        for _, held in sorted(changing, key=lambda k: -len(k[1])):
            room = max(MAX_ENDPOINTS_PER_SLICE - len(held), 0)
            held.extend(rest[:room])
            rest = rest[room:]
        # 3. fewer than a slice's worth left: the unchanged slice they fit closest; else new
        while rest:
            fit = None
            if len(rest) < MAX_ENDPOINTS_PER_SLICE:
                fits = [k for k in unchanged if len(k[1]) + len(rest) <= MAX_ENDPOINTS_PER_SLICE]
                fit = max(fits, key=lambda k: len(k[1]), default=None)   # the first closest
            if fit is None:
                fresh.append((port_list, rest[:MAX_ENDPOINTS_PER_SLICE]))
                rest = rest[MAX_ENDPOINTS_PER_SLICE:]
            else:
                fit[1].extend(rest)
                unchanged.remove(fit)
                rest = []
        for slice_, held in kept:
            if held or (not endpoints and slice_ is kept[0][0]):
                plans.append((slice_, port_list, held))
            else:
                unused.append(slice_)   # emptied: reused below, or deleted
        if not endpoints and not kept:
            fresh.append((port_list, []))   # the one empty slice of a Service with no endpoints
    unused.sort(key=lambda s: s["metadata"]["name"])
    for port_list, chunk in fresh:
        plans.append((unused.pop(0) if unused else None, port_list, chunk))
    return plans, unused


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
    plans, unused = place_endpoints(existing, desired_groups(service, pods, zones))
    changes: list[Change] = []
    for match, ports, endpoints in plans:
        slice_ = {"ports": ports, "endpoints": endpoints}
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
