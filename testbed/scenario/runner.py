"""Acts: runs a scenario: validate everything, build the cluster, apply, run steps, tear down.

Everything the scenario names is loaded and checked first (topology, manifests, names in
steps); only then is anything built, so bad input never leaves anything behind. SIGINT and
SIGTERM tear the cluster down before the command exits.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.api.manifests import load_manifests
from testbed.apiclient.client import ApiError
from testbed.emu.cluster import Cluster
from testbed.emu.controlplane import ControlPlaneError
from testbed.emu.images import container_path, pod_command_problems
from testbed.emu.shield import interrupted_once
from testbed.scenario.actions import Fault, NetFault
from testbed.scenario.spec import Probe, Scenario, Step, load_scenario
from testbed.scenario.steps import Outcome, execute
from testbed.spec.source import Problem, SpecError, field_name, read_documents
from testbed.spec.topology import ADDONS, Topology, load_topology


@dataclass
class StepResult:
    step: Step
    passed: bool
    expectation: str
    observed: str
    seconds: float
    details: dict = field(default_factory=dict)


@dataclass
class Prepared:
    scenario: Scenario
    topology: Topology
    objects: list[dict]
    step_objects: dict[int, list[dict]] = field(default_factory=dict)   # apply/delete steps' manifests


def prepare(path: str) -> Prepared:
    """Load and check the scenario and everything it names; SpecError lists every problem."""
    scenario = load_scenario(path)
    problems: list[Problem] = []
    topo = objects = None
    try:
        topo = load_topology(scenario.topology)
    except SpecError as err:
        problems.extend(err.problems)
    try:
        objects = load_manifests([str(p) for p in scenario.manifests])
    except SpecError as err:
        problems.extend(err.problems)
    step_objects: dict[int, list[dict]] = {}
    for index, step in enumerate(scenario.steps):
        files = getattr(step.action, "files", ())
        if files:
            try:
                step_objects[index] = load_manifests([str(p) for p in files])
            except SpecError as err:
                problems.extend(err.problems)
    everything = [o for objs in step_objects.values() for o in objs]
    if topo is not None and scenario.proxy_modes:
        topo, found = with_proxy_modes(scenario, topo)
        problems.extend(found)
    if topo is not None and scenario.addons:
        unknown = [a for a in scenario.addons if a not in ADDONS]
        problems.extend(Problem(scenario.file, None, "addons", f"unknown add-on {a!r} (known: {', '.join(ADDONS)})")
                        for a in unknown)
        topo = dataclasses.replace(topo, addons=tuple(dict.fromkeys(topo.addons + scenario.addons)))
    if topo is not None:
        # With broken manifests, names are still checked against the pods they declare.
        pods = objects if objects is not None else _declared_pods(scenario)
        problems.extend(check_names(scenario, topo, pods + everything))
    if objects is not None:
        problems.extend(check_commands(scenario, objects + everything))
        if topo is not None:
            problems.extend(check_service_addresses(scenario, topo, objects + everything))
    if problems:
        raise SpecError(problems)
    return Prepared(scenario, topo, objects, step_objects)


def with_proxy_modes(scenario: Scenario, topo: Topology) -> tuple[Topology, list[Problem]]:
    """The topology with the scenario's kube-proxy modes (all nodes, then named ones)."""
    workers = {w.name for w in topo.workers}
    problems = [Problem(scenario.file, None, f"kubeProxy.nodes.{n}", f"{n!r} is not a worker ({', '.join(sorted(workers))})")
                for n, _ in scenario.proxy_modes if n != "*" and n not in workers]
    modes = dict(scenario.proxy_modes)
    default = modes.get("*", topo.proxy_mode)
    new_workers = tuple(dataclasses.replace(w, proxy_mode=modes.get(w.name, default if "*" in modes else w.proxy_mode))
                        for w in topo.workers)
    return dataclasses.replace(topo, workers=new_workers, proxy_mode=default), problems


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
                                                         "namespace": str(meta.get("namespace", "default"))}})
    return pods


def check_names(scenario: Scenario, topo: Topology, objects: list[dict]) -> list[Problem]:
    """Every from/to/sourceIP name must be a pod of the manifests, a node, the gateway or a client."""
    pods = [o["metadata"] for o in objects if o["kind"] == "Pod"]
    services = [o["metadata"] for o in objects if o["kind"] == "Service"]
    hosts = {n.name for n in topo.nodes} | {c.name for c in topo.clients} | {topo.gateway_name}
    known = hosts | {p["name"] for p in pods} | {f"{p['namespace']}/{p['name']}" for p in pods} | {"localhost"}
    known |= {f"{s['namespace']}/{s['name']}" for s in services}
    known |= {s["name"] for s in services if s["namespace"] == "default"}
    problems = []
    for p in pods:
        if p["name"] in hosts:
            problems.append(Problem(scenario.file, None, "manifests",
                                    f"pod {p['namespace']}/{p['name']} has the name of a node or client"))
    for index, step in enumerate(scenario.steps):
        for key, name, allowed in _host_names(step.action, topo):
            if name not in allowed:
                problems.append(Problem(scenario.file, step.line, f"steps[{index}].{key}",
                                        f"{name!r} is not one of {', '.join(sorted(allowed))}"))
        if not isinstance(step.action, Probe):
            continue
        to = "" if step.action.kind == "dns" else step.action.target.host  # dns: any name to look up
        names = [("from", step.action.source), ("to", to),
                 ("expect.sourceIP", step.action.expect.source_ip)]
        for key, name in names:
            if name and name not in known and not _is_ip(name):
                problems.append(Problem(scenario.file, step.line, f"steps[{index}].{key}",
                                        f"{name!r} is no pod, node or client of this scenario "
                                        f"(known: {', '.join(sorted(known))})"))
    return problems


