"""Pure: the Endpoints controller: a v1 Endpoints object per Service with a selector.

kube-proxy reads EndpointSlices; the older v1 Endpoints are what `kubectl get endpoints` (and
tools written before EndpointSlices) read, so, as upstream's endpoints controller does, each
Service with a selector gets an Endpoints object of the same name, computed here from the
EndpointSlices the slice controller keeps for it (the same Pods, resolved the same way):

* ready endpoints go to `addresses`, not ready ones to `notReadyAddresses` (the slice
  controller already counts publishNotReadyAddresses as ready); terminating ones are left
  out, as upstream's controller leaves out Pods being deleted;
* endpoints with the same ports share one subset, in the order of their addresses (upstream
  repacks subsets the same way); each address keeps its nodeName, hostname and targetRef;
* the Endpoints carry the Service's labels and `endpointslice.kubernetes.io/skip-mirror:
  "true"`, as upstream's controller sets them (and `service.kubernetes.io/headless` for
  headless Services).

Endpoints of Services without a selector belong to the user and are left alone; Endpoints
this controller made (skip-mirror) whose Service is gone are deleted.
"""

from __future__ import annotations

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of, object_key
from testbed.api.store import NotFound, Store
from testbed.controllers.common import Change, name_of
from testbed.controllers.endpointslice import MANAGED_BY, MANAGED_BY_LABEL

# Upstream's endpoints controller labels what it writes so that the EndpointSlice mirroring
# controller skips it; it also tells this controller's Endpoints from a user's.
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def _address(endpoint: dict, ip: str) -> dict:
    out: dict = {"ip": ip}
    for key in ("hostname", "nodeName"):
        if endpoint.get(key):
            out[key] = endpoint[key]
    ref = endpoint.get("targetRef")
    if ref:
        out["targetRef"] = {k: v for k, v in ref.items()
                            if k in ("kind", "namespace", "name", "uid", "resourceVersion")}
    return out


def subsets(slices: list[dict]) -> list[dict]:
    """The Endpoints subsets of a Service's EndpointSlices."""
    by_ports: dict[tuple, dict] = {}
    for slice_ in sorted(slices, key=name_of):
        ports = [{k: p[k] for k in ("name", "port", "protocol") if p.get(k) is not None}
                 for p in slice_.get("ports") or [] if p.get("port") is not None]
        if not ports:
            continue
        key = tuple(sorted((p.get("name", ""), p["port"], p.get("protocol", "TCP"))
                           for p in ports))
        subset = by_ports.setdefault(key, {"addresses": [], "notReadyAddresses": [],
                                            "ports": sorted(ports, key=lambda p: (
                                                p.get("name", ""), p["port"]))})
        for endpoint in slice_.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("terminating"):
                continue
            bucket = "addresses" if conditions.get("ready", True) else "notReadyAddresses"
            subset[bucket] += [_address(endpoint, ip) for ip in endpoint.get("addresses") or []]
    out = []
    for subset in by_ports.values():
        for bucket in ("addresses", "notReadyAddresses"):
            subset[bucket].sort(key=lambda a: tuple(int(x) for x in a["ip"].split(".")))
            if not subset[bucket]:
                del subset[bucket]
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            out.append(subset)
    return out


def desired(service: dict, slices: list[dict]) -> dict:
    labels = dict(service["metadata"].get("labels") or {})
    labels[SKIP_MIRROR_LABEL] = "true"
    if service["spec"].get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name_of(service), "namespace": namespace_of(service),
                         "labels": labels},
            "subsets": subsets(slices)}


def reconcile_endpoints(store: Store) -> list[Change]:
    """Endpoints for every Service with a selector, from its managed EndpointSlices."""
    services, _ = store.list("Service", copy=False)
    slices, _ = store.list("EndpointSlice", selector={MANAGED_BY_LABEL: MANAGED_BY},
                           copy=False)
    by_service: dict[tuple[str, str], list[dict]] = {}
    for slice_ in slices:
        owner = (namespace_of(slice_), slice_["metadata"]["labels"].get(SERVICE_NAME_LABEL, ""))
        by_service.setdefault(owner, []).append(slice_)
    changes: list[Change] = []
    live = set()
    for service in services:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName" or not spec.get("selector"):
            continue
        key = object_key(service)
        live.add(key)
        want = desired(service, by_service.get(key, []))
        try:
            have = store.get("Endpoints", *key)
        except NotFound:
            store.create(want)
            changes.append(Change("create", "Endpoints", *key))
            continue
        if have.get("subsets") != want["subsets"] or \
                have["metadata"].get("labels") != want["metadata"]["labels"]:
            updated = dict(have, subsets=want["subsets"],
                           metadata=dict(have["metadata"], labels=want["metadata"]["labels"]))
            store.update(updated)
            changes.append(Change("update", "Endpoints", *key))
    for endpoints in store.list("Endpoints", selector={SKIP_MIRROR_LABEL: "true"},
                                copy=False)[0]:
        key = object_key(endpoints)
        if key not in live:
            store.delete("Endpoints", *key)
            changes.append(Change("delete", "Endpoints", *key))
    return changes
