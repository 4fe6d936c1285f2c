"""testbed.spec.yamlload: plain YAML only, and limits checked before the work they bound."""

from __future__ import annotations

import time

import pytest

from testbed.spec import yamlload
from testbed.spec.yamlload import MAX_DEPTH, MAX_NODES, LoadError, load, short_tag


def refused(text: str) -> LoadError:
    with pytest.raises(LoadError) as info:
        load(text)
    return info.value


def bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        k, prev = chr(97 + i), chr(96 + i)
        lines.append(f"{k}: &{k} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_plain_data_with_lines():
    [doc] = load("# c\na: 1\nb:\n  - x\n  - {y: 2}\n")
    assert doc.data == {"a": 1, "b": ["x", {"y": 2}]}
    assert doc.lines == {("a",): 2, ("b",): 3, ("b", 0): 4, ("b", 1): 5, ("b", 1, "y"): 5}
    assert doc.start_line == 2


def test_aliases_within_the_limit_are_copies():
    [doc] = load("base: &b {x: 1}\nuse: *b\nlist: &l [1, 2]\nagain: [*l, *l]\n")
    assert doc.data["use"] == {"x": 1}
    assert doc.data["again"] == [[1, 2], [1, 2]]
    assert doc.lines[("again", 1)] == 4


def test_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit_quickly():
    start = time.monotonic()
    err = refused(bomb())
    assert time.monotonic() - start < 0.5
    assert err.line == 6 and "alias *e expands to more than" in err.message


def test_the_expanded_count_is_exact_at_the_limit(monkeypatch):
    # the root (1), key a (1) and its list of 3 (4), key b (1) and its list (1) of 3 aliases
    # of 4 values each (12): 20 values
    monkeypatch.setattr(yamlload, "MAX_NODES", 20)
    load("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n")
    monkeypatch.setattr(yamlload, "MAX_NODES", 19)
    assert refused("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n").line == 2


def test_too_many_plain_values():
    err = refused("x: [" + ",".join(["1"] * MAX_NODES) + "]\n")
    assert err.line == 1 and err.message == f"more than {MAX_NODES} values"


def test_alias_inside_its_own_anchor():
    assert refused("a: &x\n  - *x\n").message == "alias *x is inside its own anchor"
    assert refused("a: &x {b: *x}\n").line == 1


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 5000])
def test_nesting_depth(depth):
    text = "[" * (depth - 1) + "]" * (depth - 1) + "\n"   # a list in a list ..., the root counted
    text = "x: " + text   # the root mapping is one level
    if depth <= MAX_DEPTH:
        load(text)
    else:
        err = refused(text)
        assert (err.line, err.message) == (1, f"nested deeper than {MAX_DEPTH} levels")


def test_an_alias_can_not_nest_deeper_than_the_limit():
    deep = "[" * 40 + "]" * 40
    err = refused(f"d: &d {deep}\nx: " + "[" * 30 + "\n *d\n" + "]" * 30 + "\n")
    assert err.line == 3 and "alias *d nests deeper" in err.message


def test_alias_to_a_collection_as_a_key_is_named_where_the_alias_is():
    err = refused("b: &b {x: 1}\nc: 1\n? *b\n: y\n")
    assert (err.line, err.message) == (3, "mapping keys must be plain scalars")


@pytest.mark.parametrize(("text", "message"), [
    ("n: " + "9" * 5000, "a number of 5000 characters: too large"),
    ("n: 9223372036854775808" + "0", "integer out of range: more than 64 bits"),
    ("n: -9223372036854775809", "integer out of range: more than 64 bits"),
    ("n: 0x1" + "0" * 16, "integer out of range: more than 64 bits"),
    ("n: !!int x", "not a valid !!int: 'x'"),
    ("n: !!float x", "not a valid !!float: 'x'"),
    ("n: !!bool maybe", "not a valid !!bool: 'maybe'"),
])
def test_numbers(text, message):
    err = refused(text + "\n")
    assert (err.line, err.path, err.message) == (1, ("n",), message)


def test_numbers_in_range():
    [doc] = load("a: 9223372036854775807\nb: -9223372036854775808\nc: 18446744073709551615\n"
                 "d: 1.0e+400\ne: 0o17\n")
    assert doc.data["a"] == 2**63 - 1 and doc.data["b"] == -(2**63) and doc.data["c"] == 2**64 - 1
    assert doc.data["d"] == float("inf") and doc.data["e"] == "0o17"   # YAML 1.1: 017 is octal


@pytest.mark.parametrize(("text", "shown"), [
    ("a: !!python/object/apply:os.system [ls]", "!!python/object/apply:os.system"),
    ("a: !!python/name:os.system ''", "!!python/name:os.system"),
    ("a: !foo x", "!foo"), ("a: !<tag:x.org,2000:y> z", "!<tag:x.org,2000:y>"),
    ("a: !!binary aGk=", "!!binary"), ("a: !!set {x}", "!!set"), ("a: !!omap [x: 1]", "!!omap"),
    ("a: !!timestamp 2001-01-01", "!!timestamp"), ("a: !!str {x: 1}", "!!str"),
])
def test_tags_beyond_the_core_schema(text, shown):
    err = refused(text + "\n")
    assert err.line == 1 and err.path == ("a",)
    assert err.message.startswith(f"tag {shown} is not allowed")


def test_core_tags_and_implicit_types_stay_plain():
    [doc] = load("a: !!str 1\nb: !!int '2'\nc: 2001-01-01\nd: =\ne: yes\nf: ~\ng: !!null ''\n")
    assert doc.data == {"a": "1", "b": 2, "c": "2001-01-01", "d": "=", "e": True, "f": None,
                        "g": None}


def test_short_tag():
    assert short_tag("tag:yaml.org,2002:python/object") == "!!python/object"
    assert short_tag("!foo") == "!foo"
    assert short_tag("tag:example.com,2000:x") == "!<tag:example.com,2000:x>"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb: \x00\n", 2, "character U+0000 is not allowed in YAML"),
    ("a: 1\n\n\x1b[0m: x\n", 3, "character U+001B is not allowed in YAML"),
    ("a: [1\n", 2, "not valid YAML: while parsing a flow sequence at line 1: expected ',' or ']', "
                   "but got '<stream end>'"),
    ("a: *missing\n", 1, "not valid YAML: found undefined alias 'missing'"),
    ("%YAML 2.0\n---\na: 1\n", 1, "not valid YAML: found incompatible YAML document (version 1.* "
                                  "is required)"),
    ("a: &x 1\nb: &x 2\n", 2, "not valid YAML: found duplicate anchor 'x'; first occurrence at "
                              "line 1: second occurrence"),
])
def test_bad_yaml_names_its_line(text, line, message):
    err = refused(text)
    assert (err.line, err.message) == (line, message)


def test_documents_and_empty_ones():
    docs = load("a: 1\n---\n---\n~\n---\n- x\n")
    assert [d.data for d in docs] == [{"a": 1}, ["x"]]
    assert docs[1].start_line == 6
