"""Pure: every check made before a cluster is built or a manifest is applied, in one place.

`check_manifests(paths, topology)` is the one function for "these manifests, on this cluster".
`testbed run` (through `check_scenario`), `testbed cli TOPOLOGY -f`, `testbed up -f`,
`testbed apply -f` and `testbed validate` all call it, so that what one of them accepts, all
accept. It checks, in order:

1. every object as the API server validates it (testbed.api.manifests), all files at once;
2. each Pod's commands: there are no images, a command runs from the node's own filesystem,
   so one that is not there is refused before anything is built (a Deployment's is a warning:
   its pods fail with CreateContainerError, as upstream's do with a bad image);
3. what the API server's allocators refuse (testbed.controllers.ipam, worded there): a
   nodePort outside 30000-32767 or taken twice, and with a topology, a clusterIP outside its
   service range or taken (the cluster's own Services, kubernetes and kube-dns, counted in).

It also gives warnings for what upstream accepts but will not do what the file seems to mean:
duplicate env names in a container (upstream's own warning), a nodeName that names no worker of
the topology (the pod stays Pending), more pods than the workers' pod CIDRs hold. Every problem
and warning names file, line and field. Nothing here builds, connects or prints.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from testbed.api.manifests import Loaded, read_manifests
from testbed.api.meta import object_key
from testbed.api.warnings import pod_spec, pod_spec_path, pod_warnings
from testbed.controllers.ipam import (
    DNS_SERVICE,
    KUBERNETES_SERVICE,
    AllocationError,
    ServiceAllocator,
)
from testbed.emu.images import container_path, pod_command_problems
from testbed.scenario.actions import Apply, Delete, Fault, NetFault, Scale
from testbed.scenario.spec import Probe, Scenario, load_scenario
from testbed.spec.source import Document, Path_, Problem, SpecError, field_name, read_documents
from testbed.spec.topology import Topology, load_topology

# Addresses of a worker's pod CIDR that no pod gets: the network, the broadcast address and
# cbr0's (the first host address), as testbed/emu/ipam.py hands them out.
RESERVED_PER_POD_CIDR = 3


@dataclass
class Checked:
    """What the checks found: the objects that passed (defaulted, in file order), the
    problems that refuse the input (exit 2, nothing built or applied) and the warnings about
    input that is accepted, as upstream would accept it."""

    objects: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise SpecError(self.problems)


def check_manifests(paths: Sequence[str | Path], topology: Topology | None = None,
                    command_path: str | None = None) -> Checked:
    """Load the manifest files and check them as every command does before it applies them.

    Returns every object that passed, every problem (validation as the API server's, commands
    that are not on the nodes, and with a `topology`, clusterIPs and nodePorts its allocators
    would refuse) and every warning (duplicate env names; with a topology, nodeNames that name
    no worker and more pods than the workers hold). Never raises for bad input: call
    `raise_if_problems()`, and print `warnings` (`report_warnings`) either way. `command_path`
    is the PATH containers search (default: the testbed's, testbed.emu.images).
    """
    loaded, problems = read_manifests(paths)
    checked = check_loaded(loaded, topology, command_path)
    checked.problems[:0] = problems
    return checked


def check_loaded(loaded: Sequence[Loaded], topology: Topology | None = None,
                 command_path: str | None = None) -> Checked:
    """check_manifests for objects read already (read_manifests), e.g. a scenario's manifests
    together with those of its apply steps."""
    out = Checked(objects=[item.obj for item in loaded])
    path = container_path() if command_path is None else command_path
    for item in loaded:
        out.problems += _command_problems(item, path)
        out.warnings += _template_command_warnings(item, path)
        out.warnings += [_at(item, where, message) for where, message in pod_warnings(item.obj)]
    out.problems += _allocation_problems(loaded, topology)
    if topology is not None:
        out.warnings += _node_name_warnings(loaded, topology)
        out.warnings += _capacity_warnings(loaded, topology)
    return out


def report_warnings(warnings: Iterable[Problem], out: TextIO, prefix: str = "testbed: warning: ") -> None:
    """One line per warning on `out` (a command's standard error): prefix file:line: field: why."""
    for warning in warnings:
        print(f"{prefix}{warning}", file=out)


def pod_capacity(topology: Topology) -> int:
    """How many workload pods the workers' pod CIDRs hold, less the cluster's own (kube-dns,
    and the ingress controller when that add-on is on)."""
    addresses = sum(w.pod_cidr.num_addresses - RESERVED_PER_POD_CIDR
                    for w in topology.workers if w.pod_cidr is not None)
    system = 1 + ("ingress-nginx" in topology.addons)
    return max(addresses - system, 0)


def capacity_words(topology: Topology) -> str:
    """How the pod capacity comes about, for a warning."""
    sizes = sorted({w.pod_cidr.prefixlen for w in topology.workers if w.pod_cidr is not None})
    per = ", ".join(f"/{p} holds {2 ** (32 - p) - RESERVED_PER_POD_CIDR}" for p in sizes)
    return (f"the {len(topology.workers)} workers' pod CIDRs ({per}) hold {pod_capacity(topology)} "
            "pods besides the cluster's own")


# -- the checks --------------------------------------------------------------------------------

def _at(item: Loaded, where: Path_, message: str, line_of: Path_ | None = None) -> Problem:
    """A problem at `where` within the object `item` (the line of `line_of` when given)."""
    full = item.path + tuple(where)
    line = item.doc.line(item.path + tuple(line_of)) if line_of is not None else item.doc.line(full)
    return Problem(item.doc.file, line, field_name(full), message)


def _command_problems(item: Loaded, path: str) -> list[Problem]:
    """A Pod's command must be on the nodes (refused); a Deployment's template's is warned
    about, since its pods are made later and fail as upstream's do (CreateContainerError)."""
    obj = item.obj
    if obj["kind"] != "Pod":
        return []
    return [_at(item, where, why) for where, why in pod_command_problems(obj, path)]


def _template_command_warnings(item: Loaded, path: str) -> list[Problem]:
    prefix = pod_spec_path(item.obj)
    if item.obj["kind"] != "Deployment" or prefix is None:
        return []
    as_pod = {"spec": pod_spec(item.obj)}
    return [_at(item, prefix + tuple(where)[1:], f"{why}: its pods will fail with CreateContainerError")
            for where, why in pod_command_problems(as_pod, path)]


def _allocator(topology: Topology) -> ServiceAllocator:
    """The API server's allocators for this topology, holding what the cluster creates itself."""
    alloc = ServiceAllocator(str(topology.service_cidr))
    alloc.ips.reserve(str(topology.service_cidr.network_address + 1), KUBERNETES_SERVICE)
    alloc.ips.reserve(str(topology.dns_service_ip), DNS_SERVICE)
    return alloc


_INDEX = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_field(text: str) -> Path_:
    """"spec.ports[0].nodePort" -> ("spec", "ports", 0, "nodePort")."""
    return tuple(int(i) if i else name for name, i in _INDEX.findall(text))


def _allocation_problems(loaded: Sequence[Loaded], topology: Topology | None) -> list[Problem]:
    """What the API server's allocators would refuse, in their own words: nodePorts always
    (their range is every cluster's), clusterIPs when the topology says the service range."""
    alloc = _allocator(topology) if topology is not None else ServiceAllocator("10.96.0.0/12")
    out = []
    for item in loaded:
        if item.obj["kind"] != "Service":
            continue
        service = copy.deepcopy(item.obj)
        if topology is None:
            service["spec"]["clusterIP"] = "None"   # no range to check it against: ports only
        try:
            alloc.admit(service)
        except AllocationError as err:
            for error in err.errors:
                where = _parse_field(error.field)
                # spec.clusterIPs is what upstream names; the file says spec.clusterIP.
                line_of = ("spec", "clusterIP") if where == ("spec", "clusterIPs") else where
                out.append(_at(item, where, error.message, line_of))
    return out


def _node_name_warnings(loaded: Sequence[Loaded], topology: Topology) -> list[Problem]:
    workers = [w.name for w in topology.workers]
    out = []
    for item in loaded:
        prefix = pod_spec_path(item.obj)
        node = pod_spec(item.obj).get("nodeName")
        if prefix is None or not node or node in workers:
            continue
        why = ("is the master, which runs no kubelet here" if node == topology.master.name
               else f"is no node of topology {topology.name}")
        out.append(_at(item, prefix + ("nodeName",),
                       f'"{node}" {why} (workers: {", ".join(workers)}): its pods will stay '
                       "Pending, as upstream's do on a node that never registers"))
    return out


def pods_of(obj: dict) -> int:
    """How many pods an object asks for: 1 for a Pod, its replicas for a Deployment."""
    if obj["kind"] == "Pod":
        return 1
    if obj["kind"] == "Deployment":
        return int(obj["spec"].get("replicas", 1))
    return 0


def _capacity_warnings(loaded: Sequence[Loaded], topology: Topology) -> list[Problem]:
    """One warning, at the object whose pods go beyond what the workers hold."""
    capacity = pod_capacity(topology)
    total = 0
    for item in loaded:
        wanted = pods_of(item.obj)
        total += wanted
        if wanted and total > capacity:
            where = ("spec", "replicas") if item.obj["kind"] == "Deployment" else ("metadata", "name")
            namespace, name = object_key(item.obj)
            return [_at(item, where, f"{item.obj['kind']} {namespace}/{name} brings the pods of "
                                     f"these manifests to {total}, but {capacity_words(topology)}: "
                                     "the rest will not start")]
    return []


def warn_about_scale(doc: Document, path: Path_, replicas: int, topology: Topology) -> list[Problem]:
    """A scale step asking for more pods than the workers hold (upstream accepts any int32)."""
    capacity = pod_capacity(topology)
    if replicas <= capacity:
        return []
    return [doc.problem(path, f"{replicas} replicas will not all start: {capacity_words(topology)}")]


# -- scenarios ---------------------------------------------------------------------------------

@dataclass
class CheckedScenario(Checked):
    """check_scenario's findings: `objects` are the scenario's manifests' (applied before the
    steps run), `step_objects` those of apply and delete steps, by step index."""

    scenario: Scenario | None = None
    topology: Topology | None = None
    step_objects: dict[int, list[dict]] = field(default_factory=dict)


def check_scenario(path: str | Path, command_path: str | None = None) -> CheckedScenario:
    """Load and check a scenario and everything it names, as `testbed run` does before it
    builds anything: its topology (with the scenario's kube-proxy modes and add-ons), its
    manifests and those of its apply steps (check_manifests, against that topology), and the
    names its steps use (pods, nodes, clients). Never raises for bad input."""
    out = CheckedScenario()
    try:
        scenario = load_scenario(path)
    except SpecError as err:
        out.problems += err.problems
        return out
    out.scenario = scenario
    topo = None
    try:
        topo = load_topology(scenario.topology)
    except SpecError as err:
        out.problems += err.problems
    if topo is not None:
        topo, found = with_proxy_modes(scenario, topo)
        out.problems += found
        topo = dataclasses.replace(topo, addons=tuple(dict.fromkeys(topo.addons + scenario.addons)))
    out.topology = topo

    base, problems = read_manifests(scenario.manifests)
    out.problems += problems
    manifests_ok = not problems
    every = list(base)
    checked = check_loaded(base, topo, command_path)
    out.objects = checked.objects
    out.problems += checked.problems
    out.warnings += checked.warnings
    deleted = False
    for index, step in enumerate(scenario.steps):
        files = getattr(step.action, "files", ())
        if isinstance(step.action, Delete):
            deleted = True
        if not files:
            continue
        loaded, problems = read_manifests(files)
        out.problems += problems
        out.step_objects[index] = [item.obj for item in loaded]
        every += loaded
        if isinstance(step.action, Apply):
            # Applied on top of the scenario's manifests (unless a step deleted some before:
            # then alone), as the API server's allocators will see them.
            beneath = [] if deleted else base
            checked = check_loaded([*beneath, *loaded], topo, command_path)
            out.problems += [p for p in checked.problems if p not in out.problems]
            out.warnings += [w for w in checked.warnings if w not in out.warnings]
    if topo is not None:
        everything = [o for objs in out.step_objects.values() for o in objs]
        pods = out.objects if manifests_ok else _declared_pods(scenario)
        out.problems += check_names(scenario, topo, pods + everything, every)
        out.warnings += _scale_warnings(scenario, topo)
    return out


def with_proxy_modes(scenario: Scenario, topo: Topology) -> tuple[Topology, list[Problem]]:
    """The topology with the scenario's kube-proxy modes (all nodes, then named ones), and a
    problem for each named node that is no worker."""
    workers = [w.name for w in topo.workers]
    problems = [_scenario_problem(scenario, ("kubeProxy", "nodes", n),
                                  f'Invalid value: "{n}": not a worker of topology {topo.name} '
                                  f"(workers: {', '.join(workers)})")
                for n, _ in scenario.proxy_modes if n != "*" and n not in workers]
    modes = dict(scenario.proxy_modes)
    default = modes.get("*", topo.proxy_mode)
    new_workers = tuple(dataclasses.replace(w, proxy_mode=modes.get(w.name, default if "*" in modes else w.proxy_mode))
                        for w in topo.workers)
    return dataclasses.replace(topo, workers=new_workers, proxy_mode=default), problems


def _scenario_problem(scenario: Scenario, path: Path_, message: str) -> Problem:
    """A problem at `path` of the scenario file (without its document, at its step's line)."""
    if scenario.doc is not None:
        return scenario.doc.problem(path, message)
    line = scenario.steps[path[1]].line if path[0] == "steps" else None
    return Problem(scenario.file, line, field_name(path), message)


def _declared_pods(scenario: Scenario) -> list[dict]:
    """Pods named in the manifests, read loosely (for name checks when validation failed)."""
    pods = []
    for path in scenario.manifests:
        try:
            docs = read_documents(path)
        except SpecError:
            continue
        for doc in docs:
            data = doc.data if isinstance(doc.data, dict) else {}
            meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            if data.get("kind") == "Pod" and isinstance(meta.get("name"), str):
                pods.append({"kind": "Pod", "metadata": {"name": meta["name"],
                                                         "namespace": str(meta.get("namespace") or "default")}})
    return pods


def check_names(scenario: Scenario, topo: Topology, objects: list[dict],
                loaded: Sequence[Loaded] = ()) -> list[Problem]:
    """Every from/to/sourceIP name must be a pod of the manifests, a node, the gateway or a
    client; every node a fault step names must be one of the topology's."""
    pods = [object_key(o) for o in objects if o["kind"] == "Pod"]
    services = [object_key(o) for o in objects if o["kind"] == "Service"]
    hosts = {n.name for n in topo.nodes} | {c.name for c in topo.clients} | {topo.gateway_name}
    known = hosts | {name for _, name in pods} | {f"{ns}/{name}" for ns, name in pods} | {"localhost"}
    known |= {f"{ns}/{name}" for ns, name in services}
    known |= {name for ns, name in services if ns == "default"}
    located = {id(item.obj): item for item in loaded}
    problems = []
    for obj in objects:
        namespace, name = object_key(obj)
        if obj["kind"] != "Pod" or name not in hosts:
            continue
        message = f'Invalid value: "{name}": pod {namespace}/{name} has the name of a node or client'
        item = located.get(id(obj))
        problems.append(_at(item, ("metadata", "name"), message) if item is not None
                        else Problem(scenario.file, None, "manifests", message))
    for index, step in enumerate(scenario.steps):
        for where, name, allowed in _host_names(step.action, topo):
            if name not in allowed:
                problems.append(_scenario_problem(
                    scenario, ("steps", index, *where),
                    f'Unsupported value: "{name}": supported values: '
                    + ", ".join(f'"{a}"' for a in sorted(allowed))))
        if not isinstance(step.action, Probe):
            continue
        to = "" if step.action.kind == "dns" else step.action.target.host  # dns: any name to look up
        if step.action.target.via:
            to = ""   # a node, checked with the node names
        names = [(("from",), step.action.source), (("to",), to),
                 (("expect", "sourceIP"), step.action.expect.source_ip)]
        for where, name in names:
            if name and name not in known and not _is_ip(name):
                problems.append(_scenario_problem(
                    scenario, ("steps", index, *where),
                    f'Invalid value: "{name}": no pod, node or client of this scenario '
                    f"(known: {', '.join(sorted(known))})"))
    return problems


def _host_names(action, topo: Topology) -> list[tuple[Path_, str, set[str]]]:
    """(path within the step, name, allowed names) for the node names a step mentions."""
    nodes = {n.name for n in topo.nodes}
    workers = {w.name for w in topo.workers}
    clients = {c.name for c in topo.clients}
    if isinstance(action, Fault) and action.pod is None and action.node:
        allowed = {topo.master.name} if action.agent == "apiserver" else workers
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
            return [(("inspect", action.what), action.target, nodes | {topo.gateway_name} | clients)]
        if action.kind == "readiness" and action.pod is not None and action.pod.node:
            return [(("readiness", "pod", "node"), action.pod.node, workers)]
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
