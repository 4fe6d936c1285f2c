"""Pure: the columns and rows of each kind, as the API server's printers give them to kubectl.

One `Printer` per kind: upstream's column definitions (pkg/printers/internalversion
printers.go: names, types, formats; priority 1 for the columns kubectl shows only with
`-o wide`) and a row function giving the cells of every column, wide ones included, numbers as
numbers. Descriptions are the first sentence of upstream's (the fields' API documentation).
The API server's Tables (testbed.api.tables) and `testbed get` (testbed.kubectl.format) both
print from here, so the two cannot disagree. Kinds without a printer get upstream's default
columns (Name, Created At). `now` is passed in: rows are reproducible in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

Cell = str | int
Row = Callable[[dict, datetime], list[Cell]]


@dataclass(frozen=True)
class Column:
    name: str  # as upstream names it ("Nominated Node"); kubectl prints it upper-cased
    type: str = "string"
    description: str = ""
    priority: int = 0  # 1: only with -o wide
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    row: Row
    conditions: Callable[[dict], list[dict]] | None = None  # a TableRow's conditions


# -- time ------------------------------------------------------------------------------------------

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
    """An RFC 3339 time (metav1.Time, or MicroTime with fractional seconds), None if unset."""
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def since(text: str | None, now: datetime) -> str:
    """translateTimestampSince: the time since `text`, or <unknown>."""
    when = parse_time(text)
    return human_duration((now - when).total_seconds()) if when else "<unknown>"


def age(obj: dict, now: datetime) -> str:
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


# -- shared formatting -----------------------------------------------------------------------------

def format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: k=v pairs sorted by key, <none> when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def format_selector(selector: dict | None) -> str:
    """A LabelSelector as its selector string (matchLabels and matchExpressions), <none> when
    it selects nothing in particular."""
    selector = selector or {}
    reqs = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator"), sorted(e.get("values") or [])
        text = {"In": f"{key} in ({','.join(values)})",
                "NotIn": f"{key} notin ({','.join(values)})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(op, f"{key} {op}")
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0])) or "<none>"


def with_more(items: list[str], unset: str = "<unset>", most: int = 3) -> str:
    """At most three, then "+ N more..." (listWithMoreString)."""
    text = ",".join(items[:most])
    if len(items) > most:
        return f"{text} + {len(items) - most} more..."
    return text or unset


# -- Pods ------------------------------------------------------------------------------------------

def pod_status(pod: dict) -> tuple[str, int, int, int]:
    """(STATUS, ready containers, containers, restarts) the way printPod words them."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    ready = restarts = 0
    running = False
    for cs in reversed(status.get("containerStatuses") or []):  # the first container wins
        restarts += cs.get("restartCount", 0)
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            term = state["terminated"] or {}
            reason = (f"Signal:{term['signal']}" if term.get("signal")
                      else f"ExitCode:{term.get('exitCode', 0)}")
        elif cs.get("ready") and "running" in state:
            running = True
            ready += 1
    if reason == "Completed" and running:
        ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        reason = "Running" if ready_cond else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp") and \
            phase not in ("Succeeded", "Failed"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, len((pod.get("spec") or {}).get("containers") or []), restarts


def _restarts(pod: dict, restarts: int, now: datetime) -> str:
    """"N", or "N (5m ago)" from the newest last termination, as printPod since 1.22."""
    finished = [t for cs in (pod.get("status") or {}).get("containerStatuses") or []
                if (t := parse_time(((cs.get("lastState") or {}).get("terminated") or {})
                                    .get("finishedAt")))]
    if restarts and finished:
        return f"{restarts} ({human_duration((now - max(finished)).total_seconds())} ago)"
    return str(restarts)


def _pod(pod: dict, now: datetime) -> list[Cell]:
    reason, ready, total, restarts = pod_status(pod)
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else status.get("podIP")) or "<none>"
    gates = "<none>"
    if spec.get("readinessGates"):
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        true = sum(conds.get(g.get("conditionType")) == "True" for g in spec["readinessGates"])
        gates = f"{true}/{len(spec['readinessGates'])}"
    return [name_of(pod), f"{ready}/{total}", reason, _restarts(pod, restarts, now),
            age(pod, now), ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates]


def _pod_conditions(pod: dict) -> list[dict]:
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Succeeded", "Failed"):
        return []
    message = "The pod has completed successfully." if phase == "Succeeded" else "The pod failed."
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


# -- Services, Endpoints, EndpointSlices, Ingresses, NetworkPolicies -------------------------------

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
        ips = [i.get("ip") or i.get("hostname") for i in ingress] + ips
        return ",".join(ips) or "<pending>"
    return ",".join(ips) or "<none>"


