"""Pure: kubectl's output: `get` tables (its columns, its AGE wording), -o yaml/json, describe.

Tables are laid out as kubectl's tabwriter does (cells padded by 3, at least 6 wide, the last
column unpadded); -A adds a NAMESPACE column first; -o wide adds kubectl's wide columns.
`now` is passed in so that output is reproducible in tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import yaml

Row = Callable[[dict, datetime], list[str]]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // (24 * 365), (hours // 24) % 365
    if years < 8:
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{years}y"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def age(obj: dict, now: datetime) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now - created).total_seconds()) if created else "<unknown>"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(max(w + 3, 6)) for c, w in zip(row[:-1], widths, strict=False)]
        lines.append(("".join(cells) + str(row[-1])).rstrip())
    return "\n".join(lines) + "\n"


def _labels(selector: dict | None) -> str:
    if not selector:
        return "<none>"
    match = selector.get("matchLabels", selector) if "matchExpressions" not in selector else \
        selector.get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match.items())) or "<none>"


# -- per kind ------------------------------------------------------------------------------------

def pod_status(pod: dict) -> tuple[str, int, int, int]:
    """(STATUS, ready containers, containers, restarts) the way kubectl's printPod words them."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    ready = restarts = 0
    for cs in status.get("containerStatuses") or []:
        restarts += cs.get("restartCount", 0)
        ready += bool(cs.get("ready"))
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            code = state["terminated"].get("exitCode", 0)
            reason = f"ExitCode:{code}"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason, ready, len((pod.get("spec") or {}).get("containers") or []), restarts


def _pod(pod: dict, now: datetime) -> list[str]:
    reason, ready, total, restarts = pod_status(pod)
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, str(restarts), age(pod, now)]


def _pod_wide(pod: dict) -> list[str]:
    return [(pod.get("status") or {}).get("podIP") or "<none>",
            (pod.get("spec") or {}).get("nodeName") or "<none>", "<none>", "<none>"]


def service_ports(svc: dict) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return spec.get("externalName") or "<none>"
    ips = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips += [i.get("ip") or i.get("hostname") for i in ingress]
        return ",".join(ips) or "<pending>"
    return ",".join(ips) or "<none>"


def _service(svc: dict, now: datetime) -> list[str]:
    spec = svc.get("spec") or {}
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"),
            spec.get("clusterIP") or "<none>", external_ip(svc), service_ports(svc),
            age(svc, now)]


def _deployment(dep: dict, now: datetime) -> list[str]:
    status = dep.get("status") or {}
    return [dep["metadata"]["name"],
            f"{status.get('readyReplicas', 0)}/{(dep.get('spec') or {}).get('replicas', 1)}",
            str(status.get("updatedReplicas", 0)), str(status.get("availableReplicas", 0)),
            age(dep, now)]


def _deployment_wide(dep: dict) -> list[str]:
    containers = ((dep["spec"].get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), _labels(dep["spec"].get("selector"))]


def _endpointslice(s: dict, now: datetime) -> list[str]:
    ports = ",".join(str(p.get("port", "")) for p in s.get("ports") or []) or "<unset>"
    addresses = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..."
                                       if len(addresses) > 3 else "")
    return [s["metadata"]["name"], s.get("addressType", ""), ports, shown or "<unset>",
            age(s, now)]


def _ingress(ing: dict, now: datetime) -> list[str]:
    spec = ing.get("spec") or {}
    hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
    lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [ing["metadata"]["name"], spec.get("ingressClassName") or "<none>",
            ",".join(hosts) or "*", ",".join(i.get("ip") or i.get("hostname") for i in lb),
            "80, 443" if spec.get("tls") else "80", age(ing, now)]


def node_status(node: dict) -> str:
    state = "Unknown"
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            state = "Ready" if c.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    return state


def node_roles(node: dict) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix):] for k in node["metadata"].get("labels") or {}
                   if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _node(node: dict, now: datetime) -> list[str]:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return [node["metadata"]["name"], node_status(node), node_roles(node), age(node, now),
            info.get("kubeletVersion", "")]


def _node_wide(node: dict) -> list[str]:
    status = node.get("status") or {}
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [addrs.get("InternalIP") or "<none>", addrs.get("ExternalIP") or "<none>",
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
            info.get("containerRuntimeVersion", "<unknown>")]


def _namespace(ns: dict, now: datetime) -> list[str]:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", "Active"), age(ns, now)]


