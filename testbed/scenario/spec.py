"""Pure: scenario files -> a frozen `Scenario` of steps; every problem reported at once.

A scenario names a topology, the manifests to apply (ordinary Kubernetes YAML), and steps.
Paths are relative to the scenario file. A step is a mapping with one action key:

    - probe: icmp | tcp | udp | http     # from a pod, node, gateway or client
      from: pod-a
      to: pod-b:8080                     # a name or IP, with :port for tcp/udp; a URL for http
      expect: reachable                  # or unreachable, or a mapping (see Expect)
    - sleep: 1.5

Names in `from`/`to` are checked against the topology and the manifests' pods before anything
is built, so a typo is exit 2, not a failed step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from testbed.scenario.actions import ACTION_KEYS, describe, parse_action
from testbed.spec.source import Document, Problems, read_one

PROBES = ("icmp", "tcp", "udp", "http", "dns")
DNS_RECORDS = ("A", "SRV", "PTR", "CNAME", "AAAA", "TXT")
TOP_KEYS = {"name", "description", "topology", "manifests", "steps", "kubeProxy", "addons"}
PROXY_MODES = ("iptables", "nftables", "userspace")
PROBE_KEYS = {"probe", "name", "from", "to", "expect", "timeout", "payload", "headers", "retryFor", "tries",
              "record"}
EXPECT_KEYS = {"reachable", "sourceIP", "status", "bodyContains", "reply", "backends", "answer"}
BACKEND_KEYS = {"selector", "namespace", "nodes", "all"}
SLEEP_KEYS = {"sleep", "name"}
STEP_ACTIONS = ("probe", "sleep", *ACTION_KEYS)


@dataclass(frozen=True)
class Backends:
    """Which pods must answer over a probe's tries: those matching `selector` (on `nodes`),
    and with `all` every one of them at least once."""

    selector: str
    namespace: str = "default"
    nodes: tuple[str, ...] = ()
    all: bool = True


@dataclass(frozen=True)
class Expect:
    reachable: bool = True
    source_ip: str | None = None      # a name or an IP: what the server must see as the client
    status: int | None = None         # http
    body_contains: str | None = None  # http
    reply: str | None = None          # udp: the reply must contain this; dns: an answer must
    backends: Backends | None = None  # tcp, http: who answered over the tries

    def describe(self) -> str:
        if not self.reachable:
            return "unreachable"
        parts = ["reachable"]
        if self.source_ip:
            parts.append(f"source {self.source_ip}")
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.body_contains is not None:
            parts.append(f"body has {self.body_contains!r}")
        if self.reply is not None:
            parts.append(f"reply has {self.reply!r}")
        if self.backends is not None:
            b = self.backends
            where = f" on {', '.join(b.nodes)}" if b.nodes else ""
            parts.append(f"{'every' if b.all else 'only'} {b.selector} pod{where} answers")
        return ", ".join(parts)


@dataclass(frozen=True)
class Target:
    host: str                 # a name or an IP (a node's name for a nodePort target)
    port: int | None = None
    path: str = "/"
    service: str = ""         # nodePort / loadBalancer targets: namespace/name of the Service
    via: str = ""             # "nodePort" or "loadBalancer": the address is read at run time
    service_port: str = ""    # which port of the Service (name or number; default: the first)


@dataclass(frozen=True)
class Probe:
    kind: str
    source: str
    target: Target
    expect: Expect
    timeout: float = 2.0
    retry_for: float = 0.0
    payload: str = "hostname"
    headers: tuple[tuple[str, str], ...] = ()
    tries: int = 1
    record: str = "A"                 # dns


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Step:
    name: str
    line: int
    action: object       # Probe, Sleep, or an action of actions.py


@dataclass(frozen=True)
class Scenario:
    name: str
    file: str
    description: str
    topology: Path
    manifests: tuple[Path, ...]
    steps: tuple[Step, ...] = field(default_factory=tuple)
    proxy_modes: tuple[tuple[str, str], ...] = ()   # (node or "*", mode) over the topology's
    addons: tuple[str, ...] = ()                     # add-ons beyond the topology's


def load_scenario(path: str | Path) -> Scenario:
    return build_scenario(read_one(path))


def _number(problems: Problems, doc: Document, path: tuple, value: Any, low: float = 0) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        problems.add(doc, path, f"must be a number of seconds >= {low}")
        return None
    return float(value)


def _unknown(problems: Problems, doc: Document, path: tuple, data: dict, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.add(doc, path + (key,), f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def build_scenario(doc: Document) -> Scenario:
    problems = Problems()
    data = doc.data
    _unknown(problems, doc, (), data, TOP_KEYS)
    base = Path(doc.file).parent
    name = data.get("name", Path(doc.file).stem)
    if not isinstance(name, str) or not name:
        problems.add(doc, ("name",), "must be a non-empty string")
    topology = data.get("topology")
    topo_path = base / "topology.yaml"
    if not isinstance(topology, str):
        problems.add(doc, ("topology",), "Required value: the topology file to build")
    else:
        topo_path = (base / topology).resolve()
        if not topo_path.is_file():
            problems.add(doc, ("topology",), f"no such file: {topo_path}")
    manifests: list[Path] = []
    raw = data.get("manifests", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        problems.add(doc, ("manifests",), "must be a list of files")
        raw = []
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            problems.add(doc, ("manifests", i), "must be a file name")
            continue
        p = (base / item).resolve()
        if not p.is_file():
            problems.add(doc, ("manifests", i), f"no such file: {p}")
        manifests.append(p)
    steps = []
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list):
        problems.add(doc, ("steps",), "must be a list")
        raw_steps = []
    for i, raw_step in enumerate(raw_steps):
        step = _step(problems, doc, ("steps", i), raw_step)
        if step is not None:
            steps.append(step)
    proxy_modes = _proxy_modes(problems, doc, data.get("kubeProxy"))
    addons = data.get("addons", [])
    if not isinstance(addons, list) or not all(isinstance(a, str) for a in addons):
        problems.add(doc, ("addons",), "must be a list of add-on names")
        addons = []
    problems.raise_if_any()
    return Scenario(name, doc.file, str(data.get("description", "")).strip(), topo_path,
                    tuple(manifests), tuple(steps), proxy_modes, tuple(addons))


def _proxy_modes(problems: Problems, doc: Document, raw: Any) -> tuple[tuple[str, str], ...]:
    """kubeProxy: {mode: userspace, nodes: {node2: iptables}} over the topology's modes."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.add(doc, ("kubeProxy",), "must be a mapping of mode and nodes")
        return ()
    _unknown(problems, doc, ("kubeProxy",), raw, {"mode", "nodes"})
    out = []
    if "mode" in raw:
        if raw["mode"] not in PROXY_MODES:
            problems.add(doc, ("kubeProxy", "mode"), f"must be one of {', '.join(PROXY_MODES)}")
        else:
            out.append(("*", raw["mode"]))
    nodes = raw.get("nodes", {})
    if not isinstance(nodes, dict):
        problems.add(doc, ("kubeProxy", "nodes"), "must map node names to modes")
        nodes = {}
    for node, mode in nodes.items():
        if mode not in PROXY_MODES:
            problems.add(doc, ("kubeProxy", "nodes", node), f"must be one of {', '.join(PROXY_MODES)}")
        else:
            out.append((str(node), mode))
    return tuple(out)


