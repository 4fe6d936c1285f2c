"""Pure: validation and defaults of the kinds components write as records: Endpoints (v1),
Event (v1) and Lease (coordination.k8s.io/v1).

Rules and wording are upstream's (k8s.io/kubernetes pkg/apis/core/validation: ValidateEndpoints
and the legacy Event validation that core/v1 Events get, which does not check `type`;
pkg/apis/coordination/validation: ValidateLease). Allowed fields come from the schema.
Defaults as upstream's: an Endpoints port's protocol is TCP. No I/O.
"""

from __future__ import annotations

from typing import Any

from testbed.api.meta import check_metadata
from testbed.api.pods import PROTOCOLS
from testbed.api.schema import field_names
from testbed.api.schema_base import COORDINATION, CORE
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    is_non_special_ip,
    is_port_number,
    is_qualified_name,
)

SUBSET_FIELDS = field_names(CORE + "EndpointSubset")
ADDRESS_FIELDS = field_names(CORE + "EndpointAddress")
ENDPOINT_PORT_FIELDS = field_names(CORE + "EndpointPort")
REFERENCE_FIELDS = field_names(CORE + "ObjectReference")
EVENT_SOURCE_FIELDS = field_names(CORE + "EventSource")
EVENT_SERIES_FIELDS = field_names(CORE + "EventSeries")
LEASE_SPEC_FIELDS = field_names(COORDINATION + "LeaseSpec")

# Event limits (pkg/apis/core/validation/events.go).
REPORTING_INSTANCE_LIMIT = ACTION_LIMIT = REASON_LIMIT = 128
NOTE_LIMIT = 1024
LEASE_STRATEGIES = ["OldestEmulationVersion"]


# -- Endpoints ---------------------------------------------------------------------------------

