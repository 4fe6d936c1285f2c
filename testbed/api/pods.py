"""Pure: validation and defaults for Pods (v1) and pod templates.

`check_pod_spec` is shared with Deployment templates. Defaults filled in as the API server
does: restartPolicy Always, dnsPolicy ClusterFirst, terminationGracePeriodSeconds 30,
securityContext {}, schedulerName default-scheduler, enableServiceLinks true, a container's
imagePullPolicy (Always for :latest or no tag), terminationMessagePath and Policy, port
protocol TCP, probe timings (period 10, timeout 1, failure 3, success 1), httpGet path "/" and
scheme HTTP. Beyond the API server, two runtime failures are caught early because every pod's
containers share one network namespace: the same containerPort/protocol declared by two
containers, and a probe naming a port its container does not declare.
"""

from __future__ import annotations

from typing import Any

from testbed.api.meta import check_metadata
from testbed.api.schema import field_names
from testbed.api.schema_base import CORE
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    check_labels,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_ipv4,
    is_port_name,
)

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
PROTOCOLS = ["TCP", "UDP", "SCTP"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]

# What each object may hold: the schema's fields (testbed/api/schema_pod.py), so that what
# is validated and what is published (OpenAPI) cannot differ.
POD_SPEC_FIELDS = field_names(CORE + "PodSpec")
CONTAINER_FIELDS = field_names(CORE + "Container")
PORT_FIELDS = field_names(CORE + "ContainerPort")
PROBE_FIELDS = field_names(CORE + "Probe")
ENV_FIELDS = field_names(CORE + "EnvVar")
ENV_SOURCE_FIELDS = field_names(CORE + "EnvVarSource")
FIELD_REF_FIELDS = field_names(CORE + "ObjectFieldSelector")
HTTP_GET_FIELDS = field_names(CORE + "HTTPGetAction")
TCP_SOCKET_FIELDS = field_names(CORE + "TCPSocketAction")
EXEC_FIELDS = field_names(CORE + "ExecAction")
GRPC_FIELDS = field_names(CORE + "GRPCAction")
PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
                  "successThreshold": 1}
FIELD_REF_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                   "status.podIPs"]


