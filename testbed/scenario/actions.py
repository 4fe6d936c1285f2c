"""Pure: scenario steps that change the cluster (apply, delete, scale, wait, kill, restart).

    - apply: manifests/more.yaml            # a file or a list of files, through the API server
    - delete: manifests/more.yaml           # the objects of those files
    - delete: {kind: Pod, name: pod-b}      # or one object (namespace default)
    - scale: {deployment: service-test, replicas: 2}
    - wait: {ready: {selector: app=web, count: 4}}          # pods Ready (namespace default)
    - wait: {endpoints: {service: service-test, count: 4}}  # ready endpoints of a Service
    - wait: {loadBalancer: {service: web}}                   # an address in the Service's status
      timeout: 30
    - kill: {agent: kube-proxy, node: w1}   # apiserver (on the master), kubelet, kube-proxy,
                                            # netpol (the node's NetworkPolicy agent), flanneld
                                            # (host-gw, vxlan; any node), bird (bgp; a worker
                                            # or the gateway router)
    - restart: {agent: kube-proxy, node: w1}
    - kill: {pod: {selector: k8s-app=kube-dns, namespace: kube-system}, container: dnsmasq}
    - link: {node: w1, state: down}         # the node's uplink; up again with state: up
    - node: {name: w2, state: down}         # uplink down and its kubelet/kube-proxy stopped
    - partition: [[w1], [w2, master]]       # DROP between the groups at the gateway
    - heal: partition
    - readiness: {pod: pod-b, state: fail}  # the pod fails its node's probes (pass to mend)
    - shape: {node: w1, rate: 10mbit}       # or delay: 20ms, loss: 1% (these need netem)
    - inspect: {nat: w1}                    # nat, nft, conntrack, routes, bridge, ps, netpol,
                                            # bgp (bird's sessions and routes), links (ip -d
                                            # link: VXLAN details, MTUs), fdb, neigh

Paths are relative to the scenario file; their manifests are loaded and checked with the
scenario, before anything is built. Every value is checked here, when the scenario is loaded,
through the API server's Checker: names as the API server checks names, selectors with its
parser, rates, delays and losses in the units tc takes and within what it holds, durations
finite, non-negative and at most a day, a partition's groups apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.api.meta import DEFAULT_NAMESPACE
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
)

AGENTS = ("apiserver", "kubelet", "kube-proxy", "netpol", "flanneld", "bird")
# The longest a sleep, a timeout or a retry may last: a day is beyond any test, and far below
# what time.sleep and socket timeouts take (1e300 overflows them mid-run).
MAX_SECONDS = 86400
DAY = " seconds (a day)"
WAITS = ("ready", "endpoints", "loadBalancer")
KINDS = ("Pod", "Service", "Deployment", "EndpointSlice", "Ingress", "Namespace", "NetworkPolicy")


@dataclass(frozen=True)
class Apply:
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Delete:
    files: tuple[Path, ...] = ()
    kind: str = ""
    namespace: str = "default"
    name: str = ""


@dataclass(frozen=True)
class Scale:
    namespace: str
    name: str
    replicas: int


@dataclass(frozen=True)
class Wait:
    what: str                  # ready | endpoints | loadBalancer
    namespace: str
    target: str                # a label selector (ready) or a Service name
    count: int | None
    timeout: float


@dataclass(frozen=True)
class PodRef:
    """A pod by name (NAMESPACE/NAME; a bare NAME has namespace "" until resolved: the one
    pod of that name), or the first pod matching a selector (on a node)."""

    name: str = ""
    selector: str = ""
    namespace: str = "default"
    node: str = ""

    def describe(self) -> str:
        if self.name:
            return f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.namespace}/{{{self.selector}}}" + (f" on {self.node}" if self.node else "")


@dataclass(frozen=True)
class Fault:
    action: str                # kill | restart
    agent: str = ""
    node: str = ""
    pod: PodRef | None = None  # kill: a pod's container instead of an agent
    container: str = ""


@dataclass(frozen=True)
class NetFault:
    kind: str                  # link | node | partition | heal | readiness | shape | inspect
    target: str = ""           # a node name (link, node, shape, inspect)
    up: bool = True
    groups: tuple[tuple[str, ...], ...] = ()
    pod: PodRef | None = None
    rate: str | None = None
    delay: str | None = None
    loss: str | None = None
    what: str = ""             # inspect: one of INSPECTIONS


@dataclass(frozen=True)
class Label:
    """Set (a string) or remove (None) labels of a pod or of a namespace, in place."""

    labels: tuple[tuple[str, str | None], ...]
    pod: PodRef | None = None
    namespace: str = ""        # a Namespace's own labels (with pod None)

    def describe(self) -> str:
        what = f"pod {self.pod.describe()}" if self.pod is not None else f"namespace {self.namespace}"
        changes = " ".join(f"{k}-" if v is None else f"{k}={v}" for k, v in self.labels)
        return f"label {what} {changes}"


ACTION_KEYS = ("apply", "delete", "scale", "wait", "kill", "restart", "link", "node", "partition",
               "heal", "readiness", "shape", "inspect", "label")
INSPECTIONS = ("nat", "nft", "conntrack", "routes", "bridge", "ps", "netpol", "bgp", "links", "fdb",
               "neigh")


# Units tc takes (iproute2's get_rate64 and get_time, matched without regard to case): a rate
# of `shape` goes to tbf or netem as is, a delay to netem, a loss to netem as a percentage.
# Nanoseconds are left out: iproute2 before 6.9 (Debian 12's 6.1) reads a netem delay with
# get_time, which knows s, ms and us only.
_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "kibit": 1024, "mibit": 1024**2, "gibit": 1024**3, "tibit": 1024**4,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
               "kibps": 8 * 1024, "mibps": 8 * 1024**2, "gibps": 8 * 1024**3,
               "tibps": 8 * 1024**4, "": 1}
_TIME_UNITS = {"s": 1e6, "sec": 1e6, "secs": 1e6, "ms": 1e3, "msec": 1e3, "msecs": 1e3,
               "us": 1, "usec": 1, "usecs": 1, "": 1}
# What tc can be handed, checked here so that a step does not fail mid-run:
# * a rate counts bytes per second, so at least 8bit; tbf (a rate alone) also keeps a queue
#   of rate x its 50ms latency + its 32kbit burst, in 32 bits: at most 687gbit.
# * netem's delay is 32 bits of psched ticks of 64ns (iproute2 < 6.9: get_ticks, which
#   refuses "Illegal time (too large)" beyond): at most 274877906us, about 4.6 minutes.
MIN_RATE_BITS = 8
MAX_RATE_BITS = 687e9
MAX_DELAY_US = 274877906
_DECIMAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([A-Za-z%]*)")


def _files(ck: Checker, path: Path_, raw: Any, base: Path) -> tuple[Path, ...]:
    if isinstance(raw, str):
        items = [(path, raw)]
    elif isinstance(raw, list) and raw:
        items = [(path + (i,), item) for i, item in enumerate(raw)]
    else:
        ck.invalid(path, raw, "must be a manifest file or a list of them")
        return ()
    return tuple(p for p in (file_field(ck, where, item, base) for where, item in items)
                 if p is not None)


def file_field(ck: Checker, path: Path_, value: Any, base: Path) -> Path | None:
    """A file named relative to the scenario's directory, which must exist."""
    if not ck.is_type(path, value, "string"):
        return None
    resolved = (base / value).resolve()
    if not resolved.is_file():
        ck.invalid(path, value, f"no such file: {resolved}")
    return resolved


