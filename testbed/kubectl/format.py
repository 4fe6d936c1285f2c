"""Pure: kubectl's output: `get` tables (its columns, its AGE wording), -o yaml/json, describe.

The columns and cells of each kind are the API server's (testbed.api.printers, which the
server's Table responses print from too); here they are laid out as kubectl's tabwriter does
(cells padded by 3, at least 6 wide, the last column unpadded, headers upper-cased); -A adds a
NAMESPACE column first; -o wide adds the wide (priority 1) columns. `now` is passed in so that
output is reproducible in tests. A NetworkPolicy is described exactly as kubectl's describer
prints it (laid out by a copy of Go's tabwriter); the other kinds in kubectl's layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import yaml

from testbed.api.events import event_time
from testbed.api.managedfields import LAST_APPLIED  # describe never shows it
from testbed.api.printers import (  # noqa: F401 - re-exported: kubectl's helpers live there
    age,
    external_ip,
    format_selector,
    human_duration,
    node_roles,
    node_status,
    parse_time,
    pod_status,
    printer_for,
    service_ports,
    since,
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


Section = tuple[str, list[tuple[str, object]]]  # a titled block of "Key: value" lines


def kube_proxy_section(status: dict | None, now: float) -> Section:
    """What `testbed describe node` adds for the node's kube-proxy, from its status file
    (emu/rundir.py ProxyStatus as JSON; None: none written by a running one): its mode, its
    syncs and full syncs, and the full-sync period with when the next full sync is due
    (`now` and the status times are wall clock)."""
    if not status:
        return "kube-proxy", [("Status", "<no sync reported: not running, or not synced yet>")]
    last = status.get("last") or {}
    kind = "full" if last.get("full") else "partial"
    pairs: list[tuple[str, object]] = [
        ("Mode", status.get("mode", "")), ("Pid", status.get("pid", "")),
        ("Syncs", f"{status.get('syncs', 0)} ({status.get('full_syncs', 0)} full)"),
        ("Last sync", f"{kind}, {'ok' if last.get('ok') else 'failed: ' + str(last.get('error'))}"
                      f", {human_duration(max(now - status.get('time', now), 0))} ago")]
    period, last_full = status.get("full_sync_period") or 0, status.get("last_full") or 0
    if last_full:
        pairs.append(("Last full sync", f"{human_duration(max(now - last_full, 0))} ago"))
    if period:
        due = f"next within {human_duration(max(last_full + period - now, 0))}" if last_full \
            else "first not done yet"
        pairs.append(("Full sync period", f"{go_duration(period)} ({due}; SIGUSR1 forces one)"))
    else:
        pairs.append(("Full sync period", "<none> (every sync rewrites the rules)"))
    return "kube-proxy", pairs


def go_duration(seconds: float) -> str:
    """Go's time.Duration String for whole seconds ("1h0m0s", "1m30s", "45s")."""
    s = int(seconds)
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s" if m else f"{s}s"


def describe(obj: dict, slices: list[dict] | None = None, events: list[dict] | None = None,
             now: datetime | None = None, sections: Sequence[Section] = ()) -> str:
    """kubectl describe, in its layout; `slices` are a Service's EndpointSlices, `events` the
    Events about the object (kubectl's Events().Search: by the involved object); `sections`
    are the testbed's own blocks, before the events (a Node's kube-proxy:
    `kube_proxy_section`)."""
    kind = obj.get("kind")
    if kind == "NetworkPolicy":
        return describe_networkpolicy(obj)
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
    for title, pairs in sections:
        lines += [f"{title}:", *_kv(pairs, 2)]
    lines += describe_events(events or [], now or datetime.now(UTC))
    return "\n".join(lines) + "\n"


def describe_events(events: list[dict], now: datetime) -> list[str]:
    """kubectl's DescribeEvents: Type, Reason, Age ("3s (x4 over 20s)" for a repeated event),
    From (source.component, else reportingController) and Message, in the order of when each
    was last seen (SortableEvents: event_time; unset first, as Go's zero time)."""
    if not events:
        return _kv([("Events", "<none>")])

    def first(e: dict) -> str | None:
        return e.get("eventTime") or e.get("firstTimestamp")

    rows = []
    for e in sorted(events, key=lambda e: event_time(e) or datetime.min.replace(tzinfo=UTC)):
        interval = since(first(e), now)
        series = e.get("series") or {}
        if series:
            interval = f"{since(series.get('lastObservedTime'), now)} (x{series.get('count')} over {interval})"
        elif (e.get("count") or 0) > 1:
            interval = f"{since(e.get('lastTimestamp'), now)} (x{e['count']} over {interval})"
        source = (e.get("source") or {}).get("component") or e.get("reportingController") or ""
        rows.append([e.get("type", ""), e.get("reason", ""), interval, source,
                     str(e.get("message", "")).strip()])
    body = table(["Type", "Reason", "Age", "From", "Message"], [["----", "------", "----", "----", "-------"]] + rows)
    return ["Events:"] + ["  " + line for line in body.splitlines()]


# -- describe NetworkPolicy: kubectl's describeNetworkPolicy, line for line ---------------------

MAX_ANNOTATION = 140   # kubectl's maxAnnotationLen


