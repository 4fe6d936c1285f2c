"""Pure: fieldValidation of the bodies of create, update and patch requests, as upstream's
handlers apply it (k8s.io/apiserver pkg/endpoints/handlers: create.go, update.go, patch.go).

    Strict   unknown or duplicate fields refuse the request: 400 BadRequest,
             'Deployment in version "v1" cannot be handled as a Deployment: strict decoding
             error: unknown field "spec.foo", unknown field "spec.template.spec.containers[0].bar"'
    Warn     the default: they are dropped and each one answered with a Warning header
             (299 - "unknown field \\"spec.foo\\"")
    Ignore   they are dropped silently
    other    422 Invalid, as upstream's option validation words it

Unknown and duplicate fields are found from the schema (testbed/api/schema.py), with
upstream's paths; duplicates need the body as sent (`raw`). Kinds the schema does not know in
the body's version (an old Ingress version, converted later) are left to the validators,
which report unknown fields themselves. The testbed's own batch apply (and load_manifests)
passes no FieldValidation and stays strict through the validators. No I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from testbed.api.failures import ApiFailure
from testbed.api.schema import for_kind, prune, strict_errors, unknown_fields

DIRECTIVES = ("Ignore", "Strict", "Warn")
OPTIONS_KINDS = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


@dataclass
class FieldValidation:
    """One request's fieldValidation: the directive, the body as sent, and the warnings the
    HTTP layer sends back (one `Warning: 299 - "..."` header each)."""

    directive: str = "Warn"
    raw: bytes | str | None = None
    warnings: list[str] = field(default_factory=list)
    verb: str | None = None   # "patch" for PATCH requests (their wording); else as screened

    @classmethod
    def from_query(cls, query: dict[str, list[str]], raw: bytes | str | None = None,
                   verb: str | None = None) -> FieldValidation:
        """From the fieldValidation query parameter; absent or empty means Warn. The value is
        checked when the request is admitted (`screen`), as upstream checks it with the other
        options. For PATCH: verb="patch", and `raw` the patch when it is a merge or strategic
        merge patch (its duplicate fields are the object's)."""
        return cls((query.get("fieldValidation") or [""])[-1] or "Warn", raw, verb=verb)

    def screen(self, obj: dict, verb: str = "create") -> None:
        """Drop `obj`'s unknown fields (in place) or refuse them, per the directive; Warn
        records a warning per unknown or duplicate field. `verb`: create, update or patch
        (the FieldValidation's own verb, when set, wins)."""
        verb = self.verb or verb
        check_directive(self.directive, verb)
        found = problems(obj, self.raw)
        if not found:
            return
        if self.directive == "Strict":
            raise strict_failure(obj, found, verb)
        kind = obj.get("kind")
        try:
            prune(obj, for_kind(str(obj.get("apiVersion")), str(kind)))
        except KeyError:
            pass
        if self.directive == "Warn":
            self.warnings.extend(found)


    def headers(self) -> list[tuple[str, str]]:
        """The Warning headers of the request's answer."""
        return [("Warning", warning_header(w)) for w in self.warnings]


def check_directive(value: str, verb: str = "create") -> None:
    """422 for a directive upstream does not know."""
    if value in DIRECTIVES:
        return
    supported = ", ".join(f'"{d}"' for d in ("", *DIRECTIVES))
    detail = f'Unsupported value: "{value}": supported values: {supported}'
    raise ApiFailure(422, "Invalid", f'{OPTIONS_KINDS[verb]}.meta.k8s.io "" is invalid: '
                     f"fieldValidation: {detail}",
                     [{"reason": "FieldValueNotSupported", "message": detail,
                       "field": "fieldValidation"}])


def problems(obj: dict, raw: bytes | str | None = None) -> list[str]:
    """The strict decoding errors of `obj` (read from `raw`, the body as sent, when it is
    JSON, so that duplicate fields are seen): 'unknown field "spec.foo"', 'duplicate field
    "metadata.name"'. Empty for a kind the schema does not know in that version."""
    try:
        t = for_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
    except KeyError:
        return []
    found = strict_errors(raw, t) if raw else []
    return found or [f'unknown field "{path}"' for path in unknown_fields(obj, t)]


def strict_failure(obj: dict, found: list[str], verb: str = "create") -> ApiFailure:
    """The refusal of a Strict request, worded as upstream's handlers word it."""
    text = "strict decoding error: " + ", ".join(found)
    if verb == "patch":
        # patch.go: an Invalid error on the field "patch" with the patched object as value
        value = json.dumps(json.dumps(obj, separators=(",", ":")))
        return ApiFailure(422, "Invalid", f' "" is invalid: patch: Invalid value: {value}: '
                          f"{text}", [{"reason": "FieldValueInvalid", "field": "patch",
                                       "message": f"Invalid value: {value}: {text}"}])
    kind = str(obj.get("kind", ""))
    version = str(obj.get("apiVersion", "")).rpartition("/")[2]
    return ApiFailure(400, "BadRequest",
                      f'{kind} in version "{version}" cannot be handled as a {kind}: {text}')


def warning_header(message: str) -> str:
    """A Warning header value, as upstream's apiserver writes it (code 299, agent "-")."""
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'
