"""Pure: scenario files -> a frozen `Scenario` of steps; every problem reported at once.

A scenario names a topology, the manifests to apply (ordinary Kubernetes YAML), and steps.
Paths are relative to the scenario file (not the working directory), and each must be a file
testbed.spec.userfile would read (regular, not too large, readable by the user who ran sudo). A step is a mapping with one action key:

    - probe: icmp | tcp | udp | http     # from a pod, node, gateway or client
      from: pod-a
      to: pod-b:8080                     # a name or IP, with :port for tcp/udp; a URL for http
      expect: reachable                  # or unreachable, or a mapping (see Expect)
    - probe: tcp
      from: x/a                          # a pod in another namespace: NAMESPACE/NAME
      to: y/b:81
      expect: {reachable: false, reason: timeout}   # or refused: why it must be unreachable
    - probe: udp                         # {unreachable: refused} says the same shorter
      from: client
      to: service-test:80
      sourcePort: 12345                  # tcp, udp: the client's port is fixed
      tries: 10
      expect: {backends: {same: true}}   # one pod answered every try (session affinity)
    - probe: dns
      transport: tcp                     # dig +tcp
      from: client
      to: kubernetes.default
    - run: ...; get: ...; kubeProxy: {node: w1, sync: full}   # testbed.scenario.runget
    - sleep: 1.5
    - reachability: {pods: [x/a, x/b], ports: [tcp/80]}   # testbed.scenario.reachability
      expect: {allow: all, except: ["x/b -> x/a"]}
    - capture: {host: node1, filter: udp port 8472,     # tcpdump on node1-eth0 (or interface:)
                while: {probe: icmp, from: pod-1, to: pod-3}}
      expect: {seen: true, shows: ["10.0.1.2 > 10.0.2.2"]}   # or seen: false
    - route: {host: gateway, to: 10.0.2.0/24}          # the host's route to exactly that prefix
      expect: {via: node2, proto: bird}                 # or dev:, or expect: absent
      timeout: 15                                       # wait up to 15 s for it to hold

Any step may say under which pod networks it holds (`when: {routing: [gateway, bgp]}`, or
`plugin: cni`): a trace through the gateway router holds only where the gateway routes pods.
Under another pod network the step is skipped, and reported so.

`reason: refused` wants something back that refuses (a TCP reset, an ICMP port unreachable);
`reason: timeout` wants nothing back at all, which is what a NetworkPolicy's drop looks like.

Names in `from`/`to` are checked against the topology and the manifests' pods before anything
is built, so a typo is exit 2, not a failed step; so is a bare pod name that more than one
namespace has (testbed.scenario.preflight).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from testbed.api.meta import DEFAULT_NAMESPACE
from testbed.scenario.actions import (
    ACTION_KEYS,
    DAY,
    MAX_SECONDS,
    describe,
    file_field,
    namespace_field,
    node_name,
    parse_action,
)
from testbed.scenario.reachability import Reachability, parse_reachability
from testbed.scenario.runget import (
    GetField,
    ProxySync,
    RunCommand,
    parse_get,
    parse_proxy_sync,
    parse_run,
)
from testbed.scenario.trace_step import parse_trace
from testbed.spec.source import Document, Path_, SpecError, read_one
from testbed.spec.topology import (
    ADDONS,
    POD_NETWORK_PLUGINS,
    POLICY_MODES,
    PROXY_MODES,
    ROUTING_MODES,
    parse_pod_network,
)
from testbed.spec.validation import (
    Checker,
    is_cidr,
    is_dns1035_label,
    is_dns1123_label,
    is_port_number,
)

PROBES = ("icmp", "tcp", "udp", "http", "dns")
DNS_RECORDS = ("A", "SRV", "PTR", "CNAME", "AAAA", "TXT")
TOP_KEYS = {"name", "description", "topology", "manifests", "steps", "kubeProxy", "networkPolicy",
            "addons", "podNetwork"}
PROBE_KEYS = {"probe", "name", "from", "to", "expect", "timeout", "payload", "headers", "retryFor", "tries",
              "record", "transport", "sourcePort"}
EXPECT_KEYS = {"reachable", "sourceIP", "status", "bodyContains", "reply", "backends", "answer",
               "reason", "unreachable"}
TRANSPORTS = ("udp", "tcp")   # a dns probe's: how the resolver asks (dig +tcp)
# Why a probe found its target unreachable (testbed.emu.probes' Observation.failure): refused
# (a TCP reset, an ICMP port unreachable), timeout (nothing came back).
REASONS = ("refused", "timeout")
BACKEND_KEYS = {"selector", "namespace", "nodes", "all", "same"}
SLEEP_KEYS = {"sleep", "name"}
STEP_ACTIONS = ("probe", "sleep", "reachability", "trace", "capture", "route", "run", "get",
                "kubeProxy", *ACTION_KEYS)
CAPTURE_KEYS = {"host", "interface", "filter", "while"}
CAPTURE_EXPECT_KEYS = {"seen", "shows"}
ROUTE_KEYS = {"host", "to"}
ROUTE_EXPECT_KEYS = {"via", "dev", "proto", "absent"}
MAX_TRIES = 1000
WHEN = {"routing": ROUTING_MODES, "plugin": POD_NETWORK_PLUGINS}   # a step's `when:` keys


@dataclass(frozen=True)
class Backends:
    """Which pods must answer over a probe's tries: those matching `selector` (on `nodes`),
    and with `all` every one of them at least once; with `same`, one pod (whichever it is:
    session affinity) answered every try, one of the selector's when there is a selector."""

    selector: str
    namespace: str = "default"
    nodes: tuple[str, ...] = ()
    all: bool = True
    same: bool = False

    def describe(self) -> str:
        where = f" on {', '.join(self.nodes)}" if self.nodes else ""
        if self.same:
            among = f" of the {self.selector} pods{where}" if self.selector else ""
            return f"every answer from the same pod{among}"
        return f"{'every' if self.all else 'only'} {self.selector} pod{where} answers"