def _step(problems: Problems, doc: Document, path: tuple, raw: Any) -> Step | None:
    if not isinstance(raw, dict):
        problems.add(doc, path, f"a step must be a mapping with one action ({', '.join(STEP_ACTIONS)})")
        return None
    line = doc.line(path)
    chosen = [k for k in raw if k in STEP_ACTIONS]
    if len(chosen) > 1:
        problems.add(doc, path, f"a step has one action, this one has {', '.join(chosen)}")
        return None
    if chosen and chosen[0] in ACTION_KEYS:
        _unknown(problems, doc, path, raw, {chosen[0], "name", "timeout"} if chosen[0] == "wait" else {chosen[0], "name"})
        action = parse_action(problems, doc, path, raw, Path(doc.file).parent)
        return None if action is None else Step(str(raw.get("name", describe(action))), line, action)
    if "probe" in raw:
        _unknown(problems, doc, path, raw, PROBE_KEYS)
        probe = _probe(problems, doc, path, raw)
        if probe is None:
            return None
        default = f"{probe.kind} {probe.source} -> {_show_target(probe)}"
        return Step(str(raw.get("name", default)), line, probe)
    if "sleep" in raw:
        _unknown(problems, doc, path, raw, SLEEP_KEYS)
        seconds = _number(problems, doc, path + ("sleep",), raw["sleep"])
        return None if seconds is None else Step(str(raw.get("name", f"sleep {seconds:g}s")), line, Sleep(seconds))
    problems.add(doc, path, f"no action: a step needs one of {', '.join(STEP_ACTIONS)} "
                            f"(has {', '.join(map(str, raw)) or 'nothing'})")
    return None


