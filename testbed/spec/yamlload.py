"""Pure: YAML text -> plain data with the line of every key and item, within limits.

The one YAML reader of the testbed (testbed.spec.source wraps it with file names, and reads
files through testbed.spec.userfile). It reads plain YAML only, as Kubernetes does:

* tags of the core schema only (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`,
  `!!map`); any other (`!!python/object`, `!!binary`, `!foo`) is refused with its line, and
  nothing is ever constructed from a tag. Timestamps stay strings (as in Kubernetes' JSON).
* limits that hold for hostile input, checked while the text is composed, so that a refusal
  comes before the work: at most MAX_DEPTH levels of nesting, at most MAX_NODES values per
  text (a file, a request body) with every alias counted as the copy it stands for (a "billion laughs" file is refused
  at the alias that crosses the limit, in microseconds), no alias inside its own anchor,
  integers that fit in 64 bits, numbers of at most MAX_NUMBER_CHARS characters.
* mapping keys are plain scalars, never repeated; merge keys (`<<`) are refused.

Every refusal is a LoadError carrying a line (1-based) and the field path it concerns.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:  # libyaml's scanner and parser when present; the composing below is always ours
    from yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

Path_ = tuple[str | int, ...]

MAX_DEPTH = 64             # nested collections; Kubernetes objects need about 15
MAX_NODES = 100_000        # values per file, aliases expanded; the shipped files hold < 1,000
MAX_NUMBER_CHARS = 1_000   # an int or float longer than this is refused unread
INT_MIN, INT_MAX = -(2**63), 2**64 - 1   # int64, and uint64 for the odd unsigned field

CORE = "tag:yaml.org,2002:"
SCALAR_TAGS = {CORE + t for t in ("str", "int", "float", "bool", "null")}
MERGE_TAG = CORE + "merge"

# Characters YAML forbids in a stream (as PyYAML's reader), found before the parser sees them.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class LoadError(Exception):
    """Input refused: `line` (1-based, None when unknown), the field `path`, and why."""

    def __init__(self, line: int | None, path: Path_, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


@dataclass
class Loaded:
    """One document: its data, the line of every key and item, and the line it starts on."""

    data: Any
    lines: dict[Path_, int]
    start_line: int


def short_tag(tag: str) -> str:
    """How a file spells a tag: !!python/object, !foo, or !<tag:example.com,2000:app/foo>."""
    if tag.startswith(CORE):
        return "!!" + tag[len(CORE):]
    return tag if tag.startswith("!") else f"!<{tag}>"


class _Resolver(Resolver):
    """SafeLoader's implicit types minus timestamp, `=` and `!`/`&`/`*` (these stay strings)."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in (CORE + "timestamp", CORE + "value", CORE + "yaml")]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()}


