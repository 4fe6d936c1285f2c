"""Reachability and label steps, probe reasons, NAMESPACE/NAME pods: parsing every form and every
bad input (with field paths), truth tables (building, comparing, printing, reading back), the
checks at load (names, ambiguity, SCTP), reason evaluation, and the label step's merge patch
against an in-process API server. Nothing here needs root."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.emu.probes import (
    ERROR,
    REFUSED,
    TIMEOUT,
    UNREACHABLE,
    Observation,
    _checksum,
    _echo_request,
    _icmp_answer,
    failure_of,
)
from testbed.scenario.actions import Label, PodRef
from testbed.scenario.preflight import (
    NO_SCTP,
    check_names,
    check_sctp,
    pod_namespaces,
    reachability_problems,
    resolve_member,
)
from testbed.scenario.reachability import Expectation, PortSpec, Reachability, parse_port
from testbed.scenario.report import as_json, junit
from testbed.scenario.results import StepResult
from testbed.scenario.spec import Expect, Scenario, Step, load_scenario
from testbed.scenario.steps import evaluate
from testbed.scenario.truthtable import (
    MatrixError,
    Member,
    Peer,
    Table,
    compare,
    expected_table,
    judge,
    loopback_cells,
    parse_matrix,
    parse_pair,
    parse_peer,
    pretty,
    report,
)
from testbed.spec.source import SpecError
from testbed.spec.topology import load_topology

from .conftest import ROOT

# -- parsing ----------------------------------------------------------------------------------


@pytest.fixture
def load(write):
    write("topology.yaml", "name: t\n")

    def _load(steps: str) -> Scenario:
        return load_scenario(write("s.yaml", "topology: topology.yaml\nsteps:\n" + steps))

    return _load


@pytest.fixture
def problems(write, tmp_path):
    """problems(steps) -> every problem as "LINE: field: message"."""
    write("topology.yaml", "name: t\n")

    def _problems(steps: str) -> list[str]:
        with pytest.raises(SpecError) as info:
            load_scenario(write("s.yaml", "topology: topology.yaml\nsteps:\n" + steps))
        return [f"{p.line}: {p.field}: {p.message}" for p in info.value.problems]

    return _problems


def only(load, steps: str):
    [step] = load(steps).steps
    return step


def test_pods_shorthand_and_defaults(load):
    step = only(load, """
  - name: x/a only from x/b
    reachability:
      pods: [x/a, x/b, y/a]
      ports: [tcp/80]
    expect: {allow: all, except: ["x/b -> x/a", "y/* -> x/a", "* -> z/c"]}
""")
    r = step.action
    assert step.name == "x/a only from x/b"
    assert r.sources == r.destinations == ("x/a", "x/b", "y/a")
    assert r.shorthand and r.field(False) == r.field(True) == "pods"
    assert r.ports == (PortSpec("tcp", 80),)
    assert (r.timeout, r.retry_for, r.check_loopback) == (1.0, 0.0, False)
    assert r.expect.default is True and r.expect.matrix is None
    assert [tuple(map(str, pair)) for pair in r.expect.exceptions] == [
        ("x/b", "x/a"), ("y/*", "x/a"), ("*", "z/c")]
    assert r.expect.describe() == "all allowed except x/b -> x/a, y/* -> x/a, * -> z/c"


def test_from_to_ports_timing_loopback_and_a_default_name(load):
    step = only(load, """
  - reachability:
      from: [x/a, client, w1]
      to: [x/a, y/b]
      ports: [80, "81", UDP/53, sctp/9, icmp, tcp/65535]
      timeout: 0.5
      retryFor: 5
      loopback: check
    expect: {deny: all, except: "client -> */b"}
""")
    r = step.action
    assert (r.sources, r.destinations, r.shorthand) == (("x/a", "client", "w1"), ("x/a", "y/b"), False)
    assert (r.field(False), r.field(True)) == ("from", "to")
    assert [str(p) for p in r.ports] == ["tcp/80", "tcp/81", "udp/53", "sctp/9", "icmp", "tcp/65535"]
    assert (r.timeout, r.retry_for, r.check_loopback) == (0.5, 5.0, True)
    assert r.expect.default is False
    assert r.expect.exceptions == ((Peer(name="client", bare=True), Peer("", "b")),)
    assert step.name == "reachability 3x2 tcp/80,tcp/81,udp/53,sctp/9,icmp,tcp/65535"
    assert r.cells() == 3 * 2 * 6


def test_one_port_as_a_scalar(load):
    assert only(load, "  - {reachability: {pods: [a], ports: udp/5}, expect: {allow: all}}\n") \
        .action.ports == (PortSpec("udp", 5),)


MATRIX_TABS = "-\tx/a\tx/b\nx/a\t.\tX\nx/b\t.\t.\n"


@pytest.mark.parametrize("text", [MATRIX_TABS, "  -   x/a  x/b\n\n  x/b . .\n  x/a . X\n"],
                         ids=["tabs", "spaces-and-other-row-order"])
def test_matrix_expectation(load, text):
    import json

    step = only(load, "  - reachability: {pods: [x/a, x/b], ports: [tcp/80]}\n"
                      f"    expect: {{matrix: {json.dumps(text)}}}\n")
    table = step.action.expect.matrix
    assert step.action.expect.default is None and step.action.expect.describe() == "the matrix"
    assert table.get("x/a", "x/b") is False
    assert [table.get(*c) for c in (("x/a", "x/a"), ("x/b", "x/a"), ("x/b", "x/b"))] == [True] * 3


def test_a_block_scalar_matrix_as_written_in_a_scenario(load):
    step = only(load, """
  - reachability: {from: [x/a, w1], to: [x/a, y/b], ports: [icmp]}
    expect:
      matrix: |
        -	x/a	y/b
        x/a	.	X
        w1	X	.
