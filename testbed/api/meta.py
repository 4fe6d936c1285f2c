"""Pure: ObjectMeta and LabelSelector validation, and label selector matching.

`check_metadata` validates and defaults `metadata` of any object (namespace defaults to
"default" for namespaced kinds). `selector_matches` / `parse_selector` are shared by the store
(list with a label selector) and the controllers (Deployments, Services, EndpointSlices).
"""

from __future__ import annotations

from typing import Any

from testbed.api.validation import (
    Checker,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
)
from testbed.spec.source import Path_

DEFAULT_NAMESPACE = "default"

METADATA_FIELDS = frozenset({
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion",
    "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
    "ownerReferences", "finalizers", "managedFields", "selfLink",
})
SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"]


def check_labels(ck: Checker, path: Path_, labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not ck.is_type(path, labels, "object"):
        return {}
    for key, value in labels.items():
        ck.names(path, key, is_qualified_name(str(key)))
        if ck.is_type(path + (key,), value, "string"):
            ck.names(path + (key,), value, is_label_value(value))
    return labels


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
        ck.names(mpath + ("annotations",), key, is_qualified_name(str(key)))
        ck.is_type(mpath + ("annotations", key), value, "string")
    return meta


def check_label_selector(ck: Checker, path: Path_, selector: Any) -> dict | None:
    """A metav1.LabelSelector (matchLabels + matchExpressions)."""
    sel = ck.fields(path, selector, {"matchLabels", "matchExpressions"})
    if sel is None:
        return None
    check_labels(ck, path + ("matchLabels",), sel.get("matchLabels"))
    for p, expr in ck.items(sel, "matchExpressions", path):
        e = ck.fields(p, expr, {"key", "operator", "values"})
        if e is None:
            continue
        key = ck.get(e, "key", p, "string", required=True)
        if key is not None:
            ck.names(p + ("key",), key, is_qualified_name(key))
        op = ck.enum(e, "operator", p, SELECTOR_OPERATORS)
        if e.get("operator") is None:
            ck.required(p + ("operator",))
        values = ck.string_list(e, "values", p)
        if op in ("In", "NotIn") and not values:
            ck.required(p + ("values",))
        if op in ("Exists", "DoesNotExist") and values:
            ck.forbidden(p + ("values",), "may not be specified when `operator` is 'Exists' or "
                                          "'DoesNotExist'")
    return sel


def selector_matches(selector: dict | None, labels: dict[str, str] | None) -> bool:
    """Match a LabelSelector dict, or a plain {key: value} map (Service style), against labels.

    An empty selector matches everything, as in Kubernetes LabelSelectorAsSelector.
    """
    labels = labels or {}
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


def parse_selector(text: str) -> dict:
    """A label selector string ("app=web,tier!=db,env in (a,b),!x,y") as a LabelSelector dict."""
    match: dict[str, str] = {}
    exprs: list[dict] = []
    for term in _split_terms(text):
        if " in " in term or " notin " in term:
            op = "In" if " in " in term else "NotIn"
            key, rest = term.split(" in " if op == "In" else " notin ", 1)
            values = [v.strip() for v in rest.strip().strip("()").split(",") if v.strip()]
            exprs.append({"key": key.strip(), "operator": op, "values": values})
        elif "!=" in term:
            key, value = term.split("!=", 1)
            exprs.append({"key": key.strip(), "operator": "NotIn", "values": [value.strip()]})
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            match[key.strip()] = value.strip()
        elif term.startswith("!"):
            exprs.append({"key": term[1:].strip(), "operator": "DoesNotExist"})
        else:
            exprs.append({"key": term, "operator": "Exists"})
    return {"matchLabels": match, "matchExpressions": exprs}


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    terms.append(cur.strip())
    return [t for t in terms if t]