def _show_target(probe: Probe) -> str:
    t = probe.target
    if t.via == "nodePort":
        return f"{t.host}:nodePort({t.service}{':' + t.service_port if t.service_port else ''})"
    if t.via == "loadBalancer":
        return f"loadBalancer({t.service}{':' + t.service_port if t.service_port else ''})"
    if probe.kind == "http":
        return f"http://{t.host}{':' + str(t.port) if t.port else ''}{t.path}"
    return f"{t.host}:{t.port}" if t.port else t.host


def _probe(problems: Problems, doc: Document, path: tuple, raw: dict) -> Probe | None:
    kind = raw["probe"]
    ok = True
    if kind not in PROBES:
        problems.add(doc, path + ("probe",), f"must be one of {', '.join(PROBES)}, not {kind!r}")
        return None
    source = raw.get("from")
    if not isinstance(source, str) or not source:
        problems.add(doc, path + ("from",), "Required value: the pod, node or client to probe from")
        ok = False
    target = _target(problems, doc, path + ("to",), kind, raw.get("to"))
    expect = _expect(problems, doc, path + ("expect",), kind, raw.get("expect", "reachable"))
    timeout = _number(problems, doc, path + ("timeout",), raw.get("timeout", 2.0), 0.1)
    retry_for = _number(problems, doc, path + ("retryFor",), raw.get("retryFor", 0))
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, (str, int)) for v in headers.values()):
        problems.add(doc, path + ("headers",), "must map header names to values")
        headers = {}
    elif headers and kind != "http":
        problems.add(doc, path + ("headers",), "only http probes send headers")
    record = raw.get("record", "A")
    if record not in DNS_RECORDS or (record != "A" and kind != "dns"):
        problems.add(doc, path + ("record",), f"a dns probe's record type, one of {', '.join(DNS_RECORDS)}")
        record = "A"
    tries = raw.get("tries", 1)
    if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= 1000:
        problems.add(doc, path + ("tries",), "must be a whole number from 1 to 1000")
        tries = 1
    payload = raw.get("payload", "hostname")
    if not isinstance(payload, str):
        problems.add(doc, path + ("payload",), "must be a string")
    if not ok or target is None or expect is None or timeout is None or retry_for is None:
        return None
    return Probe(kind, source, target, expect, timeout, retry_for, str(payload),
                 tuple((str(k), str(v)) for k, v in headers.items()), tries, record)


def _service_target(problems: Problems, doc: Document, path: tuple, kind: str, raw: dict) -> Target | None:
    """`to: {service: NS/NAME, nodePort: PORT, node: w1}` or `{service: NAME, loadBalancer: PORT}`."""
    keys = {"service", "nodePort", "loadBalancer", "node", "path"}
    _unknown(problems, doc, path, raw, keys)
    via = [k for k in ("nodePort", "loadBalancer") if k in raw]
    if "service" not in raw or len(via) != 1 or kind not in ("tcp", "http", "udp"):
        problems.add(doc, path, "a Service target needs service and one of nodePort (with node) or "
                                "loadBalancer, naming the Service's port, for tcp, udp or http")
        return None
    if via == ["nodePort"] and not isinstance(raw.get("node"), str):
        problems.add(doc, path + ("node",), "Required value: the node whose address to use")
        return None
    service = str(raw["service"])
    if "/" not in service:
        service = f"default/{service}"
    port = raw[via[0]]
    port = "" if port is True else str(port)
    return Target(str(raw.get("node", "")), None, str(raw.get("path", "/")), service, via[0], port)


