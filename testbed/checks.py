"""Pure: the checks every command makes on manifests before it applies them, in one place.

`check_manifests(paths, topology, which=...)` is the one function for "these manifests, on this
cluster". `testbed cli TOPOLOGY -f`, `testbed up -f`, `testbed apply -f` and `testbed validate`
call it, and `testbed run` through testbed.scenario.preflight's `check_scenario`, so that what
one of them accepts, all accept. It checks, in order:

1. every object as the API server validates it (testbed.api.manifests), all files at once;
2. each Pod's commands: there are no images, a command runs from the node's own filesystem,
   so one that is not there is refused before anything is built (a Deployment's is a warning:
   its pods fail with CreateContainerError, as upstream's do with a bad image); `which`
   (shutil.which, from the acting caller) is how a program is looked up;
3. what the API server's allocators refuse (testbed.api.allocators, worded there): a
   nodePort outside 30000-32767 or taken twice, and with a topology, a clusterIP outside its
   service range or taken (the cluster's own Services, kubernetes and kube-dns, counted in).

It also gives warnings for what upstream accepts but will not do what the file seems to mean:
duplicate env names in a container (upstream's own warning), a nodeName that names no worker of
the topology (the pod stays Pending), more pods than the workers' pod CIDRs hold. Every problem
and warning names file, line and field. Nothing here builds, connects or looks at files but
the manifests it reads.
"""


from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from testbed.api.allocators import (
    DNS_SERVICE,
    KUBERNETES_SERVICE,
    MISMATCHED_NETWORK,
    AllocationError,
    ServiceAllocator,
)
from testbed.api.manifests import Loaded, read_manifests
from testbed.api.meta import object_key
from testbed.api.warnings import pod_spec, pod_spec_path, pod_warnings
from testbed.node.images import Which, container_path, pod_command_problems
from testbed.spec.source import Document, Path_, Problem, SpecError, field_name
from testbed.spec.topology import Topology, load_topology

# Addresses of a worker's pod CIDR that no pod gets: the network, the broadcast address and
# cbr0's (the first host address), as testbed/node/ipam.py hands them out.
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
                    command_path: str | None = None, *, which: Which) -> Checked:
    """Load the manifest files and check them as every command does before it applies them.

    Returns every object that passed, every problem (validation as the API server's, commands
    that are not on the nodes, and with a `topology`, clusterIPs and nodePorts its allocators
    would refuse) and every warning (duplicate env names; with a topology, nodeNames that name
    no worker and more pods than the workers hold). Never raises for bad input: call
    `raise_if_problems()`, and print `warnings` (`report_warnings`) either way. `command_path`
    is the PATH containers search (default: the testbed's, testbed.node.images).
    """
    loaded, problems = read_manifests(paths)
    checked = check_loaded(loaded, topology, command_path, which=which)
    checked.problems[:0] = problems
    return checked


def check_with_topology(topology_file: str | Path, paths: Sequence[str | Path], *,
                        which: Which) -> tuple[Topology | None, Checked]:
    """A topology file and the manifests to apply on it (`up`, `cli`, `validate`): the
    topology (None when it is bad) and check_manifests against it, the topology's problems
    first. Never raises for bad input."""
    topo, problems = None, []
    try:
        topo = load_topology(topology_file)
    except SpecError as err:
        problems = err.problems
    checked = check_manifests(paths, topo, which=which)
    checked.problems[:0] = problems
    return topo, checked


def check_loaded(loaded: Sequence[Loaded], topology: Topology | None = None,
                 command_path: str | None = None, *, which: Which) -> Checked:
    """check_manifests for objects read already (read_manifests), e.g. a scenario's manifests
    together with those of its apply steps: each object on its own, then all of them
    together."""
    out = check_each(loaded, topology, command_path, which=which)
    together = check_together(loaded, topology)
    out.problems += together.problems
    out.warnings += together.warnings
    return out


def check_each(loaded: Sequence[Loaded], topology: Topology | None = None,
               command_path: str | None = None, *, which: Which) -> Checked:
    """The checks of one object at a time: its commands on the nodes, upstream's pod warnings,
    and with a topology, a nodeName that names no worker."""
    out = Checked(objects=[item.obj for item in loaded])
    path = container_path() if command_path is None else command_path
    for item in loaded:
        out.problems += _command_problems(item, path, which)
        out.warnings += _template_command_warnings(item, path, which)
        out.warnings += [problem_at(item, where, message) for where, message in pod_warnings(item.obj)]
    if topology is not None:
        out.warnings += _node_name_warnings(loaded, topology)
    return out


def check_together(loaded: Sequence[Loaded], topology: Topology | None = None) -> Checked:
    """The checks of objects that will exist at once: the API server's allocators (clusterIPs,
    nodePorts) and, with a topology, the pods the workers can hold."""
    out = Checked(objects=[item.obj for item in loaded])
    out.problems += _allocation_problems(loaded, topology)
    if topology is not None:
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

def problem_at(item: Loaded, where: Path_, message: str, line_of: Path_ | None = None) -> Problem:
    """A problem at `where` within the object `item` (the line of `line_of` when given)."""
    full = item.path + tuple(where)
    line = item.doc.line(item.path + tuple(line_of)) if line_of is not None else item.doc.line(full)
    return Problem(item.doc.file, line, field_name(full), message)


def _command_problems(item: Loaded, path: str, which: Which) -> list[Problem]:
    """A Pod's command must be on the nodes (refused); a Deployment's template's is warned
    about, since its pods are made later and fail as upstream's do (CreateContainerError)."""
    obj = item.obj
    if obj["kind"] != "Pod":
        return []
    return [problem_at(item, where, why) for where, why in pod_command_problems(obj, path, which)]


def _template_command_warnings(item: Loaded, path: str, which: Which) -> list[Problem]:
    prefix = pod_spec_path(item.obj)
    if item.obj["kind"] != "Deployment" or prefix is None:
        return []
    as_pod = {"spec": pod_spec(item.obj)}
    return [problem_at(item, prefix + tuple(where)[1:], f"{why}: its pods will fail with CreateContainerError")
            for where, why in pod_command_problems(as_pod, path, which)]


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
            alloc.admit(service, every=True)
        except AllocationError as err:
            for error in err.errors:
                where = _parse_field(error.field)
                # spec.clusterIPs is what upstream names; the file says spec.clusterIP.
                line_of = ("spec", "clusterIP") if where == ("spec", "clusterIPs") else where
                message = error.message
                if message.endswith(MISMATCHED_NETWORK) and topology is not None:
                    # upstream's words name no range since 1.33: the testbed adds the topology's
                    message += f" (the service range of topology {topology.name} is " \
                               f"{topology.service_cidr})"
                out.append(problem_at(item, where, message, line_of))
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
        out.append(problem_at(item, prefix + ("nodeName",),
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
            return [problem_at(item, where, f"{item.obj['kind']} {namespace}/{name} brings the pods of "
                                     f"these manifests to {total}, but {capacity_words(topology)}: "
                                     "the rest will not start")]
    return []


def warn_about_scale(doc: Document, path: Path_, replicas: int, topology: Topology) -> list[Problem]:
    """A scale step asking for more pods than the workers hold (upstream accepts any int32)."""
    capacity = pod_capacity(topology)
    if replicas <= capacity:
        return []
    return [doc.problem(path, f"{replicas} replicas will not all start: {capacity_words(topology)}")]
