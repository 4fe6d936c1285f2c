"""Pure: YAML with line numbers, and the error type every input check reports through.

Every file a user hands the testbed (topology, scenario, manifest) is read here, so that every
problem can name its file, line and field. Validation collects all problems before raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is and why."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(Exception):
    """Bad input. Carries every problem found; the command line prints them and exits 2."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def field_name(path: Path_) -> str:
    """("spec", "containers", 0, "ports") -> "spec.containers[0].ports"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Document:
    """One YAML document: plain data plus the line of every mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    start_line: int = 1

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.start_line

    def problem(self, path: Path_, message: str) -> Problem:
        return Problem(self.file, self.line(path), field_name(path), message)


class Problems:
    """Collects problems against one document; `raise_if_any` at the end of validation."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, doc: Document, path: Path_, message: str) -> None:
        self.items.append(doc.problem(path, message))

    def extend(self, problems: list[Problem]) -> None:
        self.items.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError([Problem(file, key_node.start_mark.line + 1, field_name(path),
                                         "YAML merge keys (<<) are not supported")])
            key = yaml.SafeLoader(  # scalar keys only, constructed the safe way
                ""
            ).construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError([Problem(file, key_node.start_mark.line + 1, field_name(path),
                                         "mapping keys must be plain scalars")])
            if key in out:
                raise SpecError([Problem(file, key_node.start_mark.line + 1,
                                         field_name(path + (str(key),)), "duplicate key")])
            child = path + (key,)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = path + (i,)
            lines[child] = item.start_mark.line + 1
            items.append(_convert(item, child, lines, file))
        return items
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


def parse_documents(text: str, file: str) -> list[Document]:
    """Every non-empty document in `text`, with line numbers. Raises SpecError on bad YAML."""
    docs: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            lines: dict[Path_, int] = {}
            data = _convert(node, (), lines, file)
            if data is None:
                continue
            docs.append(Document(file, data, lines, node.start_mark.line + 1))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError([Problem(file, line, "", f"not valid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(file, None, "", f"not valid YAML: {err}")]) from None
    return docs


def read_documents(path: str | Path) -> list[Document]:
    """Read a file as YAML documents; a missing or unreadable file is a SpecError too."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(str(path), None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([Problem(str(path), None, "", f"cannot read: {err}")]) from None
    return parse_documents(text, str(path))


def read_one(path: str | Path) -> Document:
    """A file that must hold exactly one YAML mapping."""
    docs = read_documents(path)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        line = docs[1].start_line if len(docs) > 1 else None
        raise SpecError([Problem(str(path), line, "", "expected exactly one YAML mapping")])
    return docs[0]