def _host_names(action, topo: Topology) -> list[tuple[str, str, set[str]]]:
    """(field, name, allowed names) for the node names a fault step mentions."""
    nodes = {n.name for n in topo.nodes}
    workers = {w.name for w in topo.workers}
    hosts = nodes | {c.name for c in topo.clients}
    if isinstance(action, Fault) and action.pod is None and action.node:
        key = "kill" if action.action == "kill" else "restart"
        allowed = {topo.master.name} if action.agent == "apiserver" else workers
        return [(f"{key}.node", action.node, allowed)]
    if isinstance(action, NetFault):
        if action.kind == "partition":
            return [(f"partition[{i}]", name, hosts) for i, group in enumerate(action.groups) for name in group]
        if action.kind == "node":
            return [("node.name", action.target, workers)]
        if action.kind in ("link", "shape"):
            return [(f"{action.kind}.node", action.target, nodes | {c.name for c in topo.clients})]
        if action.kind == "inspect":
            return [(f"inspect.{action.what}", action.target, nodes | {topo.gateway_name} | {c.name for c in topo.clients})]
    return []


def check_commands(scenario: Scenario, objects: list[dict]) -> list[Problem]:
    """Every container's command must be runnable on the nodes (there are no images to pull)."""
    path = container_path()
    return [Problem(scenario.file, None, f"{o['metadata']['namespace']}/{o['metadata']['name']}: {field_name(where)}", why)
            for o in objects if o["kind"] == "Pod" for where, why in pod_command_problems(o, path)]


def check_service_addresses(scenario: Scenario, topo: Topology, objects: list[dict]) -> list[Problem]:
    """A Service's clusterIP must be in the topology's service range and its nodePorts in
    30000-32767, or the API server would refuse it after the cluster is built."""
    import ipaddress

    problems = []
    for o in objects:
        if o["kind"] != "Service":
            continue
        where = f"Service {o['metadata']['namespace']}/{o['metadata']['name']}: spec"
        ip = o["spec"].get("clusterIP")
        if ip and ip != "None" and ipaddress.IPv4Address(ip) not in topo.service_cidr:
            problems.append(Problem(scenario.file, None, f"{where}.clusterIP",
                                    f"{ip} is not in the topology's service range {topo.service_cidr}"))
        for i, port in enumerate(o["spec"].get("ports", [])):
            node_port = port.get("nodePort")
            if node_port is not None and not 30000 <= node_port <= 32767:
                problems.append(Problem(scenario.file, None, f"{where}.ports[{i}].nodePort",
                                        f"{node_port} is not in the node port range 30000-32767"))
    return problems


def _is_ip(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


class Runner:
    def __init__(self, prepared: Prepared, progress: Callable[[str], None]):
        self.prepared = prepared
        self.progress = progress
        self.results: list[StepResult] = []
        self.cluster: Cluster | None = None
        self.setup_seconds = 0.0

    def run(self) -> list[StepResult]:
        started = time.monotonic()
        self.cluster = Cluster(self.prepared.topology, progress=self.progress)
        with interrupted_once():   # Ctrl-C or SIGTERM: tear down; a second one cannot stop that
            self._run(started)
        return self.results

    def _run(self, started: float) -> None:
        try:
            self.cluster.up()
            objects = self.prepared.objects
            if objects:
                self.progress(f"applying {len(objects)} objects")
                self.cluster.apply(objects)
                self.progress("waiting for their pods to be ready")
                self.cluster.wait_ready(objects, timeout=90)
            self.setup_seconds = time.monotonic() - started
            self.progress(f"cluster ready in {self.setup_seconds:.2f}s")
            total = len(self.prepared.scenario.steps)
            for index, step in enumerate(self.prepared.scenario.steps, 1):
                self.progress(f"[{index}/{total}] {step.name} ...")
                result = self.run_step(step, index - 1)
                self.results.append(result)
                mark = "PASS" if result.passed else "FAIL"
                self.progress(f"[{index}/{total}] {mark} {step.name}: {result.observed} ({result.seconds:.2f}s)")
        finally:
            self.progress("tearing down")
            self.cluster.down()

    def run_step(self, step: Step, index: int) -> StepResult:
        started = time.monotonic()
        try:
            outcome = execute(self.cluster, step, self.prepared.step_objects.get(index), self.progress)
        except (ApiError, ControlPlaneError, TimeoutError, KeyError, OSError) as err:
            # A step that cannot be carried out fails, and the scenario goes on.
            outcome = Outcome(False, step.name, f"error: {err}")
        return StepResult(step, outcome.passed, outcome.expectation, outcome.observed,
                          time.monotonic() - started, outcome.details)


def log_progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
