"""Pure: validation and defaults for EndpointSlices (discovery.k8s.io/v1).

EndpointSlices are normally written by the EndpointSlice controller, but manifests may carry
them too (Services without selectors). Limits as in Kubernetes: 1..100 addresses per endpoint,
at most 1000 endpoints and 100 ports per slice. Port protocol defaults to TCP.
"""

from __future__ import annotations

from testbed.api.meta import check_metadata
from testbed.api.pods import PROTOCOLS
from testbed.api.schema import field_names
from testbed.api.schema_base import CORE, DISCOVERY
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ipv4,
    is_port_number,
)

ADDRESS_TYPES = ["IPv4", "IPv6", "FQDN"]
# What each object may hold: the schema's fields (testbed/api/schema_groups.py).
SLICE_FIELDS = field_names(DISCOVERY + "EndpointSlice")
ENDPOINT_FIELDS = field_names(DISCOVERY + "Endpoint")
PORT_FIELDS = field_names(DISCOVERY + "EndpointPort")
CONDITION_FIELDS = field_names(DISCOVERY + "EndpointConditions")
REFERENCE_FIELDS = field_names(CORE + "ObjectReference")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def check_endpointslice(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    address_type = ck.enum(obj, "addressType", path, ADDRESS_TYPES)
    if obj.get("addressType") is None:
        ck.required(path + ("addressType",))
    endpoints = ck.items(obj, "endpoints", path)
    if len(endpoints) > MAX_ENDPOINTS:
        ck.add(path + ("endpoints",), f"Too many: {len(endpoints)}: must have at most "
                                      f"{MAX_ENDPOINTS} items")
    if obj.get("endpoints") is None:
        obj["endpoints"] = []
    for ep, item in endpoints:
        endpoint = ck.fields(ep, item, ENDPOINT_FIELDS)
        if endpoint is not None:
            _check_endpoint(ck, ep, endpoint, address_type)
    ports = ck.items(obj, "ports", path)
    if len(ports) > MAX_PORTS:
        ck.add(path + ("ports",), f"Too many: {len(ports)}: must have at most {MAX_PORTS} items")
    names: set[str] = set()
    for pp, item in ports:
        port = ck.fields(pp, item, PORT_FIELDS)
        if port is None:
            continue
        name = ck.get(port, "name", pp, "string")
        if name is None:
            port["name"] = ""
        elif name:
            ck.names(pp + ("name",), name, is_dns1123_label(name))
        if name in names or (not name and "" in names):
            ck.duplicate(pp + ("name",), name or "")
        names.add(name or "")
        ck.enum(port, "protocol", pp, PROTOCOLS, default="TCP")
        number = ck.get(port, "port", pp, "integer")
        if number is not None:
            ck.names(pp + ("port",), number, is_port_number(number))


def _check_endpoint(ck: Checker, ep: Path_, endpoint: dict, address_type: str | None) -> None:
    addresses = ck.string_list(endpoint, "addresses", ep)
    if not addresses:
        ck.required(ep + ("addresses",), "must contain at least 1 address")
    elif len(addresses) > MAX_ADDRESSES:
        ck.add(ep + ("addresses",), f"Too many: {len(addresses)}: must have at most "
                                    f"{MAX_ADDRESSES} items")
    for i, address in enumerate(addresses):
        if address_type == "IPv4":
            ck.names(ep + ("addresses", i), address, is_ipv4(address))
        elif address_type == "FQDN":
            ck.names(ep + ("addresses", i), address, is_dns1123_subdomain(address))
    conditions = ck.obj(endpoint, "conditions", ep, CONDITION_FIELDS)
    if conditions is not None:
        for key in ("ready", "serving", "terminating"):
            ck.get(conditions, key, ep + ("conditions",), "boolean")
    else:
        endpoint["conditions"] = {}
    for key, rule in (("hostname", is_dns1123_label), ("nodeName", is_dns1123_subdomain)):
        value = ck.get(endpoint, key, ep, "string")
        if value:
            ck.names(ep + (key,), value, rule(value))
    ck.get(endpoint, "zone", ep, "string")
    ck.obj(endpoint, "targetRef", ep, REFERENCE_FIELDS)
