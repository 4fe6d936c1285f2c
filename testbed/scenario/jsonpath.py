"""Pure: kubectl's JSONPath templates (`-o jsonpath=...`), as far as a scenario's `get` step needs.

    {.status.loadBalancer.ingress[0].ip}        fields, list indexes (negative from the end)
    {.metadata.labels['app.kubernetes.io/name']}   bracketed names; or .app\\.kubernetes\\.io/name
    {.items[*].metadata.name}                   every item; {.spec.ports[0:2].port}: slices
    {..ip}                                      recursive descent: every `ip` at any depth
    {.status.conditions[?(@.type=="Ready")].status}    filters: ==, !=, <, <=, >, >=, or @.x
    name: {.metadata.name}                      text outside braces is printed as is

As kubectl prints it (k8s.io/client-go/util/jsonpath): the results of one expression are
joined by a space, strings as they are, numbers and booleans as JSON, maps and lists as JSON,
null as nothing; a missing key gives nothing (kubectl's --allow-missing-template-keys, on by
default). `{range}`/`{end}` are not supported. `compile_template` raises JsonPathError with
the position and the reason; `evaluate` never raises.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import Any


class JsonPathError(ValueError):
    pass


@dataclass(frozen=True)
class Op:
    kind: str                    # field, recurse, index, slice, wild, filter
    name: str = ""
    index: int = 0
    stop: int | None = None
    path: tuple[Op, ...] = ()    # filter: the path from @
    compare: str = ""            # filter: "" (exists) or an operator
    value: Any = None            # filter: the literal compared with


Template = tuple[tuple[str, tuple[Op, ...] | None], ...]   # (literal text, None) or ("", ops)

_NAME = re.compile(r"(?:[A-Za-z0-9_\-$/]|\\.)+")   # kubectl: \. is a dot of the name
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
# a filter's operators, tried in this order (<= before <)
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
            "<": operator.lt, ">": operator.gt}


def compile_template(text: str) -> Template:
    """The template's parts; JsonPathError naming the position and what is wrong."""
    parts: list[tuple[str, tuple[Op, ...] | None]] = []
    i = 0
    while i < len(text):
        start = text.find("{", i)
        if start < 0:
            parts.append((text[i:], None))
            break
        if start > i:
            parts.append((text[i:start], None))
        end = _closing(text, start)
        inner = text[start + 1:end].strip()
        if inner in ("end",) or inner.startswith("range"):
            raise JsonPathError(f"at {start}: {{{inner}}} is not supported (no range/end)")
        if not inner:
            raise JsonPathError(f"at {start}: an empty expression {{}}")
        parts.append(("", _parse(inner, start + 1)))
        i = end + 1
    if not any(ops is not None for _, ops in parts):
        raise JsonPathError("no expression in braces, e.g. {.status.podIP}")
    return tuple(parts)


def _closing(text: str, start: int) -> int:
    quote = ""
    for j in range(start + 1, len(text)):
        c = text[j]
        if quote:
            if c == "\\":
                continue
            if c == quote and text[j - 1] != "\\":
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "}":
            return j
    raise JsonPathError(f"at {start}: unclosed {{")


def _parse(expr: str, offset: int) -> tuple[Op, ...]:
    ops: list[Op] = []
    i = 0
    if expr.startswith("$"):
        i = 1
    if i >= len(expr):
        return ()
    if expr[i] not in ".[":
        raise JsonPathError(f"at {offset + i}: an expression starts with . or [ "
                            f"(e.g. {{.metadata.name}}), not {expr[i]!r}")
    while i < len(expr):
        c = expr[i]
        if expr.startswith("..", i):
            m = _NAME.match(expr, i + 2)
            if m is None:
                if expr.startswith("*", i + 2):
                    ops.append(Op("recurse"))
                    i += 3
                    continue
                raise JsonPathError(f"at {offset + i}: a name must follow ..")
            ops.append(Op("recurse", _unescape(m.group())))
            i = m.end()
        elif c == ".":
            if expr.startswith("*", i + 1):
                ops.append(Op("wild"))
                i += 2
                continue
            if i + 1 == len(expr):     # {.} is the object itself
                i += 1
                continue
            m = _NAME.match(expr, i + 1)
            if m is None:
                raise JsonPathError(f"at {offset + i + 1}: a field name must follow '.'")
            ops.append(Op("field", _unescape(m.group())))
            i = m.end()
        elif c == "[":
            end = _bracket_end(expr, i, offset)
            ops.append(_bracket(expr[i + 1:end].strip(), offset + i))
            i = end + 1
        else:
            raise JsonPathError(f"at {offset + i}: unexpected {c!r}")
    return tuple(ops)


