"""Pure: scenario steps that change the cluster (apply, delete, scale, wait, kill, restart).

    - apply: manifests/more.yaml            # a file or a list of files, through the API server
    - delete: manifests/more.yaml           # the objects of those files
    - delete: {kind: Pod, name: pod-b}      # or one object (namespace default)
    - scale: {deployment: service-test, replicas: 2}
    - wait: {ready: {selector: app=web, count: 4}}          # pods Ready (namespace default)
    - wait: {endpoints: {service: service-test, count: 4}}  # ready endpoints of a Service
    - wait: {loadBalancer: {service: web}}                   # an address in the Service's status
      timeout: 30
    - kill: {agent: kube-proxy, node: w1}   # apiserver (on the master), kubelet, kube-proxy
    - restart: {agent: kube-proxy, node: w1}
    - kill: {pod: {selector: k8s-app=kube-dns, namespace: kube-system}, container: dnsmasq}
    - link: {node: w1, state: down}         # the node's uplink; up again with state: up
    - node: {name: w2, state: down}         # uplink down and its kubelet/kube-proxy stopped
    - partition: [[w1], [w2, master]]       # DROP between the groups at the gateway
    - heal: partition
    - readiness: {pod: pod-b, state: fail}  # the pod fails its node's probes (pass to mend)
    - shape: {node: w1, rate: 10mbit}       # or delay: 20ms, loss: 1% (these need netem)
    - inspect: {nat: w1}                    # nat, nft, conntrack, routes, bridge, ps

Paths are relative to the scenario file; their manifests are loaded and checked with the
scenario, before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.spec.source import Document, Problems

AGENTS = ("apiserver", "kubelet", "kube-proxy")
WAITS = ("ready", "endpoints", "loadBalancer")
KINDS = ("Pod", "Service", "Deployment", "EndpointSlice", "Ingress", "Namespace")


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
    """A pod by name, or the first pod matching a selector (on a node)."""

    name: str = ""
    selector: str = ""
    namespace: str = "default"
    node: str = ""

    def describe(self) -> str:
        if self.name:
            return self.name
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
    what: str = ""             # inspect: nat, nft, conntrack, routes, bridge, ps


ACTION_KEYS = ("apply", "delete", "scale", "wait", "kill", "restart", "link", "node", "partition",
               "heal", "readiness", "shape", "inspect")
INSPECTIONS = ("nat", "nft", "conntrack", "routes", "bridge", "ps")


def _files(problems: Problems, doc: Document, path: tuple, raw: Any, base: Path) -> tuple[Path, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        problems.add(doc, path, "must be a manifest file or a list of them")
        return ()
    out = []
    for i, item in enumerate(items):
        where = path + (i,) if isinstance(raw, list) else path
        if not isinstance(item, str):
            problems.add(doc, where, "must be a file name")
            continue
        p = (base / item).resolve()
        if not p.is_file():
            problems.add(doc, where, f"no such file: {p}")
        out.append(p)
    return tuple(out)


def _mapping(problems: Problems, doc: Document, path: tuple, raw: Any, keys: set[str], required: set[str]) -> dict | None:
    if not isinstance(raw, dict):
        problems.add(doc, path, f"must be a mapping with {', '.join(sorted(required))}")
        return None
    ok = True
    for key in raw:
        if key not in keys:
            problems.add(doc, path + (key,), f"unknown field (expected one of: {', '.join(sorted(keys))})")
            ok = False
    for key in sorted(required - set(raw)):
        problems.add(doc, path + (key,), "Required value")
        ok = False
    return raw if ok else None


def parse_action(problems: Problems, doc: Document, path: tuple, raw: dict, base: Path):
    """The action of a step holding one of ACTION_KEYS, or None after recording problems."""
    (key,) = [k for k in raw if k in ACTION_KEYS]
    value = raw[key]
    where = path + (key,)
    if key == "apply":
        files = _files(problems, doc, where, value, base)
        return Apply(files) if files else None
    if key == "delete":
        if isinstance(value, dict):
            m = _mapping(problems, doc, where, value, {"kind", "name", "namespace"}, {"kind", "name"})
            if m is None:
                return None
            if m["kind"] not in KINDS:
                problems.add(doc, where + ("kind",), f"must be one of {', '.join(KINDS)}")
                return None
            return Delete(kind=m["kind"], name=str(m["name"]), namespace=str(m.get("namespace", "default")))
        files = _files(problems, doc, where, value, base)
        return Delete(files=files) if files else None
    if key == "scale":
        m = _mapping(problems, doc, where, value, {"deployment", "replicas", "namespace"}, {"deployment", "replicas"})
        if m is None:
            return None
        replicas = m["replicas"]
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            problems.add(doc, where + ("replicas",), "must be a whole number >= 0")
            return None
        return Scale(str(m.get("namespace", "default")), str(m["deployment"]), replicas)
    if key == "wait":
        return _wait(problems, doc, path, raw)
    if key in ("link", "node", "partition", "heal", "readiness", "shape", "inspect"):
        return _net_fault(problems, doc, where, key, value)
    if key == "kill" and isinstance(value, dict) and "pod" in value:
        m = _mapping(problems, doc, where, value, {"pod", "container"}, {"pod"})
        ref = _pod_ref(problems, doc, where + ("pod",), value.get("pod")) if m is not None else None
        return None if ref is None else Fault("kill", pod=ref, container=str(m.get("container", "")))
    m = _mapping(problems, doc, where, value, {"agent", "node"}, {"agent"})
    if m is None:
        return None
    if m["agent"] not in AGENTS:
        problems.add(doc, where + ("agent",), f"must be one of {', '.join(AGENTS)}, not {m['agent']!r}")
        return None
    if m["agent"] != "apiserver" and "node" not in m:
        problems.add(doc, where + ("node",), f"Required value: which node's {m['agent']}")
        return None
    return Fault(key, m["agent"], str(m.get("node", "")))


def _pod_ref(problems: Problems, doc: Document, path: tuple, raw: Any) -> PodRef | None:
    if isinstance(raw, str) and raw:
        ns, _, name = raw.rpartition("/")
        return PodRef(name=name, namespace=ns or "default")
    m = _mapping(problems, doc, path, raw, {"selector", "namespace", "node"}, {"selector"})
    if m is None:
        return None
    return PodRef(selector=str(m["selector"]), namespace=str(m.get("namespace", "default")), node=str(m.get("node", "")))


def _state(problems: Problems, doc: Document, path: tuple, raw: Any, words: tuple[str, str]) -> bool | None:
    if raw not in words:
        problems.add(doc, path, f"must be {words[0]} or {words[1]}")
        return None
    return raw == words[0]


def _net_fault(problems: Problems, doc: Document, where: tuple, key: str, value: Any) -> NetFault | None:
    if key == "heal":
        if value != "partition":
            problems.add(doc, where, "must be partition")
            return None
        return NetFault("heal")
    if key == "partition":
        if (not isinstance(value, list) or len(value) < 2
                or not all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in value)):
            problems.add(doc, where, "must be a list of two or more groups of node names, e.g. [[w1], [w2, master]]")
            return None
        return NetFault("partition", groups=tuple(tuple(g) for g in value))
    if key == "inspect":
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in INSPECTIONS:
            problems.add(doc, where, f"must be a mapping of one of {', '.join(INSPECTIONS)} to a node name")
            return None
        (what, node), = value.items()
        return NetFault("inspect", target=str(node), what=what)
    if key == "readiness":
        m = _mapping(problems, doc, where, value, {"pod", "state"}, {"pod", "state"})
        if m is None:
            return None
        ref = _pod_ref(problems, doc, where + ("pod",), m["pod"])
        ok = _state(problems, doc, where + ("state",), m["state"], ("pass", "fail"))
        return None if ref is None or ok is None else NetFault("readiness", pod=ref, up=ok)
    if key == "shape":
        m = _mapping(problems, doc, where, value, {"node", "rate", "delay", "loss"}, {"node"})
        if m is None:
            return None
        for field_name in ("rate", "delay", "loss"):
            if field_name in m and not isinstance(m[field_name], str):
                problems.add(doc, where + (field_name,), "must be a string such as 10mbit, 20ms or 1%")
                return None
        return NetFault("shape", target=str(m["node"]), rate=m.get("rate"), delay=m.get("delay"), loss=m.get("loss"))
    name_key = "node" if key == "link" else "name"
    m = _mapping(problems, doc, where, value, {name_key, "state"}, {name_key, "state"})
    if m is None:
        return None
    up = _state(problems, doc, where + ("state",), m["state"], ("up", "down"))
    return None if up is None else NetFault(key, target=str(m[name_key]), up=up)


def _wait(problems: Problems, doc: Document, path: tuple, raw: dict) -> Wait | None:
    where = path + ("wait",)
    value = raw["wait"]
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in WAITS:
        problems.add(doc, where, f"must be a mapping with one of {', '.join(WAITS)}")
        return None
    (what, spec), = value.items()
    keys = {"ready": ({"selector", "namespace", "count"}, {"selector"}),
            "endpoints": ({"service", "namespace", "count"}, {"service"}),
            "loadBalancer": ({"service", "namespace"}, {"service"})}[what]
    m = _mapping(problems, doc, where + (what,), spec, *keys)
    timeout = raw.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        problems.add(doc, path + ("timeout",), "must be a number of seconds > 0")
        return None
    if m is None:
        return None
    count = m.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        problems.add(doc, where + (what, "count"), "must be a whole number >= 0")
        return None
    target = str(m.get("selector") or m.get("service"))
    return Wait(what, str(m.get("namespace", "default")), target, count, float(timeout))


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