# kind -> (headers, row, wide headers, wide cells appended)
COLUMNS: dict[str, tuple[list[str], Row, list[str], Callable[[dict], list[str]] | None]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], _pod,
            ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], _pod_wide),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], _service,
                ["SELECTOR"], lambda s: [_labels((s.get("spec") or {}).get("selector"))]),
    "Deployment": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], _deployment,
                   ["CONTAINERS", "IMAGES", "SELECTOR"], _deployment_wide),
    "EndpointSlice": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], _endpointslice,
                      [], None),
    "Ingress": (["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], _ingress, [], None),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"], _node,
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
             _node_wide),
    "Namespace": (["NAME", "STATUS", "AGE"], _namespace, [], None),
}


def format_table(kind: str, objects: list[dict], now: datetime, wide: bool = False,
                 all_namespaces: bool = False) -> str:
    headers, row, wide_headers, wide_row = COLUMNS[kind]
    headers = list(headers) + (wide_headers if wide else [])
    rows = []
    for obj in objects:
        cells = row(obj, now)
        if wide and wide_row is not None:  # kubectl appends wide columns after AGE
            cells += wide_row(obj)
        if all_namespaces:
            cells = [obj["metadata"].get("namespace", "")] + cells
        rows.append(cells)
    if all_namespaces:
        headers = ["NAMESPACE"] + headers
    return table(headers, rows)


def format_objects(objects: list[dict], output: str, single: bool) -> str:
    """-o json / -o yaml: the object itself for one NAME, otherwise a v1 List."""
    data = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects,
                                      "metadata": {"resourceVersion": ""}}
    if output == "json":
        return json.dumps(data, indent=4) + "\n"
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


# -- describe ------------------------------------------------------------------------------------

TOP = 20  # the value column of describe's top-level keys ("CreationTimestamp:" fits)


def _kv(pairs: list[tuple[str, object]], indent: int = 0) -> list[str]:
    width = TOP if indent == 0 else max((len(k) for k, _ in pairs), default=0) + 2
    return [" " * indent + f"{k + ':':<{width}}{v}".rstrip() for k, v in pairs]


def _map(values: dict | None, indent: int) -> str:
    if not values:
        return "<none>"
    items = [f"{k}={v}" for k, v in sorted(values.items())]
    return ("\n" + " " * indent).join(items)


def _header(obj: dict) -> list[str]:
    meta = obj["metadata"]
    pairs: list[tuple[str, object]] = [("Name", meta["name"])]
    if meta.get("namespace"):
        pairs.append(("Namespace", meta["namespace"]))
    pairs += [("Labels", _map(meta.get("labels"), TOP)),
              ("Annotations", _map(meta.get("annotations"), TOP)),
              ("CreationTimestamp", meta.get("creationTimestamp", "<unknown>"))]
    owners = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if owners:
        pairs.append(("Controlled By", f"{owners[0]['kind']}/{owners[0]['name']}"))
    return _kv(pairs)


def _containers(containers: list[dict], statuses: dict[str, dict], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for c in containers:
        lines.append(f"{pad}{c.get('name')}:")
        ports = ", ".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
                          for p in c.get("ports") or []) or "<none>"
        pairs: list[tuple[str, object]] = [("Image", c.get("image", "")), ("Port", ports)]
        if c.get("command"):
            pairs.append(("Command", " ".join(c["command"])))
        if c.get("args"):
            pairs.append(("Args", " ".join(c["args"])))
        st = statuses.get(c.get("name", ""))
        if st is not None:
            state = next(iter(st.get("state") or {"Waiting": {}}), "waiting")
            pairs += [("State", state.capitalize()), ("Ready", str(bool(st.get("ready")))),
                      ("Restart Count", st.get("restartCount", 0))]
        for probe in ("livenessProbe", "readinessProbe"):
            if c.get(probe):
                pairs.append((probe.replace("Probe", "").capitalize(), _probe(c[probe])))
        lines += _kv(pairs, indent + 2)
    return lines


def _probe(p: dict) -> str:
    if "httpGet" in p:
        how = f"http-get http://:{p['httpGet'].get('port')}{p['httpGet'].get('path', '/')}"
    elif "tcpSocket" in p:
        how = f"tcp-socket :{p['tcpSocket'].get('port')}"
    elif "exec" in p:
        how = "exec " + str(p["exec"].get("command"))
    else:
        how = "<unknown>"
    return (f"{how} delay={p.get('initialDelaySeconds', 0)}s timeout="
            f"{p.get('timeoutSeconds', 1)}s period={p.get('periodSeconds', 10)}s "
            f"#success={p.get('successThreshold', 1)} #failure={p.get('failureThreshold', 3)}")


def _conditions(conditions: list[dict]) -> list[str]:
    if not conditions:
        return ["Conditions:  <none>"]
    rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")]
            for c in conditions]
    return ["Conditions:"] + ["  " + line for line in
                              table(["Type", "Status", "Reason", "Message"], rows).splitlines()]