def _bracket_end(expr: str, i: int, offset: int) -> int:
    depth, quote = 0, ""
    for j in range(i, len(expr)):
        c = expr[j]
        if quote:
            if c == quote and expr[j - 1] != "\\":
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    raise JsonPathError(f"at {offset + i}: unclosed [")


def _unescape(text: str) -> str:
    """`text` with each backslash escape (\\. in a name, \\' in a quoted one) undone."""
    return re.sub(r"\\(.)", r"\1", text)


def _unquote(text: str) -> str:
    return _unescape(text[1:-1])


def _bracket(inner: str, at: int) -> Op:
    if inner == "*":
        return Op("wild")
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return Op("field", _unquote(inner))
    if re.fullmatch(r"-?\d+", inner):
        return Op("index", index=int(inner))
    m = re.fullmatch(r"(-?\d*):(-?\d*)", inner)
    if m:
        return Op("slice", index=int(m.group(1) or 0), stop=int(m.group(2)) if m.group(2) else None)
    if inner.startswith("?(") and inner.endswith(")"):
        return _filter(inner[2:-1].strip(), at)
    raise JsonPathError(f"at {at}: [{inner}] is not an index, a slice, *, a quoted name or a "
                        "filter ?(...)")


def _filter(cond: str, at: int) -> Op:
    if not cond.startswith("@"):
        raise JsonPathError(f"at {at}: a filter compares a path from @, e.g. ?(@.type==\"Ready\")")
    for op in _COMPARE:
        left, found, right = _split_outside_quotes(cond, op)
        if found:
            right = right.strip()
            if len(right) >= 2 and right[0] == right[-1] and right[0] in "'\"":
                value: Any = _unquote(right)
            elif _NUMBER.fullmatch(right):
                value = float(right) if "." in right else int(right)
            elif right in ("true", "false"):
                value = right == "true"
            else:
                raise JsonPathError(f"at {at}: a filter compares with a quoted string, a number "
                                    f"or true/false, not {right!r}")
            return Op("filter", path=_parse(left.strip()[1:] or ".", at), compare=op, value=value)
    return Op("filter", path=_parse(cond[1:] or ".", at))


def _split_outside_quotes(text: str, op: str) -> tuple[str, bool, str]:
    quote = ""
    for j in range(len(text)):
        c = text[j]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif text.startswith(op, j):
            return text[:j], True, text[j + len(op):]
    return text, False, ""


def _step(nodes: list[Any], op: Op) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        if op.kind == "field":
            if isinstance(node, dict) and op.name in node:
                out.append(node[op.name])
        elif op.kind == "wild":
            if isinstance(node, dict):
                out += list(node.values())
            elif isinstance(node, list):
                out += node
        elif op.kind == "index":
            if isinstance(node, list) and -len(node) <= op.index < len(node):
                out.append(node[op.index])
        elif op.kind == "slice":
            if isinstance(node, list):
                out += node[op.index:op.stop]
        elif op.kind == "recurse":
            out += _descend(node, op.name)
        elif op.kind == "filter":
            items = node if isinstance(node, list) else [node]
            out += [item for item in items if _holds(item, op)]
    return out


def _descend(node: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        if not name:
            found += list(node.values())
        elif name in node:
            found.append(node[name])
        for value in node.values():
            found += _descend(value, name)
    elif isinstance(node, list):
        if not name:
            found += node
        for value in node:
            found += _descend(value, name)
    return found


def _holds(item: Any, op: Op) -> bool:
    values = select(item, op.path)
    if not op.compare:
        return bool(values)
    test = _COMPARE[op.compare]
    ordered = op.compare not in ("==", "!=")     # <, <=, >, >=: numbers or strings only
    return any((not ordered or _comparable(value, op.value)) and test(value, op.value)
               for value in values)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool)) or (isinstance(a, str) and isinstance(b, str))


def select(obj: Any, ops: tuple[Op, ...]) -> list[Any]:
    """Every value the path finds in `obj`."""
    nodes = [obj]
    for op in ops:
        nodes = _step(nodes, op)
    return nodes


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def evaluate(template: Template, obj: Any) -> str:
    """The template printed against `obj`, as kubectl -o jsonpath prints it."""
    out = []
    for text, ops in template:
        if ops is None:
            out.append(text)
        else:
            out.append(" ".join(_text(v) for v in select(obj, ops)))
    return "".join(out)
