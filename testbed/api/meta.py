"""Pure: ObjectMeta and LabelSelector validation, and label selector matching.

`check_metadata` validates and defaults `metadata` of any object (namespace defaults to
"default" for namespaced kinds). `selector_matches` / `parse_selector` are shared by the store
(list with a label selector) and the controllers (Deployments, Services, EndpointSlices);
selector strings are parsed by testbed.spec.labels (upstream's grammar and error messages).
"""

from __future__ import annotations

from typing import Any

from testbed.api.resources import CLUSTER_SCOPED
from testbed.api.schema import field_names
from testbed.api.schema_base import META
from testbed.spec.labels import LabelSelector, parse_labels
from testbed.spec.source import Path_
from testbed.spec.validation import (
    Checker,
    check_labels,
    fmt,
    go_map,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
)

DEFAULT_NAMESPACE = "default"


def object_key(obj: dict) -> tuple[str, str]:
    """(namespace, name): the one key every part of the testbed files an object under.

    The namespace is the object's own, "default" when it leaves it out (as the API server
    defaults it), and "" for cluster-scoped kinds (Namespace, Node, ...), whose objects have
    none. Objects without a kind (list items) are taken as namespaced.
    """
    meta = obj.get("metadata") or {}
    if obj.get("kind") in CLUSTER_SCOPED:
        return "", str(meta.get("name") or "")
    return str(meta.get("namespace") or DEFAULT_NAMESPACE), str(meta.get("name") or "")


def namespace_of(obj: dict) -> str:
    """The namespace of object_key(obj)."""
    return object_key(obj)[0]

# What each object may hold: the schema's fields (testbed/api/schema_meta.py).
METADATA_FIELDS = field_names(META + "ObjectMeta")
SELECTOR_FIELDS = field_names(META + "LabelSelector")
REQUIREMENT_FIELDS = field_names(META + "LabelSelectorRequirement")


def check_metadata(ck: Checker, path: Path_, obj: dict, namespaced: bool = True,
                   name_rule: str = "subdomain") -> dict | None:
    """Validate obj['metadata'] and fill in the namespace. `path` is the object's path."""
    meta = ck.obj(obj, "metadata", path, METADATA_FIELDS, required=True)
    if meta is None:
        return None
    mpath = path + ("metadata",)
    name = ck.get(meta, "name", mpath, "string", required=True)
    if name is not None:
        rule = {"label": is_dns1123_label, "dns1035": is_dns1035_label}.get(
            name_rule, is_dns1123_subdomain)
        ck.names(mpath + ("name",), name, rule(name))
    if namespaced:
        ns = ck.get(meta, "namespace", mpath, "string")
        if ns is None or ns == "":
            meta["namespace"] = DEFAULT_NAMESPACE
        else:
            ck.names(mpath + ("namespace",), ns, is_dns1123_label(ns))
    elif meta.get("namespace"):
        ck.forbidden(mpath + ("namespace",), "not allowed on this type")
    check_labels(ck, mpath + ("labels",), meta.get("labels"))
    annotations = ck.get(meta, "annotations", mpath, "object") or {}
    for key, value in annotations.items():
        with ck.line_of(mpath + ("annotations", key)):
            ck.names(mpath + ("annotations",), key, is_qualified_name(str(key)))
        ck.is_type(mpath + ("annotations", key), value, "string")
    return meta


def check_label_selector(ck: Checker, path: Path_, selector: Any) -> dict | None:
    """A metav1.LabelSelector (matchLabels + matchExpressions)."""
    sel = ck.fields(path, selector, SELECTOR_FIELDS)
    if sel is None:
        return None
    check_labels(ck, path + ("matchLabels",), sel.get("matchLabels"))
    for p, expr in ck.items(sel, "matchExpressions", path):
        e = ck.fields(p, expr, REQUIREMENT_FIELDS)
        if e is None:
            continue
        # ValidateLabelSelectorRequirement: the operator, the key, then the values
        op = ck.get(e, "operator", p, "string")
        values = ck.string_list(e, "values", p)
        if op in ("In", "NotIn"):
            if not values:
                ck.required(p + ("values",), "must be specified when `operator` is 'In' or "
                                             "'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                ck.forbidden(p + ("values",), "may not be specified when `operator` is 'Exists' "
                                              "or 'DoesNotExist'")
        elif op is not None or e.get("operator") is None:
            ck.invalid(p + ("operator",), op or "", "not a valid selector operator")
        key = ck.get(e, "key", p, "string")
        if key is not None or e.get("key") is None:
            ck.names(p + ("key",), key or "", is_qualified_name(key or ""))
        for i, value in enumerate(values):
            ck.names(p + ("values", i), value, is_label_value(value))
    return sel


def go_strings(values: Any) -> str:
    """A []string as Go's %#v prints it, as field errors print list values (None: nil)."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(fmt(str(v)) for v in values) + "}"


def go_selector(selector: dict) -> str:
    """A metav1.LabelSelector as Go's %#v prints it, as field errors print one."""
    labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    shown = "[]v1.LabelSelectorRequirement(nil)" if exprs is None else (
        "[]v1.LabelSelectorRequirement{" + ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{fmt(str(e.get('key') or ''))}, "
            f"Operator:{fmt(str(e.get('operator') or ''))}, Values:{go_strings(e.get('values'))}}}"
            for e in exprs if isinstance(e, dict)) + "}")
    return (f"v1.LabelSelector{{MatchLabels:{go_map(labels if isinstance(labels, dict) else None)}"
            f", MatchExpressions:{shown}}}")


def selector_matches(selector: dict | LabelSelector | None,
                     labels: dict[str, str] | None) -> bool:
    """Match a LabelSelector dict, a plain {key: value} map (Service style), or a parsed
    selector string (parse_selector) against labels.

    An empty selector matches everything, as in Kubernetes LabelSelectorAsSelector.
    """
    labels = labels or {}
    if isinstance(selector, LabelSelector):
        return selector.matches(labels)
    if not selector:
        return True
    if "matchLabels" in selector or "matchExpressions" in selector:
        match = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
    else:
        match, exprs = selector, []
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in exprs:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def parse_selector(text: str) -> LabelSelector:
    """A label selector string ("app=web,tier!=db,env in (a,b),!x,y"), for selector_matches;
    labels.SelectorError (a ValueError) with upstream's message when it does not parse."""
    return parse_labels(text)