""")
    table = step.action.expect.matrix
    assert (table.froms, table.tos) == (("x/a", "w1"), ("x/a", "y/b"))
    assert pretty(table) == "-\tx/a\ty/b\nx/a\t.\tX\nw1\tX\t."


def mx(pods: str, matrix: str, extra: str = "", reach: str = "") -> str:
    """A step with a matrix expectation, the matrix as a YAML double-quoted string."""
    import json

    where = reach or f"pods: [{pods}]"
    return f"  - {{reachability: {{{where}, ports: [80]}}, expect: {{matrix: {json.dumps(matrix)}{extra}}}}}\n"


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {reachability: {ports: [80]}, expect: {allow: all}}\n",
     ["3: steps[0].reachability.pods: Required value: the pods to probe between (or from and to)"]),
    ("  - {reachability: {pods: [a], from: [b], to: [c], ports: [80]}, expect: {allow: all}}\n",
     ["3: steps[0].reachability.from: Forbidden: pods names both the sources and the destinations: "
      "give pods, or from and to",
      "3: steps[0].reachability.to: Forbidden: pods names both the sources and the destinations: "
      "give pods, or from and to"]),
    ("  - {reachability: {from: [a], ports: [80]}, expect: {allow: all}}\n",
     ["3: steps[0].reachability.to: Required value: a list of NAMESPACE/NAME pods (or NAME when "
      "unambiguous)"]),
    ("  - {reachability: {pods: [], ports: [80]}, expect: {allow: all}}\n",
     ["3: steps[0].reachability.pods: Required value: a list of NAMESPACE/NAME pods (or NAME when "
      "unambiguous)"]),
    ("  - {reachability: {pods: x/a, ports: [80]}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.pods: Invalid value: "x/a": must be a list']),
    ("  - {reachability: {pods: [x/a, x/a, 7, X/a, x/A, a/b/c, x/], ports: [80]}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.pods[1]: Duplicate value: "x/a"',
      "3: steps[0].reachability.pods[2]: Invalid value: 7: must be a string",
      '3: steps[0].reachability.pods[3]: Invalid value: "X/a": namespace part: a lowercase RFC '
      "1123 label must consist of lower case alphanumeric characters or '-', and must start and "
      "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
      '3: steps[0].reachability.pods[4]: Invalid value: "x/A": name part: a lowercase RFC 1123 '
      "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
      "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
      '3: steps[0].reachability.pods[5]: Invalid value: "a/b/c": namespace part: a lowercase RFC '
      "1123 label must consist of lower case alphanumeric characters or '-', and must start and "
      "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
      '3: steps[0].reachability.pods[6]: Invalid value: "x/": must be NAMESPACE/NAME or NAME']),
    ("  - {reachability: {pods: [a], protocol: tcp}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.protocol: unknown field "protocol"',
      "3: steps[0].reachability.ports: Required value: e.g. [tcp/80, udp/80, icmp]"]),
    ("  - {reachability: {pods: [a], ports: [tcp/0, tcp/65536, ftp/21, tcp/, tcp/http, true, 80, tcp/80]}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.ports[0]: Invalid value: "tcp/0": the port must be between 1 and '
      "65535, inclusive: must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), a "
      "port number (tcp), or icmp",
      '3: steps[0].reachability.ports[1]: Invalid value: "tcp/65536": the port must be between 1 '
      "and 65535, inclusive: must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), "
      "a port number (tcp), or icmp",
      '3: steps[0].reachability.ports[2]: Invalid value: "ftp/21": unsupported protocol \'ftp\': '
      "must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), a port number (tcp), "
      "or icmp",
      '3: steps[0].reachability.ports[3]: Invalid value: "tcp/": the port must be between 1 and '
      "65535, inclusive: must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), a "
      "port number (tcp), or icmp",
      '3: steps[0].reachability.ports[4]: Invalid value: "tcp/http": the port must be between 1 '
      "and 65535, inclusive: must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), "
      "a port number (tcp), or icmp",
      "3: steps[0].reachability.ports[5]: Invalid value: true: must be PROTOCOL/PORT (tcp, udp or "
      "sctp, and a port from 1 to 65535), a port number (tcp), or icmp",
      '3: steps[0].reachability.ports[7]: Duplicate value: "tcp/80"']),
    ("  - {reachability: {pods: [a], ports: [80], timeout: 0.05, retryFor: -1, loopback: skip}, "
     "expect: {allow: all}}\n",
     ["3: steps[0].reachability.timeout: Invalid value: 0.05: must be greater than or equal to 0.1",
      "3: steps[0].reachability.retryFor: Invalid value: -1: must be greater than or equal to 0",
      '3: steps[0].reachability.loopback: Unsupported value: "skip": supported values: "ignore", '
      '"check"']),
    ("  - {reachability: {pods: [a], ports: [80], timeout: 86401}, expect: {allow: all}}\n",
     ["3: steps[0].reachability.timeout: Invalid value: 86401: must be less than or equal to "
      "86400 seconds (a day)"]),
    ("  - {reachability: {pods: [a], ports: [80]}}\n",
     ["3: steps[0].expect: Required value: allow: all or deny: all (with except), or a matrix"]),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: reachable}\n",
     ['3: steps[0].expect: Invalid value: "reachable": must be an object']),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {}}\n",
     ["3: steps[0].expect: Required value: one of allow: all, deny: all or matrix"]),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all, deny: all}}\n",
     ["3: steps[0].expect: Forbidden: one of allow, deny or matrix, not allow and deny"]),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: some}}\n",
     ['3: steps[0].expect.allow: Unsupported value: "some": supported values: "all"']),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all, except: {a: b}}}\n",
     ['3: steps[0].expect.except: Invalid value: {"a": "b"}: must be a list']),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all, except: ['a', 'a -> b -> c', "
     "' -> b', 'x/ -> b', 'X/a -> b', '*/* -> */B', 7]}}\n",
     ['3: steps[0].expect.except[0]: Invalid value: "a": must be a pair FROM -> TO, e.g. '
      '"x/b -> x/a" or "y/* -> x/a"',
      '3: steps[0].expect.except[1]: Invalid value: "a -> b -> c": must be a pair FROM -> TO, e.g. '
      '"x/b -> x/a" or "y/* -> x/a"',
      '3: steps[0].expect.except[2]: Invalid value: " -> b": a side of a pair is empty',
      "3: steps[0].expect.except[3]: Invalid value: \"x/ -> b\": 'x/' must be NAMESPACE/NAME, "
      "NAMESPACE/*, */NAME, * or NAME",
      "3: steps[0].expect.except[4]: Invalid value: \"X/a -> b\": namespace 'X': a lowercase RFC "
      "1123 label must consist of lower case alphanumeric characters or '-', and must start and "
      "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
      "3: steps[0].expect.except[5]: Invalid value: \"*/* -> */B\": name 'B': a lowercase RFC "
      "1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
      "start and end with an alphanumeric character (e.g. 'example.com', regex used for "
      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
      "3: steps[0].expect.except[6]: Invalid value: 7: must be a string"]),
    (mx("a", "-\ta\na\t.", ", except: [a -> a]"),
     ["3: steps[0].expect.except: Forbidden: a matrix names every cell; except goes with allow: all "
      "or deny: all"]),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {matrix: [1]}}\n",
     ["3: steps[0].expect.matrix: Invalid value: [1]: must be a string"]),
    (mx("a", "a\ta\na\t."),
     ['3: steps[0].expect.matrix: Invalid value: "a\\ta": the header line must start with \'-\', '
      "then name the destinations"]),
    (mx("a, b", "-\ta\tb\na\t.\tY\nb\t.\t."),
     ['3: steps[0].expect.matrix: Invalid value: "a\\t.\\tY": row a: \'Y\' is no mark: \'.\' '
      "(allowed) or 'X' (denied)"]),
    (mx("a, b", "-\ta\tb\na\t.\nb\t.\t."),
     ['3: steps[0].expect.matrix: Invalid value: "a\\t.": row a has 1 marks for 2 destinations']),
    (mx("a, b", "-\ta\tb\na\t.\t.\na\t.\t."),
     ['3: steps[0].expect.matrix: Invalid value: "a": source a is named twice']),
    (mx("a, b", "-\ta\ta\na\t.\t."),
     ['3: steps[0].expect.matrix: Invalid value: "-\\ta\\ta": destination a is named twice']),
    (mx("a, b", "-\ta\nb\t."),
     ['3: steps[0].expect.matrix: Invalid value: "b": the matrix\'s rows (sources) must be the '
      "step's a, b: it lacks a",
      '3: steps[0].expect.matrix: Invalid value: "a": the matrix\'s columns (destinations) must be '
      "the step's a, b: it lacks b"]),
    (mx("", "-\tb\tc\na\t.\t.", reach="from: [a], to: [b]"),
     ['3: steps[0].expect.matrix: Invalid value: "b c": the matrix\'s columns (destinations) must '
      "be the step's b: it names c, not in the step"]),
    (mx("a", "  \n"),
     ['3: steps[0].expect.matrix: Invalid value: "  \\n": the matrix is empty: a header line '
      "`- TO...` and a row per source"]),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all, also: x}}\n",
     ['3: steps[0].expect.also: unknown field "also"']),
    ("  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all}, timeout: 3}\n",
     ['3: steps[0].timeout: unknown field "timeout"']),
])
def test_reachability_problems(problems, steps, expected):
    assert problems(steps) == expected


# -- truth tables ---------------------------------------------------------------------------------

X_A, X_B, Y_A = Member("x/a", "a", "x"), Member("x/b", "b", "x"), Member("y/a", "a", "y")
W1 = Member("w1", "w1")
PODS = [X_A, X_B, Y_A]


def test_pretty_prints_as_upstream_and_reads_back():
    table = Table(("x/a", "x/b"), ("x/a", "x/b"),
                  {("x/a", "x/a"): True, ("x/a", "x/b"): False, ("x/b", "x/a"): True})
    assert pretty(table) == "-\tx/a\tx/b\nx/a\t.\tX\nx/b\t.\t?"
    assert pretty(table, "  ").splitlines()[1] == "  x/a\t.\tX"
    full = Table(table.froms, table.tos, {**table.values, ("x/b", "x/b"): False})
    assert parse_matrix(pretty(full)) == full


def test_compare_marks_disagreement_with_x():
    expected = Table(("a", "b"), ("a", "b"), {("a", "a"): True, ("a", "b"): False,
                                              ("b", "a"): True, ("b", "b"): True})
    observed = Table(("a", "b"), ("a", "b"), {("a", "a"): True, ("a", "b"): True,
                                              ("b", "a"): True})
    assert pretty(compare(expected, observed)) == "-\ta\tb\na\t.\tX\nb\t.\t?"


@pytest.mark.parametrize(("text", "peer"), [
    ("*", Peer()), ("*/*", Peer()), ("x/*", Peer("x", "")), ("*/a", Peer("", "a")),
    ("x/a", Peer("x", "a")), ("w1", Peer(name="w1", bare=True)),
])
def test_peers_parse_and_print_back(text, peer):
    assert parse_peer(text) == peer
    assert str(peer) == ("*" if text == "*/*" else text)


@pytest.mark.parametrize(("peer", "matched"), [
    ("*", ["x/a", "x/b", "y/a", "w1"]),
    ("x/*", ["x/a", "x/b"]),
    ("*/a", ["x/a", "y/a"]),
    ("y/a", ["y/a"]),
    ("b", ["x/b"]),           # the one pod named b
    ("w1", ["w1"]),
    ("z/*", []),
])
def test_peer_matches_as_upstream_peer(peer, matched):
    assert [m.label for m in [*PODS, W1] if parse_peer(peer).matches(m)] == matched


def test_pairs():
    assert parse_pair(" x/b->x/a ") == (Peer("x", "b"), Peer("x", "a"))
    with pytest.raises(ValueError, match="must be a pair"):
        parse_pair("x/b => x/a")


def test_expected_table_allow_all_except_and_deny_all_except():
    allow = expected_table(PODS, PODS, True, [(parse_peer("y/*"), parse_peer("x/a")),
                                               (parse_peer("x/b"), parse_peer("*/a"))])
    assert pretty(allow) == ("-\tx/a\tx/b\ty/a\n"
                             "x/a\t.\t.\t.\n"
                             "x/b\tX\t.\tX\n"
                             "y/a\tX\t.\t.")
    deny = expected_table([*PODS, W1], PODS, False, [(parse_peer("*"), parse_peer("x/b"))])
    assert pretty(deny) == ("-\tx/a\tx/b\ty/a\n"
                            "x/a\tX\t.\tX\n"
                            "x/b\tX\t.\tX\n"
                            "y/a\tX\t.\tX\n"
                            "w1\tX\t.\tX")


def test_expected_table_from_a_matrix_in_the_steps_order():
    matrix = parse_matrix("-\tx/b\tx/a\nx/b\t.\tX\nx/a\t.\t.")
    table = expected_table([X_A, X_B], [X_A, X_B], None, matrix=matrix)
    assert pretty(table) == "-\tx/a\tx/b\nx/a\t.\t.\nx/b\tX\t."


def test_loopback_cells_are_the_same_pod_however_written():
    bare_a = Member("a", "a", "x")
    assert loopback_cells([X_A, W1, X_B], [bare_a, X_B]) == {("x/a", "a"), ("x/b", "x/b")}


def test_judge_counts_ignores_loopback_and_lists_mismatches():
    expected = expected_table(PODS, PODS, False)
    observed = Table(expected.froms, expected.tos,
                     {**{c: False for c in expected.cells()}, ("x/a", "x/a"): True,
                      ("x/b", "y/a"): True})
    ignored = loopback_cells(PODS, PODS)
    j = judge(expected, observed, ignored)
    assert (j.correct, j.incorrect, j.ignored, j.mismatches) == (5, 1, 3, (("x/b", "y/a"),))
    assert not j.passed
    assert j.summary() == "reachability: correct:5, incorrect:1, result=false"
    checked = judge(expected, observed)
    assert (checked.incorrect, checked.mismatches) == (2, (("x/a", "x/a"), ("x/b", "y/a")))
    missing = judge(expected, Table(expected.froms, expected.tos, {}), ignored)
    assert missing.incorrect == 6   # a cell never observed is a mismatch


def test_report_prints_summary_warning_and_three_tables():
    expected = expected_table([X_A, X_B], [X_A, X_B], True, [(parse_peer("x/b"), parse_peer("x/a"))])
    observed = Table(expected.froms, expected.tos, {c: True for c in expected.cells()})
    j = judge(expected, observed, loopback_cells([X_A, X_B], [X_A, X_B]))
    text = report(expected, observed, j, "tcp/80")
    assert text.splitlines() == [
        "tcp/80: reachability: correct:1, incorrect:1, result=false",
        "warning: the results of 2 pod->pod cases have been ignored",
        "", "expected:", "", "-\tx/a\tx/b", "x/a\t.\t.", "x/b\tX\t.",
        "", "observed:", "", "-\tx/a\tx/b", "x/a\t.\t.", "x/b\t.\t.",
        "", "comparison:", "", "-\tx/a\tx/b", "x/a\t.\t.", "x/b\tX\t.",
    ]


def test_matrix_errors_name_the_line():
    with pytest.raises(MatrixError) as info:
        parse_matrix("-\ta\nb\t.\t.")
    assert (info.value.line, info.value.detail) == ("b\t.\t.", "row b has 2 marks for 1 destinations")
    with pytest.raises(MatrixError, match="names no destination"):
        parse_matrix("-\n")
    with pytest.raises(MatrixError, match="has no row"):
        parse_matrix("-\ta\n")


@pytest.mark.parametrize(("raw", "spec"), [
    (80, PortSpec("tcp", 80)), ("80", PortSpec("tcp", 80)), ("tcp/1", PortSpec("tcp", 1)),
    ("UDP/53", PortSpec("udp", 53)), ("sctp/80", PortSpec("sctp", 80)), ("ICMP", PortSpec("icmp")),
])
def test_ports(raw, spec):
    assert parse_port(raw) == spec


# -- checks at load: names, ambiguity, SCTP -----------------------------------------------------

@pytest.fixture(scope="module")
def two_node():
    return load_topology(ROOT / "topologies" / "two-node.yaml")


def pod(namespace: str, name: str) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "agnhost"}]}}


def namespace(name: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name}}


OBJECTS = [namespace("x"), namespace("y"), pod("x", "a"), pod("x", "b"), pod("y", "a"),
           pod("default", "solo")]
POD_KEYS = {("x", "a"), ("x", "b"), ("y", "a"), ("default", "solo")}
NAMES = pod_namespaces(list(POD_KEYS))
HOSTS = {"master", "w1", "w2", "gw", "client"}


def scenario_of(*actions) -> Scenario:
    steps = tuple(Step(f"step {i}", 10 + i, a) for i, a in enumerate(actions))
    return Scenario("s", "s.yaml", "", ROOT / "topologies" / "two-node.yaml", (), steps)


ALL = Expectation()
TCP_80 = (PortSpec("tcp", 80),)


def reach(sources, destinations=None, expect=ALL, ports=TCP_80) -> Reachability:
    return Reachability(tuple(sources), tuple(destinations or sources), ports, expect,
                        shorthand=destinations is None)


def test_pod_namespaces_sorted():
    assert NAMES == {"a": ["x", "y"], "b": ["x"], "solo": ["default"]}


@pytest.mark.parametrize(("text", "pods_only", "found"), [
    ("x/a", True, Member("x/a", "a", "x")),
    ("b", True, Member("b", "b", "x")),
    ("solo", False, Member("solo", "solo", "default")),
    ("w1", False, Member("w1", "w1")),
    ("a", False, 'Invalid value: "a": ambiguous: pods of that name are in 2 namespaces (x/a, y/a): '
                 "name one as NAMESPACE/NAME"),
    ("w1", True, 'Invalid value: "w1": a destination is a pod, probed at its pod IP; w1 is a node '
                 "or client"),
    ("x/zz", True, 'Invalid value: "x/zz": no pod of this scenario (known: default/solo, x/a, x/b, '
                   "y/a)"),
    ("ghost", False, 'Invalid value: "ghost": no pod, node or client of this scenario (known: '
                     "default/solo, x/a, x/b, y/a, client, gw, master, w1, w2)"),
])
def test_resolve_member(text, pods_only, found):
    assert resolve_member(text, NAMES, POD_KEYS, HOSTS, pods_only) == found


def test_reachability_names_are_checked_with_their_fields():
    step = reach(["x/a", "a", "w1", "x/b", "b"], ["x/a", "client", "nope/x"])
    assert reachability_problems(step, NAMES, POD_KEYS, HOSTS) == [
        (("reachability", "from", 1), 'Invalid value: "a": ambiguous: pods of that name are in 2 '
                                      "namespaces (x/a, y/a): name one as NAMESPACE/NAME"),
        (("reachability", "from", 4), 'Duplicate value: "b": x/b is the same pod'),
        (("reachability", "to", 1), 'Invalid value: "client": a destination is a pod, probed at '
                                    "its pod IP; client is a node or client"),
        (("reachability", "to", 2), 'Invalid value: "nope/x": no pod of this scenario (known: '
                                    "default/solo, x/a, x/b, y/a)"),
    ]
    # the pods: shorthand names pods only, under pods
    assert reachability_problems(reach(["x/a", "w1"]), NAMES, POD_KEYS, HOSTS) == [
        (("reachability", "pods", 1), 'Invalid value: "w1": a destination is a pod, probed at its '
                                      "pod IP; w1 is a node or client")]


def test_except_pairs_must_match_the_steps_members_and_be_unambiguous():
    pairs = tuple(parse_pair(p) for p in ("y/* -> x/a", "a -> x/b", "x/b -> z/*", "w1 -> */a",
                                          "* -> *"))
    step = reach(["x/a", "x/b", "w1"], ["x/a", "x/b"], Expectation(True, pairs))
    assert reachability_problems(step, NAMES, POD_KEYS, HOSTS) == [
        (("expect", "except", 0), 'Invalid value: "y/*": matches none of the step\'s sources '
                                  "(x/a, x/b, w1)"),
        (("expect", "except", 1), 'Invalid value: "a": ambiguous: pods of that name are in 2 '
                                  "namespaces (x/a, y/a): name one as NAMESPACE/NAME"),
        (("expect", "except", 2), 'Invalid value: "z/*": matches none of the step\'s destinations '
                                  "(x/a, x/b)"),
    ]


def test_check_names_refuses_ambiguous_bare_names_wherever_a_pod_is_named(two_node):
    from testbed.scenario.actions import Fault, NetFault
    from testbed.scenario.spec import Probe, Target

    actions = [
        Probe("tcp", "a", Target("x/b", 80), Expect()),                       # from
        Probe("tcp", "x/b", Target("a", 80), Expect(source_ip="a")),          # to, sourceIP
        Fault("kill", pod=PodRef(name="a", namespace="")),
        NetFault("readiness", pod=PodRef(name="a", namespace=""), up=False),
        Label((("k", "v"),), pod=PodRef(name="a", namespace="")),
        reach(["a", "x/b"]),
        Probe("tcp", "y/a", Target("x/a", 80), Expect(source_ip="y/a")),      # all fine
        Fault("kill", pod=PodRef(name="b", namespace="")),                    # the one b: x/b
        Label((("k", None),), pod=PodRef(name="solo", namespace="")),
    ]
    problems = check_names(scenario_of(*actions), two_node, OBJECTS)
    ambiguous = ('Invalid value: "a": ambiguous: pods of that name are in 2 namespaces (x/a, y/a): '
                 "name one as NAMESPACE/NAME")
    assert [(p.line, p.field, p.message) for p in problems] == [
        (10, "steps[0].from", ambiguous),
        (11, "steps[1].to", ambiguous),
        (11, "steps[1].expect.sourceIP", ambiguous),
        (12, "steps[2].kill.pod", ambiguous),
        (13, "steps[3].readiness.pod", ambiguous),
        (14, "steps[4].label.pod", ambiguous),
        (15, "steps[5].reachability.pods[0]", ambiguous),
    ]


def test_label_steps_name_declared_pods_and_namespaces(two_node):
    actions = [Label((("k", "v"),), namespace="x"), Label((("k", "v"),), namespace="kube-system"),
               Label((("k", "v"),), namespace="nowhere"),
               Label((("k", "v"),), pod=PodRef(name="ghost", namespace="")),
               Label((("k", "v"),), pod=PodRef(name="a", namespace="z"))]
    problems = check_names(scenario_of(*actions), two_node, OBJECTS)
    assert [(p.field, p.message.split(": no ")[0]) for p in problems] == [
        ("steps[2].label.namespace", 'Invalid value: "nowhere"'),
        ("steps[3].label.pod", 'Invalid value: "ghost"'),
        ("steps[4].label.pod", 'Invalid value: "z/a"'),
    ]
    assert "no Namespace of the cluster, the scenario's manifests or an earlier apply step " \
           "(Namespaces: default, kube-node-lease, kube-public, kube-system, x, y)" \
           in problems[0].message


def test_sctp_is_refused_when_the_kernel_has_none_and_asked_only_when_needed():
    asked = []

    def has_sctp(answer: bool):
        def check() -> bool:
            asked.append(answer)
            return answer
        return check

    sctp = reach(["x/a"], ports=(PortSpec("tcp", 80), PortSpec("sctp", 80), PortSpec("sctp", 81)))
    problems = check_sctp(scenario_of(reach(["x/a"]), sctp), has_sctp(False))
    assert [(p.line, p.field, p.message) for p in problems] == [
        (11, "steps[1].reachability.ports[1]", f'Invalid value: "sctp/80": {NO_SCTP}'),
        (11, "steps[1].reachability.ports[2]", f'Invalid value: "sctp/81": {NO_SCTP}')]
    assert "kernel's SCTP support (the sctp module)" in NO_SCTP
    assert check_sctp(scenario_of(sctp), has_sctp(True)) == []
    assert asked == [False, True]
    assert check_sctp(scenario_of(reach(["x/a"])), has_sctp(False)) == []
    assert asked == [False, True]     # no SCTP port: the machine is not asked


def test_check_scenario_takes_the_sctp_check_injected(write):
    from testbed.scenario.preflight import check_scenario

    write("pods.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n"
                       "  - {name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39}\n")
    path = write("s.yaml", f"""
        topology: {ROOT / 'topologies' / 'two-node.yaml'}
        manifests: [pods.yaml]
        steps:
          - reachability: {{pods: [a], ports: [sctp/80]}}
            expect: {{allow: all}}
    """)
    import shutil

    without = check_scenario(path, which=shutil.which, has_sctp=lambda: False)
    assert [p.field for p in without.problems] == ["steps[0].reachability.ports[0]"]
    assert check_scenario(path, which=shutil.which, has_sctp=lambda: True).problems == []


# -- probe expectations: reason ---------------------------------------------------------------------

class NoCluster:
    def address_of(self, name):
        raise AssertionError("a reason needs no address")


@pytest.mark.parametrize(("expect", "obs", "result"), [
    (Expect(False, reason="refused"), Observation(False, "connection refused", failure=REFUSED), (True, "")),
    (Expect(False, reason="timeout"), Observation(False, "timed out", failure=TIMEOUT), (True, "")),
    (Expect(False, reason="refused"), Observation(False, "timed out", failure=TIMEOUT),
     (False, "it was unreachable for another reason (timeout), not refused")),
    (Expect(False, reason="timeout"), Observation(False, "refused", failure=REFUSED),
     (False, "it was unreachable for another reason (refused), not timeout")),
    (Expect(False, reason="timeout"), Observation(False, "no route", failure=UNREACHABLE),
     (False, "it was unreachable for another reason (unreachable), not timeout")),
    (Expect(False, reason="timeout"), Observation(False, "?"),
     (False, "it was unreachable for another reason (unknown), not timeout")),
    (Expect(False, reason="refused"), Observation(True, "connected"), (False, "it was reachable")),
    (Expect(False), Observation(False, "x", failure=ERROR), (True, "")),
])
def test_reason_is_judged_from_the_observations_failure(expect, obs, result):
    assert evaluate(expect, obs, NoCluster()) == result


def test_reason_parses_and_describes(load):
    step = only(load, "  - {probe: tcp, from: x/a, to: 'y/b:81', expect: {reachable: false, "
                      "reason: timeout}}\n")
    assert step.action.expect == Expect(False, reason="timeout")
    assert step.action.expect.describe() == "unreachable (timeout)"
    assert step.action.target.host == "y/b" and step.action.source == "x/a"
    assert step.name == "tcp x/a -> y/b:81"


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {probe: tcp, from: a, to: 'b:1', expect: {reachable: false, reason: reset}}\n",
     ['3: steps[0].expect.reason: Unsupported value: "reset": supported values: "refused", "timeout"']),
    ("  - {probe: tcp, from: a, to: 'b:1', expect: {reason: refused}}\n",
     ["3: steps[0].expect.reason: Forbidden: a reason says why a probe must be unreachable: it goes "
      "with reachable: false"]),
    ("  - {probe: dns, from: a, to: b, expect: {reachable: false, reason: timeout}}\n",
     ["3: steps[0].expect.reason: Forbidden: a dns probe cannot check reason"]),
    ("  - {probe: udp, from: a, to: 'b:1', expect: {reachable: false, reason: refused, reply: x}}\n",
     ["3: steps[0].expect: Forbidden: an unreachable expectation takes no other checks than reason"]),
])
def test_reason_problems(problems, steps, expected):
    assert problems(steps) == expected


def test_failure_of_maps_errors_to_reasons():
    import errno

    assert failure_of(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == REFUSED
    assert failure_of(TimeoutError("timed out")) == TIMEOUT
    assert failure_of(OSError(errno.ETIMEDOUT, "timed out")) == TIMEOUT
    assert failure_of(OSError(errno.EHOSTUNREACH, "no host")) == UNREACHABLE
    assert failure_of(OSError(errno.ENETUNREACH, "no net")) == UNREACHABLE
    assert failure_of(OSError(errno.EINVAL, "bad")) == ERROR


def ip_packet(source: str, payload: bytes) -> bytes:
    import socket

    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0,
                         socket.inet_aton(source), socket.inet_aton("10.244.0.2"))
    return header + payload


def test_icmp_answers_are_told_apart_by_identifier_payload_and_sender():
    request = _echo_request(0x1234, 1, b"token")
    assert _checksum(request) == 0             # a correct checksum sums to zero
    reply = bytes([0, 0]) + request[2:]         # the echo reply carries the id, seq and payload back
    assert _icmp_answer(ip_packet("10.244.1.5", reply), "10.244.1.5", "10.244.1.5", 0x1234, b"token") == (0, 0)
    assert _icmp_answer(ip_packet("10.244.1.5", reply), "10.244.1.5", "10.244.1.5", 0x4321, b"token") is None
    assert _icmp_answer(ip_packet("10.244.1.5", reply), "10.244.1.5", "10.244.1.5", 0x1234, b"other") is None
    assert _icmp_answer(ip_packet("10.244.1.6", reply), "10.244.1.5", "10.244.1.6", 0x1234, b"token") is None
    # an ICMP error quotes our request's IP header and its first 8 bytes
    quoted = ip_packet("10.244.0.2", request)[:28]
    port_unreachable = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    assert _icmp_answer(ip_packet("10.244.1.1", port_unreachable), "10.244.1.5", "10.244.1.1",
                        0x1234, b"token") == (3, 3)
    assert _icmp_answer(ip_packet("10.244.1.1", port_unreachable), "10.244.1.5", "10.244.1.1",
                        0x9999, b"token") is None
    assert _icmp_answer(request, "10.244.1.5", "10.244.1.5", 0x1234, b"token") is None  # too short


# -- label steps ---------------------------------------------------------------------------------

def test_label_steps_parse(load):
    s = load("""
  - label: {pod: x/a, labels: {pod: b, team: null, example.com/tier: "1"}}
  - label: {namespace: y, labels: {ns: other}}
  - label: {pod: solo, labels: {empty: ""}}