@dataclass(frozen=True)
class Expect:
    reachable: bool = True
    source_ip: str | None = None      # a name or an IP: what the server must see as the client
    status: int | None = None         # http
    body_contains: str | None = None  # http
    reply: str | None = None          # udp: the reply must contain this; dns: an answer must
    backends: Backends | None = None  # tcp, udp, http: who answered over the tries
    reason: str | None = None         # unreachable: refused or timeout

    def describe(self) -> str:
        if not self.reachable:
            return f"unreachable ({self.reason})" if self.reason else "unreachable"
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
            parts.append(self.backends.describe())
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
    transport: str = "udp"            # dns: udp, or tcp (dig +tcp)
    source_port: int | None = None    # tcp, udp: the client's port (bound before connecting)


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Capture:
    """tcpdump on a host's interface while a probe runs: were packets matching `filter`
    seen (or not), and does the decoded text show each of `shows`?"""

    host: str
    interface: str             # "" for the host's uplink (NAME-eth0)
    filter: str                # a pcap filter expression, as tcpdump takes it
    probe: Probe
    seen: bool = True
    shows: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"{self.host}:{self.interface}" if self.interface else self.host
        what = "packets" if self.seen else "no packets"
        return f"{what} matching {self.filter!r} on {where}" + "".join(f", showing {s!r}" for s in self.shows)


@dataclass(frozen=True)
class RouteCheck:
    """A host's kernel route to `to` (exactly that prefix): present via `via` (a host's name or
    an address), out of `dev`, installed by `proto`; or `absent`. Waited for up to `timeout`."""

    host: str
    to: str
    via: str | None = None
    dev: str | None = None
    proto: str | None = None
    absent: bool = False
    timeout: float = 0.0

    def describe(self) -> str:
        if self.absent:
            return f"no route to {self.to} on {self.host}"
        parts = [f"a route to {self.to} on {self.host}"]
        parts += [f"{k} {v}" for k, v in (("via", self.via), ("dev", self.dev), ("proto", self.proto)) if v]
        return " ".join(parts)


