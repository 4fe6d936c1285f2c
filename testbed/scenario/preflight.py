"""Pure: the checks `testbed run` makes on a scenario and everything it names, before it builds.

`check_scenario(path, which=...)` loads the scenario, its topology (with the scenario's
kube-proxy modes and add-ons), its manifests and those of its apply steps (testbed.checks'
`check_loaded`, the function every command checks manifests with, against that topology), and
the names its steps use (pods, nodes, clients). `testbed validate` calls it through the
runner's `prepare`, as `testbed run` does. Nothing here builds, connects or prints.
"""


from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.api.manifests import Loaded, read_manifests
from testbed.api.meta import object_key
from testbed.checks import Checked, check_loaded, problem_at, warn_about_scale
from testbed.node.images import Which
from testbed.scenario.actions import Apply, Delete, Fault, NetFault, Scale
from testbed.scenario.spec import Probe, Scenario, load_scenario
from testbed.spec.source import Path_, Problem, SpecError, field_name, read_documents
from testbed.spec.topology import Topology, load_topology

# -- scenarios ---------------------------------------------------------------------------------

@dataclass
class CheckedScenario(Checked):
    """check_scenario's findings: `objects` are the scenario's manifests' (applied before the
    steps run), `step_objects` those of apply and delete steps, by step index."""

    scenario: Scenario | None = None
    topology: Topology | None = None
    step_objects: dict[int, list[dict]] = field(default_factory=dict)


def check_scenario(path: str | Path, command_path: str | None = None, *,
                   which: Which) -> CheckedScenario:
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
    checked = check_loaded(base, topo, command_path, which=which)
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
            checked = check_loaded([*beneath, *loaded], topo, command_path, which=which)
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
        problems.append(problem_at(item, ("metadata", "name"), message) if item is not None
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