class _BoundedComposer(Composer):
    """PyYAML's composer, counting as it goes: depth, and each node's size and height with
    its aliases expanded, so that limits are checked before anything is built from them."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._expanded = 0                      # values so far in this file, aliases expanded
        self._size: dict[int, int] = {}         # id(node) -> values under it, aliases expanded
        self._height: dict[int, int] = {}       # id(node) -> nesting levels under it
        self._nodes: list[Node] = []            # keeps ids valid while they are memoised

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                line = event.start_mark.line + 1
                if isinstance(parent, MappingNode) and index is None \
                        and not isinstance(target, ScalarNode):
                    # caught here, where the alias is: later only the anchor's line is known
                    raise LoadError(line, (), "mapping keys must be plain scalars")
                size = self._size.get(id(target))
                if size is None:
                    raise LoadError(line, (), f"alias *{event.anchor} is inside its own anchor")
                self._expanded += size
                if self._expanded > MAX_NODES:
                    raise LoadError(line, (), f"alias *{event.anchor} expands to more than "
                                              f"{MAX_NODES} values (an alias bomb?)")
                if self._depth + 1 + self._height[id(target)] > MAX_DEPTH:
                    raise LoadError(line, (), f"alias *{event.anchor} nests deeper than "
                                              f"{MAX_DEPTH} levels")
                super().compose_node(parent, index)   # consumes the event
                # A shallow copy that starts where the alias is, so that problems in what it
                # stands for are reported at the alias's line; its children stay shared.
                alias = copy.copy(target)
                alias.start_mark, alias.end_mark = event.start_mark, event.end_mark
                self._size[id(alias)], self._height[id(alias)] = size, self._height[id(target)]
                self._nodes.append(alias)
                return alias
            return super().compose_node(parent, index)   # undefined: PyYAML's error
        self._depth += 1
        self._expanded += 1
        if self._depth > MAX_DEPTH:
            raise LoadError(self.peek_event().start_mark.line + 1, (),
                            f"nested deeper than {MAX_DEPTH} levels")
        if self._expanded > MAX_NODES:
            raise LoadError(self.peek_event().start_mark.line + 1, (),
                            f"more than {MAX_NODES} values")
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, ScalarNode):
            children: list[Node] = []
        elif isinstance(node, SequenceNode):
            children = node.value
        else:
            children = [n for pair in node.value for n in pair]
        self._size[id(node)] = 1 + sum(self._size[id(c)] for c in children)
        self._height[id(node)] = 1 + max((self._height[id(c)] for c in children), default=-1)
        self._nodes.append(node)
        return node


class _Loader(_BoundedComposer, _Parser, _Resolver):  # type: ignore[misc, valid-type]
    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        _BoundedComposer.__init__(self)
        _Resolver.__init__(self)


_CONSTRUCT = SafeConstructor()
_SCALARS = {CORE + "str": _CONSTRUCT.construct_yaml_str,
            CORE + "int": _CONSTRUCT.construct_yaml_int,
            CORE + "float": _CONSTRUCT.construct_yaml_float,
            CORE + "bool": _CONSTRUCT.construct_yaml_bool,
            CORE + "null": _CONSTRUCT.construct_yaml_null}


def scalar(node: ScalarNode, path: Path_) -> Any:
    """The value of a scalar of the core schema; LoadError for anything else or too big."""
    line = node.start_mark.line + 1
    if node.tag not in SCALAR_TAGS:
        raise LoadError(line, path, f"tag {short_tag(node.tag)} is not allowed: plain YAML "
                                    "only (strings, numbers, true/false, null, lists, mappings)")
    kind = short_tag(node.tag)
    if kind in ("!!int", "!!float") and len(node.value) > MAX_NUMBER_CHARS:
        raise LoadError(line, path, f"a number of {len(node.value)} characters: too large")
    try:
        value = _SCALARS[node.tag](node)
    except (ValueError, KeyError, TypeError, IndexError, yaml.YAMLError):
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        raise LoadError(line, path, f"not a valid {kind}: {shown!r}") from None
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise LoadError(line, path, "integer out of range: more than 64 bits")
    return value


def _convert(node: Node, path: Path_, lines: dict[Path_, int]) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        if node.tag != CORE + "map":
            raise LoadError(line, path, f"tag {short_tag(node.tag)} is not allowed on a mapping: "
                                        "plain YAML only")
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                raise LoadError(key_line, path, "YAML merge keys (<<) are not supported")
            if not isinstance(key_node, ScalarNode):
                raise LoadError(key_line, path, "mapping keys must be plain scalars")
            key = scalar(key_node, path)
            if key is None:
                raise LoadError(key_line, path, "mapping keys must be plain scalars")
            if key in out:
                raise LoadError(key_line, path + (str(key),), "duplicate key")
            child = path + (key,)
            lines[child] = key_line
            out[key] = _convert(value_node, child, lines)
        return out
    if isinstance(node, SequenceNode):
        if node.tag != CORE + "seq":
            raise LoadError(line, path, f"tag {short_tag(node.tag)} is not allowed on a list: "
                                        "plain YAML only")
        items = []
        for i, item in enumerate(node.value):
            child = path + (i,)
            lines[child] = item.start_mark.line + 1
            items.append(_convert(item, child, lines))
        return items
    return scalar(node, path)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def load(text: str) -> list[Loaded]:
    """Every non-empty document of `text`. LoadError for bad YAML or anything over a limit."""
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise LoadError(_line_of(text, bad.start()), (),
                        f"character U+{ord(bad.group()):04X} is not allowed in YAML")
    loader = _Loader(text)
    docs: list[Loaded] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Path_, int] = {}
            data = _convert(node, (), lines)
            if data is not None:
                docs.append(Loaded(data, lines, node.start_mark.line + 1))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = err.problem or err.context or "bad YAML"
        if err.context and err.problem:  # "while parsing a flow sequence at line 2: expected..."
            at = f" at line {err.context_mark.line + 1}" if err.context_mark else ""
            message = f"{err.context}{at}: {err.problem}"
        raise LoadError(mark.line + 1 if mark else None, (), f"not valid YAML: {message}") from None
    except yaml.YAMLError as err:
        raise LoadError(None, (), f"not valid YAML: {err}") from None
    finally:
        loader.dispose()
    return docs


def load_value(text: str) -> Any:
    """The data of a text that holds at most one document (None when empty), as for a
    request body (the API server's YAML bodies, server-side apply patches); LoadError else."""
    docs = load(text)
    if len(docs) > 1:
        raise LoadError(docs[1].start_line, (), "expected a single document, found "
                                                f"{len(docs)}")
    return docs[0].data if docs else None
