"""Pure: the options of list and watch requests, decided as the upstream API server decides them.

`list_options(query, kind)` reads `labelSelector`, `fieldSelector`, `watch`,
`allowWatchBookmarks`, `resourceVersion`, `resourceVersionMatch`, `timeoutSeconds`, `limit`,
`continue` and `sendInitialEvents` from a request's query string, validates them as
ValidateListOptions does (422 on ListOptions.meta.k8s.io) and parses the selectors (400 with
pkg/labels' and pkg/fields' messages). Every option is then honoured by the API layer, or
refused: nothing is silently ignored.

`read_plan` turns resourceVersion, resourceVersionMatch and continue into what a list must
read: the latest state, or the state at one resourceVersion (a continue token's, or an Exact
match); `page` cuts a sorted listing into a page with its continue token and
remainingItemCount. Continue tokens are upstream's: base64url (unpadded) JSON
`{"v": "meta.k8s.io/v1", "rv": N, "start": "KEY\\u0000"}`, KEY being the object's storage key
under the listed prefix (`NAME` in a namespace, `NAMESPACE/NAME` across namespaces).

Refusals are `QueryError`, an ApiFailure (a Status) that can carry a 410's fresh continue token
and a 504's retryAfterSeconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from testbed.api.failures import ApiFailure
from testbed.api.fields import FieldSelector, FieldSelectorError, field_values, parse_fields
from testbed.spec.labels import LabelSelector, SelectorError, parse_labels

EXACT, NOT_OLDER_THAN = "Exact", "NotOlderThan"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"  # the annotation on the initial-events bookmark
FRESHNESS_WAIT = 3.0  # seconds a read waits for a resourceVersion not yet reached (the cacher's)
BOOKMARK_PERIOD = 60.0  # seconds between watch bookmarks (the cacher's bookmarkFrequency)

EXPIRED_LIST = "The resourceVersion for the provided list is too old."
EXPIRED_CONTINUE = ("The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use "
                    "the continue token in this response to retrieve the remainder of the "
                    "results. Continuing with the provided token results in an inconsistent "
                    "list - objects that were created, modified, or deleted between the time "
                    "the first chunk was returned and now may show up in the list.")


class QueryError(ApiFailure):
    """A refused request option, answered as a Status (with its extra fields, when any)."""

    def __init__(self, code: int, reason: str, message: str, causes: list[dict] | None = None,
                 list_continue: str | None = None, retry_after: int | None = None):
        super().__init__(code, reason, message, causes)
        self.list_continue = list_continue  # a fresh token a 410 offers (metadata.continue)
        self.retry_after = retry_after

    def status(self) -> dict:
        out = super().status()
        if self.list_continue:
            out["metadata"] = {"continue": self.list_continue}
        if self.retry_after is not None:
            out.setdefault("details", {})["retryAfterSeconds"] = self.retry_after
        return out


def bad_request(message: str) -> QueryError:
    return QueryError(400, "BadRequest", message)


def expired(message: str, list_continue: str | None = None) -> QueryError:
    return QueryError(410, "Expired", message, list_continue=list_continue)


def too_large(wanted: int, current: int) -> QueryError:
    """504 as storage.NewTooLargeResourceVersionError words it (clients retry on its cause)."""
    return QueryError(504, "Timeout", f"Timeout: Too large resource version: {wanted}, "
                      f"current: {current}",
                      [{"reason": "ResourceVersionTooLarge",
                        "message": "Too large resource version"}], retry_after=1)


# -- options ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListOptions:
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    watch: bool = False
    allow_bookmarks: bool = False
    resource_version: str = ""
    match: str = ""  # resourceVersionMatch
    timeout_seconds: int | None = None
    limit: int = 0  # 0 (or less): everything
    continue_token: str = ""
    send_initial_events: bool | None = None

    def selects_everything(self) -> bool:
        return self.labels.empty() and self.fields.empty()

    def predicate(self, kind: str, namespaced: bool = True) -> Callable[[dict], bool] | None:
        """The selectors as one test of an object; None when they select everything."""
        if self.selects_everything():
            return None
        labels, fields = self.labels, self.fields

        def matches(obj: dict) -> bool:
            return labels.matches((obj.get("metadata") or {}).get("labels")) and (
                fields.empty() or fields.matches(field_values(kind, obj, namespaced)))

        return matches


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None  # upstream's codec takes the first value


def _bool(query: Mapping[str, list[str]], name: str) -> bool | None:
    """As Convert_Slice_string_To_bool: anything but "0" or "false" (any case) is true."""
    value = _first(query, name)
    if value is None:
        return None
    return not (value == "0" or value.lower() == "false")


def _int(query: Mapping[str, list[str]], name: str) -> int | None:
    value = _first(query, name)
    if value is None:
        return None
    try:
        return int(value, 10)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing {json.dumps(value)}: invalid syntax') \
            from None


def _invalid(problems: list[tuple[str, str, str]]) -> QueryError:
    """422 on ListOptions.meta.k8s.io, as errors.NewInvalid words it."""
    texts = [f"{f}: {body}" for f, _, body in problems]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return QueryError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {joined}',
                      [{"reason": reason, "message": body, "field": f}
                       for f, reason, body in problems])


def _forbidden(detail: str) -> tuple[str, str, str]:
    return ("resourceVersionMatch", "FieldValueForbidden", f"Forbidden: {detail}")


def _not_supported(value: str, allowed: list[str]) -> tuple[str, str, str]:
    return ("resourceVersionMatch", "FieldValueNotSupported",
            f"Unsupported value: {json.dumps(value)}: supported values: "
            + ", ".join(json.dumps(a) for a in allowed))


def _validate(o: ListOptions) -> None:
    """ValidateListOptions / validateWatchOptions, with the WatchList feature enabled."""
    problems: list[tuple[str, str, str]] = []
    match = o.match
    if o.watch:
        if o.send_initial_events is not None and match != NOT_OLDER_THAN:
            problems.append(_forbidden("sendInitialEvents requires setting resourceVersionMatch "
                                       f"to {NOT_OLDER_THAN}"))
        if match:
            if o.send_initial_events is None:
                problems.append(_forbidden("resourceVersionMatch is forbidden for watch unless "
                                           "sendInitialEvents is provided"))
            if match != NOT_OLDER_THAN:
                problems.append(_not_supported(match, [NOT_OLDER_THAN]))
            if o.continue_token:
                problems.append(_forbidden("resourceVersionMatch is forbidden when continue is "
                                           "provided"))
    else:
        if match:
            if not o.resource_version:
                problems.append(_forbidden("resourceVersionMatch is forbidden unless "
                                           "resourceVersion is provided"))
            if o.continue_token:
                problems.append(_forbidden("resourceVersionMatch is forbidden when continue is "
                                           "provided"))
            if match not in (EXACT, NOT_OLDER_THAN):
                problems.append(_not_supported(match, [EXACT, NOT_OLDER_THAN, ""]))
            if match == EXACT and o.resource_version == "0":
                problems.append(_forbidden('resourceVersionMatch "exact" is forbidden for '
                                           'resourceVersion "0"'))
        if o.send_initial_events is not None:
            problems.append(("sendInitialEvents", "FieldValueForbidden",
                             "Forbidden: sendInitialEvents is forbidden for list"))
    if problems:
        raise _invalid(problems)


def list_options(query: Mapping[str, list[str]], kind: str, name: str | None = None,
                 watch: bool | None = None) -> ListOptions:
    """The options of a list or watch of `kind` (`name`: a request naming one object, whose
    fieldSelector may only pin metadata.name to that name)."""
    try:
        labels = parse_labels(_first(query, "labelSelector") or "")
        fields = parse_fields(_first(query, "fieldSelector") or "", kind)
    except (SelectorError, FieldSelectorError) as err:
        raise bad_request(str(err)) from None
    if name is not None:
        pinned = fields.requires_exact("metadata.name")
        if not fields.empty() and pinned != name:
            raise bad_request("fieldSelector metadata.name doesn't match requested name")
        if fields.empty():
            fields = parse_fields(f"metadata.name={name}")
    opts = ListOptions(
        labels=labels, fields=fields,
        watch=bool(_bool(query, "watch")) if watch is None else watch,
        allow_bookmarks=bool(_bool(query, "allowWatchBookmarks")),
        resource_version=_first(query, "resourceVersion") or "",
        match=_first(query, "resourceVersionMatch") or "",
        timeout_seconds=_int(query, "timeoutSeconds"), limit=_int(query, "limit") or 0,
        continue_token=_first(query, "continue") or "",
        send_initial_events=_bool(query, "sendInitialEvents"))
    _validate(opts)
    return opts


def parse_resource_version(text: str) -> int:
    """"" and "0" are 0; otherwise a non-negative integer, or 400 as the versioner words it."""
    if text in ("", "0"):
        return 0
    if text.isdigit():
        return int(text)
    raise bad_request(f'invalid resource version: resourceVersion: Invalid value: '
                      f'{json.dumps(text)}: strconv.ParseUint: parsing {json.dumps(text)}: '
                      "invalid syntax")


# -- continue tokens -------------------------------------------------------------------------------

def storage_key(obj: dict, all_namespaces: bool) -> str:
    """The object's key under the listed prefix: NAME, or NAMESPACE/NAME across namespaces."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    return f"{meta.get('namespace', '')}/{name}" if all_namespaces else name


