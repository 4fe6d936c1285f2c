"""Pure: the checks `testbed run` makes on a scenario and everything it names, before it builds.

`check_scenario(path, which=..., has_sctp=...)` loads the scenario, its topology (with the
scenario's kube-proxy modes and add-ons), its manifests and those of its apply steps
(testbed.checks' `check_loaded`, the function every command checks manifests with, against that
topology), and the names its steps use (pods, nodes, clients, and the objects a step acts on: a
pod to kill, fail or label, a namespace to label, a Service to probe or wait for, a Deployment
to scale, an object to delete, each declared by the cluster, the manifests or an earlier apply
step). `testbed validate` calls it through the runner's `prepare`, as `testbed run` does.
Nothing here builds, connects or prints.

A pod is named NAMESPACE/NAME, or by its bare NAME when the scenario's manifests and apply
steps hold a pod of that name in one namespace only: a bare name that several namespaces have
is refused here, with the candidates, wherever a step names a pod (probe from, to and
expect.sourceIP, kill, readiness, label, and a reachability step's pods and pairs). The
acting callers inject what the machine can do: `which` finds commands, `has_sctp` says whether
the kernel opens SCTP sockets (a reachability step's SCTP ports need them).
"""


from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.api.admission import SYSTEM_NAMESPACES
from testbed.api.manifests import Loaded, read_manifests
from testbed.api.meta import DEFAULT_NAMESPACE, object_key
from testbed.api.resources import CLUSTER_SCOPED
from testbed.checks import (
    Checked,
    check_each,
    check_loaded,
    check_together,
    problem_at,
    warn_about_scale,
)
from testbed.emu.addons import dns_addon, ingress_nginx_addon
from testbed.node.images import Which
from testbed.routing.flannel import BACKENDS as FLANNEL_BACKENDS
from testbed.scenario.actions import Apply, Delete, Fault, Label, NetFault, PodRef, Scale, Wait
from testbed.scenario.reachability import Reachability
from testbed.scenario.references import placeholder_for, read_step_manifests, reference_problems
from testbed.scenario.runget import ProxySync, RunCommand
from testbed.scenario.spec import Capture, Probe, RouteCheck, Scenario, load_scenario
from testbed.scenario.truthtable import Member
from testbed.spec.source import Path_, Problem, SpecError, field_name, read_documents
from testbed.spec.topology import (
    PodNetworkLayer,
    Topology,
    load_topology,
    parse_pod_network,
    resolve_pod_network,
    with_modes,
    with_pod_network,
)
from testbed.spec.validation import Checker, fmt

# Kinds whose objects a delete step names by a name the manifests give (an EndpointSlice's
# is generated)
CHECKED_KINDS = ("Pod", "Service", "Deployment", "Ingress", "Namespace", "NetworkPolicy")
NO_SCTP = ("SCTP probes need the kernel's SCTP support (the sctp module), which this machine's "
           "kernel lacks")

# -- scenarios ---------------------------------------------------------------------------------

@dataclass
class CheckedScenario(Checked):
    """check_scenario's findings: `objects` are the scenario's manifests' (applied before the
    steps run), `step_objects` those of apply and delete steps, by step index."""

    scenario: Scenario | None = None
    topology: Topology | None = None
    step_objects: dict[int, list[dict]] = field(default_factory=dict)


