"""Root: the kube-proxy process against a real API server, both in one throwaway netns.

The API server listens on 127.0.0.1 inside the namespace (and on a Unix socket for the test);
kube-proxy runs there through nsenter, as the cluster runs it in a worker. Killed with SIGKILL,
iptables and nftables modes keep the Service working; a restart catches up with changes made
while it was dead. Processes are ended by pid.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed.net.run import ns_prefix
from tests.integration.test_netfilter import PODS, ask, netns, serve  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def start(pid: int, *argv: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*ns_prefix(pid), sys.executable, *argv], cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def end(proc: subprocess.Popen, sig: str = "term") -> None:
    if proc.poll() is None:
        proc.terminate() if sig == "term" else proc.kill()
        proc.wait(10)


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def answers(pid: int, ip: str) -> set[str]:
    out = set()
    for _ in range(12):
        try:
            out.add(ask(pid, ip, 80))
        except OSError as err:
            out.add(type(err).__name__)
    return out


@pytest.fixture
def api(netns, tmp_path):  # noqa: F811
    from testbed.apiclient import Client

    sock = tmp_path / "api.sock"
    proc = start(netns, "-m", "testbed.agents.apiserver", "--listen", "127.0.0.1:6443",
                 "--unix", str(sock), "--state", str(tmp_path / "api.jsonl"),
                 "--service-cidr", "10.96.0.0/16", "--no-controllers", log=tmp_path / "api.log")
    try:
        assert wait_for(sock.exists), (tmp_path / "api.log").read_text()
        yield Client(f"unix://{sock}")
    finally:
        end(proc)


def endpoint_slice(ips: tuple[str, ...]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": "web-1",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


@pytest.mark.parametrize("mode", ["iptables", "nftables", "userspace"])
def test_agent_syncs_survives_kill_and_catches_up(netns, api, tmp_path, mode):  # noqa: F811
    stop = threading.Event()
    for ip in PODS:
        serve(netns, ip, 8080, stop)
    created = api.create({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"namespace": "default", "name": "web"},
                          "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    cip = created["spec"]["clusterIP"]
    slice_ = api.create(endpoint_slice(PODS))
    argv = ["-m", "testbed.agents.kube_proxy", "--api", "http://127.0.0.1:6443", "--node", "w1",
            "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8", "--mode", mode,
            "--state-dir", str(tmp_path / "kp")]
    log = tmp_path / "kp.log"
    proxy = start(netns, *argv, log=log)
    try:
        assert wait_for(lambda: answers(netns, cip) == set(PODS)), log.read_text()
        end(proxy, "kill")
        if mode == "userspace":  # the single point of failure: the portal leads nowhere
            assert answers(netns, cip) == {"ConnectionRefusedError"}
        else:
            assert answers(netns, cip) == set(PODS)  # rules outlive the process
        slice_["endpoints"] = slice_["endpoints"][:1]
        api.update(slice_)
        proxy = start(netns, *argv, log=log)
        assert wait_for(lambda: answers(netns, cip) == {PODS[0]}), log.read_text()
        end(proxy)  # SIGTERM: rules stay in every mode
        assert proxy.returncode == 0, log.read_text()
    finally:
        end(proxy)
        stop.set()