@dataclass(frozen=True)
class Step:
    name: str
    line: int
    action: object       # Probe, Sleep, Reachability, or an action of actions.py
    # when: the pod networks the step holds under, as (field, allowed values): ("routing",
    # ("gateway", "bgp")), ("plugin", ("cni",)); under any other the step is skipped.
    when: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def skipped_under(self, pod_network) -> str | None:
        """Why the step does not run under `pod_network` (a PodNetworkSpec), or None."""
        for key, allowed in self.when:
            value = getattr(pod_network, key)
            if value not in allowed:
                return f"holds only under {key} {' or '.join(allowed)} (this run: {key} {value})"
        return None


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
    # The document it was read from: later checks (testbed.scenario.preflight) name the line
    # of the field they refuse.
    doc: Document | None = field(default=None, compare=False, repr=False)
    policy_modes: tuple[tuple[str, str], ...] = ()  # networkPolicy: as proxy_modes
    # podNetwork's fields as given (testbed.spec.topology.parse_pod_network's: files resolved),
    # over the topology's
    pod_network: tuple[tuple[str, Any], ...] = ()


def load_scenario(path: str | Path) -> Scenario:
    return build_scenario(read_one(path))


def build_scenario(doc: Document) -> Scenario:
    """The Scenario of one document; SpecError with every problem (file, line, field) at once.

    Every value of every step is checked here, before anything is built: ports, selectors,
    durations, rates, URLs. What needs the topology or the manifests (names of nodes and pods,
    kube-proxy nodes) is checked by testbed.scenario.preflight.
    """
    ck = Checker(doc)
    data = ck.fields((), doc.data, TOP_KEYS) or {}
    base = Path(doc.file).parent
    name = ck.string(data, "name", (), required="name" in data, default=Path(doc.file).stem)
    description = ck.string(data, "description", (), default="")
    topo_path = base / "topology.yaml"
    if data.get("topology") in (None, ""):
        ck.required(("topology",), "the topology file to build")
    else:
        topo_path = file_field(ck, ("topology",), data["topology"], base) or topo_path
    raw = data.get("manifests")
    if isinstance(raw, str):
        raw = [raw]
        where = [("manifests",)]
    else:
        where = [("manifests", i) for i in range(len(raw))] if isinstance(raw, list) else []
        if raw is not None:
            ck.is_type(("manifests",), raw, "array")
    manifests = [p for w, item in zip(where, raw or [], strict=False)
                 if (p := file_field(ck, w, item, base)) is not None]
    steps = []
    for path, raw_step in ck.items(data, "steps", ()):
        step = _step(ck, path, raw_step)
        if step is not None:
            steps.append(step)
    proxy_modes = _proxy_modes(ck, data.get("kubeProxy"))
    policy_modes = _proxy_modes(ck, data.get("networkPolicy"), "networkPolicy", POLICY_MODES)
    addons = ck.string_list(data, "addons", ())
    for i, addon in enumerate(data.get("addons") if isinstance(data.get("addons"), list) else []):
        if isinstance(addon, str) and addon not in ADDONS:
            ck.unsupported(("addons", i), addon, list(ADDONS))
    # podNetwork: as a topology's, over the topology's own (what the fields make together is
    # checked by testbed.scenario.preflight, once the topology is read).
    pod_network = parse_pod_network(ck, ("podNetwork",), data.get("podNetwork"), base)
    if ck.problems:
        raise SpecError(ck.problems)
    return Scenario(str(name), doc.file, str(description).strip(), topo_path, tuple(manifests),
                    tuple(steps), proxy_modes, tuple(dict.fromkeys(addons)), doc,
                    policy_modes=policy_modes, pod_network=tuple((pod_network or {}).items()))


def _proxy_modes(ck: Checker, raw: Any, key: str = "kubeProxy",
                 modes: tuple[str, ...] = PROXY_MODES) -> tuple[tuple[str, str], ...]:
    """kubeProxy: {mode: userspace, nodes: {node2: iptables}} over the topology's modes (and
    networkPolicy: {mode: none, nodes: {node2: nftables}} alike)."""
    if raw is None:
        return ()
    conf = ck.fields((key,), raw, {"mode", "nodes"})
    if conf is None:
        return ()
    out = []
    mode = ck.enum(conf, "mode", (key,), list(modes))
    if mode is not None:
        out.append(("*", mode))
    nodes = conf.get("nodes")
    if nodes is not None and ck.is_type((key, "nodes"), nodes, "object"):
        for node in nodes:
            mode = ck.enum(nodes, node, (key, "nodes"), list(modes))
            if mode is not None:
                out.append((str(node), mode))
    return tuple(out)


