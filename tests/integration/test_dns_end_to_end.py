"""`python -m testbed.dns.server` against the real API server, as root, in a throwaway namespace.

Both processes run inside a namespace held by `unshare --net sleep infinity` (the fixture from
test_dns_server): the API server listens on 127.0.0.1 there and on a Unix socket in tmp_path,
through which this test writes Services, as `testbed apply` would from the host.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.net.run import ns_prefix
from tests.integration.test_dns_server import data, dig, netns, wait_answer  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def start(pid: int, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(ns_prefix(pid) + [sys.executable, "-m", *args], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def cluster_api(netns, tmp_path):  # noqa: F811 - the imported fixture
    """The API server in the namespace; yields a Client on its Unix socket."""
    from testbed.apiclient import Client

    sock = tmp_path / "api.sock"
    proc = start(netns, "testbed.agents.apiserver", "--listen", "127.0.0.1:6443",
                 "--unix", str(sock), "--state", str(tmp_path / "state.jsonl"),
                 "--service-cidr", "10.96.0.0/12", log=tmp_path / "apiserver.log")
    try:
        client = Client(f"unix://{sock}")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.list("Service")
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert proc.poll() is None, (tmp_path / "apiserver.log").read_text()
                assert time.monotonic() < deadline, "API server never answered"
                time.sleep(0.05)
        yield client
    finally:
        end(proc)


def test_server_follows_the_api_and_exits_cleanly_on_sigterm(netns, cluster_api, tmp_path):  # noqa: F811
    workdir = tmp_path / "dns"
    log = tmp_path / "dns.log"
    server = start(netns, "testbed.dns.server", "--api", "http://127.0.0.1:6443",
                   "--workdir", str(workdir), log=log)
    try:
        # The kubernetes Service exists from the start, as on a real cluster.
        rows = wait_answer(netns, "kubernetes.default.svc.cluster.local", timeout=10)
        assert rows is not None, log.read_text()
        assert data(rows, "A") == ["10.96.0.1"]
        assert data(dig(netns, "_https._tcp.kubernetes.default.svc.cluster.local", "SRV",
                        tcp=True)[1], "SRV") == ["0 100 443 kubernetes.default.svc.cluster.local."]

        cluster_api.create({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "service-test", "namespace": "default"},
                            "spec": {"selector": {"app": "web"},
                                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        ip = cluster_api.get("Service", "default", "service-test")["spec"]["clusterIP"]
        rows = wait_answer(netns, "service-test.default.svc.cluster.local", timeout=1.5)
        assert rows is not None and data(rows, "A") == [ip]
        assert data(dig(netns, ip, "PTR")[1], "PTR") == ["service-test.default.svc.cluster.local."]

        cluster_api.delete("Service", "default", "service-test")
        assert wait_answer(netns, "service-test.default.svc.cluster.local", status="NXDOMAIN",
                           timeout=1.5) is not None

        dnsmasq_pid = int((workdir / "dnsmasq.pid").read_text())
        server.terminate()
        assert server.wait(5) == 0, log.read_text()
        assert not Path(f"/proc/{dnsmasq_pid}").exists(), "dnsmasq outlived the server"
    finally:
        end(server)