def describe(obj: dict, slices: list[dict] | None = None) -> str:
    """kubectl describe, in its layout; `slices` are a Service's EndpointSlices."""
    kind = obj.get("kind")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    lines = _header(obj)
    if kind == "Pod":
        reason, *_ = pod_status(obj)
        lines += _kv([("Node", spec.get("nodeName") or "<none>"), ("Status", reason),
                      ("IP", status.get("podIP") or "")])
        statuses = {s.get("name", ""): s for s in status.get("containerStatuses") or []}
        lines += ["Containers:"] + _containers(spec.get("containers") or [], statuses, 2)
        lines += _conditions(status.get("conditions") or [])
    elif kind == "Service":
        endpoints = []
        for s in slices or []:
            port = next((p.get("port") for p in s.get("ports") or []), None)
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready", True):
                    endpoints += [f"{a}:{port}" if port else a for a in e.get("addresses") or []]
        pairs: list[tuple[str, object]] = [
            ("Selector", _labels(spec.get("selector"))), ("Type", spec.get("type", "ClusterIP")),
            ("IP", spec.get("clusterIP") or "<none>")]
        for p in spec.get("ports") or []:
            name = p.get("name") or "<unset>"
            pairs.append(("Port", f"{name}  {p.get('port')}/{p.get('protocol', 'TCP')}"))
            pairs.append(("TargetPort", f"{p.get('targetPort', p.get('port'))}/"
                                        f"{p.get('protocol', 'TCP')}"))
            if p.get("nodePort"):
                pairs.append(("NodePort", f"{name}  {p['nodePort']}/{p.get('protocol', 'TCP')}"))
        pairs += [("Endpoints", ",".join(endpoints) or "<none>"),
                  ("Session Affinity", spec.get("sessionAffinity", "None"))]
        lines += _kv(pairs)
    elif kind == "Deployment":
        want = spec.get("replicas", 1)
        lines += _kv([("Selector", _labels(spec.get("selector"))),
                      ("Replicas", f"{want} desired | {status.get('updatedReplicas', 0)} updated "
                                   f"| {status.get('replicas', 0)} total | "
                                   f"{status.get('availableReplicas', 0)} available | "
                                   f"{status.get('unavailableReplicas', 0)} unavailable"),
                      ("StrategyType", (spec.get("strategy") or {}).get("type", ""))])
        template = spec.get("template") or {}
        lines += ["Pod Template:",
                  f"  Labels:  {_map((template.get('metadata') or {}).get('labels'), 11)}",
                  "  Containers:"]
        lines += _containers((template.get("spec") or {}).get("containers") or [], {}, 3)
    elif kind == "Node":
        addrs = ", ".join(f"{a.get('type')}: {a.get('address')}"
                          for a in status.get("addresses") or [])
        lines += _kv([("Roles", node_roles(obj)), ("PodCIDR", spec.get("podCIDR", "")),
                      ("Unschedulable", str(bool(spec.get("unschedulable"))).lower()),
                      ("Addresses", addrs or "<none>")])
        lines += _conditions(status.get("conditions") or [])
    elif kind == "EndpointSlice":
        ports = ", ".join(f"{p.get('name') or '<unset>'} {p.get('port')}/"
                          f"{p.get('protocol', 'TCP')}" for p in obj.get("ports") or [])
        lines += _kv([("AddressType", obj.get("addressType", "")), ("Ports", ports or "<unset>")])
        lines.append("Endpoints:")
        for e in obj.get("endpoints") or []:
            cond = e.get("conditions") or {}
            lines.append(f"  - Addresses:  {','.join(e.get('addresses') or [])}")
            lines += _kv([("Conditions", f"Ready: {cond.get('ready')}  Serving: "
                                         f"{cond.get('serving')}  Terminating: "
                                         f"{cond.get('terminating')}"),
                          ("NodeName", e.get("nodeName", "<unset>")),
                          ("TargetRef", f"{(e.get('targetRef') or {}).get('kind', '')}/"
                                        f"{(e.get('targetRef') or {}).get('name', '')}")], 4)
    elif kind == "Ingress":
        lines += _kv([("Ingress Class", spec.get("ingressClassName") or "<none>")])
        lines.append("Rules:")
        for rule in spec.get("rules") or []:
            lines.append(f"  Host: {rule.get('host') or '*'}")
            for p in (rule.get("http") or {}).get("paths") or []:
                svc = (p.get("backend") or {}).get("service") or {}
                port = (svc.get("port") or {})
                lines.append(f"    {p.get('path', '/')}  {svc.get('name')}:"
                             f"{port.get('number', port.get('name'))}")
    lines += _kv([("Events", "<none>")])
    return "\n".join(lines) + "\n"
