"""Pure: kubectl's output: `get` tables (its columns, its AGE wording), -o yaml/json, describe.

The columns and cells of each kind are the API server's (testbed.api.printers, which the
server's Table responses print from too); here they are laid out as kubectl's tabwriter does
(cells padded by 3, at least 6 wide, the last column unpadded, headers upper-cased); -A adds a
NAMESPACE column first; -o wide adds the wide (priority 1) columns. `now` is passed in so that
output is reproducible in tests.
"""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from testbed.api.printers import (  # noqa: F401 - re-exported: kubectl's helpers live there
    age,
    external_ip,
    human_duration,
    node_roles,
    node_status,
    parse_time,
    pod_status,
    printer_for,
    service_ports,
)


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


def format_table(kind: str, objects: list[dict], now: datetime, wide: bool = False,
                 all_namespaces: bool = False) -> str:
    printer = printer_for(kind)
    shown = [i for i, c in enumerate(printer.columns) if wide or c.priority == 0]
    headers = [printer.columns[i].name.upper() for i in shown]
    rows = []
    for obj in objects:
        cells = printer.row(obj, now)
        row = [str(cells[i]) for i in shown]
        if all_namespaces:
            row = [(obj.get("metadata") or {}).get("namespace", "")] + row
        rows.append(row)
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
