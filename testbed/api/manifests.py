"""Pure: manifest files -> validated, defaulted Kubernetes objects (plain dicts).

`load_manifests` reads multi-document YAML (and `kind: List`), checks every object and raises
one SpecError listing every problem in every file, so that a set of manifests with one bad
document applies nothing. `check_object` / `validate_object` do the same for one object (the
API server uses them for objects that arrive over HTTP). Which kinds exist, and which checker
validates each, is the `KINDS` table; old Ingress versions are converted to networking.k8s.io/v1
on the way in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.api.endpointslices import check_endpointslice
from testbed.api.ingress import OLD_VERSIONS, check_ingress, convert_v1beta1
from testbed.api.meta import check_metadata
from testbed.api.netpol import check_networkpolicy
from testbed.api.pods import check_pod
from testbed.api.recordkinds import check_endpoints, check_event, check_lease
from testbed.api.schema import field_names, for_kind
from testbed.api.schema_base import CORE
from testbed.api.services import check_service
from testbed.api.store import key_of
from testbed.api.workloads import OLD_DEPLOYMENT_VERSIONS, check_deployment, convert_old_deployment
from testbed.spec.source import Document, Path_, Problem, SpecError, read_documents
from testbed.spec.validation import Checker

KindChecker = Callable[[Checker, Path_, dict], None]


def top_fields(group_version: str, kind: str) -> frozenset[str]:
    """The top-level fields of a kind, from the schema (testbed/api/schema.py)."""
    return field_names(for_kind(group_version, kind).name)


# apiVersion, kind, metadata, spec, status (what Nodes have; admission.check_node uses it).
TOP_FIELDS = top_fields("v1", "Node")


def check_namespace(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj, namespaced=False, name_rule="label")
    spec = ck.obj(obj, "spec", path, field_names(CORE + "NamespaceSpec"))
    if spec is not None:
        ck.string_list(spec, "finalizers", path + ("spec",))


# (apiVersion, kind) -> (checker, allowed top-level fields): the one place listing what the
# testbed accepts.
_CHECKERS: dict[tuple[str, str], KindChecker] = {
    ("v1", "Pod"): check_pod,
    ("v1", "Namespace"): check_namespace,
    ("v1", "Service"): check_service,
    ("v1", "Endpoints"): check_endpoints,
    ("v1", "Event"): check_event,
    ("apps/v1", "Deployment"): check_deployment,
    ("discovery.k8s.io/v1", "EndpointSlice"): check_endpointslice,
    ("networking.k8s.io/v1", "Ingress"): check_ingress,
    ("networking.k8s.io/v1", "NetworkPolicy"): check_networkpolicy,
    ("coordination.k8s.io/v1", "Lease"): check_lease,
}
KINDS: dict[tuple[str, str], tuple[KindChecker, frozenset[str]]] = {
    key: (checker, top_fields(*key)) for key, checker in _CHECKERS.items()}
# Old API versions, rewritten to a current one before checking: (apiVersion, kind) -> converter.
CONVERSIONS: dict[tuple[str, str], Callable[[dict], dict]] = {
    **{(version, "Ingress"): convert_v1beta1 for version in OLD_VERSIONS},
    **{(version, "Deployment"): convert_old_deployment for version in OLD_DEPLOYMENT_VERSIONS},
}


def _kind_names() -> list[str]:
    return sorted({kind for _, kind in KINDS} | {kind for _, kind in CONVERSIONS})


def _check_into(ck: Checker, path: Path_, data: object) -> dict | None:
    """Check one object at `path` of the document; the defaulted copy, or None if it is bad."""
    before = len(ck.problems)
    if not ck.is_type(path, data, "object"):
        return None
    assert isinstance(data, dict)
    obj = copy.deepcopy(data)
    api_version = ck.get(obj, "apiVersion", path, "string", required=True)
    kind = ck.get(obj, "kind", path, "string", required=True)
    if api_version is None or kind is None:
        return None
    convert = CONVERSIONS.get((api_version, kind))
    if convert is not None:
        obj = convert(obj)
        api_version = obj["apiVersion"]
    entry = KINDS.get((api_version, kind))
    if entry is None:
        # kubectl's words for a kind its server does not serve, at the field that is wrong:
        # the kind when no version has it, else the version; then what the testbed has
        known = list(KINDS) + list(CONVERSIONS)
        no_matches = f'no matches for kind "{kind}" in version "{api_version}"; supported: '
        if kind not in _kind_names():
            in_version = sorted({k for v, k in known if v == api_version})
            ck.add(path + ("kind",), no_matches + ", ".join(in_version or _kind_names()))
        else:
            versions = sorted({v for v, k in known if k == kind})
            ck.add(path + ("apiVersion",), no_matches + ", ".join(versions))
        return None
    checker, allowed = entry
    ck.fields(path, obj, allowed)
    checker(ck, path, obj)
    return obj if len(ck.problems) == before else None


DocumentCheck = Callable[[Document], tuple[list[tuple[Path_, dict]], list[Problem]]]


def checked_document(doc: Document) -> tuple[list[tuple[Path_, dict]], list[Problem]]:
    """(path in the document, object) for each good object of one document, and the problems."""
    ck = Checker(doc)
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
        ck.fields((), data, {"apiVersion", "kind", "metadata", "items"})
        objs = [(p, _check_into(ck, p, item)) for p, item in ck.items(data, "items", ())]
    else:
        objs = [((), _check_into(ck, (), data))]
    return [(p, o) for p, o in objs if o is not None], ck.problems


def check_object(obj: dict | Document, file: str = "<object>") -> tuple[dict | None, list[Problem]]:
    """One object: (defaulted copy or None, problems). Accepts a bare dict or a Document."""
    ck = Checker(obj) if isinstance(obj, Document) else Checker(None, file)
    data = obj.data if isinstance(obj, Document) else obj
    out = _check_into(ck, (), data)
    return out, ck.problems


def validate_object(obj: dict | Document) -> list[Problem]:
    """Every problem with one object (empty when it is valid)."""
    return check_object(obj)[1]


@dataclass(frozen=True)
class Loaded:
    """One object of a manifest file, validated and defaulted, and where it is written: its
    document and its path there (() or ("items", i) in a List), so that later checks (against
    a topology, testbed/checks.py) can name file, line and field too."""

    obj: dict
    doc: Document
    path: Path_


def read_manifests(paths: Sequence[str | Path], check: DocumentCheck = checked_document
                   ) -> tuple[list[Loaded], list[Problem]]:
    """Every good object in the files, in file order, and every problem in them (a file that
    cannot be read, bad YAML, an invalid object, one object defined twice); raises nothing.
    `check` makes one document's objects (checked_document's signature; a scenario's apply
    steps hand in one that checks references with stand-ins, testbed.scenario.references)."""
    problems: list[Problem] = []
    loaded: list[Loaded] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in paths:
        try:
            docs = read_documents(path)
        except SpecError as err:
            problems.extend(err.problems)
            continue
        for doc in docs:
            objs, found = check(doc)
            problems.extend(found)
            for where_in_doc, obj in objs:
                key = key_of(obj)
                where = f"{doc.file}:{doc.line(where_in_doc + ('metadata', 'name'))}"
                if key in seen:
                    problems.append(doc.problem(where_in_doc + ("metadata", "name"),
                                                f'Duplicate value: "{key[2]}": {key[0]} '
                                                f"{key[1] + '/' if key[1] else ''}{key[2]} "
                                                f"is also defined at {seen[key]}"))
                seen.setdefault(key, where)
                loaded.append(Loaded(obj, doc, where_in_doc))
    return loaded, problems


def load_manifests(paths: Sequence[str | Path]) -> list[dict]:
    """Every object in the files, validated and defaulted, in file order; SpecError otherwise."""
    loaded, problems = read_manifests(paths)
    if problems:
        raise SpecError(problems)
    return [item.obj for item in loaded]

