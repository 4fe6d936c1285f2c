"""testbed.spec.source: YAML with line numbers, Problem/SpecError formatting, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.spec.source import (
    Document,
    Problem,
    Problems,
    SpecError,
    field_name,
    parse_documents,
    read_documents,
    read_one,
)


def test_problem_str_with_line_and_field():
    assert str(Problem("t.yaml", 7, "network.nodeCIDR", "bad")) == "t.yaml:7: network.nodeCIDR: bad"


def test_problem_str_without_line_or_field():
    assert str(Problem("t.yaml", None, "", "no such file")) == "t.yaml: no such file"
    assert str(Problem("t.yaml", None, "name", "bad")) == "t.yaml: name: bad"
    assert str(Problem("t.yaml", 3, "", "oops")) == "t.yaml:3: oops"


def test_spec_error_carries_every_problem_and_joins_them():
    problems = [Problem("a", 1, "x", "one"), Problem("b", 2, "y", "two")]
    err = SpecError(problems)
    assert err.problems == problems
    assert err.problems is not problems  # a copy, not the caller's list
    assert str(err) == "a:1: x: one\nb:2: y: two"


@pytest.mark.parametrize(("path", "expected"), [
    ((), ""),
    (("spec",), "spec"),
    (("spec", "containers", 0, "ports"), "spec.containers[0].ports"),
    ((0, "name"), "[0].name"),
    (("steps", 2, 1), "steps[2][1]"),
])
def test_field_name(path, expected):
    assert field_name(path) == expected


def test_lines_of_keys_and_items():
    text = "a: 1\nb:\n  - x\n  - y: 2\n    z: 3\nc:\n  d: e\n"
    [doc] = parse_documents(text, "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"y": 2, "z": 3}], "c": {"d": "e"}}
    assert doc.lines[("a",)] == 1
    assert doc.lines[("b",)] == 2
    assert doc.lines[("b", 0)] == 3
    assert doc.lines[("b", 1)] == 4
    assert doc.lines[("b", 1, "z")] == 5
    assert doc.lines[("c", "d")] == 7
    assert doc.file == "f.yaml"
    assert doc.start_line == 1


def test_line_falls_back_to_nearest_ancestor_then_document_start():
    [doc] = parse_documents("# comment\n\nb:\n  c: 1\n", "f.yaml")
    assert doc.start_line == 3
    assert doc.line(("b", "c", "missing", 0)) == 4
    assert doc.line(("b", "nothing")) == 3
    assert doc.line(("absent",)) == 3
    assert doc.line(()) == 3


def test_document_problem_names_file_line_and_field():
    [doc] = parse_documents("spec:\n  containers:\n  - name: a\n", "p.yaml")
    problem = doc.problem(("spec", "containers", 0, "image"), "Required value")
    assert problem == Problem("p.yaml", 3, "spec.containers[0].image", "Required value")


def test_problems_collects_and_raises_all():
    [doc] = parse_documents("a: 1\nb: 2\n", "f.yaml")
    problems = Problems()
    assert not problems
    problems.raise_if_any()  # nothing to raise yet
    problems.add(doc, ("a",), "first")
    problems.add(doc, ("b",), "second")
    problems.extend([Problem("g.yaml", None, "", "third")])
    assert problems
    with pytest.raises(SpecError) as info:
        problems.raise_if_any()
    assert [str(p) for p in info.value.problems] == [
        "f.yaml:1: a: first", "f.yaml:2: b: second", "g.yaml: third"]


def test_multiple_documents_skip_empty_ones_and_keep_start_lines():
    text = "a: 1\n---\n---\n# only a comment\n---\nb: 2\nc: 3\n"
    docs = parse_documents(text, "m.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2, "c": 3}]
    assert docs[1].start_line == 6
    assert docs[1].lines[("c",)] == 7


def test_explicit_null_document_is_skipped():
    assert parse_documents("~\n---\na: 1\n", "n.yaml")[0].data == {"a": 1}
    assert len(parse_documents("~\n---\na: 1\n", "n.yaml")) == 1


def test_duplicate_key_names_its_line_and_field():
    with pytest.raises(SpecError) as info:
        parse_documents("a:\n  b: 1\n  c: 2\n  b: 3\n", "d.yaml")
    [problem] = info.value.problems
    assert problem == Problem("d.yaml", 4, "a.b", "duplicate key")
    assert str(problem) == "d.yaml:4: a.b: duplicate key"


def test_duplicate_key_at_top_level():
    with pytest.raises(SpecError) as info:
        parse_documents("name: x\nname: y\n", "d.yaml")
    assert str(info.value) == "d.yaml:2: name: duplicate key"


def test_merge_keys_are_refused():
    text = "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n"
    with pytest.raises(SpecError) as info:
        parse_documents(text, "m.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.field) == (3, "other")
    assert "merge keys" in problem.message


def test_non_scalar_keys_are_refused():
    with pytest.raises(SpecError) as info:
        parse_documents("? [a, b]\n: 1\n", "k.yaml")
    [problem] = info.value.problems
    assert problem.line == 1
    assert problem.message == "mapping keys must be plain scalars"


def test_null_key_is_refused():
    with pytest.raises(SpecError) as info:
        parse_documents("~: 1\n", "k.yaml")
    assert info.value.problems[0].message == "mapping keys must be plain scalars"


def test_scalars_are_constructed_safely():
    [doc] = parse_documents("i: 3\nf: 1.5\nb: true\nn: null\ns: '3'\n", "s.yaml")
    assert doc.data == {"i": 3, "f": 1.5, "b": True, "n": None, "s": "3"}


@pytest.mark.parametrize(("value", "shown"), [("!!python/name:os.system ''", "!!python/name:os.system"),
                                             ("!foo bar", "!foo"), ("!!binary aGk=", "!!binary"),
                                             ("!!timestamp 2024-01-01", "!!timestamp")])
def test_tags_beyond_the_core_schema_are_refused_with_their_line(value, shown):
    with pytest.raises(SpecError) as info:
        parse_documents(f"x: 1\na: {value}\n", "u.yaml")
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.field) == ("u.yaml", 2, "a")
    assert problem.message.startswith(f"tag {shown} is not allowed: plain YAML only")


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system ['true']\n",
                                  "a: !!set {x: null}\n", "a: !!omap [x: 1]\n", "a: !foo {b: 1}\n"])
def test_tagged_collections_are_refused_and_run_nothing(text):
    with pytest.raises(SpecError) as info:
        parse_documents(text, "u.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.field) == (1, "a")
    assert "is not allowed on a" in problem.message


def test_core_tags_and_implicit_types():
    [doc] = parse_documents("a: !!str 3\nb: !!int '7'\nc: 2024-01-01\nd: =\ne: !!float 1\n", "t.yaml")
    assert doc.data == {"a": "3", "b": 7, "c": "2024-01-01", "d": "=", "e": 1.0}


def test_bad_yaml_has_the_line_of_the_error():
    with pytest.raises(SpecError) as info:
        parse_documents("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    [problem] = info.value.problems
    assert problem.file == "bad.yaml"
    assert problem.line == 3
    assert problem.field == ""
    assert problem.message.startswith("not valid YAML: ")


def test_bad_indentation_is_bad_yaml():
    with pytest.raises(SpecError) as info:
        parse_documents("a:\n  b: 1\n c: 2\n", "bad.yaml")
    assert info.value.problems[0].line == 3
    assert "not valid YAML" in str(info.value)


def test_tab_indentation_is_bad_yaml():
    with pytest.raises(SpecError) as info:
        parse_documents("a:\n\tb: 1\n", "tab.yaml")
    assert info.value.problems[0].message.startswith("not valid YAML")
    assert info.value.problems[0].line == 2


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        read_documents(missing)
    assert info.value.problems == [Problem(str(missing), None, "", "no such file")]
    assert str(info.value) == f"{missing}: no such file"


def test_directory_is_refused(tmp_path: Path):
    with pytest.raises(SpecError) as info:
        read_documents(tmp_path)
    assert info.value.problems == [Problem(str(tmp_path), None, "", "a directory, not a regular file")]


def test_non_utf8_file_is_refused_with_its_offset_and_line(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nname: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        read_documents(path)
    assert info.value.problems == [Problem(str(path), 2, "", "not UTF-8: byte 0xe9 at byte offset 14")]


def test_read_documents_reads_the_file(write):
    path = write("two.yaml", "a: 1\n---\nb: 2\n")
    docs = read_documents(path)
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}]
    assert all(d.file == str(path) for d in docs)


def test_read_one_returns_the_mapping(write):
    doc = read_one(write("one.yaml", "# hi\nname: x\n"))
    assert isinstance(doc, Document)
    assert doc.data == {"name": "x"}
    assert doc.lines[("name",)] == 2


def test_read_one_refuses_two_documents_naming_the_second(write):
    path = write("two.yaml", "a: 1\n---\nb: 2\n")
    with pytest.raises(SpecError) as info:
        read_one(path)
    assert info.value.problems == [Problem(str(path), 3, "", "expected exactly one YAML mapping, "
                                                             "found 2 documents")]


@pytest.mark.parametrize(("text", "line", "found"), [
    ("", None, "nothing"), ("# nothing\n", None, "nothing"), ("# list\n- a\n- b\n", 2, "a list"),
    ("just a string\n", 1, "a string"), ("3\n", 1, "a number"), ("true\n", 1, "a boolean")])
def test_read_one_refuses_empty_or_non_mapping_with_its_line(write, text, line, found):
    path = write("x.yaml", text)
    with pytest.raises(SpecError) as info:
        read_one(path)
    assert info.value.problems == [Problem(str(path), line, "",
                                           f"expected exactly one YAML mapping, found {found}")]