def check_scenario(path: str | Path, command_path: str | None = None, *,
                   which: Which, has_sctp: Callable[[], bool], proxy_mode: str | None = None,
                   policy_mode: str | None = None,
                   pod_network: dict | None = None) -> CheckedScenario:
    """Load and check a scenario and everything it names, as `testbed run` does before it
    builds anything: its topology (with the scenario's kube-proxy and NetworkPolicy modes, then
    `proxy_mode` and `policy_mode` for every worker when given, as the command line's
    --kube-proxy and --network-policy say, and its add-ons), its manifests and those of its
    apply steps (check_manifests, against that topology), the names its steps use (pods,
    nodes, clients), and SCTP ports against `has_sctp()` (asked only when a step has one).
    Never raises for bad input."""
    out = CheckedScenario()
    try:
        scenario = load_scenario(path)
    except SpecError as err:
        out.problems += err.problems
        return out
    out.scenario = scenario
    out.problems += check_sctp(scenario, has_sctp)
    topo = None
    try:
        topo = load_topology(scenario.topology)
    except SpecError as err:
        out.problems += err.problems
    if topo is not None:
        topo, found = with_proxy_modes(scenario, topo, proxy_mode, policy_mode)
        out.problems += found
        topo, found = pod_network_of(topo, scenario, pod_network)
        out.problems += found + routing_agent_problems(scenario, topo)
        topo = dataclasses.replace(topo, addons=tuple(dict.fromkeys(topo.addons + scenario.addons)))
    out.topology = topo

    base, problems = read_manifests(scenario.manifests)
    out.problems += problems
    manifests_ok = not problems
    every = list(base)
    checked = check_loaded(base, topo, command_path, which=which)
    out.objects = checked.objects
    out.problems += checked.problems
    out.warnings += checked.warnings
    deleted = False
    addresses = {} if topo is None else {h.name: str(h.address) for h in (*topo.nodes, *topo.clients)}
    step_refs = {}
    for index, step in enumerate(scenario.steps):
        files = getattr(step.action, "files", ())
        if isinstance(step.action, Delete):
            deleted = True
        if not files:
            continue
        # ${pod:NAME.ip} and the like are checked with stand-ins, kept in the objects
        # (testbed.scenario.references)
        loaded, problems, refs = read_step_manifests(files, placeholder_for(addresses))
        if isinstance(step.action, Apply):
            step_refs[index] = refs
        out.problems += problems
        out.step_objects[index] = [item.obj for item in loaded]
        every += loaded
        if isinstance(step.action, Apply):
            # Each object on its own, then applied on top of the scenario's manifests (unless a
            # step deleted some before: then alone), as the API server's allocators will see
            # them. A file applied by two steps repeats its findings: kept once.
            beneath = [] if deleted else base
            for checked in (check_each(loaded, topo, command_path, which=which),
                            check_together([*beneath, *loaded], topo)):
                out.problems += [p for p in checked.problems if p not in out.problems]
                out.warnings += [w for w in checked.warnings if w not in out.warnings]
    if topo is not None:
        created = {index: objs for index, objs in out.step_objects.items()
                   if isinstance(scenario.steps[index].action, Apply)}
        everything = [o for objs in out.step_objects.values() for o in objs]
        base_objects = out.objects if manifests_ok else _declared_objects(scenario)
        out.problems += check_names(scenario, topo, base_objects + everything, every,
                                    base=base_objects, created=created)
        hosts = {n.name for n in topo.nodes} | {c.name for c in topo.clients} | {topo.gateway_name}
        out.problems += reference_problems(
            scenario, hosts, _cluster_objects(topo) + base_objects, base, created, step_refs,
            lambda path, message: _scenario_problem(scenario, path, message))
        out.warnings += _scale_warnings(scenario, topo)
    return out


def check_sctp(scenario: Scenario, has_sctp: Callable[[], bool]) -> list[Problem]:
    """A problem at every SCTP port of a reachability step when the kernel has no SCTP."""
    ports = [(index, i, port) for index, step in enumerate(scenario.steps)
             if isinstance(step.action, Reachability)
             for i, port in enumerate(step.action.ports) if port.protocol == "sctp"]
    if not ports or has_sctp():
        return []
    return [_scenario_problem(scenario, ("steps", index, "reachability", "ports", i),
                              f"Invalid value: {fmt(str(port))}: {NO_SCTP}")
            for index, i, port in ports]


def with_proxy_modes(scenario: Scenario, topo: Topology, proxy_mode: str | None = None,
                     policy_mode: str | None = None) -> tuple[Topology, list[Problem]]:
    """The topology with the scenario's kube-proxy and NetworkPolicy modes (all nodes, then
    named ones), then `proxy_mode` and `policy_mode` on every worker when given (the command
    line's, which win; spec/topology.with_modes); and a problem for each named node that is no
    worker, and for each step that kills or restarts the NetworkPolicy agent of a worker that
    runs none."""
    workers = [w.name for w in topo.workers]
    problems = [_scenario_problem(scenario, (key, "nodes", n),
                                  f'Invalid value: "{n}": not a worker of topology {topo.name} '
                                  f"(workers: {', '.join(workers)})")
                for key, modes in (("kubeProxy", scenario.proxy_modes),
                                   ("networkPolicy", scenario.policy_modes))
                for n, _ in modes if n != "*" and n not in workers]
    topo = with_modes(topo, dict(scenario.proxy_modes), dict(scenario.policy_modes))
    topo = with_modes(topo, {"*": proxy_mode} if proxy_mode else None,
                      {"*": policy_mode} if policy_mode else None)
    without = {w.name for w in topo.workers if w.policy_mode == "none"}
    problems += [_scenario_problem(scenario, ("steps", index, step.action.action, "node"),
                                   f'Invalid value: "{step.action.node}": no NetworkPolicy agent '
                                   f"runs on {step.action.node} (its network policy mode is none)")
                 for index, step in enumerate(scenario.steps)
                 if isinstance(step.action, Fault) and step.action.agent == "netpol"
                 and step.action.node in without]
    return topo, problems


