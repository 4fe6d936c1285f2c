"""Pure: validation and defaults for Pods (v1) and pod templates.

`check_pod_spec` is shared with Deployment templates. Defaults filled in as the API server
does: restartPolicy Always, dnsPolicy ClusterFirst, terminationGracePeriodSeconds 30,
securityContext {}, schedulerName default-scheduler, enableServiceLinks true, a container's
imagePullPolicy (Always for :latest or no tag), terminationMessagePath and Policy, port
protocol TCP, probe timings (period 10, timeout 1, failure 3, success 1), httpGet path "/" and
scheme HTTP. Checked as upstream checks them, though the testbed enforces none of them:
volume names and mounts (a mount names a volume of the pod), tolerations, and resources
(quantities parsed as the decoder parses them, no request above its limit). Beyond the API
server, two runtime failures are caught early because every pod's
containers share one network namespace: the same containerPort/protocol declared by two
containers, and a probe naming a port its container does not declare.
"""

from __future__ import annotations

from typing import Any

from testbed.api.meta import check_metadata
from testbed.api.schema import field_names
from testbed.api.schema_base import CORE
from testbed.spec.source import Key, Path_
from testbed.spec.validation import (
    Checker,
    Quantity,
    check_labels,
    fmt,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_ipv4,
    is_label_value,
    is_port_name,
    is_port_number,
    is_qualified_name,
    parse_quantity,
)

# In the order upstream lists them: its own order where it names a slice, sorted where it
# lists a set (sets.List: the protocols).
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
# Resource names a container may ask for without a domain (IsStandardContainerResourceName),
# and those any object may name (IsStandardResourceName), hugepages-<size> besides.
CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
STANDARD_RESOURCES = CONTAINER_RESOURCES + (
    "requests.cpu", "requests.memory", "requests.ephemeral-storage", "limits.cpu",
    "limits.memory", "limits.ephemeral-storage", "pods", "resourcequotas", "services",
    "replicationcontrollers", "secrets", "persistentvolumeclaims", "configmaps",
    "services.nodeports", "services.loadbalancers", "requests.storage")

# What each object may hold: the schema's fields (testbed/api/schema_pod.py), so that what
# is validated and what is published (OpenAPI) cannot differ.
POD_SPEC_FIELDS = field_names(CORE + "PodSpec")
CONTAINER_FIELDS = field_names(CORE + "Container")
PORT_FIELDS = field_names(CORE + "ContainerPort")
PROBE_FIELDS = field_names(CORE + "Probe")
VOLUME_FIELDS = field_names(CORE + "Volume")
VOLUME_MOUNT_FIELDS = field_names(CORE + "VolumeMount")
TOLERATION_FIELDS = field_names(CORE + "Toleration")
RESOURCES_FIELDS = field_names(CORE + "ResourceRequirements")
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
    volumes = _check_volumes(ck, path, spec)
    _check_tolerations(ck, path, spec)

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
            name = check_container(ck, cpath, c, port_names, volumes)
            if name is not None:
                if name in seen_names:
                    ck.duplicate(cpath + ("name",), name)
                seen_names[name] = cpath
            if group is containers:
                _check_shared_ports(ck, cpath, c, owners)


def check_container(ck: Checker, path: Path_, c: dict, port_names: dict[str, Path_],
                    volumes: set[str] | None = None) -> str | None:
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
    ck.enum(c, "terminationMessagePolicy", path, TERMINATION_MESSAGE_POLICIES, default="File")
    _check_env(ck, path, c)
    _check_resources(ck, path, c)
    _check_volume_mounts(ck, path, c, volumes or set())
    declared: set[str] = set()
    for ppath, item in ck.items(c, "ports", path):
        port = ck.fields(ppath, item, PORT_FIELDS)
        if port is None:
            continue
        # as upstream: a missing (or 0) containerPort is Required, a hostPort of 0 is none
        number = ck.get(port, "containerPort", ppath, "integer")
        if port.get("containerPort") is None or number == 0:
            ck.required(ppath + ("containerPort",))
        elif number is not None:
            ck.names(ppath + ("containerPort",), number, is_port_number(number))
        host_port = ck.get(port, "hostPort", ppath, "integer")
        if host_port:
            ck.names(ppath + ("hostPort",), host_port, is_port_number(host_port))
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


def _check_volumes(ck: Checker, path: Path_, spec: dict) -> set[str]:
    """validateVolumes' names: each a DNS label, none twice. The names, for volume mounts."""
    names: set[str] = set()
    for vpath, item in ck.items(spec, "volumes", path):
        volume = ck.fields(vpath, item, VOLUME_FIELDS)
        if volume is None:
            continue
        name = ck.get(volume, "name", vpath, "string", required=True)
        if name is None:
            continue
        ck.names(vpath + ("name",), name, is_dns1123_label(name))
        if name in names:
            ck.duplicate(vpath + ("name",), name)
        names.add(name)
        sources = [k for k in volume if k != "name" and volume[k] is not None]
        if not sources:
            ck.required(vpath, "must specify a volume type")
        elif len(sources) > 1:
            ck.forbidden(vpath + (sources[1],), "may not specify more than 1 volume type")
    return names