def _target(problems: Problems, doc: Document, path: tuple, kind: str, raw: Any) -> Target | None:
    if isinstance(raw, dict):
        return _service_target(problems, doc, path, kind, raw)
    if not isinstance(raw, str) or not raw:
        problems.add(doc, path, "Required value: a name or IP (with :port for tcp/udp, a URL for http)")
        return None
    if kind == "http":
        url = raw if "://" in raw else f"http://{raw}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            problems.add(doc, path, f"not an http URL: {raw!r}")
            return None
        try:
            port = 80 if parts.port is None else parts.port
        except ValueError:
            port = -1
        if not 1 <= port <= 65535:
            problems.add(doc, path, f"bad port in {raw!r}: must be from 1 to 65535")
            return None
        return Target(parts.hostname, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    host, _, port_text = raw.rpartition(":") if ":" in raw else (raw, "", "")
    if kind == "dns":
        # The name to resolve, exactly as a program in the pod would ask for it (the pod's
        # search list applies): service-test, service-test.default, or a full name.
        return Target(raw)
    if kind == "icmp":
        if port_text:
            problems.add(doc, path, "an icmp probe takes no port")
            return None
        return Target(raw)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        problems.add(doc, path, f"{kind} needs NAME:PORT with a port from 1 to 65535, not {raw!r}")
        return None
    return Target(host, int(port_text))


def _expect(problems: Problems, doc: Document, path: tuple, kind: str, raw: Any) -> Expect | None:
    if raw in ("reachable", "unreachable"):
        return Expect(reachable=raw == "reachable")
    if not isinstance(raw, dict):
        problems.add(doc, path, "must be reachable, unreachable, or a mapping of "
                                f"{', '.join(sorted(EXPECT_KEYS))}")
        return None
    _unknown(problems, doc, path, raw, EXPECT_KEYS)
    reachable = raw.get("reachable", True)
    if not isinstance(reachable, bool):
        problems.add(doc, path + ("reachable",), "must be true or false")
        return None
    allowed = {"icmp": set(), "tcp": {"sourceIP", "backends"}, "udp": {"reply"}, "dns": {"answer"},
               "http": {"sourceIP", "status", "bodyContains", "backends"}}
    for key in raw:
        if key in EXPECT_KEYS - {"reachable"} and key not in allowed[kind]:
            problems.add(doc, path + (key,), f"{'an' if kind in ('icmp', 'http') else 'a'} {kind} probe cannot check {key}")
    if not reachable and len(raw) > 1:
        problems.add(doc, path, "an unreachable expectation takes no other checks")
    status = raw.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        problems.add(doc, path + ("status",), "must be an HTTP status from 100 to 599")
    for key in ("sourceIP", "bodyContains", "reply", "answer"):
        if key in raw and not isinstance(raw[key], str):
            problems.add(doc, path + (key,), "must be a string")
    backends = None
    if "backends" in raw:
        b = raw["backends"]
        if not isinstance(b, dict) or "selector" not in b:
            problems.add(doc, path + ("backends",), "must be a mapping with a selector (and namespace, nodes, all)")
        else:
            _unknown(problems, doc, path + ("backends",), b, BACKEND_KEYS)
            nodes = b.get("nodes", [])
            if isinstance(nodes, str):
                nodes = [nodes]
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                problems.add(doc, path + ("backends", "nodes"), "must be a list of node names")
                nodes = []
            if not isinstance(b.get("all", True), bool):
                problems.add(doc, path + ("backends", "all"), "must be true or false")
            backends = Backends(str(b["selector"]), str(b.get("namespace", "default")), tuple(nodes),
                                bool(b.get("all", True)))
    reply = raw.get("answer") if kind == "dns" else raw.get("reply")
    return Expect(reachable, raw.get("sourceIP"), status, raw.get("bodyContains"), reply, backends)