def _service(svc: dict, now: datetime) -> list[Cell]:
    spec = svc.get("spec") or {}
    return [name_of(svc), spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>",
            external_ip(svc), service_ports(svc), age(svc, now),
            format_labels(spec.get("selector"))]


def _endpoints(ep: dict, now: datetime) -> list[Cell]:
    subsets = ep.get("subsets") or []
    shown: list[str] = []
    for ss in subsets:
        ips = [a.get("ip", "") for a in ss.get("addresses") or []]
        if not ss.get("ports"):
            shown += ips
        for port in ss.get("ports") or []:
            shown += [f"[{ip}]:{port.get('port')}" if ":" in ip else f"{ip}:{port.get('port')}"
                      for ip in ips]
    return [name_of(ep), with_more(shown, "") if subsets else "<none>", age(ep, now)]


def _endpointslice(s: dict, now: datetime) -> list[Cell]:
    ports = [str(p["port"]) if p.get("port") is not None else p.get("name") or "*"
             for p in s.get("ports") or []]
    addresses = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    return [name_of(s), s.get("addressType", ""), with_more(ports), with_more(addresses),
            age(s, now)]


def _ingress(ing: dict, now: datetime) -> list[Cell]:
    spec = ing.get("spec") or {}
    rules = spec.get("rules") or []
    hosts = [r["host"] for r in rules[:3] if r.get("host")]
    host_text = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        host_text += f" + {len(rules) - 3} more..."
    lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [name_of(ing), spec.get("ingressClassName") or "<none>", host_text,
            ",".join(i.get("ip") or i.get("hostname") or "" for i in lb),
            "80, 443" if spec.get("tls") else "80", age(ing, now)]


def _networkpolicy(np: dict, now: datetime) -> list[Cell]:
    """printNetworkPolicy: metav1.FormatLabelSelector of spec.podSelector ("<none>" when it
    selects every pod)."""
    return [name_of(np), format_selector((np.get("spec") or {}).get("podSelector")), age(np, now)]


# -- workloads, nodes, namespaces, events, leases --------------------------------------------------

def _deployment(dep: dict, now: datetime) -> list[Cell]:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [name_of(dep), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            int(status.get("updatedReplicas", 0)), int(status.get("availableReplicas", 0)),
            age(dep, now), ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers),
            format_selector(spec.get("selector"))]


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
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = {k[len(prefix):] for k in labels if k.startswith(prefix) and k != prefix}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    return ",".join(sorted(roles)) or "<none>"


