"""Pure: the options of write requests, read from the query and the body as upstream reads them.

`dry_run(query)` (create, update, patch, delete: `dryRun=All`, the only value upstream
knows) and `delete_options(query, body)` (DeleteOptions: gracePeriodSeconds,
propagationPolicy, preconditions, dryRun, from the query or a DeleteOptions body, as
kubectl and client-go send them). A value the server cannot honour is refused with a 400
worded as upstream's option validation words it, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.api.failures import ApiFailure

PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")


def _bad(message: str) -> ApiFailure:
    return ApiFailure(400, "BadRequest", message)


def _dry_run_values(values: Any) -> bool:
    if values in (None, [], ""):
        return False
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or any(v != "All" for v in values):
        shown = values[0] if isinstance(values, list) and values else values
        raise _bad(f'dryRun: Unsupported value: "{shown}": supported values: "All"')
    return True


def dry_run(query: dict[str, list[str]], body: Any = None) -> bool:
    """True for `dryRun=All` (in the query, or in a DeleteOptions/CreateOptions body)."""
    if query.get("dryRun"):
        return _dry_run_values(query["dryRun"])
    if isinstance(body, dict) and body.get("kind") in ("DeleteOptions", "CreateOptions",
                                                       "UpdateOptions", "PatchOptions"):
        return _dry_run_values(body.get("dryRun"))
    return False


@dataclass(frozen=True)
class DeleteOptions:
    grace: int | None = None
    propagation: str | None = None        # Orphan | Background | Foreground (None: the default)
    uid: str | None = None                # preconditions
    resource_version: str | None = None
    dry_run: bool = False


def delete_options(query: dict[str, list[str]], body: Any) -> DeleteOptions:
    """DeleteOptions from the query, or from the body kubectl and client-go send."""
    opts = body if isinstance(body, dict) else {}
    if body is not None and not isinstance(body, dict):
        raise _bad("the body of a delete must be a DeleteOptions object")
    grace: Any = (query.get("gracePeriodSeconds") or [None])[-1]
    if grace is None:
        grace = opts.get("gracePeriodSeconds")
    if grace is not None:
        try:
            grace = int(grace)
        except (TypeError, ValueError):
            raise _bad(f'invalid gracePeriodSeconds: "{grace}"') from None
        if grace < 0:
            grace = 1  # upstream: a negative grace period is treated as 1 second
    policy = (query.get("propagationPolicy") or [None])[-1] or opts.get("propagationPolicy")
    orphan = (query.get("orphanDependents") or [None])[-1]
    if orphan is None and opts.get("orphanDependents") is not None:
        orphan = str(opts["orphanDependents"]).lower()
    if orphan is not None:
        if policy is not None:
            raise _bad('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid '
                       f'value: "{policy}": orphanDependents and deletionPropagation cannot be '
                       "both set")
        policy = "Orphan" if orphan in ("true", "1", "True") else "Background"
    if policy is not None and policy not in PROPAGATION_POLICIES:
        raise _bad(f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                   f'value: "{policy}": supported values: "Foreground", "Background", "Orphan"')
    pre = opts.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise _bad("preconditions must be an object")
    if policy == "Foreground":
        raise _bad("propagationPolicy Foreground is not supported by this API server: it keeps "
                   "no finalizers; use Background (the default) or Orphan")
    return DeleteOptions(grace, policy, pre.get("uid"), pre.get("resourceVersion"),
                         dry_run(query) or _dry_run_values(opts.get("dryRun")))