COMMAND_LINE = "<command line>"     # a problem's file when it is an option's
# The command line's pod network options (testbed.scenario.command makes them): podNetwork key
# -> (option, argparse dest).
POD_NETWORK_OPTIONS = {"plugin": ("--pod-network", "pod_plugin"), "routing": ("--routing", "pod_routing"),
                       "conf": ("--cni-conf", "cni_conf"), "binDir": ("--cni-bin-dir", "cni_bin_dir")}


class OptionChecker(Checker):
    """Records problems with the pod network options, each at its option (a path's first part
    is the option's podNetwork key), on the command line, without a line."""

    def __init__(self) -> None:
        super().__init__(None, COMMAND_LINE)

    def add(self, path: Path_, message: str) -> None:
        key = path[0] if path else ""
        option = POD_NETWORK_OPTIONS[key][0] if key in POD_NETWORK_OPTIONS else field_name(path)
        self.problems.append(Problem(self.file, None, option, message))


def pod_network_of(topo: Topology, scenario: Scenario | None = None,
                   options: dict | None = None) -> tuple[Topology, list[Problem]]:
    """The topology with the scenario's podNetwork over its own (when a scenario is given), then
    the command line's `options` (podNetwork fields; files relative to the working directory),
    the whole checked once against the topology's network mode; problems name the scenario's
    field or the option (a --cni-conf file's own keep its file and line)."""
    cli = OptionChecker()
    layers = []
    if scenario is not None and scenario.pod_network:
        layers.append(PodNetworkLayer(dict(scenario.pod_network), Checker(scenario.doc, scenario.file)))
    given = parse_pod_network(cli, (), {k: v for k, v in (options or {}).items() if v is not None},
                              Path.cwd())
    if given:
        layers.append(PodNetworkLayer(given, cli, ()))
    spec = None if given is None else resolve_pod_network(topo.pod_network, layers, topo.network_mode)
    problems = [p for layer in layers if layer.ck is not cli for p in layer.ck.problems] + cli.problems
    return (topo if spec is None else with_pod_network(topo, spec)), problems


def routing_agent_problems(scenario: Scenario, topo: Topology) -> list[Problem]:
    """A problem for each step that kills or restarts a routing agent the run's routing mode
    has none of (flanneld runs under host-gw and vxlan, bird under bgp), unless its `when:`
    skips it under that mode."""
    routing = topo.pod_network.routing
    runs = {"flanneld": routing in FLANNEL_BACKENDS, "bird": routing == "bgp"}
    return [_scenario_problem(scenario, ("steps", index, step.action.action, "agent"),
                              f'Invalid value: "{step.action.agent}": no {step.action.agent} runs '
                              f"under routing {routing} (flanneld runs under "
                              f"{' and '.join(FLANNEL_BACKENDS)}, bird under bgp)")
            for index, step in enumerate(scenario.steps)
            if isinstance(step.action, Fault) and runs.get(step.action.agent) is False
            and step.skipped_under(topo.pod_network) is None]


def _scenario_problem(scenario: Scenario, path: Path_, message: str) -> Problem:
    """A problem at `path` of the scenario file (without its document, at its step's line)."""
    if scenario.doc is not None:
        return scenario.doc.problem(path, message)
    line = scenario.steps[path[1]].line if path[0] == "steps" else None
    return Problem(scenario.file, line, field_name(path), message)


