"""Pure: what a GET answers with, as the Accept header asks: the object, a Table, or metadata.

`negotiate(accept)` reads an Accept header as the API server's content negotiation does
(goautoneg's ordering by q and specificity; `as`, `g`, `v`, `stream`, `sv`, `pretty` media type
parameters) and returns a `Form`: plain JSON, a meta.k8s.io/v1 (or v1beta1) Table,
PartialObjectMetadata or PartialObjectMetadataList. Only JSON is produced here; a header that
accepts nothing this server can write is 406 NotAcceptable with upstream's message.

`render(form, result, ...)` turns a list or an object into the negotiated form: a Table has
upstream's columnDefinitions (testbed.api.printers), one row per object with its cells and
`object` per `includeObject` (None, Metadata: PartialObjectMetadata, the default, or Object),
and the list's resourceVersion, continue and remainingItemCount. `WatchRenderer` does the
same for watch events: each event's object becomes a Table with one row, and only the first
carries columnDefinitions (the rest null), as upstream's watch encoder does. Status objects
are never transformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from testbed.api.printers import printer_for
from testbed.api.query import INITIAL_EVENTS_END, QueryError, bad_request

JSON = "application/json"
META_GROUP = "meta.k8s.io"
META_VERSIONS = ("v1", "v1beta1")
TRANSFORMS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
INCLUDE_OBJECT = ("", "None", "Metadata", "Object")


def not_acceptable(message: str) -> QueryError:
    return QueryError(406, "NotAcceptable", message)


@dataclass(frozen=True)
class Form:
    """The negotiated answer: `kind` None for the object itself, else a meta.k8s.io kind."""

    kind: str | None = None
    version: str = "v1"
    pretty: bool = False

    @property
    def api_version(self) -> str:
        return f"{META_GROUP}/{self.version}"


def _clauses(header: str) -> list[tuple[str, str, float, dict[str, str]]]:
    """(type, subtype, q, params) of each clause, best first, as goautoneg.ParseAccept."""
    out = []
    for index, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media, params, q = pieces[0], {}, 1.0
        for p in pieces[1:]:
            key, _, value = p.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        main, _, sub = media.partition("/")
        if not main:
            continue
        out.append((index, main, sub or "*", q, params))
    out.sort(key=lambda c: (-c[3], c[1] == "*", c[2] == "*", c[0]))
    return [(t, s, q, p) for _, t, s, q, p in out]


def _accept(params: dict[str, str]) -> Form | None:
    """acceptMediaTypeOptions for JSON: the form these parameters ask for, or None when this
    server cannot produce it (another server version, a conversion it does not offer)."""
    kind = params.get("as")
    group, version = params.get("g", ""), params.get("v", "")
    if params.get("stream") and params["stream"] != "watch":
        return None
    if params.get("sv"):
        return None
    if "as" not in params and "g" not in params and "v" not in params:
        return Form(pretty=params.get("pretty") == "1")
    if kind not in TRANSFORMS or group != META_GROUP or version not in META_VERSIONS:
        return None
    return Form(kind, version, params.get("pretty") == "1")


def negotiate(accept: str | None) -> Form:
    """The form a request's Accept header asks for; 406 when this server produces none (for
    a watch too: upstream negotiates a list's media type before it looks at `watch`)."""
    if not accept or not accept.strip():
        return Form()
    for main, sub, _, params in _clauses(accept):
        if (main, sub) in (("application", "json"), ("application", "*"), ("*", "*")):
            form = _accept(params)
            if form is not None:
                return form
    raise not_acceptable(f"only the following media types are accepted: {JSON}")


def include_object(query: Mapping[str, list[str]]) -> str:
    """The includeObject option of a Table request; 400 for an unknown one, as upstream."""
    value = (query.get("includeObject") or [""])[0]
    if value not in INCLUDE_OBJECT:
        raise bad_request(f"Unable to convert to Table as requested: includeObject: Invalid "
                          f'value: "{value}": must be \'Metadata\', \'Object\', \'None\', or '
                          "empty")
    return value


# -- conversions -----------------------------------------------------------------------------------

def partial_metadata(obj: dict, api_version: str = f"{META_GROUP}/v1") -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version,
            "metadata": dict(obj.get("metadata") or {})}


def _row_object(obj: dict, include: str, api_version: str) -> dict | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if include == "Object" and annotations.get(INITIAL_EVENTS_END) != "true":
        return obj
    if include == "None":
        return None
    return partial_metadata(obj, api_version)


def table(kind: str, objects: list[dict], now: datetime, include: str = "",
          api_version: str = f"{META_GROUP}/v1", list_meta: dict | None = None,
          headers: bool = True) -> dict:
    """A Table of `objects` of `kind`; `list_meta` is the list's (or the one object's) metadata
    to carry over: resourceVersion, continue, remainingItemCount."""
    printer = printer_for(kind)
    rows = []
    for obj in objects:
        row: dict = {"cells": printer.row(obj, now)}
        conditions = printer.conditions(obj) if printer.conditions else []
        if conditions:
            row["conditions"] = conditions
        shown = _row_object(obj, include, api_version)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    meta = {k: v for k, v in (list_meta or {}).items()
            if k in ("resourceVersion", "continue", "remainingItemCount") and v not in ("", None)}
    return {"kind": "Table", "apiVersion": api_version, "metadata": meta,
            "columnDefinitions": [c.definition() for c in printer.columns] if headers else None,
            "rows": rows}


def render(form: Form, result: dict, kind: str, now: datetime, include: str = "",
           is_list: bool = False) -> dict:
    """`result` (a list, or one object) in the negotiated form. Status objects pass through."""
    if form.kind is None or result.get("kind") == "Status":
        return result
    if form.kind == "Table":
        objects = list(result.get("items") or []) if is_list else [result]
        return table(kind, objects, now, include, form.api_version, result.get("metadata"))
    if form.kind == "PartialObjectMetadata":
        if is_list:
            raise not_acceptable("you requested PartialObjectMetadata, but the requested object "
                                 f"is a list (*{kind}List)")
        return partial_metadata(result, form.api_version)
    if not is_list:
        raise not_acceptable("you requested PartialObjectMetadataList, but the requested "
                             f"object is not a list (*{kind})")
    meta = {k: v for k, v in (result.get("metadata") or {}).items()
            if k in ("resourceVersion", "continue", "remainingItemCount")}
    return {"kind": "PartialObjectMetadataList", "apiVersion": form.api_version,
            "metadata": meta,
            "items": [partial_metadata(i, form.api_version) for i in result.get("items") or []]}


class WatchRenderer:
    """Watch events' objects in the negotiated form; a Table's columns go out once."""

    def __init__(self, form: Form, kind: str, include: str = ""):
        self.form, self.kind, self.include = form, kind, include
        self._headers = True

    def event(self, type_: str, obj: dict, now: datetime) -> dict:
        if self.form.kind is None or obj.get("kind") == "Status":
            return {"type": type_, "object": obj}
        if self.form.kind == "Table":
            out = table(self.kind, [obj], now, self.include, self.form.api_version,
                        obj.get("metadata"), headers=self._headers)
            self._headers = False
            return {"type": type_, "object": out}
        return {"type": type_, "object": partial_metadata(obj, self.form.api_version)}