def _step(ck: Checker, path: Path_, raw: Any) -> Step | None:
    if not isinstance(raw, dict):
        ck.invalid(path, raw, f"a step must be a mapping with one action ({', '.join(STEP_ACTIONS)})")
        return None
    chosen = [k for k in raw if k in STEP_ACTIONS]
    if len(chosen) > 1:
        ck.forbidden(path, f"a step has one action, this one has {', '.join(chosen)}")
        return None
    if not chosen:
        ck.required(path, f"a step needs one of {', '.join(STEP_ACTIONS)} "
                          f"(has {', '.join(map(str, raw)) or 'nothing'})")
        return None
    key = chosen[0]
    keys = {"probe": PROBE_KEYS, "sleep": SLEEP_KEYS, "wait": {"wait", "name", "timeout"},
            "run": {"run", "expect", "name", "timeout", "retryFor"},
            "get": {"get", "expect", "name", "retryFor"},
            "kubeProxy": {"kubeProxy", "name", "timeout"},
            "reachability": {"reachability", "expect", "name"},
            "trace": {"trace", "expect", "name"}, "capture": {"capture", "expect", "name"},
            "route": {"route", "expect", "name", "timeout"}}.get(key, {key, "name"})
    ck.fields(path, raw, keys | {"when"})
    when = _when(ck, path + ("when",), raw.get("when"))
    step = _step_action(ck, path, raw, key)
    return step if step is None or not when else dataclasses.replace(step, when=when)