def encode_continue(rv: int, start: str) -> str:
    """A token resuming at key `start` (the last key shown + "\\x00"); rv -1: the latest."""
    data = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, start key); 400 "invalid continue token: ..." as upstream."""
    def invalid(why: str) -> QueryError:
        return bad_request(f"invalid continue token: {why}")

    try:
        if "=" in token or "+" in token or "/" in token:  # RawURLEncoding: no padding
            raise ValueError("illegal base64 data")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise invalid(f"continue key is not valid: {err}") from None
    if not isinstance(data, dict):
        raise invalid("continue key is not valid: not an object")
    if data.get("v") != "meta.k8s.io/v1":
        raise invalid("continue key is not valid: server does not recognize this encoded "
                      f"version {data.get('v', '')}")
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise invalid("continue key is not valid: incorrect encoded start resourceVersion "
                      "(version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise invalid("continue key is not valid: encoded start key empty (version "
                      "meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if key.startswith("//") or posixpath.normpath(key) != key:  # no way above the prefix
        raise invalid(f"continue key is not valid: {start}")
    return rv, key[1:]


# -- what a list reads -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadPlan:
    at: int | None  # None: the latest state; else the state at this resourceVersion
    not_older_than: int = 0  # the latest state must be at least this fresh (wait, then 504)
    start_key: str = ""  # continue after this key (inclusive: tokens carry KEY + "\\x00")
    from_token: bool = False


def read_plan(o: ListOptions) -> ReadPlan:
    """ValidateListOptions of pkg/storage, and the cacher's choice between its cache (the
    latest state here) and an exact read."""
    if o.continue_token:
        rv, start = decode_continue(o.continue_token)
        if o.resource_version not in ("", "0"):
            raise bad_request("specifying resource version is not allowed when using continue")
        return ReadPlan(at=rv if rv > 0 else None, start_key=start, from_token=True)
    wanted = parse_resource_version(o.resource_version)
    if o.match == EXACT or (not o.match and o.limit > 0 and wanted > 0):
        return ReadPlan(at=wanted)  # an exact read ("legacy exact" with limit and N)
    return ReadPlan(at=None, not_older_than=wanted)


@dataclass(frozen=True)
class Page:
    items: list[dict]
    continue_token: str = ""
    remaining: int | None = None


def page(items: list[dict], o: ListOptions, plan: ReadPlan, rv: int,
         all_namespaces: bool) -> Page:
    """Items from the plan's start key, at most `limit`; `items` already selected and sorted by
    storage key. remainingItemCount only when nothing was filtered, as upstream."""
    if plan.start_key:
        items = [i for i in items if storage_key(i, all_namespaces) >= plan.start_key]
    if o.limit <= 0 or len(items) <= o.limit:
        return Page(items)
    shown = items[:o.limit]
    token = encode_continue(rv, storage_key(shown[-1], all_namespaces) + "\x00")
    remaining = len(items) - o.limit if o.selects_everything() else None
    return Page(shown, token, remaining)


def sort_key(all_namespaces: bool) -> Callable[[dict], str]:
    """Storage order (byte order of the keys), which pages follow."""
    return lambda obj: storage_key(obj, all_namespaces)


# -- watch -----------------------------------------------------------------------------------------

def sends_initial_events(o: ListOptions) -> bool:
    """Whether a watch starts with the current objects as ADDED events: asked for with
    sendInitialEvents, or (when unset) a watch from resourceVersion "" or "0"."""
    if o.send_initial_events is not None:
        return o.send_initial_events
    return o.resource_version in ("", "0")


def next_bookmark(now: float, deadline: float, period: float = BOOKMARK_PERIOD) -> float | None:
    """When the next bookmark goes out: every `period`, and 2 s before the watch's deadline
    (the cacher's nextBookmarkTime); None when that moment has passed."""
    at = min(now + period, deadline - 2.0)
    return at if at > now else None


def bookmark(kind: str, api_version: str, rv: str, initial_events_end: bool = False) -> dict:
    """A BOOKMARK event's object: the kind with only metadata.resourceVersion set."""
    meta: dict = {"resourceVersion": rv, "creationTimestamp": None}
    if initial_events_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": kind, "apiVersion": api_version, "metadata": meta}