def _mapping(ck: Checker, path: Path_, raw: Any, keys: set[str], required: set[str]) -> dict | None:
    """raw as a mapping of `keys`, with every one of `required`; None after recording why not."""
    before = len(ck.problems)
    m = ck.fields(path, raw, keys)
    if m is None:
        return None
    for key in sorted(required):
        if m.get(key) is None or m.get(key) == "":
            ck.required(path + (key,))
    return m if len(ck.problems) == before else None


def namespace_field(ck: Checker, parent: dict, path: Path_) -> str | None:
    """parent's `namespace` (a DNS label), "default" when absent."""
    namespace = ck.string(parent, "namespace", path, default=DEFAULT_NAMESPACE)
    if namespace is None or not ck.names(path + ("namespace",), namespace,
                                         is_dns1123_label(namespace)):
        return None
    return namespace


def _object_name(ck: Checker, parent: dict, key: str, path: Path_) -> str | None:
    """parent[key]: the required name of an object (a DNS subdomain, as most kinds' names)."""
    name = ck.string(parent, key, path, required=True)
    if name is None or not ck.names(path + (key,), name, is_dns1123_subdomain(name)):
        return None
    return name


def node_name(ck: Checker, parent: dict, key: str, path: Path_, required: bool = True,
              what: str = "") -> str | None:
    """parent[key]: the name of a node, the gateway or a client (a DNS label, as topologies
    name them; whether it is one of the topology's is checked against it later). `what` says
    what a missing one is for."""
    if required and what and parent.get(key) in (None, ""):
        ck.required(path + (key,), what)
        return None
    name = ck.string(parent, key, path, required=required)
    if name is None or not ck.names(path + (key,), name, is_dns1123_label(name)):
        return None
    return name


