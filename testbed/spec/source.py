"""Pure: YAML with line numbers, and the error type every input check reports through.

Every file a user hands the testbed (topology, scenario, manifest, kube-proxy case file) is
read here, so that every problem can name its file, line and field: `read_documents` and
`read_one` read it through testbed.spec.userfile (regular files only, a size limit, the sudo
user's rights) and testbed.spec.yamlload (plain YAML, depth and alias limits). Validation
collects all problems before raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.spec.userfile import FileRefused, read_text
from testbed.spec.yamlload import LoadError, Path_, load


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


class Key(str):
    """A map key in a path, named as upstream's field.Path.Key names it: `limits[cpu]`."""


def field_name(path: Path_) -> str:
    """("spec", "containers", 0, "ports") -> "spec.containers[0].ports"; a Key part is
    bracketed as an index is: ("resources", "limits", Key("cpu")) -> "resources.limits[cpu]"."""
    out = ""
    for part in path:
        if isinstance(part, (int, Key)):
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


def _problem(file: str, err: LoadError) -> Problem:
    return Problem(file, err.line, field_name(err.path), err.message)


def parse_documents(text: str, file: str) -> list[Document]:
    """Every non-empty document in `text`, with line numbers. SpecError for bad YAML, YAML
    beyond plain data (tags, merge keys) or beyond the limits of testbed.spec.yamlload."""
    try:
        loaded = load(text)
    except LoadError as err:
        raise SpecError([_problem(file, err)]) from None
    return [Document(file, doc.data, doc.lines, doc.start_line) for doc in loaded]


def read_documents(path: str | Path) -> list[Document]:
    """Read a file as YAML documents. A file that is missing, not a regular file, too large,
    not UTF-8 or not readable by the user who ran sudo is a SpecError too, and is never
    quoted (testbed.spec.userfile)."""
    try:
        text = read_text(str(path))
    except FileRefused as err:
        raise SpecError([Problem(str(path), err.line, "", err.message)]) from None
    return parse_documents(text, str(path))


def _what(data: Any) -> str:
    if isinstance(data, bool):
        return "a boolean"
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(data), type(data).__name__)


def read_one(path: str | Path) -> Document:
    """A file that must hold exactly one YAML mapping (a topology, a scenario, a case file)."""
    docs = read_documents(path)
    if not docs:
        raise SpecError([Problem(str(path), None, "", "expected exactly one YAML mapping, "
                                                      "found nothing")])
    if len(docs) > 1:
        raise SpecError([Problem(str(path), docs[1].start_line, "",
                                 f"expected exactly one YAML mapping, found {len(docs)} documents")])
    if not isinstance(docs[0].data, dict):
        raise SpecError([Problem(str(path), docs[0].start_line, "",
                                 f"expected exactly one YAML mapping, found {_what(docs[0].data)}")])
    return docs[0]
