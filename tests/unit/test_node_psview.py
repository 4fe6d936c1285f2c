"""testbed.node.psview: `docker ps`-like rows from a saved cluster state, with a fake alive()."""

from __future__ import annotations

import pytest

from testbed.node.psview import HEADER, PAUSE_IMAGE, _uptime, format_rows, ps_rows

NOW = 10_000.0

STATE = {"pods": [
    {"node": "w2", "namespace": "default", "name": "pod-c", "uid": "cccccccc-1111", "ip": "10.244.1.2",
     "created": NOW - 7300, "pause": {"pid": 300, "start": 3},
     "containers": [{"name": "web", "pid": 301, "start": 31, "image": "agnhost",
                     "argv": ["python", "-m", "agnhost", "netexec"], "ports": ["8080/TCP", "8081/UDP"]}]},
    {"node": "w1", "namespace": "default", "name": "pod-a", "uid": "aaaaaaaa-2222", "ip": "10.244.0.2",
     "created": NOW - 5, "pause": {"pid": 100, "start": 1},
     "containers": [
         {"name": "web", "pid": 101, "start": 11, "image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
          "argv": ["python", "-m", "testbed.workloads.agnhost", "netexec", "--http-port=8080"],
          "ports": ["8080/TCP"]},
         {"name": "crashed", "pid": None, "start": None, "image": "busybox", "argv": ["false"], "ports": []},
     ]},
    {"node": "w1", "namespace": "apps", "name": "pod-z", "uid": "zzzzzzzz", "ip": "10.244.0.3",
     "created": NOW - 90, "pause": {"pid": 200, "start": 2}, "containers": []},
]}


def alive_except(*dead: int):
    calls = []

    def alive(pid, start):
        calls.append((pid, start))
        return pid is not None and pid not in dead

    alive.calls = calls
    return alive


def test_rows_are_sorted_by_node_namespace_name_with_pause_first():
    rows = ps_rows(STATE, None, NOW, alive_except())
    assert [(r[0], r[6]) for r in rows] == [
        ("w1", "k8s_POD_pod-z_apps_zzzzzzzz_0"),
        ("w1", "k8s_POD_pod-a_default_aaaaaaaa_0"),
        ("w1", "k8s_web_pod-a_default_aaaaaaaa_0"),
        ("w1", "k8s_crashed_pod-a_default_aaaaaaaa_0"),
        ("w2", "k8s_POD_pod-c_default_cccccccc_0"),
        ("w2", "k8s_web_pod-c_default_cccccccc_0"),
    ]


def test_pause_row():
    rows = ps_rows(STATE, "w2", NOW, alive_except())
    assert rows[0] == ("w2", "300", PAUSE_IMAGE, '"/pause"', "Up 2 hours", "10.244.1.2",
                       "k8s_POD_pod-c_default_cccccccc_0")


def test_container_rows():
    rows = ps_rows(STATE, "w1", NOW, alive_except())
    web, crashed = rows[2], rows[3]
    assert web == ("w1", "101", "registry.k8s.io/e2e-test-images/agnhost…",
                   '"python -m testbed.workloads.agnhost n…"', "Up 5 seconds", "8080/TCP",
                   "k8s_web_pod-a_default_aaaaaaaa_0")
    assert len(web[2]) == 40 and len(web[3]) == 40
    assert crashed[1] == "-"       # no pid
    assert crashed[4] == "Exited"  # alive(None, None) is false
    assert crashed[5] == "-"       # no ports
    assert ps_rows(STATE, "w2", NOW, alive_except())[1][5] == "8080/TCP, 8081/UDP"


def test_dead_processes_show_exited_and_alive_gets_pid_and_start():
    alive = alive_except(100, 301)
    rows = ps_rows(STATE, None, NOW, alive)
    status = {r[6]: r[4] for r in rows}
    assert status["k8s_POD_pod-a_default_aaaaaaaa_0"] == "Exited"
    assert status["k8s_web_pod-a_default_aaaaaaaa_0"] == "Up 5 seconds"
    assert status["k8s_web_pod-c_default_cccccccc_0"] == "Exited"
    assert status["k8s_POD_pod-z_apps_zzzzzzzz_0"] == "Up 1 minute"
    assert (100, 1) in alive.calls and (301, 31) in alive.calls and (None, None) in alive.calls


def test_node_filter_and_empty_state():
    assert {r[0] for r in ps_rows(STATE, "w1", NOW, alive_except())} == {"w1"}
    assert ps_rows(STATE, "w9", NOW, alive_except()) == []
    assert ps_rows({}, None, NOW, alive_except()) == []


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "Up 0 seconds"), (1, "Up 1 second"), (1.9, "Up 1 second"), (59, "Up 59 seconds"),
    (60, "Up 1 minute"), (119, "Up 1 minute"), (120, "Up 2 minutes"), (3599, "Up 59 minutes"),
    (3600, "Up 1 hour"), (7199, "Up 1 hour"), (7200, "Up 2 hours"), (86400 * 2, "Up 48 hours"),
])
def test_uptime(seconds, text):
    assert _uptime(seconds) == text


def test_format_rows_aligns_columns():
    rows = ps_rows(STATE, "w2", NOW, alive_except())
    lines = format_rows(rows).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == list(HEADER)
    for col in ("PID", "IMAGE", "STATUS", "NAMES"):
        at = lines[0].index(col)
        assert lines[1][at - 1] == " " and lines[1][at] != " "
        assert lines[2][at - 1] == " " and lines[2][at] != " "
    assert lines[1].endswith("k8s_POD_pod-c_default_cccccccc_0")
    assert all(line == line.rstrip() for line in lines)


def test_format_rows_of_nothing_is_the_header():
    assert format_rows([]) == "   ".join(HEADER)