def parse_action(ck: Checker, path: Path_, raw: dict, base: Path):
    """The action of a step holding one of ACTION_KEYS, or None after recording problems."""
    (key,) = [k for k in raw if k in ACTION_KEYS]
    value = raw[key]
    where = path + (key,)
    if key == "apply":
        files = _files(ck, where, value, base)
        return Apply(files) if files else None
    if key == "delete":
        if isinstance(value, dict):
            m = _mapping(ck, where, value, {"kind", "name", "namespace"}, {"kind", "name"})
            if m is None:
                return None
            kind = ck.enum(m, "kind", where, list(KINDS))
            name = _object_name(ck, m, "name", where)
            namespace = namespace_field(ck, m, where)
            if kind is None or name is None or namespace is None:
                return None
            return Delete(kind=kind, name=name, namespace=namespace)
        files = _files(ck, where, value, base)
        return Delete(files=files) if files else None
    if key == "scale":
        m = _mapping(ck, where, value, {"deployment", "replicas", "namespace"}, {"deployment", "replicas"})
        if m is None:
            return None
        name = _object_name(ck, m, "deployment", where)
        replicas = ck.integer(m, "replicas", where, 0, required=True)
        namespace = namespace_field(ck, m, where)
        if name is None or replicas is None or namespace is None:
            return None
        return Scale(namespace, name, replicas)
    if key == "wait":
        return _wait(ck, path, raw)
    if key == "label":
        return _label(ck, where, value)
    if key in ("link", "node", "partition", "heal", "readiness", "shape", "inspect"):
        return _net_fault(ck, where, key, value)
    if key == "kill" and isinstance(value, dict) and "pod" in value:
        m = _mapping(ck, where, value, {"pod", "container"}, {"pod"})
        if m is None:
            return None
        ref = _pod_ref(ck, where + ("pod",), m["pod"])
        container = ck.string(m, "container", where, default="")
        if container and not ck.names(where + ("container",), container, is_dns1123_label(container)):
            return None
        return None if ref is None or container is None else Fault("kill", pod=ref, container=container)
    m = _mapping(ck, where, value, {"agent", "node"}, {"agent"})
    if m is None:
        return None
    agent = ck.enum(m, "agent", where, list(AGENTS))
    if agent is None:
        return None
    if agent != "apiserver" and m.get("node") is None:
        ck.required(where + ("node",), f"which node's {agent}")
        return None
    node = node_name(ck, m, "node", where, required=False)
    if "node" in m and node is None:
        return None
    return Fault(key, agent, node or "")


def _pod_ref(ck: Checker, path: Path_, raw: Any) -> PodRef | None:
    """A pod as NAMESPACE/NAME or NAME (namespace "": the one pod of that name), or
    {selector, namespace, node}: the first that matches."""
    if isinstance(raw, str) and raw:
        ns, slash, name = raw.rpartition("/")
        ok = ck.names(path, name, is_dns1123_subdomain(name))
        if slash:
            ok = ck.names(path, ns, is_dns1123_label(ns)) and ok
        return PodRef(name=name, namespace=ns) if ok else None
    m = _mapping(ck, path, raw, {"selector", "namespace", "node"}, {"selector"})
    if m is None:
        return None
    selector = ck.selector(m, "selector", path, required=True)
    namespace = namespace_field(ck, m, path)
    node = node_name(ck, m, "node", path, required=False)
    if selector is None or namespace is None or ("node" in m and node is None):
        return None
    return PodRef(selector=selector, namespace=namespace, node=node or "")