def _declared_objects(scenario: Scenario) -> list[dict]:
    """Objects named in the manifests, read loosely (for name checks when validation failed):
    kind, name and namespace, and a Service's spec as written."""
    objects = []
    for path in scenario.manifests:
        try:
            docs = read_documents(path)
        except SpecError:
            continue
        for doc in docs:
            data = doc.data if isinstance(doc.data, dict) else {}
            meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            if isinstance(data.get("kind"), str) and isinstance(meta.get("name"), str):
                namespace, name = object_key(data)
                obj = {"kind": data["kind"], "metadata": {"name": name, "namespace": namespace}}
                if data["kind"] == "Service" and isinstance(data.get("spec"), dict):
                    obj["spec"] = data["spec"]
                objects.append(obj)
    return objects


def _cluster_objects(topo: Topology) -> list[dict]:
    """What the cluster holds before any manifest: its namespaces and the kubernetes Service
    (as the API server makes them), kube-dns, and what the topology's add-ons install (as the
    cluster installs them, testbed/emu/addons.py)."""
    out = [{"kind": "Namespace", "metadata": {"name": ns}} for ns in SYSTEM_NAMESPACES]
    out.append({"kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"type": "ClusterIP",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}})
    out += dns_addon(topo, api="")
    if "ingress-nginx" in topo.addons:
        out += ingress_nginx_addon(topo, api="")
    return out


def check_names(scenario: Scenario, topo: Topology, objects: list[dict],
                loaded: Sequence[Loaded] = (), *, base: list[dict] | None = None,
                created: dict[int, list[dict]] | None = None) -> list[Problem]:
    """Every from/to/sourceIP name must be a pod of the manifests, a node, the gateway or a
    client; every node a fault step names must be one of the topology's; every object a step
    names (a pod to kill, fail or label, a namespace to label, a Service to probe or wait for, a
    Deployment to scale, an object to delete) must be the cluster's own, the scenario's
    manifests' or an earlier apply step's (`base`: the manifests' objects, `created`: apply
    steps' by index; without them every one of `objects` counts from the start), and a Service
    probed through a node port or load balancer must have that port. A bare pod name that pods
    of several namespaces among `objects` have is refused wherever a step names a pod."""
    pods = [object_key(o) for o in objects if o["kind"] == "Pod"]
    services = [object_key(o) for o in objects if o["kind"] == "Service"]
    names = pod_namespaces(pods)
    hosts = {n.name for n in topo.nodes} | {c.name for c in topo.clients} | {topo.gateway_name}
    known = hosts | {name for _, name in pods} | {f"{ns}/{name}" for ns, name in pods} | {"localhost"}
    known |= {f"{ns}/{name}" for ns, name in services}
    known |= {name for ns, name in services if ns == "default"}
    located = {id(item.obj): item for item in loaded}
    available = _cluster_objects(topo) + list(objects if base is None else base)
    problems = []
    for obj in objects:
        namespace, name = object_key(obj)
        if obj["kind"] != "Pod" or name not in hosts:
            continue
        message = f'Invalid value: "{name}": pod {namespace}/{name} has the name of a node or client'
        item = located.get(id(obj))
        problems.append(problem_at(item, ("metadata", "name"), message) if item is not None
                        else Problem(scenario.file, None, "manifests", message))
    for index, step in enumerate(scenario.steps):
        def problem(where: Path_, message: str, index: int = index) -> Problem:
            return _scenario_problem(scenario, ("steps", index, *where), message)

        for where, name, allowed in _host_names(step.action, topo):
            if name not in allowed:
                problems.append(problem(where, f'Unsupported value: "{name}": supported values: '
                                               + ", ".join(f'"{a}"' for a in sorted(allowed))))
        action, found = _resolve_pod_ref(step.action, names)
        problems += [problem(where, message) for where, message in found]
        if action is not None:
            problems += [problem(where, message)
                         for where, message in _object_problems(action, available)]
        if isinstance(step.action, Capture):    # the probe it runs names objects too
            problems += [problem(("capture", "while", *where), message)
                         for where, message in _object_problems(step.action.probe, available)]
        available += (created or {}).get(index, [])
        if isinstance(step.action, Reachability):
            problems += [problem(where, message) for where, message in
                         reachability_problems(step.action, names, set(pods), hosts)]
        probe, at = step.action, ()
        if isinstance(probe, Capture):
            probe, at = probe.probe, ("capture", "while")
        if isinstance(probe, RunCommand):
            probe_names = [(("run", "in"), probe.where)]
        elif not isinstance(probe, Probe):
            continue
        else:
            to = "" if probe.kind == "dns" else probe.target.host  # dns: any name to look up
            if probe.target.via:
                to = ""   # a node, checked with the node names
            probe_names = [(("from",), probe.source), (("to",), to),
                           (("expect", "sourceIP"), probe.expect.source_ip)]
        for where, name in probe_names:
            if name and "/" not in name and len(names.get(name, ())) > 1:
                problems.append(problem(at + where, ambiguous(name, names[name])))
            elif name and name not in known and not _is_ip(name):
                problems.append(problem(at + where, f'Invalid value: "{name}": no pod, node or client '
                                                    f"of this scenario (known: {', '.join(sorted(known))})"))
    return problems


def pod_namespaces(pods: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """A pod's name -> the namespaces that have a pod of that name (sorted)."""
    out: dict[str, set[str]] = {}
    for namespace, name in pods:
        out.setdefault(name, set()).add(namespace)
    return {name: sorted(namespaces) for name, namespaces in out.items()}


def ambiguous(name: str, namespaces: Sequence[str]) -> str:
    return (f"Invalid value: {fmt(name)}: ambiguous: pods of that name are in "
            f"{len(namespaces)} namespaces ({', '.join(f'{ns}/{name}' for ns in namespaces)}): "
            "name one as NAMESPACE/NAME")


def _resolve_pod_ref(action, names: dict[str, list[str]]) -> tuple[object | None, list[tuple[Path_, str]]]:
    """The action with a bare pod name given its one namespace (a name no pod has: default's,
    whose absence the object checks report); None and a problem when several have it."""
    ref = getattr(action, "pod", None)
    if not isinstance(ref, PodRef) or not ref.name or ref.namespace:
        return action, []
    found = names.get(ref.name, [])
    if len(found) > 1:
        key = action.action if isinstance(action, Fault) else \
            "label" if isinstance(action, Label) else action.kind
        return None, [((key, "pod"), ambiguous(ref.name, found))]
    namespace = found[0] if found else DEFAULT_NAMESPACE
    return dataclasses.replace(action, pod=dataclasses.replace(ref, namespace=namespace)), []


def resolve_member(text: str, names: dict[str, list[str]], pods: set[tuple[str, str]],
                   hosts: set[str], pods_only: bool) -> Member | str:
    """A reachability step's name as a Member (who it is), or why it is none: NAMESPACE/NAME
    of a pod, a node or client (unless `pods_only`), or the bare name of one pod."""
    namespace, slash, name = text.rpartition("/")
    if slash:
        if (namespace, name) in pods:
            return Member(text, name, namespace)
    elif text in hosts:
        if pods_only:
            return (f"Invalid value: {fmt(text)}: a destination is a pod, probed at its pod IP; "
                    f"{text} is a node or client")
        return Member(text, text)
    elif len(names.get(text, ())) > 1:
        return ambiguous(text, names[text])
    elif names.get(text):
        return Member(text, text, names[text][0])
    every = sorted(f"{ns}/{n}" for ns, n in pods) + ([] if pods_only else sorted(hosts))
    return (f"Invalid value: {fmt(text)}: no pod{'' if pods_only else ', node or client'} of "
            f"this scenario (known: {', '.join(every)})")


def reachability_problems(step: Reachability, names: dict[str, list[str]],
                          pods: set[tuple[str, str]], hosts: set[str]) -> list[tuple[Path_, str]]:
    """Sources are pods, nodes or clients, destinations pods, each once; bare names of one pod
    only; each side of an except pair matches one of the step's sources or destinations."""
    out: list[tuple[Path_, str]] = []
    sides: list[list[Member]] = []
    for destination, written in ((False, step.sources), (True, step.destinations)):
        if destination and step.shorthand:
            sides.append(sides[0])
            continue
        field = step.field(destination)
        members, seen = [], {}
        for i, text in enumerate(written):
            member = resolve_member(text, names, pods, hosts, pods_only=destination or step.shorthand)
            if isinstance(member, str):
                out.append((("reachability", field, i), member))
                continue
            if member.key in seen:
                out.append((("reachability", field, i),
                            f"Duplicate value: {fmt(text)}: {seen[member.key]} is the same pod"))
                continue
            seen[member.key] = text
            members.append(member)
        sides.append(members)
    if out:
        return out
    for k, pair in enumerate(step.expect.exceptions):
        where: Path_ = ("expect", "except", k)
        for peer, members, what in zip(pair, sides, ("sources", "destinations"), strict=True):
            if peer.bare and len(names.get(peer.name, ())) > 1 and peer.name not in hosts:
                out.append((where, ambiguous(peer.name, names[peer.name])))
            elif not any(peer.matches(m) for m in members):
                out.append((where, f"Invalid value: {fmt(str(peer))}: matches none of the step's "
                                   f"{what} ({', '.join(m.label for m in members)})"))
    return out


def _shown(namespace: str, name: str) -> str:
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


def _declared(available: list[dict], kind: str) -> dict[tuple[str, str], list[dict]]:
    """(namespace, name) -> every declaration of that kind among `available`."""
    out: dict[tuple[str, str], list[dict]] = {}
    for obj in available:
        if obj.get("kind") == kind:
            out.setdefault(object_key(obj), []).append(obj)
    return out


def _missing(kind: str, value: str, available: list[dict]) -> str:
    names = sorted(f"{ns}/{name}" if ns else name for ns, name in _declared(available, kind))
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"   # NetworkPolicies
    return (f"Invalid value: {fmt(value)}: no {kind} of the cluster, the scenario's manifests "
            f"or an earlier apply step ({plural}: {', '.join(names) or 'none'})")


def _object_problems(action, available: list[dict]) -> list[tuple[Path_, str]]:
    """(path within the step, message) for each object the step names that will not exist."""
    def need(kind: str, namespace: str, name: str, where: Path_) -> list[dict]:
        found = _declared(available, kind).get(
            ("" if kind in CLUSTER_SCOPED else namespace, name), [])
        if kind == "Namespace" and any(object_key(o)[0] == name for o in available):
            found = found or [{"kind": kind, "metadata": {"name": name}}]   # made for its objects
        if not found:
            out.append((where, _missing(kind, _shown(namespace, name), available)))
        return found

    out: list[tuple[Path_, str]] = []
    if isinstance(action, Fault) and action.pod is not None and action.pod.name:
        need("Pod", action.pod.namespace, action.pod.name, (action.action, "pod"))
    elif isinstance(action, NetFault) and action.kind == "readiness" and action.pod is not None \
            and action.pod.name:
        need("Pod", action.pod.namespace, action.pod.name, ("readiness", "pod"))
    elif isinstance(action, Scale):
        need("Deployment", action.namespace, action.name, ("scale", "deployment"))
    elif isinstance(action, Delete) and action.kind and action.kind in CHECKED_KINDS:
        need(action.kind, action.namespace, action.name, ("delete", "name"))
    elif isinstance(action, Label) and action.pod is not None:
        need("Pod", action.pod.namespace, action.pod.name, ("label", "pod"))
    elif isinstance(action, Label):
        need("Namespace", DEFAULT_NAMESPACE, action.namespace, ("label", "namespace"))
    elif isinstance(action, Wait) and action.what in ("endpoints", "loadBalancer"):
        where: Path_ = ("wait", action.what, "service")
        found = need("Service", action.namespace, action.target, where)
        if found and action.what == "loadBalancer" and not any(
                _service_type(s) == "LoadBalancer" for s in found):
            out.append((where, f"Invalid value: {fmt(action.target)}: Service "
                               f"{action.namespace}/{action.target} is of type "
                               f"{_service_type(found[0])}; only a LoadBalancer Service gets an "
                               "address"))
    elif isinstance(action, Probe) and action.target.via:
        t = action.target
        namespace, _, name = t.service.partition("/")
        found = need("Service", namespace, name, ("to", "service"))
        if found:
            out += _port_problems(t, found)
    return out


def _service_type(svc: dict) -> str:
    spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
    kind = spec.get("type")
    return kind if isinstance(kind, str) and kind else "ClusterIP"


def _service_ports(svc: dict) -> list[dict]:
    spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
    ports = spec.get("ports") if isinstance(spec.get("ports"), list) else []
    return [p for p in ports if isinstance(p, dict)]


def _port_problems(t, found: list[dict]) -> list[tuple[Path_, str]]:
    """A nodePort or loadBalancer target's port: the Service (in one of its declarations) is of
    a type that has one, and has the port named (true: its first; healthCheck: its health
    check node port)."""
    where: Path_ = ("to", t.via)
    ref = t.service_port
    shown = fmt(True if ref == "" else int(ref) if ref.isdigit() else ref)
    wanted = ("NodePort", "LoadBalancer") if t.via == "nodePort" else ("LoadBalancer",)
    typed = [s for s in found if _service_type(s) in wanted]
    if not typed:
        return [(where, f"Invalid value: {shown}: Service {t.service} is of type "
                        f"{_service_type(found[0])}, which has no "
                        f"{'node port' if t.via == 'nodePort' else 'load balancer'}")]
    if ref == "healthCheck":
        if not any(_service_type(s) == "LoadBalancer"
                   and s["spec"].get("externalTrafficPolicy") == "Local" for s in typed):
            return [(where, f"Invalid value: {shown}: Service {t.service} has no health check "
                            "node port (only a LoadBalancer Service with externalTrafficPolicy "
                            "Local has one)")]
        return []
    for svc in typed:
        ports = _service_ports(svc)
        if (ref == "" and ports) or any(str(p.get("name")) == ref or str(p.get("port")) == ref
                                        for p in ports):
            return []
    have = sorted({str(p.get("name") or p.get("port")) for s in typed for p in _service_ports(s)})
    return [(where, f"Invalid value: {shown}: Service {t.service} has no port of that name or "
                    f"number (ports: {', '.join(have) or 'none'})")]


def _host_names(action, topo: Topology) -> list[tuple[Path_, str, set[str]]]:
    """(path within the step, name, allowed names) for the node names a step mentions."""
    nodes = {n.name for n in topo.nodes}
    workers = {w.name for w in topo.workers}
    clients = {c.name for c in topo.clients}
    if isinstance(action, Fault) and action.pod is None and action.node:
        allowed = {"apiserver": {topo.master.name}, "flanneld": nodes,
                   "bird": workers | {topo.gateway_name}}.get(action.agent, workers)
        return [((action.action, "node"), action.node, allowed)]
    if isinstance(action, Fault) and action.pod is not None and action.pod.node:
        return [((action.action, "pod", "node"), action.pod.node, workers)]
    if isinstance(action, NetFault):
        if action.kind == "partition":
            return [(("partition", i, j), name, nodes | clients)
                    for i, group in enumerate(action.groups) for j, name in enumerate(group)]
        if action.kind == "node":
            return [(("node", "name"), action.target, workers)]
        if action.kind in ("link", "shape"):
            return [((action.kind, "node"), action.target, nodes | clients)]
        if action.kind == "inspect":
            allowed = {"netpol": workers, "bgp": workers | {topo.gateway_name}}.get(
                action.what, nodes | {topo.gateway_name} | clients)
            return [(("inspect", action.what), action.target, allowed)]
        if action.kind == "readiness" and action.pod is not None and action.pod.node:
            return [(("readiness", "pod", "node"), action.pod.node, workers)]
    if isinstance(action, ProxySync):
        return [(("kubeProxy", "node"), action.node, workers)]
    hosts = nodes | {topo.gateway_name} | clients
    if isinstance(action, Capture):
        return [(("capture", "host"), action.host, hosts)] + [
            (("capture", "while", *where), name, allowed)
            for where, name, allowed in _host_names(action.probe, topo)]
    if isinstance(action, RouteCheck):
        return [(("route", "host"), action.host, hosts)] + (
            [(("expect", "via"), action.via, hosts)] if action.via and not _is_ip(action.via) else [])
    if isinstance(action, Probe) and action.target.via == "nodePort":
        return [(("to", "node"), action.target.host, nodes)]
    if isinstance(action, Probe) and action.expect.backends is not None:
        return [(("expect", "backends", "nodes", i), n, workers)
                for i, n in enumerate(action.expect.backends.nodes)]
    return []


def _scale_warnings(scenario: Scenario, topo: Topology) -> list[Problem]:
    out = []
    for index, step in enumerate(scenario.steps):
        if isinstance(step.action, Scale) and scenario.doc is not None:
            out += warn_about_scale(scenario.doc, ("steps", index, "scale", "replicas"),
                                    step.action.replicas, topo)
    return out


def _is_ip(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
