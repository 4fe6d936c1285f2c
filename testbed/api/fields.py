"""Pure: field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Failed`), as upstream.

Parsing is apimachinery's pkg/fields (terms split on unescaped commas, operators `!=`, `==`,
`=`, values unescaped with `\\`); which field labels each kind supports is each kind's
`AddFieldLabelConversionFunc` (pkg/apis/*/v1/conversion.go), and the value each label has on
an object is each kind's `GetAttrs` (registry strategies). Kinds without a conversion function
support `metadata.name` and `metadata.namespace`, refused otherwise with the default
conversion's words. Errors are `FieldSelectorError`, answered with 400 BadRequest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass


class FieldSelectorError(ValueError):
    """A field selector that does not parse, or names a field the kind does not support."""


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" (also for "==") or "!="
    value: str

    def matches(self, fields: dict[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have == self.value if self.operator == "=" else have != self.value

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.operator}{escaped}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: dict[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def requires_exact(self, field: str) -> str | None:
        """The value `field` must equal, as RequiresExactMatch (None when not pinned)."""
        return next((r.value for r in self.requirements
                     if r.field == field and r.operator == "="), None)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# -- per kind: supported labels and their values -------------------------------------------------

def _meta(obj: dict, namespaced: bool = True) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    out = {"metadata.name": meta.get("name", "")}
    if namespaced:
        out["metadata.namespace"] = meta.get("namespace", "")
    return out


def _pod(pod: dict) -> dict[str, str]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    return {**_meta(pod), "spec.nodeName": spec.get("nodeName", ""),
            "spec.restartPolicy": spec.get("restartPolicy", ""),
            "spec.schedulerName": spec.get("schedulerName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
            "status.phase": status.get("phase", ""),
            "status.podIP": (ips[0].get("ip", "") if ips else status.get("podIP", "")),
            "status.nominatedNodeName": status.get("nominatedNodeName", "")}


def _event(ev: dict) -> dict[str, str]:
    ref = ev.get("involvedObject") or {}
    source = (ev.get("source") or {}).get("component") or ev.get("reportingComponent", "")
    return {**_meta(ev), **{f"involvedObject.{k}": str(ref.get(k, "")) for k in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
            "reason": ev.get("reason", ""), "reportingComponent": ev.get("reportingComponent", ""),
            "source": source, "type": ev.get("type", "")}


def _node(node: dict) -> dict[str, str]:
    unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
    return {**_meta(node, namespaced=False),
            "spec.unschedulable": "true" if unschedulable else "false"}


def _namespace(ns: dict) -> dict[str, str]:
    name = (ns.get("metadata") or {}).get("name", "")
    return {**_meta(ns, namespaced=False), "name": name,
            "status.phase": (ns.get("status") or {}).get("phase", "")}


def _service(svc: dict) -> dict[str, str]:
    spec = svc.get("spec") or {}
    return {**_meta(svc), "spec.clusterIP": spec.get("clusterIP", ""),
            "spec.type": spec.get("type", "")}


@dataclass(frozen=True)
class KindFields:
    labels: tuple[str, ...]  # what the conversion function accepts
    values: Callable[[dict], dict[str, str]]
    renamed: tuple[tuple[str, str], ...] = ()  # legacy label -> the label it stands for


KIND_FIELDS: dict[str, KindFields] = {
    "Pod": KindFields(("metadata.name", "metadata.namespace", "spec.nodeName",
                       "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                       "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                       "status.nominatedNodeName"), _pod, (("spec.host", "spec.nodeName"),)),
    "Event": KindFields(("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion",
                         "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                         "reportingComponent", "source", "type", "metadata.namespace",
                         "metadata.name"), _event),
    "Node": KindFields(("metadata.name", "spec.unschedulable"), _node),
    "Namespace": KindFields(("status.phase", "metadata.name"), _namespace),
    "Service": KindFields(("metadata.namespace", "metadata.name", "spec.clusterIP",
                           "spec.type"), _service),
}
DEFAULT_LABELS = ("metadata.name", "metadata.namespace")


def supported_labels(kind: str) -> tuple[str, ...]:
    known = KIND_FIELDS.get(kind)
    return known.labels + tuple(old for old, _ in known.renamed) if known else DEFAULT_LABELS


def field_values(kind: str, obj: dict, namespaced: bool = True) -> dict[str, str]:
    """The object's selectable fields (its GetAttrs field set)."""
    known = KIND_FIELDS.get(kind)
    return known.values(obj) if known else _meta(obj, namespaced)


def _convert(kind: str, label: str) -> str:
    known = KIND_FIELDS.get(kind)
    if known is None:
        if label in DEFAULT_LABELS:
            return label
        raise FieldSelectorError(f'{json.dumps(label)} is not a known field selector: only '
                                 '"metadata.name", "metadata.namespace"')
    renamed = dict(known.renamed)
    if label in renamed:
        return renamed[label]
    if label not in known.labels:
        raise FieldSelectorError(f"field label not supported: {label}")
    return label


# -- parsing ---------------------------------------------------------------------------------------

def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise FieldSelectorError("invalid field selector: invalid escape sequence: \\"
                                         + ch)
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise FieldSelectorError(f"invalid field selector: unescaped character in value: "
                                     f"{ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise FieldSelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_fields(text: str, kind: str | None = None) -> FieldSelector:
    """Parse, then (with `kind`) check each label against the kind's conversion function."""
    if not text:
        return FieldSelector()
    out = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        label, op, value = split
        value = _unescape(value)
        if kind is not None:
            label = _convert(kind, label)
        out.append(FieldRequirement(label, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(out))