def default_pull_policy(image: str) -> str:
    """Always for a :latest (or untagged) image, IfNotPresent otherwise, as upstream defaults."""
    if "@" in image:
        return "IfNotPresent"
    tag = image.rpartition("/")[2].partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def check_pod(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    spec = ck.obj(obj, "spec", path, POD_SPEC_FIELDS, required=True)
    if spec is not None:
        check_pod_spec(ck, path + ("spec",), spec)


def check_pod_spec(ck: Checker, path: Path_, spec: dict) -> None:
    ck.enum(spec, "restartPolicy", path, RESTART_POLICIES, default="Always")
    ck.enum(spec, "dnsPolicy", path, DNS_POLICIES, default="ClusterFirst")
    if ck.positive(spec, "terminationGracePeriodSeconds", path, minimum=0) is None:
        spec.setdefault("terminationGracePeriodSeconds", 30)
    # More of upstream's SetDefaults_PodSpec: clients (kubectl debug, for one) rely on them.
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if ck.get(spec, "schedulerName", path, "string") is None:
        spec["schedulerName"] = "default-scheduler"
    if ck.get(spec, "enableServiceLinks", path, "boolean") is None:
        spec["enableServiceLinks"] = True
    node = ck.get(spec, "nodeName", path, "string")
    if node:
        ck.names(path + ("nodeName",), node, is_dns1123_subdomain(node))
    check_labels(ck, path + ("nodeSelector",), spec.get("nodeSelector"))
    for key in ("hostname", "subdomain"):
        value = ck.get(spec, key, path, "string")
        if value:
            ck.names(path + (key,), value, is_dns1123_label(value))
    ck.get(spec, "hostNetwork", path, "boolean")

    containers = ck.items(spec, "containers", path, required=True)
    inits = ck.items(spec, "initContainers", path)
    seen_names: dict[str, Path_] = {}
    port_names: dict[str, Path_] = {}
    owners: dict[tuple[int, str], str] = {}  # (port, protocol) -> container name
    for group in (inits, containers):
        for cpath, container in group:
            c = ck.fields(cpath, container, CONTAINER_FIELDS)
            if c is None:
                continue
            name = check_container(ck, cpath, c, port_names)
            if name is not None:
                if name in seen_names:
                    ck.duplicate(cpath + ("name",), name)
                seen_names[name] = cpath
            if group is containers:
                _check_shared_ports(ck, cpath, c, owners)


def check_container(ck: Checker, path: Path_, c: dict, port_names: dict[str, Path_]) -> str | None:
    name = ck.get(c, "name", path, "string", required=True)
    if name is not None and not ck.names(path + ("name",), name, is_dns1123_label(name)):
        name = None
    ck.get(c, "image", path, "string", required=True)
    ck.string_list(c, "command", path)
    ck.string_list(c, "args", path)
    ck.get(c, "workingDir", path, "string")
    image = c.get("image") if isinstance(c.get("image"), str) else ""
    ck.enum(c, "imagePullPolicy", path, ["Always", "IfNotPresent", "Never"],
            default=default_pull_policy(image))
    if ck.get(c, "terminationMessagePath", path, "string") is None:
        c["terminationMessagePath"] = "/dev/termination-log"
    ck.enum(c, "terminationMessagePolicy", path, ["File", "FallbackToLogsOnError"],
            default="File")
    _check_env(ck, path, c)
    declared: set[str] = set()
    for ppath, item in ck.items(c, "ports", path):
        port = ck.fields(ppath, item, PORT_FIELDS)
        if port is None:
            continue
        ck.port(port, "containerPort", ppath, required=True)
        ck.port(port, "hostPort", ppath)
        ck.enum(port, "protocol", ppath, PROTOCOLS, default="TCP")
        host_ip = ck.get(port, "hostIP", ppath, "string")
        if host_ip:
            ck.names(ppath + ("hostIP",), host_ip, is_ipv4(host_ip))
        pname = ck.get(port, "name", ppath, "string")
        if pname is not None and ck.names(ppath + ("name",), pname, is_port_name(pname)):
            if pname in port_names:
                ck.duplicate(ppath + ("name",), pname)
            port_names[pname] = ppath
            declared.add(pname)
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = ck.obj(c, key, path, PROBE_FIELDS)
        if probe is not None:
            _check_probe(ck, path + (key,), probe, declared, liveness=key != "readinessProbe")
    return name


def _check_env(ck: Checker, path: Path_, c: dict) -> None:
    for epath, item in ck.items(c, "env", path):
        env = ck.fields(epath, item, ENV_FIELDS)
        if env is None:
            continue
        name = ck.get(env, "name", epath, "string", required=True)
        if name is not None:
            ck.names(epath + ("name",), name, is_env_var_name(name))
        ck.get(env, "value", epath, "string")
        source = ck.obj(env, "valueFrom", epath, ENV_SOURCE_FIELDS)
        if source is None:
            continue
        if env.get("value"):
            ck.invalid(epath + ("valueFrom",), "", "may not be specified when `value` is not empty")
        spath = epath + ("valueFrom",)
        ref = ck.obj(source, "fieldRef", spath, FIELD_REF_FIELDS)
        if ref is not None:
            fpath = ck.get(ref, "fieldPath", spath + ("fieldRef",), "string", required=True)
            if fpath is not None and fpath not in FIELD_REF_PATHS and not (
                    fpath.startswith(("metadata.labels[", "metadata.annotations["))):
                ck.unsupported(spath + ("fieldRef", "fieldPath"), fpath, FIELD_REF_PATHS)


def _check_probe(ck: Checker, path: Path_, probe: dict, declared: set[str],
                 liveness: bool) -> None:
    handlers = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if probe.get(k) is not None]
    if not handlers:
        ck.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        ck.forbidden(path + (handlers[1],), "may not specify more than 1 handler type")
    http = ck.obj(probe, "httpGet", path, HTTP_GET_FIELDS)
    if http is not None:
        hp = path + ("httpGet",)
        _check_probe_port(ck, hp, http, declared)
        if ck.get(http, "path", hp, "string") is None:
            http.setdefault("path", "/")
        ck.enum(http, "scheme", hp, ["HTTP", "HTTPS"], default="HTTP")
        ck.get(http, "host", hp, "string")
    tcp = ck.obj(probe, "tcpSocket", path, TCP_SOCKET_FIELDS)
    if tcp is not None:
        _check_probe_port(ck, path + ("tcpSocket",), tcp, declared)
    ex = ck.obj(probe, "exec", path, EXEC_FIELDS)
    if ex is not None:
        if not ck.string_list(ex, "command", path + ("exec",)):
            ck.required(path + ("exec", "command"))
    grpc = ck.obj(probe, "grpc", path, GRPC_FIELDS)
    if grpc is not None:
        ck.port(grpc, "port", path + ("grpc",), required=True)
    if ck.positive(probe, "initialDelaySeconds", path, minimum=0) is None:
        probe.setdefault("initialDelaySeconds", 0)
    for key, default in PROBE_DEFAULTS.items():
        if ck.positive(probe, key, path) is None and key not in probe:
            probe[key] = default
    if liveness and probe.get("successThreshold") not in (1, None) and isinstance(
            probe.get("successThreshold"), int):
        ck.invalid(path + ("successThreshold",), probe["successThreshold"], "must be 1")


def _check_probe_port(ck: Checker, path: Path_, handler: dict, declared: set[str]) -> None:
    value: Any = handler.get("port")
    if value is None:
        ck.required(path + ("port",))
    elif isinstance(value, str):
        if ck.names(path + ("port",), value, is_port_name(value)) and value not in declared:
            ck.invalid(path + ("port",), value, "no port of this container has that name")
    else:
        ck.port(handler, "port", path)


def _check_shared_ports(ck: Checker, path: Path_, c: dict,
                        owners: dict[tuple[int, str], str]) -> None:
    """Containers of a pod share one network namespace: one owner per port and protocol."""
    me = c.get("name") if isinstance(c.get("name"), str) else f"#{path[-1]}"
    mine: set[tuple[int, str]] = set()
    for ppath, port in _ports(c, path):
        key = (port["containerPort"], port.get("protocol", "TCP"))
        other = owners.get(key)
        if other is not None and other != me:
            ck.duplicate(ppath + ("containerPort",), f"{key[0]}/{key[1]}",
                         f"container {me!r} and container {other!r} both declare it, "
                         "and the containers of a pod share one network namespace")
        mine.add(key)
    for key in mine:
        owners.setdefault(key, me)


def _ports(c: dict, path: Path_) -> list[tuple[Path_, dict]]:
    """The well-formed ports of an already checked container (bad ones were reported)."""
    ports = c.get("ports") if isinstance(c.get("ports"), list) else []
    return [(path + ("ports", i), p) for i, p in enumerate(ports)
            if isinstance(p, dict) and type(p.get("containerPort")) is int]