def _node(node: dict, now: datetime) -> list[Cell]:
    status = node.get("status") or {}
    info = status.get("nodeInfo") or {}
    addrs: dict[str, str] = {}
    for a in status.get("addresses") or []:
        addrs.setdefault(a.get("type", ""), a.get("address", ""))
    return [name_of(node), node_status(node), node_roles(node), age(node, now),
            info.get("kubeletVersion", ""), addrs.get("InternalIP") or "<none>",
            addrs.get("ExternalIP") or "<none>", info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _namespace(ns: dict, now: datetime) -> list[Cell]:
    return [name_of(ns), (ns.get("status") or {}).get("phase", "Active"), age(ns, now)]


def _event(ev: dict, now: datetime) -> list[Cell]:
    first = since(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else \
        since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    series = ev.get("series")
    count = ev.get("count") or 1  # singleton events of the new API carry no count
    if series:
        last, count = since(series.get("lastObservedTime"), now), series.get("count", count)
    ref = ev.get("involvedObject") or {}
    kind = str(ref.get("kind", "")).lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent", "")
    host = source.get("host") or ev.get("reportingInstance", "")
    return [last, ev.get("type", ""), ev.get("reason", ""), target, ref.get("fieldPath", ""),
            f"{component}, {host}" if host else component, (ev.get("message") or "").strip(),
            first, int(count), name_of(ev)]


def _lease(lease: dict, now: datetime) -> list[Cell]:
    return [name_of(lease), (lease.get("spec") or {}).get("holderIdentity") or "", age(lease, now)]


def _default(obj: dict, now: datetime) -> list[Cell]:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return [name_of(obj), created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else ""]


# -- the table -------------------------------------------------------------------------------------

NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column("Age", description="CreationTimestamp is a timestamp representing the server time "
                                "when this object was created.")


def _c(name: str, description: str, priority: int = 0, type_: str = "string") -> Column:
    return Column(name, type_, description, priority)


PRINTERS: dict[str, Printer] = {
    "Pod": Printer((
        NAME, _c("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _c("Status", "The aggregate status of the containers in this pod."),
        _c("Restarts", "The number of times the containers in this pod have been restarted "
                       "and when the last container in this pod has restarted."), AGE,
        _c("IP", "podIP address allocated to the pod.", 1),
        _c("Node", "NodeName indicates in which node this pod is scheduled.", 1),
        _c("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods "
                             "on the node, but it cannot be scheduled right away as preemption "
                             "victims receive their graceful termination periods.", 1),
        _c("Readiness Gates", "If specified, all readiness gates will be evaluated for pod "
                              "readiness.", 1)), _pod, _pod_conditions),
    "Service": Printer((
        NAME, _c("Type", "type determines how the Service is exposed."),
        _c("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned "
                         "randomly."),
        _c("External-IP", "externalIPs is a list of IP addresses for which nodes in the "
                          "cluster will also accept traffic for this service."),
        _c("Port(s)", "The list of ports that are exposed by this service."), AGE,
        _c("Selector", "Route service traffic to pods with label keys and values matching "
                       "this selector.", 1)), _service),
    "Endpoints": Printer((
        NAME, _c("Endpoints", "The set of all endpoints is the union of all subsets."), AGE),
        _endpoints),
    "EndpointSlice": Printer((
        NAME, _c("AddressType", "addressType specifies the type of address carried by this "
                                "EndpointSlice."),
        _c("Ports", "ports specifies the list of network ports exposed by each endpoint in "
                    "this slice."),
        _c("Endpoints", "endpoints is a list of unique endpoints in this slice."), AGE),
        _endpointslice),
    "Ingress": Printer((
        NAME, _c("Class", "The name of the IngressClass resource that should be used for "
                          "additional configuration"),
        _c("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        _c("Address", "Address is a list containing ingress points for the load-balancer"),
        _c("Ports", "Ports of TLS configurations that open"), AGE), _ingress),
    "NetworkPolicy": Printer((
        NAME, _c("Pod-Selector", "podSelector selects the pods to which this NetworkPolicy "
                                 "object applies."), AGE), _networkpolicy),
    "Deployment": Printer((
        NAME, _c("Ready", "Number of the pod with ready state"),
        _c("Up-to-date", "Total number of non-terminating pods targeted by this deployment "
                         "that have the desired template spec."),
        _c("Available", "Total number of available non-terminating pods (ready for at least "
                        "minReadySeconds) targeted by this deployment."), AGE,
        _c("Containers", "Names of each container in the template.", 1),
        _c("Images", "Images referenced by each container in the template.", 1),
        _c("Selector", "Label selector for pods.", 1)), _deployment),
    "Node": Printer((
        NAME, _c("Status", "The status of the node"), _c("Roles", "The roles of the node"), AGE,
        _c("Version", "Kubelet Version reported by the node."),
        _c("Internal-IP", "List of addresses reachable to the node.", 1),
        _c("External-IP", "List of addresses reachable to the node.", 1),
        _c("OS-Image", "OS Image reported by the node from /etc/os-release.", 1),
        _c("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", 1),
        _c("Container-Runtime", "ContainerRuntime Version reported by the node through "
                                "runtime remote API.", 1)), _node),
    "Namespace": Printer((NAME, _c("Status", "The status of the namespace"), AGE), _namespace),
    "Event": Printer((
        _c("Last Seen", "The time at which the most recent occurrence of this event was "
                        "recorded."),
        _c("Type", "Type of this event (Normal, Warning), new types could be added in the "
                   "future"),
        _c("Reason", "This should be a short, machine understandable string that gives the "
                     "reason for the transition into the object's current status."),
        _c("Object", "The object that this event is about."),
        _c("Subobject", "If referring to a piece of an object instead of an entire object, "
                        "this string should contain a valid JSON/Go field access statement.", 1),
        _c("Source", "The component reporting this event.", 1),
        _c("Message", "A human-readable description of the status of this operation."),
        _c("First Seen", "The time at which the event was first recorded.", 1),
        _c("Count", "The number of times this event has occurred.", 1),
        Column("Name", "string", NAME.description, 1, "name")), _event),
    "Lease": Printer((
        NAME, _c("Holder", "holderIdentity contains the identity of the holder of a current "
                           "lease."), AGE), _lease),
}
DEFAULT = Printer((NAME, Column("Created At", "date", AGE.description)), _default)


def printer_for(kind: str) -> Printer:
    return PRINTERS.get(kind, DEFAULT)
