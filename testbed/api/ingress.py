"""Pure: validation of Ingress (networking.k8s.io/v1) and conversion of the old versions.

extensions/v1beta1 and networking.k8s.io/v1beta1 Ingresses are rewritten to v1 before
checking, as the API server does on read: spec.backend -> spec.defaultBackend,
{serviceName, servicePort} -> service{name, port{number|name}}, missing pathType ->
ImplementationSpecific (the v1beta1 default).
"""

from __future__ import annotations

import copy
from typing import Any

from testbed.api.meta import check_metadata
from testbed.api.schema import field_names
from testbed.api.schema_base import NETWORKING
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_port_name,
    is_wildcard_dns1123_subdomain,
    parse_ip,
)

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]     # sorted, as upstream lists them
OLD_VERSIONS = ["extensions/v1beta1", "networking.k8s.io/v1beta1"]
# What each object may hold: the schema's fields (testbed/api/schema_groups.py).
SPEC_FIELDS = field_names(NETWORKING + "IngressSpec")
RULE_FIELDS = field_names(NETWORKING + "IngressRule")
HTTP_RULE_FIELDS = field_names(NETWORKING + "HTTPIngressRuleValue")
PATH_FIELDS = field_names(NETWORKING + "HTTPIngressPath")
TLS_FIELDS = field_names(NETWORKING + "IngressTLS")
BACKEND_FIELDS = field_names(NETWORKING + "IngressBackend")
SERVICE_BACKEND_FIELDS = field_names(NETWORKING + "IngressServiceBackend")
BACKEND_PORT_FIELDS = field_names(NETWORKING + "ServiceBackendPort")


def check_ingress(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    spec = ck.obj(obj, "spec", path, SPEC_FIELDS, required=True)
    if spec is None:
        return
    p = path + ("spec",)
    cls = ck.get(spec, "ingressClassName", p, "string")
    if cls:
        ck.names(p + ("ingressClassName",), cls, is_dns1123_subdomain(cls))
    if spec.get("defaultBackend") is not None:
        _check_backend(ck, p + ("defaultBackend",), spec["defaultBackend"])
    rules = ck.items(spec, "rules", p)
    if not rules and spec.get("defaultBackend") is None:
        ck.invalid(p, spec, "either `defaultBackend` or `rules` must be specified")
    for rp, item in rules:
        rule = ck.fields(rp, item, RULE_FIELDS)
        if rule is None:
            continue
        host = ck.get(rule, "host", rp, "string")
        if host:
            if parse_ip(host) is not None:
                ck.invalid(rp + ("host",), host, "must be a DNS name, not an IP address")
            _check_host(ck, rp + ("host",), host)
        http = ck.obj(rule, "http", rp, HTTP_RULE_FIELDS)
        if http is None:
            continue
        paths = ck.items(http, "paths", rp + ("http",), required=True)
        for pp, entry in paths:
            _check_path(ck, pp, entry)
    for tp, item in ck.items(spec, "tls", p):
        tls = ck.fields(tp, item, TLS_FIELDS)
        if tls is not None:
            for i, host in enumerate(ck.string_list(tls, "hosts", tp)):
                _check_host(ck, tp + ("hosts", i), host)
            ck.get(tls, "secretName", tp, "string")


def _check_host(ck: Checker, path: Path_, host: str) -> None:
    """A rule's or a TLS entry's host: a wildcard one when it holds a '*', as upstream."""
    if "*" in host:
        ck.names(path, host, is_wildcard_dns1123_subdomain(host))
    else:
        ck.names(path, host, is_dns1123_subdomain(host))


def _check_path(ck: Checker, pp: Path_, entry: Any) -> None:
    item = ck.fields(pp, entry, PATH_FIELDS)
    if item is None:
        return
    kind = ck.enum(item, "pathType", pp, PATH_TYPES)
    if item.get("pathType") is None:
        ck.required(pp + ("pathType",), "pathType must be specified")
    value = ck.get(item, "path", pp, "string")
    if value is None and kind in ("Prefix", "Exact"):
        ck.required(pp + ("path",))
    if value is not None and kind in ("Prefix", "Exact", "ImplementationSpecific") \
            and not value.startswith("/"):
        ck.invalid(pp + ("path",), value, "must be an absolute path")
    if item.get("backend") is None:
        ck.required(pp + ("backend",))
    else:
        _check_backend(ck, pp + ("backend",), item["backend"])


def _check_backend(ck: Checker, path: Path_, value: Any) -> None:
    backend = ck.fields(path, value, BACKEND_FIELDS)
    if backend is None:
        return
    if (backend.get("service") is None) == (backend.get("resource") is None):
        ck.invalid(path, backend, "cannot set both resource and service backends"
                   if backend.get("service") is not None else "one of `service` or "
                   "`resource` must be specified")
    service = ck.obj(backend, "service", path, SERVICE_BACKEND_FIELDS)
    if service is None:
        return
    sp = path + ("service",)
    name = ck.get(service, "name", sp, "string", required=True)
    if name:
        ck.names(sp + ("name",), name, is_dns1123_label(name))
    port = ck.obj(service, "port", sp, BACKEND_PORT_FIELDS, required=True)
    if port is None:
        return
    pp = sp + ("port",)
    if port.get("number") is not None and port.get("name") is not None:
        ck.invalid(pp, port, "cannot set both port name & port number")
    elif port.get("number") is None and port.get("name") is None:
        ck.required(pp, "port name or number is required")
    ck.port(port, "number", pp)
    pname = ck.get(port, "name", pp, "string")
    if pname:
        ck.names(pp + ("name",), pname, is_port_name(pname))


def convert_v1beta1(obj: dict) -> dict:
    """An extensions/v1beta1 or networking.k8s.io/v1beta1 Ingress as networking.k8s.io/v1.

    Shapes it does not recognise are left alone for the v1 checks to report.
    """
    out = copy.deepcopy(obj)
    out["apiVersion"] = "networking.k8s.io/v1"
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return out
    if "backend" in spec:
        spec["defaultBackend"] = _convert_backend(spec.pop("backend"))
    for rule in spec.get("rules") or [] if isinstance(spec.get("rules"), list) else []:
        http = rule.get("http") if isinstance(rule, dict) else None
        paths = http.get("paths") if isinstance(http, dict) else None
        for entry in paths if isinstance(paths, list) else []:
            if isinstance(entry, dict):
                entry.setdefault("pathType", "ImplementationSpecific")
                if "backend" in entry:
                    entry["backend"] = _convert_backend(entry["backend"])
    return out


def _convert_backend(backend: Any) -> Any:
    if not isinstance(backend, dict) or "serviceName" not in backend:
        return backend
    rest = {k: v for k, v in backend.items() if k not in ("serviceName", "servicePort")}
    port = backend.get("servicePort")
    rest["service"] = {"name": backend["serviceName"],
                       "port": {"name": port} if isinstance(port, str) else {"number": port}}
    return rest
