"""ControlPlane.force_full_sync: SIGUSR1 to a node's kube-proxy, then waiting for its status to
show a full sync begun after the signal. The kube-proxy is a real KubeProxy over a fake backend
in a child process (no root, no network), as the cluster runs it: its own pid in its status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from testbed.emu import rundir
from testbed.emu.controlplane import Agent, ControlPlaneError
from testbed.emu.record import start_time

from .conftest import ROOT
from .test_routing_agents import TWO_NODE, control_plane, topo_of

# A kube-proxy with informers that list nothing, over FakeIptables, writing its status to
# argv[1]; with argv[2] == "deaf" it ignores SIGUSR1 (an agent that never answers).
CHILD = textwrap.dedent("""
    import pathlib, signal, sys, threading
    from testbed.agents.kube_proxy import KubeProxy, Options, settings_for
    from testbed.proxy.fakes import FakeIptables
    from testbed.proxy.proxier import Proxier

    class Informer:
        def __init__(self, *args, **kwargs): pass
        def start(self): return self
        def stop(self): pass
        def has_synced(self): return True

    opts = Options(api="x", node="w1", node_ip="192.168.0.2", cluster_cidr="10.244.0.0/16",
                   state_dir=sys.argv[1], healthz_port=0)
    proxy = KubeProxy(Proxier(FakeIptables(), settings_for(opts), new_lock=threading.Lock),
                      object(), Informer, opts)
    pathlib.Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)  # as start_agent does
    if sys.argv[2] == "deaf":
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    else:
        proxy.full_sync_on_signal(signal.SIGUSR1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    proxy.run(stop)
""")


@pytest.fixture
def kube_proxy(tmp_path):
    """Start the child kube-proxy of w1 ("hears" or "deaf"); it and the control plane."""
    procs = []
    cp = control_plane(topo_of(TWO_NODE, "gateway"), tmp_path)

    def start(how: str = "hears") -> subprocess.Popen:
        state = rundir.proxy_directory(tmp_path, "w1")
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(state), how], cwd=ROOT)
        procs.append(proc)
        cp.agents["kube-proxy-w1"] = Agent("kube-proxy", "w1", [], proc.pid,
                                           start_time(proc.pid))
        return proc

    yield cp, start
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def status(cp) -> rundir.ProxyStatus | None:
    return rundir.read_proxy_status(cp.record.directory, "w1")


def test_no_running_kube_proxy_is_an_error_naming_the_node(tmp_path):
    cp = control_plane(topo_of(TWO_NODE, "gateway"), tmp_path)
    with pytest.raises(ControlPlaneError, match="no running kube-proxy on w1"):
        cp.force_full_sync("w1", timeout=0.2)


def test_waits_for_a_full_sync_begun_after_the_signal(kube_proxy):
    cp, start = kube_proxy
    proc = start()
    before = time.time()
    cp.force_full_sync("w1", timeout=20)  # waits for the first sync, then signals
    after = status(cp)
    assert after.pid == proc.pid and after.full_syncs == 2  # the first sync, then the asked one
    assert after.last_full >= before and after.last["full"] and after.last["ok"]
    cp.force_full_sync("w1", timeout=20)
    again = status(cp)
    assert again.full_syncs == 3 and again.last_full > after.last_full


def test_a_kube_proxy_that_does_not_answer_times_out_naming_the_node(kube_proxy):
    cp, start = kube_proxy
    start("deaf")
    with pytest.raises(ControlPlaneError, match="kube-proxy on w1 to report a full sync after "
                                                "SIGUSR1"):
        cp.force_full_sync("w1", timeout=3)
    assert status(cp).full_syncs == 1  # only its first sync


def test_a_predecessors_status_is_not_taken_for_a_sync(kube_proxy, tmp_path):
    cp, start = kube_proxy
    state = rundir.proxy_directory(tmp_path, "w1")
    state.mkdir(parents=True)
    rundir.write_proxy_status(state, rundir.ProxyStatus(
        "iptables", "w1", os.getpid(), 5, time.time(), {"ok": True, "full": True}, 1, 5,
        time.time() + 60, 3600))  # another process's, even "newer"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cp.agents["kube-proxy-w1"] = Agent("kube-proxy", "w1", [], proc.pid, start_time(proc.pid))
        with pytest.raises(ControlPlaneError, match="kube-proxy on w1 to report its first sync"):
            cp.force_full_sync("w1", timeout=0.5)
        assert proc.poll() is None  # no signal sent to one that has not reported (it would die)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