def _label(ck: Checker, where: Path_, value: Any) -> Label | None:
    """{pod: NS/NAME, labels: {...}} or {namespace: NAME, labels: {...}}: keys and values as
    the API validates labels (ValidateLabels), a null value removes the label."""
    m = _mapping(ck, where, value, {"pod", "namespace", "labels"}, {"labels"})
    if m is None:
        return None
    targets = [k for k in ("pod", "namespace") if k in m]
    if len(targets) != 1:
        if targets:
            ck.forbidden(where, "one of pod or namespace, not both")
        else:
            ck.required(where + ("pod",), "the pod (NAMESPACE/NAME) or namespace to label")
        return None
    before = len(ck.problems)
    ref = namespace = None
    if targets == ["pod"]:
        if not isinstance(m["pod"], str) or not m["pod"]:
            ck.invalid(where + ("pod",), m["pod"], "must be a pod's NAMESPACE/NAME (or NAME)")
        else:
            ref = _pod_ref(ck, where + ("pod",), m["pod"])
    else:
        namespace = node_name(ck, m, "namespace", where)   # a namespace's name: a DNS label
    labels = m["labels"]
    path = where + ("labels",)
    changes: list[tuple[str, str | None]] = []
    if ck.is_type(path, labels, "object"):
        if not labels:
            ck.required(path, "the labels to set (KEY: VALUE) or remove (KEY: null)")
        for key, val in labels.items():
            with ck.line_of(path + (key,)):
                ck.names(path, key, is_qualified_name(str(key)))
            if val is not None and ck.is_type(path + (key,), val, "string"):
                with ck.line_of(path + (key,)):
                    ck.names(path, val, is_label_value(val))
            changes.append((str(key), val))    # a problem above returns None below
    if len(ck.problems) > before or (ref is None and namespace is None):
        return None
    return Label(tuple(changes), ref, namespace or "")


def _quantity(ck: Checker, path: Path_, value: Any, units: dict[str, float],
              what: str) -> float | None:
    """A tc quantity, a decimal number then one of `units` (or none), e.g. 10mbit, 20ms: its
    amount in the base unit (bits per second, microseconds)."""
    if not ck.is_type(path, value, "string"):
        return None
    match = _DECIMAL.fullmatch(value)
    if match is None or match.group(2).lower() not in units:
        ck.invalid(path, value, f"must be {what}: a number and one of "
                                f"{', '.join(u for u in units if u)}")
        return None
    return float(match.group(1)) * units[match.group(2).lower()]


def _loss(ck: Checker, path: Path_, value: Any) -> str | None:
    """netem's loss: a percentage from 0 to 100, with or without %."""
    if not ck.is_type(path, value, "string"):
        return None
    match = _DECIMAL.fullmatch(value)
    if match is None or match.group(2) not in ("", "%") or float(match.group(1)) > 100:
        ck.invalid(path, value, "must be a percentage from 0 to 100, e.g. 1% or 0.5%")
        return None
    return value


def _net_fault(ck: Checker, where: Path_, key: str, value: Any) -> NetFault | None:
    if key == "heal":
        if value != "partition":
            ck.unsupported(where, value, ["partition"])
            return None
        return NetFault("heal")
    if key == "partition":
        if (not isinstance(value, list) or len(value) < 2
                or not all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in value)):
            ck.invalid(where, value, "must be a list of two or more groups of node names, e.g. "
                                     "[[w1], [w2, master]]")
            return None
        before = len(ck.problems)
        group_of: dict[str, int] = {}
        for i, group in enumerate(value):
            for j, name in enumerate(group):
                if not ck.names(where + (i, j), name, is_dns1123_label(name)):
                    continue
                if name in group_of:
                    ck.duplicate(where + (i, j), name, f"already in group {group_of[name]}: "
                                                      "a node or client is in one group only")
                group_of.setdefault(name, i)
        return NetFault("partition", groups=tuple(tuple(g) for g in value)) \
            if len(ck.problems) == before else None
    if key == "inspect":
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in INSPECTIONS:
            ck.invalid(where, value, f"must be a mapping of one of {', '.join(INSPECTIONS)} to a "
                                     "node name")
            return None
        (what, _), = value.items()
        node = node_name(ck, value, what, where)
        return None if node is None else NetFault("inspect", target=node, what=what)
    if key == "readiness":
        m = _mapping(ck, where, value, {"pod", "state"}, {"pod", "state"})
        if m is None:
            return None
        ref = _pod_ref(ck, where + ("pod",), m["pod"])
        state = ck.enum(m, "state", where, ["pass", "fail"])
        return None if ref is None or state is None else NetFault("readiness", pod=ref, up=state == "pass")
    if key == "shape":
        m = _mapping(ck, where, value, {"node", "rate", "delay", "loss"}, {"node"})
        if m is None:
            return None
        before = len(ck.problems)
        node = node_name(ck, m, "node", where)
        bits = _quantity(ck, where + ("rate",), m["rate"], _RATE_UNITS, "a rate") \
            if "rate" in m else None
        micros = _quantity(ck, where + ("delay",), m["delay"], _TIME_UNITS, "a delay") \
            if "delay" in m else None
        loss = _loss(ck, where + ("loss",), m["loss"]) if "loss" in m else None
        if bits == 0:
            ck.invalid(where + ("rate",), m["rate"], "must be greater than 0")
        elif bits is not None and bits < MIN_RATE_BITS:
            ck.invalid(where + ("rate",), m["rate"], "must be at least 8bit: tc counts whole "
                                                     "bytes per second")
        elif bits is not None and bits > MAX_RATE_BITS:
            ck.invalid(where + ("rate",), m["rate"], "must be at most 687gbit: tbf queues "
                       "the rate times 50ms in a 32-bit byte count")
        if micros is not None and int(micros) > MAX_DELAY_US:
            ck.invalid(where + ("delay",), m["delay"], f"must be at most {MAX_DELAY_US}us "
                       "(netem counts a delay in 32 bits of 64ns ticks)")
        if len(ck.problems) > before or node is None:
            return None
        return NetFault("shape", target=node, rate=m.get("rate"), delay=m.get("delay"),
                        loss=loss)
    name_key = "node" if key == "link" else "name"
    m = _mapping(ck, where, value, {name_key, "state"}, {name_key, "state"})
    if m is None:
        return None
    node = node_name(ck, m, name_key, where)
    state = ck.enum(m, "state", where, ["up", "down"])
    return None if node is None or state is None else NetFault(key, target=node, up=state == "up")