""")
    pod_step, ns_step, bare = s.steps
    assert pod_step.action == Label((("pod", "b"), ("team", None), ("example.com/tier", "1")),
                                    pod=PodRef(name="a", namespace="x"))
    assert pod_step.name == "label pod x/a pod=b team- example.com/tier=1"
    assert ns_step.action == Label((("ns", "other"),), namespace="y")
    assert ns_step.name == "label namespace y ns=other"
    assert bare.action.pod == PodRef(name="solo", namespace="")   # resolved at load and at run
    assert bare.name == "label pod solo empty="


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - label: {labels: {a: b}}\n",
     ["3: steps[0].label.pod: Required value: the pod (NAMESPACE/NAME) or namespace to label"]),
    ("  - label: {pod: x/a, namespace: x, labels: {a: b}}\n",
     ["3: steps[0].label: Forbidden: one of pod or namespace, not both"]),
    ("  - label: {pod: x/a}\n", ["3: steps[0].label.labels: Required value"]),
    ("  - label: {pod: x/a, labels: {}}\n",
     ["3: steps[0].label.labels: Required value: the labels to set (KEY: VALUE) or remove (KEY: null)"]),
    ("  - label: {pod: x/a, labels: [a]}\n",
     ['3: steps[0].label.labels: Invalid value: ["a"]: must be an object']),
    ("  - label: {pod: {selector: a=b}, labels: {a: b}}\n",
     ['3: steps[0].label.pod: Invalid value: {"selector": "a=b"}: must be a pod\'s NAMESPACE/NAME (or NAME)']),
    ("  - label: {namespace: Y, labels: {a: b}}\n",
     ['3: steps[0].label.namespace: Invalid value: "Y": a lowercase RFC 1123 label must consist of '
      "lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
      "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    ("  - label: {pod: x/a, labels: {version: 2}}\n",
     ["3: steps[0].label.labels.version: Invalid value: 2: must be a string"]),
    ("  - label: {pod: x/a, labels: {a: 'b c', -x: y}}\n",
     ['3: steps[0].label.labels: Invalid value: "b c": a valid label must be an empty string or '
      "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
      "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
      "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
      '3: steps[0].label.labels: Invalid value: "-x": name part must consist of alphanumeric '
      "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
      "'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
      "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    ("  - label: {pod: x/a, labels: {a: b}, overwrite: true}\n",
     ['3: steps[0].label.overwrite: unknown field "overwrite"']),
])
def test_label_problems(problems, steps, expected):
    assert problems(steps) == expected


class ApiCluster:
    """What label_step asks of a cluster: its API client and a pod by name."""

    def __init__(self, client, pods):
        self.client = client
        self.pods = pods

    def find_pod(self, name):
        from testbed.emu.cluster import PodView

        for namespace, pod_name in self.pods:
            if name in (f"{namespace}/{pod_name}", pod_name):
                return PodView(namespace, pod_name, "uid", "w1", None, None, True, "Running")
        return None


def test_label_step_merge_patches_a_pod_and_a_namespace(server):
    from testbed.apiclient.client import ApiError, Client
    from testbed.scenario.steps import label_step

    client = Client(server.url)
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    client.create({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a", "team": "red"}},
                   "spec": {"containers": [{"name": "c", "image": "agnhost"}]}})
    uid = client.get("Pod", "x", "a")["metadata"]["uid"]
    cluster = ApiCluster(client, [("x", "a")])
    outcome = label_step(cluster, Label((("pod", "b"), ("team", None), ("new", "1")),
                                        pod=PodRef(name="a", namespace="x")))
    assert outcome.passed and outcome.observed == "pod x/a labels: new=1, pod=b"
    stored = client.get("Pod", "x", "a")["metadata"]
    assert stored["labels"] == {"pod": "b", "new": "1"} and stored["uid"] == uid   # in place
    outcome = label_step(cluster, Label((("ns", "other"),), namespace="x"))
    assert client.get("Namespace", None, "x")["metadata"]["labels"]["ns"] == "other"
    assert outcome.details["labels"]["ns"] == "other"
    with pytest.raises(ApiError) as info:   # the API server's own validation answers
        label_step(cluster, Label((("bad key", "v"),), namespace="x"))
    assert info.value.code == 422


# -- reports --------------------------------------------------------------------------------------

def test_reports_carry_the_tables():
    tables = "tcp/80: reachability: correct:1, incorrect:1, result=false\n\nexpected:\n\n-\ta\na\tX"
    step = Step("r", 7, reach(["x/a"]))
    failed = StepResult(step, False, "all denied on tcp/80", "1 of 2 cells wrong", 0.5,
                        {"tables": tables, "mismatches": [{"from": "x/a", "to": "x/a"}]})
    suite = ET.fromstring(junit("s", [failed], 1.0).split("\n", 1)[1])
    case = suite.find("testcase")
    assert tables in case.find("failure").text
    assert case.find("system-out").text.startswith("1 of 2 cells wrong\n\n" + tables)
    import json

    data = json.loads(as_json("s", "s.yaml", [failed], 1.0))
    assert data["steps"][0]["details"]["mismatches"] == [{"from": "x/a", "to": "x/a"}]


def test_bad_input_corpus_has_cases_for_these_steps():
    corpus = Path(ROOT / "tests" / "bad_inputs" / "validation")
    names = {p.name for p in corpus.glob("scenario-*.yaml")}
    assert {"scenario-reachability-sctp.yaml", "scenario-reachability-ambiguous-pod.yaml",
            "scenario-label-bad-value.yaml", "scenario-expect-reason-bad.yaml"} <= names


# -- NetworkPolicy as a kind steps delete ----------------------------------------------------------

DENY_ALL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


def test_a_network_policy_is_deleted_by_kind_and_name(write):
    """Needs the API's NetworkPolicy kind (testbed/api): without it, the manifest is refused."""
    from testbed.scenario.runner import prepare

    write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    write("policy.yaml", DENY_ALL)
    path = write("s.yaml", f"""
        topology: {ROOT / 'topologies' / 'two-node.yaml'}
        manifests: [ns.yaml]
        steps:
          - apply: policy.yaml
          - delete: {{kind: NetworkPolicy, name: deny-all, namespace: x}}
          - delete: {{kind: NetworkPolicy, name: deny-all}}
    """)
    with pytest.raises(SpecError) as info:
        prepare(str(path))
    # the one in namespace x is found (applied by step 0); default has none
    assert [(p.field, p.message) for p in info.value.problems] == [
        ("steps[2].delete.name", 'Invalid value: "deny-all": no NetworkPolicy of the cluster, the '
                                 "scenario's manifests or an earlier apply step (NetworkPolicies: "
                                 "x/deny-all)")]