def tabwrite(text: str, padding: int = 2) -> str:
    """Go's text/tabwriter as kubectl's describers set it up (minwidth 0, padding 2, spaces):
    a cell ends with a tab; the cells of a column are padded to the widest in a block of
    consecutive lines that have that column; a line's last cell is not aligned."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: dict[tuple[int, int], int] = {}

    def block(first: int, last: int, column: int) -> None:
        this = first
        while this < last:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            start = this
            while this < last and column < len(lines[this]) - 1:
                this += 1
            width = max(len(lines[i][column]) for i in range(start, this)) + padding
            for i in range(start, this):
                widths[(i, column)] = width
            block(start, this, column + 1)

    block(0, len(lines), 0)
    return "\n".join("".join(cell.ljust(widths[(i, j)]) for j, cell in enumerate(cells[:-1]))
                     + cells[-1] for i, cells in enumerate(lines))


def go_time(text: str | None) -> str:
    """A metav1.Time as Go's time.Time.String() prints it (in UTC): "2024-05-01 12:00:00 +0000
    UTC"; the zero time when unset."""
    when = parse_time(text)
    if when is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    fraction = f".{when.microsecond:06d}".rstrip("0") if when.microsecond else ""
    return when.strftime("%Y-%m-%d %H:%M:%S") + fraction + " +0000 UTC"


def _multiline(title: str, values: dict | None, annotations: bool = False) -> str:
    """printLabelsMultiline / printAnnotationsMultiline: sorted key=value (key: value for
    annotations, long or multi-line values below the key) after a tab, one per line."""
    keys = sorted(k for k in values or {} if not (annotations and k == LAST_APPLIED))
    if not keys:
        return f"{title}:\t<none>\n"
    out = f"{title}:\t"
    for i, key in enumerate(keys):
        out += "\t" if i else ""
        value = str((values or {})[key])
        if not annotations:
            out += f"{key}={value}\n"
            continue
        value = value.removesuffix("\n")
        if len(value) + len(key) + 2 > MAX_ANNOTATION or "\n" in value:
            out += f"{key}:\n" + "".join(
                f"\t  {part[:MAX_ANNOTATION - 2] + '...' if len(part) > MAX_ANNOTATION - 2 else part}\n"
                for part in value.split("\n"))
        else:
            out += f"{key}: {value}\n"
    return out


def _policy_rules(rules: list[dict], peers_key: str, indent: str) -> list[str]:
    """printNetworkPolicySpecIngressFrom / ...EgressTo."""
    ingress = peers_key == "from"
    if not rules:
        return [indent + "<none> (Selected pods are isolated for "
                + ("ingress" if ingress else "egress") + " connectivity)"]
    lines: list[str] = []
    for i, rule in enumerate(rules):
        if not rule.get("ports"):
            lines.append(indent + "To Port: <any> (traffic allowed to all ports)")
        for port in rule.get("ports") or []:
            number = port.get("port")
            shown = "<nil>" if number is None else str(number)
            protocol = port.get("protocol") or "TCP"
            if port.get("endPort") is None:
                lines.append(f"{indent}To Port: {shown}/{protocol}")
            else:
                lines.append(f"{indent}To Port Range: {shown}-{port['endPort']}/{protocol}")
        if not rule.get(peers_key):
            lines.append(indent + ("From: <any> (traffic not restricted by source)" if ingress
                                   else "To: <any> (traffic not restricted by destination)"))
        for peer in rule.get(peers_key) or []:
            lines.append(indent + ("From:" if ingress else "To:"))
            pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
            if namespaces is not None:
                lines.append(f"  {indent}NamespaceSelector: {format_selector(namespaces)}")
            if pods is not None:
                lines.append(f"  {indent}PodSelector: {format_selector(pods)}")
            if pods is None and namespaces is None and peer.get("ipBlock") is not None:
                block = peer["ipBlock"]
                lines += [f"  {indent}IPBlock:", f"    {indent}CIDR: {block.get('cidr', '')}",
                          f"    {indent}Except: {', '.join(block.get('except') or [])}"]
        if i != len(rules) - 1:
            lines.append(indent + "----------")
    return lines


def describe_networkpolicy(obj: dict) -> str:
    """kubectl describe networkpolicy (describeNetworkPolicy): the header, then the spec as
    its describer words it; no events (kubectl shows none for NetworkPolicies)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    head = (f"Name:\t{meta.get('name', '')}\nNamespace:\t{meta.get('namespace', '')}\n"
            f"Created on:\t{go_time(meta.get('creationTimestamp'))}\n"
            + _multiline("Labels", meta.get("labels"))
            + _multiline("Annotations", meta.get("annotations"), annotations=True))
    selector = spec.get("podSelector") or {}
    lines = ["Spec:", "  PodSelector:     " + (
        format_selector(selector) if selector.get("matchLabels") or selector.get("matchExpressions")
        else "<none> (Allowing the specific traffic to all pods in this namespace)")]
    types = spec.get("policyTypes") or []
    for kind, key, peers in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
        if kind in types:
            lines.append(f"  Allowing {key} traffic:")
            lines += _policy_rules(spec.get(key) or [], peers, "    ")
        else:
            lines.append(f"  Not affecting {key} traffic")
    lines.append("  Policy Types: " + (", ".join(types) or "<none>"))
    return tabwrite(head + "\n".join(lines) + "\n")