def _wait(ck: Checker, path: Path_, raw: dict) -> Wait | None:
    where = path + ("wait",)
    value = raw["wait"]
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in WAITS:
        ck.invalid(where, value, f"must be a mapping with one of {', '.join(WAITS)}")
        return None
    (what, spec), = value.items()
    keys = {"ready": ({"selector", "namespace", "count"}, {"selector"}),
            "endpoints": ({"service", "namespace", "count"}, {"service"}),
            "loadBalancer": ({"service", "namespace"}, {"service"})}[what]
    timeout = ck.number(raw, "timeout", path, minimum=0, above=True, default=60.0,
                        maximum=MAX_SECONDS, unit=DAY)
    m = _mapping(ck, where + (what,), spec, *keys)
    if m is None or timeout is None:
        return None
    wp = where + (what,)
    if what == "ready":
        target = ck.selector(m, "selector", wp, required=True)
    else:
        target = ck.string(m, "service", wp, required=True)
        if target is not None and not ck.names(wp + ("service",), target, is_dns1035_label(target)):
            target = None
    namespace = namespace_field(ck, m, wp)
    count = ck.integer(m, "count", wp, 0)
    if target is None or namespace is None or (m.get("count") is not None and count is None):
        return None
    return Wait(what, namespace, target, count, timeout)


def describe(action) -> str:
    if isinstance(action, Apply):
        return "apply " + ", ".join(p.name for p in action.files)
    if isinstance(action, Delete):
        return "delete " + (", ".join(p.name for p in action.files) or f"{action.kind} {action.namespace}/{action.name}")
    if isinstance(action, Scale):
        return f"scale deployment {action.namespace}/{action.name} to {action.replicas}"
    if isinstance(action, Wait):
        count = "" if action.count is None else f" = {action.count}"
        return f"wait for {action.what} {action.namespace}/{action.target}{count}"
    if isinstance(action, Label):
        return action.describe()
    if isinstance(action, NetFault):
        if action.kind == "partition":
            return "partition " + " | ".join(",".join(g) for g in action.groups)
        if action.kind == "heal":
            return "heal the partition"
        if action.kind == "readiness":
            return f"readiness of {action.pod.describe()}: {'pass' if action.up else 'fail'}"
        if action.kind == "shape":
            conditions = [f"{k} {v}" for k, v in (("rate", action.rate), ("delay", action.delay),
                                                   ("loss", action.loss)) if v]
            return f"shape {action.target}: {', '.join(conditions) or 'none'}"
        if action.kind == "inspect":
            return f"inspect {action.what} on {action.target}"
        return f"{action.kind} {action.target} {'up' if action.up else 'down'}"
    if action.pod is not None:
        return f"kill {action.container or 'every container'} of {action.pod.describe()}"
    return f"{action.action} {action.agent}" + (f" on {action.node}" if action.node else "")