def check_endpoints(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    for sp, item in ck.items(obj, "subsets", path):
        subset = ck.fields(sp, item, SUBSET_FIELDS)
        if subset is None:
            continue
        ready = ck.items(subset, "addresses", sp)
        not_ready = ck.items(subset, "notReadyAddresses", sp)
        if not ready and not not_ready:
            ck.required(sp, "must specify `addresses` or `notReadyAddresses`")
        for ap, address in ready + not_ready:
            _check_address(ck, ap, address)
        ports = ck.items(subset, "ports", sp)
        for pp, port in ports:
            _check_endpoint_port(ck, pp, port, require_name=len(ports) > 1)


def _check_address(ck: Checker, path: Path_, item: Any) -> None:
    address = ck.fields(path, item, ADDRESS_FIELDS)
    if address is None:
        return
    before = len(ck.problems)
    ip = ck.get(address, "ip", path, "string")
    if ip is not None or address.get("ip") is None:
        ck.names(path + ("ip",), ip or "", is_ip(ip or ""))
    hostname = ck.get(address, "hostname", path, "string")
    if hostname:
        ck.names(path + ("hostname",), hostname, is_dns1123_label(hostname))
    node = ck.get(address, "nodeName", path, "string")
    if node is not None:
        ck.names(path + ("nodeName",), node, is_dns1123_subdomain(node))
    ck.obj(address, "targetRef", path, REFERENCE_FIELDS)
    if len(ck.problems) == before and ip:
        ck.names(path + ("ip",), ip, is_non_special_ip(ip))   # ValidateNonSpecialIP


def _check_endpoint_port(ck: Checker, path: Path_, item: Any, require_name: bool) -> None:
    port = ck.fields(path, item, ENDPOINT_PORT_FIELDS)
    if port is None:
        return
    name = ck.get(port, "name", path, "string")
    if require_name and not name:
        ck.required(path + ("name",))
    elif name:
        ck.names(path + ("name",), name, is_dns1123_label(name))
    number = ck.get(port, "port", path, "integer")
    if number is not None or port.get("port") is None:
        ck.names(path + ("port",), number or 0, is_port_number(number or 0))
    ck.enum(port, "protocol", path, PROTOCOLS, default="TCP")
    ck.get(port, "appProtocol", path, "string")


# -- Event -------------------------------------------------------------------------------------

def check_event(ck: Checker, path: Path_, obj: dict) -> None:
    """Upstream's legacyValidateEvent, what core/v1 Events get on create and update."""
    meta = check_metadata(ck, path, obj) or {}
    namespace = meta.get("namespace") or ""
    involved = ck.obj(obj, "involvedObject", path, REFERENCE_FIELDS) or {}
    for key in REFERENCE_FIELDS:
        ck.get(involved, key, path + ("involvedObject",), "string")
    texts = {key: ck.get(obj, key, path, "string") or "" for key in (
        "reason", "message", "type", "action", "reportingComponent", "reportingInstance")}
    ck.get(obj, "count", path, "integer")
    for key in ("firstTimestamp", "lastTimestamp", "eventTime"):
        ck.get(obj, key, path, "string")
    ck.obj(obj, "source", path, EVENT_SOURCE_FIELDS)
    ck.obj(obj, "series", path, EVENT_SERIES_FIELDS)
    ck.obj(obj, "related", path, REFERENCE_FIELDS)
    involved_ns = involved.get("namespace") if isinstance(involved.get("namespace"), str) else ""
    where = path + ("involvedObject", "namespace")
    if not obj.get("eventTime"):
        # An old-style Event: its namespace is its object's ("default" too for cluster-scoped
        # objects, as old clients write them).
        if (not involved_ns and namespace not in ("", "default")) or (
                involved_ns and namespace != involved_ns):
            ck.invalid(where, involved_ns, "does not match event.namespace")
        return
    if not involved_ns and namespace not in ("default", "kube-system"):
        ck.invalid(where, involved_ns, "does not match event.namespace")
    # Upstream's paths name the internal fields: reportingComponent is reportingController.
    controller = texts["reportingComponent"]
    if not controller:
        ck.required(path + ("reportingController",))
    for message in is_qualified_name(controller):
        ck.invalid(path + ("reportingController",), controller, message)
    for key, limit in (("reportingInstance", REPORTING_INSTANCE_LIMIT), ("action", ACTION_LIMIT),
                       ("reason", REASON_LIMIT)):
        if not texts[key]:
            ck.required(path + (key,))
        if len(texts[key]) > limit:
            ck.invalid(path + (key,), "", f"can have at most {limit} characters")
    if len(texts["message"]) > NOTE_LIMIT:
        ck.invalid(path + ("message",), "", f"can have at most {NOTE_LIMIT} characters")


# -- Lease -------------------------------------------------------------------------------------

def check_lease(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    spec = ck.obj(obj, "spec", path, LEASE_SPEC_FIELDS)
    if spec is None:
        return
    p = path + ("spec",)
    for key in ("holderIdentity", "acquireTime", "renewTime", "preferredHolder"):
        ck.get(spec, key, p, "string")
    duration = ck.get(spec, "leaseDurationSeconds", p, "integer")
    if duration is not None and duration <= 0:
        ck.invalid(p + ("leaseDurationSeconds",), duration, "must be greater than 0")
    transitions = ck.get(spec, "leaseTransitions", p, "integer")
    if transitions is not None and transitions < 0:
        ck.invalid(p + ("leaseTransitions",), transitions,
                   "must be greater than or equal to 0")
    strategy = ck.get(spec, "strategy", p, "string")
    # Upstream reports a bad strategy at spec.strategy.strategy (its helper adds the child).
    where = p + ("strategy", "strategy")
    if strategy is not None and "/" not in strategy and strategy not in LEASE_STRATEGIES:
        ck.unsupported(where, strategy, LEASE_STRATEGIES)
    elif strategy is not None and "/" in strategy:
        for message in is_qualified_name(strategy):
            ck.invalid(where, strategy, message)
    if spec.get("preferredHolder") and not strategy:
        ck.forbidden(p + ("preferredHolder",), "may only be specified if `strategy` is defined")
