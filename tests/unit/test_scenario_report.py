"""testbed.scenario.report: the table, JUnit XML and JSON of a run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from testbed.scenario.report import as_json, junit, table
from testbed.scenario.results import StepResult
from testbed.scenario.spec import Expect, Probe, Sleep, Step, Target


def result(name: str, line: int, passed: bool, observed: str, seconds: float, **details) -> StepResult:
    step = Step(name, line, Probe("tcp", "a", Target("b", 80), Expect()))
    return StepResult(step, passed, "reachable", observed, seconds, dict(details))


RESULTS = [
    result("pod to pod", 10, True, "connected in 0.3 ms", 0.0123, attempts=1),
    result("nodeport from client", 15, False, "connection refused", 2.5, attempts=3),
    StepResult(Step("sleep 1s", 20, Sleep(1.0)), True, "sleep 1s", "slept", 1.0),
]


def test_table():
    lines = table(RESULTS).splitlines()
    assert lines[0].split() == ["#", "step", "expected", "observed", "result", "time"]
    assert set(lines[1].replace("  ", "")) == {"-"}
    assert lines[2].startswith("1  pod to pod")
    assert "pod to pod" in lines[2] and lines[2].endswith("PASS    0.01s")
    assert "connection refused" in lines[3] and lines[3].endswith("FAIL    2.50s")
    assert lines[4].endswith("PASS    1.00s")
    assert lines[-1] == "2 passed, 1 failed"
    assert len(lines) == 6
    # columns line up: "observed" starts at the same place in every row
    col = lines[0].index("observed")
    assert lines[2][col:].startswith("connected in 0.3 ms")
    assert lines[3][col:].startswith("connection refused")


def test_table_cuts_long_cells():
    long = result("x" * 100, 1, True, "y" * 200, 0.0)
    row = table([long]).splitlines()[2]
    assert "x" * 43 + "…" in row
    assert "x" * 44 not in row
    assert "y" * 69 + "…" in row
    assert "y" * 70 not in row


def test_table_of_nothing():
    assert table([]).splitlines()[-1] == "0 passed, 0 failed"


def test_junit_parses_and_counts():
    root = ET.fromstring(junit("tour", RESULTS, setup_seconds=4.0))
    assert root.tag == "testsuite"
    assert root.attrib["name"] == "tour"
    assert root.attrib["tests"] == "3"
    assert root.attrib["failures"] == "1"
    assert root.attrib["errors"] == "0"
    assert root.attrib["time"] == "7.512"  # setup + every step
    cases = root.findall("testcase")
    assert [c.attrib["name"] for c in cases] == ["01 pod to pod", "02 nodeport from client", "03 sleep 1s"]
    assert {c.attrib["classname"] for c in cases} == {"tour"}
    assert cases[1].attrib["time"] == "2.500"


def test_junit_failures_have_messages():
    root = ET.fromstring(junit("tour", RESULTS, 0.0))
    cases = root.findall("testcase")
    assert cases[0].find("failure") is None
    assert cases[2].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "expected reachable; observed connection refused"
    assert failure.text == "step at line 15\nexpected: reachable\nobserved: connection refused\n"
    assert cases[1].find("system-out").text == "connection refused"


def test_junit_escapes_markup():
    bad = result('<b>&"quotes"', 1, False, "HTTP 500: '<html>&amp;'", 0.1)
    text = junit("a&b", [bad], 0.0)
    assert text.startswith("<?xml")
    root = ET.fromstring(text)
    assert root.attrib["name"] == "a&b"
    case = root.find("testcase")
    assert case.attrib["name"] == '01 <b>&"quotes"'
    assert case.find("failure").attrib["message"] == "expected reachable; observed HTTP 500: '<html>&amp;'"


def test_json():
    data = json.loads(as_json("tour", "scenarios/tour.yaml", RESULTS, 4.00049))
    assert data["scenario"] == "tour"
    assert data["file"] == "scenarios/tour.yaml"
    assert data["setupSeconds"] == 4.0
    assert (data["passed"], data["failed"]) == (2, 1)
    assert data["steps"][1] == {
        "index": 2, "name": "nodeport from client", "line": 15, "expected": "reachable",
        "observed": "connection refused", "passed": False, "seconds": 2.5,
        "details": {"attempts": 3},
    }
    assert data["steps"][0]["seconds"] == 0.012
    assert [s["index"] for s in data["steps"]] == [1, 2, 3]


def test_a_skipped_step_is_neither_passed_nor_failed():
    ran = result("ran", 3, True, "ok", 0.5)
    skipped = StepResult(Step("gateway only", 4, Sleep(1)), True, "skipped",
                         "skipped: holds only under routing gateway (this run: routing vxlan)", 0.0,
                         skipped=True)
    assert table([ran, skipped]).splitlines()[-1] == "1 passed, 0 failed, 1 skipped"
    assert "SKIP" in table([ran, skipped]).splitlines()[3]
    data = json.loads(as_json("s", "s.yaml", [ran, skipped], 1.0))
    assert (data["passed"], data["failed"], data["skipped"]) == (1, 0, 1)
    assert data["steps"][1]["skipped"] is True and "skipped" not in data["steps"][0]
    suite = ET.fromstring(junit("s", [ran, skipped], 1.0))
    assert suite.get("skipped") == "1"
    (case,) = [c for c in suite if c.find("skipped") is not None]
    assert "routing vxlan" in case.find("skipped").get("message")


def test_a_steps_state_is_what_every_report_marks():
    ran, failed = result("ran", 3, True, "ok", 0.5), result("failed", 4, False, "no", 0.5)
    skipped = StepResult(Step("gateway only", 5, Sleep(1)), True, "skipped", "skipped", 0.0,
                         skipped=True)
    assert [r.state for r in (ran, failed, skipped)] == ["pass", "fail", "skip"]
    assert [line.split()[-2] for line in table([ran, failed, skipped]).splitlines()[2:5]] == [
        "PASS", "FAIL", "SKIP"]
