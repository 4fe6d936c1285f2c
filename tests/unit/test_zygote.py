"""The agents' zygote (testbed/emu/zygote.py): each agent it forks is a process of its own,
started as `python -m MODULE ARGV` would be, and reaped when it ends."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from testbed.emu.record import start_time
from testbed.emu.zygote import Zygote, ZygoteError

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.unit.fake_agent"


@pytest.fixture(scope="module")
def zygote():
    z = Zygote.start(ROOT)
    yield z
    z.close()


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """Ended and reaped: not even a zombie is left."""
    return not Path(f"/proc/{pid}").exists()


def test_an_agent_is_a_process_of_its_own_started_as_python_m_would(zygote, tmp_path):
    report, log = tmp_path / "report.json", tmp_path / "agent.log"
    pid = zygote.spawn(MODULE, ["report", str(report)], None, log, tmp_path)
    wait_for(lambda: report.exists() and report.stat().st_size > 0 and gone(pid))
    seen = json.loads(report.read_text())
    assert seen["pid"] == pid and seen["ppid"] == zygote.pid
    assert seen["sid"] == pid                       # a session of its own
    assert seen["argv"] == ["report", str(report)]
    assert seen["sys_argv"] == [MODULE, "report", str(report)]
    assert seen["cwd"] == str(tmp_path)
    assert seen["stdin"] == ""                      # /dev/null
    assert seen["sigchld"] == str(signal.SIG_DFL)   # not the zygote's reaper
    assert seen["sigterm"] == str(signal.SIG_DFL)
    assert seen["sigint"] == str(signal.default_int_handler)
    assert seen["netns"] == os.stat("/proc/self/ns/net").st_ino   # none asked for: unchanged
    assert f"fake agent {pid} reporting" in log.read_text()


def test_ps_shows_the_agents_own_command_line(zygote, tmp_path):
    ready = tmp_path / "ready"
    pid = zygote.spawn(MODULE, ["wait", str(ready)], None, tmp_path / "log", tmp_path)
    try:
        wait_for(ready.exists)
        args = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert [a.decode() for a in args[1:]] == ["-m", MODULE, "wait", str(ready)]
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "fake-agent"
        # the zygote's own command line is unchanged
        zargs = Path(f"/proc/{zygote.pid}/cmdline").read_bytes().split(b"\0")
        assert zargs[1:3] == [b"-m", b"testbed.emu.zygote"]
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid))   # reaped by the zygote, never left a zombie


@pytest.mark.parametrize("argv, words", [
    (["exit", "7"], None),
    (["raise"], "RuntimeError: the fake agent failed"),
    (["usage"], "fake_agent: error: a bad option"),
])
def test_an_agent_that_ends_is_reaped_and_its_last_words_logged(zygote, tmp_path, argv, words):
    log = tmp_path / "agent.log"
    pid = zygote.spawn(MODULE, argv, None, log, tmp_path)
    wait_for(lambda: gone(pid))
    assert start_time(pid) is None
    if words:
        assert words in log.read_text()


def test_a_missing_module_is_logged_and_the_zygote_lives_on(zygote, tmp_path):
    log = tmp_path / "agent.log"
    pid = zygote.spawn("tests.unit.no_such_agent", [], None, log, tmp_path)
    wait_for(lambda: gone(pid))
    assert "No module named 'tests.unit.no_such_agent'" in log.read_text()
    assert zygote.alive()


def test_a_bad_request_is_refused_and_the_zygote_lives_on(tmp_path):
    z = Zygote.start(ROOT)
    try:
        z.spawn(MODULE, ["exit", "0"], None, tmp_path / "log", tmp_path)   # ready
        z.proc.stdin.write(b'{"argv": []}\n')
        z.proc.stdin.flush()
        assert "bad request" in z._answer()["error"]
        report = tmp_path / "report.json"
        pid = z.spawn(MODULE, ["report", str(report)], None, tmp_path / "log", tmp_path)
        wait_for(lambda: gone(pid))
        assert json.loads(report.read_text())["pid"] == pid
    finally:
        z.close()


def test_agents_outlive_their_zygote(tmp_path):
    z = Zygote.start(ROOT)
    ready = tmp_path / "ready"
    pid = z.spawn(MODULE, ["wait", str(ready)], None, tmp_path / "log", tmp_path)
    try:
        wait_for(ready.exists)
        z.close()
        assert z.proc.returncode == 0
        assert start_time(pid) is not None
        with pytest.raises(ZygoteError, match="zygote"):
            z.spawn(MODULE, ["exit", "0"], None, tmp_path / "log", tmp_path)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_dead_zygote_is_named(tmp_path):
    z = Zygote.start(ROOT)
    z.proc.kill()
    z.proc.wait()
    with pytest.raises(ZygoteError, match=rf"zygote \(pid {z.pid}\)"):
        z.spawn(MODULE, ["exit", "0"], None, tmp_path / "log", tmp_path)
    assert not z.alive()


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a network namespace needs root")
def test_an_agent_runs_in_the_network_namespace_it_is_given(zygote, tmp_path):
    import subprocess

    holder = subprocess.Popen(["unshare", "-n", "sleep", "30"])
    try:
        wait_for(lambda: os.stat(f"/proc/{holder.pid}/ns/net").st_ino
                 != os.stat("/proc/self/ns/net").st_ino)
        report = tmp_path / "report.json"
        pid = zygote.spawn(MODULE, ["report", str(report)], holder.pid, tmp_path / "log", tmp_path)
        wait_for(lambda: gone(pid))
        assert json.loads(report.read_text())["netns"] == os.stat(f"/proc/{holder.pid}/ns/net").st_ino
    finally:
        holder.kill()
        holder.wait()


# -- how the control plane uses it (emu/controlplane.py) -------------------------------------------


class FakeZygote:
    def __init__(self, fails: bool = False, alive: bool = True):
        self.fails, self.is_alive, self.calls = fails, alive, []

    def alive(self) -> bool:
        return self.is_alive

    def spawn(self, module, argv, netns, log, cwd):
        self.calls.append((module, argv, netns, log, cwd))
        if self.fails:
            raise ZygoteError("the agents' zygote (pid 1) is gone: Broken pipe")
        return os.getpid()   # a live process the record can take


def control_plane(tmp_path, zygote):
    from types import SimpleNamespace

    from testbed.emu.controlplane import ControlPlane
    from testbed.emu.record import Record
    from testbed.spec.topology import load_topology

    record = Record(tmp_path)
    record.add_process(os.getpid(), "a node")   # the node's namespace holder, as the network records it
    cp = ControlPlane(load_topology(ROOT / "topologies" / "two-node.yaml"),
                      SimpleNamespace(pid=lambda name: os.getpid()), record, lambda text: None, zygote)
    started = []
    cp._popen_agent = lambda command, log: started.append(command) or os.getpid()
    return cp, started


def test_the_control_plane_forks_python_agents_from_its_zygote(tmp_path):
    zygote = FakeZygote()
    cp, started = control_plane(tmp_path, zygote)
    agent = cp.start_agent("kube-proxy", cp.topo.node("w1"))
    [(module, argv, netns, log, cwd)] = zygote.calls
    assert module == "testbed.agents.kube_proxy" and argv[argv.index("--node") + 1] == "w1"
    assert netns == os.getpid() and log.name == "kube-proxy-w1.log" and cwd == ROOT
    assert started == [] and agent.pid == os.getpid()
    assert cp.record.procs[os.getpid()].what == "kube-proxy on w1"


@pytest.mark.parametrize("zygote", [None, FakeZygote(alive=False), FakeZygote(fails=True)],
                         ids=["none", "dead", "failing"])
def test_without_a_working_zygote_an_agent_starts_as_a_program_of_its_own(tmp_path, zygote):
    import sys

    cp, started = control_plane(tmp_path, zygote)
    cp.start_agent("kubelet", cp.topo.node("w2"))
    [command] = started
    assert command[:3] == ["nsenter", f"--net=/proc/{os.getpid()}/ns/net", "--"]
    assert command[3:6] == [sys.executable, "-m", "testbed.agents.kubelet"]
    if isinstance(zygote, FakeZygote) and zygote.fails:
        log = (tmp_path / "logs" / "kubelet-w2.log").read_text()
        assert "zygote (pid 1) is gone: Broken pipe; starting it as a program of its own" in log