# -- via: service -----------------------------------------------------------------------------------

def test_via_defaults_to_the_pod_and_can_be_a_service(load):
    assert only(load, "  - {reachability: {pods: [a], ports: [80]}, expect: {allow: all}}\n") \
        .action.via == "pod"
    step = only(load, "  - {reachability: {pods: [x/a], ports: [tcp/80, udp/81], via: service}, "
                      "expect: {allow: all}}\n")
    assert step.action.via == "service"


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {reachability: {pods: [a], ports: [icmp], via: service}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.via: Invalid value: "service": icmp cannot go through a Service '
      "(a ClusterIP answers no ping): probe icmp with via: pod"]),
    ("  - {reachability: {pods: [a], ports: [80], via: node}, expect: {allow: all}}\n",
     ['3: steps[0].reachability.via: Unsupported value: "node": supported values: "pod", '
      '"service"']),
])
def test_via_problems(problems, steps, expected):
    assert problems(steps) == expected


class _ServiceCluster:
    """What service_targets reads of a cluster: its Services by namespace."""

    def __init__(self, services: list[dict]):
        self.services = services

        class _Client:
            def list(inner, kind, namespace):   # noqa: N805 - a stand-in's method
                assert kind == "Service"
                return [s for s in services if s["metadata"]["namespace"] == namespace], "1"

        self.client = _Client()


