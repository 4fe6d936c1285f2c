"""Pure: `${pod:NAME.ip}`, `${service:NAME.clusterIP}` and `${node:NAME.ip}` in scenario values.

A value known only once the cluster runs (a pod's IP for an ipBlock, a Service's ClusterIP for
an environment variable) is written as a reference in the manifests of an `apply` step, in a
`run` step's command and in the expected texts of `run` and `get` steps; it is resolved when
the step runs. NAME is a pod as a step names it (NAMESPACE/NAME, or the one pod of a bare
NAME), a Service (NAMESPACE/NAME or NAME in default), or a node, the gateway or a client.

Only these three forms are references: anything else with `${` (a shell's `${PORT:-80}`) is
left as it is. Pure: `find` lists references, `check` says what is wrong with one,
`substitute` replaces them through a resolver the caller hands in (the runner's asks the
cluster; the load-time checks' hand placeholders in).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

REFERENCE = re.compile(r"\$\{(pod|service|node):([^}]*)\}")
FIELDS = {"pod": ("ip",), "service": ("clusterIP",), "node": ("ip",)}
# Stand-ins for the load-time checks of manifests (a pod's and a Service's IP are not known
# before the run; any address checks as one): TEST-NET-1 (RFC 5737).
PLACEHOLDER_IP = "192.0.2.1"


@dataclass(frozen=True)
class Ref:
    kind: str       # pod, service, node
    name: str       # as written: NAME or NAMESPACE/NAME
    field: str      # ip, clusterIP
    text: str       # the whole reference, ${...}

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> list[Ref]:
    """The references in one string, in order (malformed ones too: `check` says why)."""
    out = []
    for m in REFERENCE.finditer(text):
        name, _, field = m.group(2).rpartition(".")
        out.append(Ref(m.group(1), name, field, m.group()))
    return out


def check(ref: Ref) -> str | None:
    """Why a reference is malformed (no name, a field its kind has not), or None."""
    if not ref.name:
        return (f"{ref.text}: write ${{{ref.kind}:NAME.{FIELDS[ref.kind][0]}}} "
                f"(the {ref.kind}'s name, then .{FIELDS[ref.kind][0]})")
    if ref.field not in FIELDS[ref.kind]:
        return (f"{ref.text}: a {ref.kind} reference gives "
                f"{', '.join('.' + f for f in FIELDS[ref.kind])}, not .{ref.field}")
    return None


def find(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str, Ref]]:
    """(path, the string, reference) for every reference in the strings of a value (a
    manifest's data: mappings, lists, strings)."""
    if isinstance(value, str):
        for ref in parse(value):
            yield path, value, ref
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from find(item, path + (i,))


def substitute_text(text: str, resolve: Callable[[Ref], str]) -> str:
    """`text` with each reference replaced by resolve(ref) (which may raise, naming it)."""
    return REFERENCE.sub(lambda m: resolve(parse(m.group())[0]), text)


def substitute(value: Any, resolve: Callable[[Ref], str]) -> Any:
    """A copy of `value` with every reference in its strings resolved."""
    if isinstance(value, str):
        return substitute_text(value, resolve) if "${" in value else value
    if isinstance(value, dict):
        return {key: substitute(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolve) for item in value]
    return value


def has_references(value: Any) -> bool:
    return next(find(value), None) is not None


def restore(obj: Any, template: Any, placeholder: Callable[[Ref], str]) -> Any:
    """`obj` (checked and defaulted from `template` with references replaced by
    `placeholder`) with the references of `template` put back where they were, so that they
    are resolved at run time: a string of `obj` at a reference's path that still reads as its
    placeholder form gets the reference's text again."""
    for path, text, _ in list(find(template)):
        parent = obj
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if parent is None or not path:
            continue
        try:
            if parent[path[-1]] == substitute_text(text, placeholder):
                parent[path[-1]] = text
        except (KeyError, IndexError, TypeError):
            continue
    return obj