def _when(ck: Checker, path: Path_, raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`when: {routing: [gateway, bgp], plugin: cni}`: the pod networks a step holds under."""
    if raw is None:
        return ()
    conf = ck.fields(path, raw, set(WHEN))
    if not conf:
        if conf == {}:
            ck.required(path, "routing, plugin or both")
        return ()
    out = []
    for key, supported in WHEN.items():
        if key not in conf:
            continue
        values = conf[key] if isinstance(conf[key], list) else [conf[key]]
        if not values:
            ck.required(path + (key,), "at least one value")
        for i, value in enumerate(values):
            if value not in supported:
                ck.unsupported(path + (key,) + ((i,) if isinstance(conf[key], list) else ()),
                               value, list(supported))
        out.append((key, tuple(str(v) for v in values)))
    return tuple(out)


def _step_action(ck: Checker, path: Path_, raw: dict, key: str) -> Step | None:
    line = ck.doc.line(path) if ck.doc is not None else 0
    name = ck.string(raw, "name", path)
    if key in ACTION_KEYS:
        action = parse_action(ck, path, raw, Path(ck.file).parent)
        return None if action is None else Step(name or describe(action), line, action)
    if key in RUNGET:
        action = RUNGET[key](ck, path, raw)
        return None if action is None else Step(name or _runget_name(action), line, action)
    if key == "capture":
        capture = _capture(ck, path, raw)
        return None if capture is None else Step(name or capture.describe(), line, capture)
    if key == "route":
        route = _route(ck, path, raw)
        return None if route is None else Step(name or route.describe(), line, route)
    if key == "trace":
        traced = parse_trace(ck, path, raw, _service_target)
        return None if traced is None else Step(name or traced.describe(), line, traced)
    if key == "reachability":
        matrix: Reachability | None = parse_reachability(ck, path, raw)
        return None if matrix is None else Step(name or matrix.describe(), line, matrix)
    if key == "probe":
        probe = _probe(ck, path, raw)
        if probe is None:
            return None
        return Step(name or f"{probe.kind} {probe.source} -> {_show_target(probe)}", line, probe)
    seconds = ck.number(raw, "sleep", path, maximum=MAX_SECONDS, unit=DAY)
    return None if seconds is None else Step(name or f"sleep {seconds:g}s", line, Sleep(seconds))


RUNGET = {"run": parse_run, "get": parse_get, "kubeProxy": parse_proxy_sync}


def _runget_name(action: RunCommand | GetField | ProxySync) -> str:
    if isinstance(action, RunCommand):
        return f"run {' '.join(action.command)} in {action.where}"
    if isinstance(action, GetField):
        return f"get {action.target()} {action.jsonpath}"
    return action.describe()


def _show_target(probe: Probe) -> str:
    t = probe.target
    if t.via == "nodePort":
        return f"{t.host}:nodePort({t.service}{':' + t.service_port if t.service_port else ''})"
    if t.via == "loadBalancer":
        return f"loadBalancer({t.service}{':' + t.service_port if t.service_port else ''})"
    if probe.kind == "http":
        return f"http://{t.host}{':' + str(t.port) if t.port else ''}{t.path}"
    return f"{t.host}:{t.port}" if t.port else t.host


def _capture(ck: Checker, path: Path_, raw: dict) -> Capture | None:
    """capture: {host: node1, interface: node1-eth0, filter: "udp port 8472", while: {probe: ...}}
    expect: {seen: true, shows: ["VXLAN"]}"""
    before = len(ck.problems)
    here = path + ("capture",)
    conf = ck.fields(here, raw.get("capture"), CAPTURE_KEYS)
    if conf is None:
        return None
    host = node_name(ck, conf, "host", here, what="the node, gateway or client to capture on")
    interface = ck.string(conf, "interface", here, default="")
    if interface and (len(interface) > 15 or "/" in interface or interface.strip() != interface):
        ck.invalid(here + ("interface",), interface, "must be an interface name (at most 15 "
                                                       "characters, no '/' or spaces)")
    text = ck.string(conf, "filter", here, required=True)
    if text is not None and (not text.strip() or text.startswith("-")):
        ck.invalid(here + ("filter",), text, "must be a pcap filter expression (tcpdump's), "
                                             "e.g. \"udp port 8472\"")
    probe = None
    if conf.get("while") is None:
        ck.required(here + ("while",), "the probe to run while capturing")
    elif ck.is_type(here + ("while",), conf["while"], "object"):
        inner = conf["while"]
        ck.fields(here + ("while",), inner, PROBE_KEYS)
        if "probe" not in inner:
            ck.required(here + ("while", "probe"), ", ".join(PROBES))
        else:
            probe = _probe(ck, here + ("while",), inner)
    expect = raw.get("expect", {"seen": True})
    seen, shows = True, ()
    if expect is not None and ck.fields(path + ("expect",), expect, CAPTURE_EXPECT_KEYS) is not None:
        seen = bool(ck.get(expect, "seen", path + ("expect",), "boolean") if "seen" in expect else True)
        shows = tuple(ck.string_list(expect, "shows", path + ("expect",)))
        if shows and not seen:
            ck.forbidden(path + ("expect", "shows"), "nothing can be shown when no packets are to be seen")
    if len(ck.problems) > before or probe is None or host is None:
        return None
    return Capture(host, interface or "", str(text), probe, seen, shows)


def _route(ck: Checker, path: Path_, raw: dict) -> RouteCheck | None:
    """route: {host: gateway, to: 10.0.2.0/24}, expect: {via: node2, proto: bird} or absent."""
    before = len(ck.problems)
    here = path + ("route",)
    conf = ck.fields(here, raw.get("route"), ROUTE_KEYS)
    if conf is None:
        return None
    host = node_name(ck, conf, "host", here, what="the node, gateway or client whose routes to read")
    to = conf.get("to")
    if to is None or to == "":
        ck.required(here + ("to",), "the destination prefix, e.g. 10.0.2.0/24")
    elif not isinstance(to, str) or is_cidr(to):
        ck.invalid(here + ("to",), to, "must be a valid CIDR value, (e.g. 10.9.8.0/24)")
    elif str(ipaddress.ip_network(to, strict=False)) != to:
        ck.invalid(here + ("to",), to, f"must be a network address (the network is "
                                         f"{ipaddress.ip_network(to, strict=False)})")
    expect = raw.get("expect", {})
    fields: dict[str, Any] = {}
    if expect == "absent":
        fields["absent"] = True
    elif expect is not None and ck.fields(path + ("expect",), expect, ROUTE_EXPECT_KEYS) is not None:
        for key in ("via", "dev", "proto"):
            value = ck.string(expect, key, path + ("expect",))
            if value:
                fields[key] = value
        if "absent" in expect:
            fields["absent"] = bool(ck.get(expect, "absent", path + ("expect",), "boolean"))
        if fields.get("absent") and any(k in fields for k in ("via", "dev", "proto")):
            ck.forbidden(path + ("expect",), "an absent route has no via, dev or proto")
    timeout = ck.number(raw, "timeout", path, default=0.0, maximum=MAX_SECONDS, unit=DAY)
    if len(ck.problems) > before or host is None:
        return None
    return RouteCheck(host, str(to), timeout=timeout or 0.0, **fields)


def _probe(ck: Checker, path: Path_, raw: dict) -> Probe | None:
    before = len(ck.problems)
    kind = ck.enum(raw, "probe", path, list(PROBES))
    if kind is None:
        return None
    source = raw.get("from")
    if source is None or source == "":
        ck.required(path + ("from",), "the pod, node or client to probe from")
    else:
        ck.is_type(path + ("from",), source, "string")
    target = _target(ck, path + ("to",), kind, raw.get("to"))
    expect = _expect(ck, path + ("expect",), kind, raw.get("expect", "reachable"))
    timeout = ck.number(raw, "timeout", path, minimum=0.1, default=2.0, maximum=MAX_SECONDS,
                        unit=DAY)
    retry_for = ck.number(raw, "retryFor", path, default=0.0, maximum=MAX_SECONDS, unit=DAY)
    headers = _headers(ck, path + ("headers",), raw.get("headers"))
    if headers and kind != "http":
        ck.forbidden(path + ("headers",), "only http probes send headers")
    record = ck.enum(raw, "record", path, list(DNS_RECORDS)) or "A"
    if record != "A" and kind != "dns":
        ck.forbidden(path + ("record",), "only dns probes take a record type")
    tries = ck.integer(raw, "tries", path, 1, MAX_TRIES, default=1)
    payload = ck.string(raw, "payload", path, default="hostname")
    transport = ck.enum(raw, "transport", path, list(TRANSPORTS)) or "udp"
    if "transport" in raw and kind != "dns":
        ck.forbidden(path + ("transport",), "only dns probes choose a transport (a tcp or udp "
                                            "probe is its own)")
    source_port = ck.integer(raw, "sourcePort", path, 1, 65535)
    if "sourcePort" in raw and kind not in ("tcp", "udp"):
        ck.forbidden(path + ("sourcePort",), "only tcp and udp probes fix their source port")
    if len(ck.problems) > before:
        return None
    assert target is not None and expect is not None and timeout is not None
    return Probe(kind, source, target, expect, timeout, retry_for or 0.0, str(payload),
                 headers, tries or 1, record, transport, source_port)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")     # RFC 9110 token
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")                   # visible ASCII, space, tab


def _headers(ck: Checker, path: Path_, raw: Any) -> tuple[tuple[str, str], ...]:
    """HTTP request headers: token names, values without line breaks (no header injection)."""
    if raw is None or not ck.is_type(path, raw, "object"):
        return ()
    out = []
    for key, value in raw.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            ck.invalid(path, key, "a header name must be an HTTP token (letters, digits and "
                                  "!#$%&'*+.^_`|~-)")
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            ck.invalid(path + (key,), value, "must be a string")
        elif not _HEADER_VALUE.fullmatch(str(value)):
            ck.invalid(path + (key,), value, "a header value must be printable ASCII, without "
                                            "line breaks")
        else:
            out.append((key, str(value)))
    return tuple(out)


def _port_ref(ck: Checker, path: Path_, value: Any, via: str) -> str | None:
    """Which port of a Service: its name, its number, true for the first, or (nodePort only)
    healthCheck for its healthCheckNodePort."""
    if value is True:
        return ""
    if value == "healthCheck" and via == "nodePort":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        ck.invalid(path, value, "must be the Service port's name or number (or true: the first)")
        return None
    if isinstance(value, int):
        return str(value) if ck.names(path, value, is_port_number(value)) else None
    return value if ck.names(path, value, is_dns1123_label(value)) else None


def service_ref(ck: Checker, path: Path_, value: Any) -> str | None:
    """A Service as NAME or NAMESPACE/NAME -> "namespace/name" (namespace default)."""
    if value is None or value == "":
        ck.required(path)
        return None
    if not ck.is_type(path, value, "string"):
        return None
    namespace, _, name = value.rpartition("/")
    ok = ck.names(path, name, is_dns1035_label(name))
    if namespace:
        ok = ck.names(path, namespace, is_dns1123_label(namespace)) and ok
    return f"{namespace or DEFAULT_NAMESPACE}/{name}" if ok else None


def _service_target(ck: Checker, path: Path_, kind: str, raw: dict) -> Target | None:
    """`to: {service: NS/NAME, nodePort: PORT, node: w1}` or `{service: NAME, loadBalancer: PORT}`."""
    before = len(ck.problems)
    m = ck.fields(path, raw, {"service", "nodePort", "loadBalancer", "node", "path"}) or {}
    if kind not in ("tcp", "http", "udp"):
        ck.forbidden(path, f"a Service target is for tcp, udp or http probes, not {kind}")
        return None
    service = service_ref(ck, path + ("service",), m.get("service"))
    via = [k for k in ("nodePort", "loadBalancer") if k in m]
    if not via:
        ck.required(path, "one of nodePort (with node) or loadBalancer, naming the Service's port")
        return None
    if len(via) > 1:
        ck.forbidden(path, "a Service target goes through nodePort or loadBalancer, not both")
        return None
    port = _port_ref(ck, path + (via[0],), m[via[0]], via[0])
    node = ck.string(m, "node", path, required=via == ["nodePort"], default="")
    url_path = ck.string(m, "path", path, default="/")
    if url_path is not None and not _URL_PATH.fullmatch(url_path):
        ck.invalid(path + ("path",), url_path, "must start with / and hold no spaces or "
                                               "control characters")
    if len(ck.problems) > before or service is None or port is None:
        return None
    return Target(str(node or ""), None, str(url_path), service, via[0], port)


_URL_PATH = re.compile(r"/[\x21-\x7e]*")   # what http.client sends as is


def _target(ck: Checker, path: Path_, kind: str, raw: Any) -> Target | None:
    if isinstance(raw, dict):
        return _service_target(ck, path, kind, raw)
    if raw is None or raw == "":
        ck.required(path, "a name or IP (with :port for tcp/udp, a URL for http)")
        return None
    if not ck.is_type(path, raw, "string"):
        return None
    if not raw.isprintable() or any(c.isspace() for c in raw):
        ck.invalid(path, raw, "must hold no spaces or control characters")
        return None
    if kind == "http":
        return _http_target(ck, path, raw)
    if kind == "dns":
        # The name to resolve, exactly as a program in the pod would ask for it (the pod's
        # search list applies): service-test, service-test.default, or a full name.
        if len(raw.rstrip(".")) > 253:
            ck.invalid(path, raw, "must be no more than 253 characters")
            return None
        return Target(raw)
    host, _, port_text = raw.rpartition(":") if ":" in raw else (raw, "", "")
    if kind == "icmp":
        if port_text:
            ck.invalid(path, raw, "an icmp probe takes no port")
            return None
        return Target(raw)
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        ck.invalid(path, raw, f"a {kind} probe needs NAME:PORT, with a port between 1 and 65535, "
                              "inclusive")
        return None
    return Target(host, int(port_text))


def _http_target(ck: Checker, path: Path_, raw: str) -> Target | None:
    url = raw if "://" in raw else f"http://{raw}"
    try:
        parts = urlsplit(url)
    except ValueError as err:   # http://[::1
        ck.invalid(path, raw, f"not a valid URL: {err}")
        return None
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError:          # http://b:port, http://b:99999
        port = -1
    if parts.scheme != "http":
        ck.invalid(path, raw, "must be an http:// URL (the probe speaks plain HTTP)")
        return None
    if not parts.hostname:
        ck.invalid(path, raw, "must name a host")
        return None
    if not 1 <= port <= 65535:
        ck.invalid(path, raw, "the port must be between 1 and 65535, inclusive")
        return None
    return Target(parts.hostname, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))


def _expect(ck: Checker, path: Path_, kind: str, raw: Any) -> Expect | None:
    if raw in ("reachable", "unreachable"):
        return Expect(reachable=raw == "reachable")
    if not isinstance(raw, dict):
        ck.invalid(path, raw, "must be reachable, unreachable, or a mapping of "
                              f"{', '.join(sorted(EXPECT_KEYS))}")
        return None
    before = len(ck.problems)
    ck.fields(path, raw, EXPECT_KEYS)
    if "unreachable" in raw:     # {unreachable: refused | timeout}: {reachable: false, reason: ...}
        if kind == "dns":
            ck.forbidden(path + ("unreachable",), "a dns probe cannot check unreachable (its "
                                                  "answer is the resolver's)")
        elif set(raw) - {"unreachable"}:
            ck.forbidden(path, "unreachable takes no other checks")
        else:
            reason = ck.enum(raw, "unreachable", path, list(REASONS))
            return None if reason is None else Expect(False, reason=reason)
        return None
    reachable = ck.get(raw, "reachable", path, "boolean")
    allowed = {"icmp": {"reason"}, "tcp": {"sourceIP", "backends", "reason"},
               "udp": {"reply", "backends", "reason"}, "dns": {"answer"},
               "http": {"sourceIP", "status", "bodyContains", "backends", "reason"}}
    for key in raw:
        if key in EXPECT_KEYS - {"reachable"} and key not in allowed[kind]:
            ck.forbidden(path + (key,), f"{'an' if kind in ('icmp', 'http') else 'a'} {kind} "
                                        f"probe cannot check {key}")
    if reachable is False and set(raw) - {"reachable", "reason"}:
        ck.forbidden(path, "an unreachable expectation takes no other checks than reason")
    reason = ck.enum(raw, "reason", path, list(REASONS))
    if "reason" in raw and reachable is not False:
        ck.forbidden(path + ("reason",), "a reason says why a probe must be unreachable: it "
                                         "goes with reachable: false")
    status = ck.integer(raw, "status", path, 100, 599)
    texts = {key: ck.string(raw, key, path) for key in ("sourceIP", "bodyContains", "reply", "answer")}
    backends = _backends(ck, path + ("backends",), raw.get("backends"))
    if len(ck.problems) > before:
        return None
    reply = texts["answer"] if kind == "dns" else texts["reply"]
    return Expect(reachable is not False, texts["sourceIP"], status, texts["bodyContains"], reply,
                  backends, reason)


def _backends(ck: Checker, path: Path_, raw: Any) -> Backends | None:
    if raw is None:
        return None
    b = ck.fields(path, raw, BACKEND_KEYS)
    if b is None:
        return None
    same = ck.get(b, "same", path, "boolean")
    if "same" in b and same is not True:
        if same is False:
            ck.invalid(path + ("same",), same, "must be true (leave it out otherwise)")
        return None
    selector = ck.selector(b, "selector", path, required=not same)
    namespace = namespace_field(ck, b, path)
    nodes = b.get("nodes", [])
    if isinstance(nodes, str):
        nodes = [nodes]
    nodes = ck.string_list({"nodes": nodes}, "nodes", path)
    every = ck.get(b, "all", path, "boolean")
    if same and every:
        ck.forbidden(path + ("all",), "every pod cannot answer when one pod answers every try "
                                      "(same: true)")
        return None
    if same and nodes and not selector:
        ck.required(path + ("selector",), "the pods (on those nodes) the one that answers is "
                                          "among")
        return None
    if (selector is None and not same) or namespace is None:
        return None
    return Backends(selector or "", namespace, tuple(nodes), every is not False and not same,
                    bool(same))