def _svc(namespace, name, selector, ip, ports):
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"selector": selector, "clusterIP": ip,
                     "ports": [{"port": p, "protocol": proto} for p, proto in ports]}}


def test_service_targets_pick_a_service_that_selects_the_pod_with_the_port():
    from ipaddress import IPv4Address

    from testbed.scenario.reachability_step import Located, service_targets

    cluster = _ServiceCluster(
        [_svc("x", "s-x-a", {"pod": "a"}, "10.96.0.10", [(80, "TCP"), (81, "UDP")]),
         _svc("x", "other", {"pod": "b"}, "10.96.0.11", [(80, "TCP")]),
         _svc("x", "both", {"app": "x"}, "10.96.0.13", [(81, "TCP")]),        # a and b
         _svc("x", "headless", {"pod": "a"}, "None", [(81, "TCP")]),
         _svc("y", "s-y-a", {"pod": "a"}, "10.96.0.12", [(80, "TCP")])],
    )
    from types import SimpleNamespace
    views = {f"{ns}/{name}": SimpleNamespace(namespace=ns, name=name, labels=labels) for ns, name, labels in [
        ("x", "a", {"pod": "a", "app": "x"}), ("x", "b", {"pod": "b", "app": "x"}), ("y", "a", {"pod": "a"})]}
    dests = [Located(Member("x/a", "a", "x"), 1, IPv4Address("10.244.1.2")),
             Located(Member("y/a", "a", "y"), 2, IPv4Address("10.244.2.2"))]
    tcp80, udp81, tcp81 = PortSpec("tcp", 80), PortSpec("udp", 81), PortSpec("tcp", 81)
    targets = service_targets(cluster, dests, (tcp80, udp81, tcp81), views)
    assert targets[(0, tcp80)] == (IPv4Address("10.96.0.10"), 80)
    assert targets[(0, udp81)] == (IPv4Address("10.96.0.10"), 81)
    assert targets[(0, tcp81)] == "no Service of namespace x selects x/a alone with a TCP port 81"
    assert targets[(1, tcp80)] == (IPv4Address("10.96.0.12"), 80)
    assert targets[(1, udp81)] == "no Service of namespace y selects y/a alone with a UDP port 81"
