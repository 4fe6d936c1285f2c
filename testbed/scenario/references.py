"""Pure: the load-time side of ${pod:NAME.ip}, ${service:NAME.clusterIP} and ${node:NAME.ip}.

`read_step_manifests` reads an apply step's manifest files with testbed.api.manifests'
read_manifests, its documents checked with stand-ins in the references' place (a
pod's and a Service's IP are not known before the run; a node's is the topology's) and put
back in the objects it returns, to be resolved when the step runs
(testbed.scenario.substitution). `reference_problems` says, for every reference of every step
(its manifests, a run step's command, the texts a run or get step expects), what is wrong:
a malformed one, or a pod, Service or node that is neither the cluster's, the scenario's
manifests', an earlier apply step's nor the topology's. A reference in the scenario's own
manifests (applied before any step) is refused: nothing of the run is there to read yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.api.manifests import Loaded, checked_document, read_manifests
from testbed.api.meta import DEFAULT_NAMESPACE, object_key
from testbed.checks import problem_at
from testbed.scenario.runget import GetField, RunCommand
from testbed.scenario.substitution import (
    PLACEHOLDER_IP,
    Ref,
    check,
    find,
    has_references,
    restore,
    substitute,
)
from testbed.spec.source import Document, Path_, Problem
from testbed.spec.validation import fmt


def placeholder_for(addresses: dict[str, str]) -> Callable[[Ref], str]:
    """The stand-in of a reference for load-time checks: a node's own address when the
    topology has it, else PLACEHOLDER_IP."""
    def placeholder(ref: Ref) -> str:
        return addresses.get(ref.name, PLACEHOLDER_IP) if ref.kind == "node" else PLACEHOLDER_IP
    return placeholder


def read_step_manifests(paths: Sequence[str | Path], placeholder: Callable[[Ref], str]
                        ) -> tuple[list[Loaded], list[Problem], list[tuple[Loaded, Path_, Ref]]]:
    """(objects, problems, references: (object, path in it, reference)) of the files."""
    def check(doc: Document) -> tuple[list[tuple[Path_, dict]], list[Problem]]:
        if not has_references(doc.data):
            return checked_document(doc)
        objs, found = checked_document(Document(doc.file, substitute(doc.data, placeholder),
                                                doc.lines, doc.start_line))
        return [(where, restore(obj, _at(doc.data, where), placeholder)) for where, obj in objs], found

    loaded, problems = read_manifests(paths, check)
    refs = [(item, p, ref) for item in loaded for p, _, ref in find(_at(item.doc.data, item.path))]
    return loaded, problems, refs


def _at(data, path: Path_):
    for key in path:
        data = data[key]
    return data


def _known(ref: Ref, pods: dict[str, list[str]], services: set[tuple[str, str]],
           hosts: set[str]) -> str | None:
    """Why the reference names nothing that will be there (None when it does)."""
    if ref.kind == "node":
        if ref.name not in hosts:
            return (f"{ref.text}: no node, gateway or client {ref.name} "
                    f"(known: {', '.join(sorted(hosts))})")
        return None
    namespace, slash, name = ref.name.rpartition("/")
    if ref.kind == "service":
        if (namespace or DEFAULT_NAMESPACE, name) not in services:
            return (f"{ref.text}: no Service {namespace or DEFAULT_NAMESPACE}/{name} of the "
                    "cluster, the scenario's manifests or an earlier apply step (Services: "
                    f"{', '.join(sorted(f'{ns}/{n}' for ns, n in services)) or 'none'})")
        return None
    spaces = pods.get(name, [])
    if slash and namespace not in spaces or not spaces:
        known = sorted(f"{ns}/{n}" for n, nss in pods.items() for ns in nss)
        return (f"{ref.text}: no pod {ref.name} of the scenario's manifests or an earlier apply "
                f"step (pods: {', '.join(known) or 'none'})")
    if not slash and len(spaces) > 1:
        return (f"{ref.text}: ambiguous: pods of that name are in {len(spaces)} namespaces "
                f"({', '.join(f'{ns}/{name}' for ns in spaces)}): name one as NAMESPACE/NAME")
    return None


def reference_problems(scenario, hosts: set[str], base: list[dict], base_loaded: Sequence[Loaded],
                       created: dict[int, list[dict]],
                       step_refs: dict[int, list[tuple[Loaded, Path_, Ref]]],
                       problem: Callable[[Path_, str], Problem]) -> list[Problem]:
    """Every problem with the scenario's references, in step order (`problem(path, message)`
    makes one at a path of the scenario file; `base` the cluster's and the manifests' objects,
    `created` apply steps' objects by index, `step_refs` their references)."""
    out: list[Problem] = []
    for item in base_loaded:
        out += [problem_at(item, p, f"Invalid value: {fmt(text)}: {ref.text}: references are "
                                    "resolved in the manifests of apply steps, when earlier steps "
                                    "made what they name; these manifests are applied before any "
                                    "step")
                for p, text, ref in find(item.obj)]
    pods: dict[str, list[str]] = {}            # name -> its namespaces, so far
    services: set[tuple[str, str]] = set()

    def add(objects: list[dict]) -> None:
        for obj in objects:
            if obj.get("kind") == "Pod":
                ns, name = object_key(obj)
                if ns not in pods.setdefault(name, []):
                    pods[name].append(ns)
            elif obj.get("kind") == "Service":
                services.add(object_key(obj))

    add(base)
    for index, step in enumerate(scenario.steps):
        for item, path, ref in step_refs.get(index, []):
            why = check(ref) or _known(ref, pods, services, hosts)
            if why:
                out.append(problem_at(item, path, f"Invalid value: {fmt(_at(item.obj, path))}: {why}"))
        texts = step.action.texts() if isinstance(step.action, (RunCommand, GetField)) else []
        for where, text in texts:
            for _, _, ref in find(text):
                why = _known(ref, pods, services, hosts)   # well-formed: checked at load
                if why:
                    out.append(problem(("steps", index, *where), f"Invalid value: {fmt(text)}: {why}"))
        add(created.get(index, []))
    return out