def _check_volume_mounts(ck: Checker, path: Path_, c: dict, volumes: set[str]) -> None:
    """ValidateVolumeMounts: each names a volume of the pod, at its own mount path."""
    mount_paths: set[str] = set()
    for mpath, item in ck.items(c, "volumeMounts", path):
        mount = ck.fields(mpath, item, VOLUME_MOUNT_FIELDS)
        if mount is None:
            continue
        name = ck.get(mount, "name", mpath, "string")
        if mount.get("name") in (None, ""):
            ck.required(mpath + ("name",))
            name = ""
        if name is not None and name not in volumes:
            ck.add(mpath + ("name",), f"Not found: {fmt(name)}")
        where = ck.get(mount, "mountPath", mpath, "string")
        if mount.get("mountPath") in (None, ""):
            ck.required(mpath + ("mountPath",))
        elif where is not None:
            if where in mount_paths:
                ck.invalid(mpath + ("mountPath",), where, "must be unique")
            mount_paths.add(where)
        ck.get(mount, "readOnly", mpath, "boolean")
        ck.get(mount, "subPath", mpath, "string")


def _check_tolerations(ck: Checker, path: Path_, spec: dict) -> None:
    """ValidateTolerations, in upstream's order and words."""
    for tpath, item in ck.items(spec, "tolerations", path):
        t = ck.fields(tpath, item, TOLERATION_FIELDS)
        if t is None:
            continue
        key = ck.get(t, "key", tpath, "string") or ""
        operator = ck.get(t, "operator", tpath, "string") or ""
        value = ck.get(t, "value", tpath, "string") or ""
        effect = ck.get(t, "effect", tpath, "string") or ""
        seconds = ck.get(t, "tolerationSeconds", tpath, "integer")
        if key:
            ck.names(tpath + ("key",), key, is_qualified_name(key))
        if not key and operator != "Exists":
            ck.invalid(tpath + ("operator",), operator, "operator must be Exists when `key` is "
                       'empty, which means "match all values and all keys"')
        if seconds is not None and effect != "NoExecute":
            ck.invalid(tpath + ("effect",), effect, "effect must be 'NoExecute' when "
                       "`tolerationSeconds` is set")
        if operator in ("Equal", ""):
            if errs := is_label_value(value):
                ck.invalid(tpath + ("operator",), value, ";".join(errs))
        elif operator == "Exists":
            if value:
                ck.invalid(tpath + ("operator",), t, "value must be empty when `operator` is "
                           "'Exists'")
        else:
            ck.unsupported(tpath + ("operator",), operator, TOLERATION_OPERATORS)
        if effect and effect not in TAINT_EFFECTS:
            ck.unsupported(tpath + ("effect",), effect, TAINT_EFFECTS)


def _check_resources(ck: Checker, path: Path_, c: dict) -> None:
    """ValidateContainerResourceRequirements: names a container may ask for, quantities as the
    decoder parses them, none negative, and no request above its limit."""
    resources = ck.obj(c, "resources", path, RESOURCES_FIELDS)
    if resources is None:
        return
    rpath = path + ("resources",)
    found: dict[str, dict[str, Quantity]] = {}
    for part in ("limits", "requests"):
        found[part] = {}
        amounts = ck.get(resources, part, rpath, "object") or {}
        for name, raw in amounts.items():
            qpath = rpath + (part, Key(str(name)))
            _check_resource_name(ck, qpath, str(name))
            quantity = _quantity(ck, qpath, raw)
            if quantity is None:
                continue
            if quantity.value < 0:
                ck.invalid(qpath, str(quantity), "must be greater than or equal to 0")
            found[part][str(name)] = quantity
    limits, requests = found["limits"], found["requests"]
    for name, request in requests.items():
        limit = limits.get(name)
        overcommit = _overcommit_allowed(name)
        with ck.line_of(rpath + ("requests", name)):
            if limit is not None:
                if request.value != limit.value and not overcommit:
                    ck.invalid(rpath + ("requests",), str(request),
                               f"must be equal to {name} limit of {limit}")
                elif request.value > limit.value:
                    ck.invalid(rpath + ("requests",), str(request),
                               f"must be less than or equal to {name} limit of {limit}")
            elif not overcommit:
                ck.required(rpath + ("limits",), "Limit must be set for non overcommitable "
                                                 "resources")


def _quantity(ck: Checker, path: Path_, raw: Any) -> Quantity | None:
    """A quantity as the decoder reads one: a string or a number."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        ck.invalid(path, raw, "must be a quantity (a string such as 500m or 1Gi, or a number)")
        return None
    text = raw if isinstance(raw, str) else repr(raw)
    try:
        return parse_quantity(text)
    except ValueError as err:
        ck.invalid(path, text, str(err))
        return None


def _native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    return _native(name) and not name.startswith("hugepages-")


def _check_resource_name(ck: Checker, path: Path_, name: str) -> None:
    """validateContainerResourceName."""
    errs = is_qualified_name(name)
    if errs:
        ck.names(path, name, errs)
    elif "/" not in name and name not in STANDARD_RESOURCES \
            and not name.startswith("hugepages-"):
        ck.invalid(path, name, "must be a standard resource type or fully qualified")
    if "/" not in name:
        if name not in CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            ck.invalid(path, name, "must be a standard resource for containers")
    elif not _native(name) and (name.startswith("requests.")
                                or is_qualified_name("requests." + name)):
        ck.invalid(path, name, "doesn't follow extended resource name standard")


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
