"""The cluster DNS's dnsmasq management, as root, in a throwaway network namespace.

ClusterDns (testbed.dns.server) runs here over a fake API client and informers; its dnsmasq
child runs inside a namespace held by `unshare --net sleep infinity`, with lo up and the DNS
pod's address on it. Every query is `dig` run in that namespace, so no DNS traffic and no
listening socket ever touch the machine's own namespace.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import pytest

from testbed.dns.dnsmasq import Settings
from testbed.dns.server import ClusterDns
from testbed.net.run import run
from tests.unit.test_dns_records import endpoint, endpoint_slice, pod, service
from tests.unit.test_dns_server import FakeClient, FakeInformer

DNS_IP = "10.244.0.53"

OBJECTS = {
    "Service": [
        service("service-test", cluster_ip="10.96.0.20", ports=[{"name": "http", "port": 80}]),
        service("db", "data", cluster_ip="None", ports=[{"name": "pg", "port": 5432}]),
        service("ext", cluster_ip=None, type="ExternalName", externalName="db.example.com"),
    ],
    "EndpointSlice": [
        endpoint_slice("db", [endpoint("10.244.1.5", hostname="db-0"), endpoint("10.244.2.6"),
                              endpoint("10.244.2.7", ready=False)], namespace="data",
                       ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
    ],
    "Pod": [pod("web-1", "10.244.1.9")],
}


@pytest.fixture(scope="module")
def netns():
    """A throwaway network namespace, held by a sleep we started; ended by its pid."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    try:
        own = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{holder.pid}/ns/net").st_ino == own:
            assert time.monotonic() < deadline, "unshare never entered a new namespace"
            time.sleep(0.01)
        run(["ip", "link", "set", "lo", "up"], netns=holder.pid)
        run(["ip", "addr", "add", f"{DNS_IP}/32", "dev", "lo"], netns=holder.pid)
        yield holder.pid
    finally:
        holder.terminate()
        holder.wait(5)


@pytest.fixture(scope="module")
def dns(netns, tmp_path_factory):
    """ClusterDns serving OBJECTS on port 53 in the namespace; yields (ClusterDns, FakeClient)."""
    client = FakeClient({kind: list(items) for kind, items in OBJECTS.items()})
    settings = Settings(workdir=str(tmp_path_factory.mktemp("dns")), log_queries=True)
    server = ClusterDns(client, settings, FakeInformer, netns=netns)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_answer(netns, "service-test.default.svc.cluster.local", timeout=5), \
            "dnsmasq never answered"
        yield server, client
    finally:
        stop.set()
        thread.join(10)
        server.close()


def dig(netns: int, name: str, rtype: str = "A", tcp: bool = False) -> tuple[str, list[list[str]]]:
    """(status, answer rows) for one query to the DNS pod's address, one try, one second."""
    argv = ["dig", f"@{DNS_IP}", "+time=1", "+tries=1", "+noall", "+answer", "+comments"]
    argv += ["+tcp"] if tcp else ["+notcp"]
    argv += ["-x", name] if rtype == "PTR" else [name, rtype]
    out = run(argv, netns=netns, check=False, timeout=10).stdout
    found = re.search(r"status: ([A-Z]+)", out)
    rows = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    return (found.group(1) if found else "NO ANSWER: " + out.strip()[-200:]), rows


def data(rows: list[list[str]], rtype: str) -> list[str]:
    return sorted(" ".join(row[4:]) for row in rows if row[3] == rtype)


def wait_answer(netns: int, name: str, rtype: str = "A", status: str = "NOERROR",
                timeout: float = 1.0) -> list[list[str]] | None:
    deadline = time.monotonic() + timeout
    while True:
        got, rows = dig(netns, name, rtype)
        if got == status and (rows or status != "NOERROR"):
            return rows
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_service_a_record(dns, netns, tcp):
    status, rows = dig(netns, "service-test.default.svc.cluster.local", tcp=tcp)
    assert status == "NOERROR" and data(rows, "A") == ["10.96.0.20"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_srv_for_named_port(dns, netns, tcp):
    status, rows = dig(netns, "_http._tcp.service-test.default.svc.cluster.local", "SRV", tcp=tcp)
    assert status == "NOERROR"
    assert data(rows, "SRV") == ["0 100 80 service-test.default.svc.cluster.local."]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_ptr_for_cluster_ip(dns, netns, tcp):
    status, rows = dig(netns, "10.96.0.20", "PTR", tcp=tcp)
    assert status == "NOERROR" and data(rows, "PTR") == ["service-test.default.svc.cluster.local."]


def test_pod_record(dns, netns):
    status, rows = dig(netns, "10-244-1-9.default.pod.cluster.local")
    assert status == "NOERROR" and data(rows, "A") == ["10.244.1.9"]


def test_headless_service_answers_ready_endpoints(dns, netns):
    status, rows = dig(netns, "db.data.svc.cluster.local")
    assert status == "NOERROR" and data(rows, "A") == ["10.244.1.5", "10.244.2.6"]
    assert data(dig(netns, "db-0.db.data.svc.cluster.local")[1], "A") == ["10.244.1.5"]
    assert data(dig(netns, "10.244.1.5", "PTR")[1], "PTR") == ["db-0.db.data.svc.cluster.local."]
    assert data(dig(netns, "_pg._tcp.db.data.svc.cluster.local", "SRV")[1], "SRV") == [
        "0 100 5432 10-244-2-6.db.data.svc.cluster.local.",
        "0 100 5432 db-0.db.data.svc.cluster.local."]


def test_external_name_is_a_cname(dns, netns):
    status, rows = dig(netns, "ext.default.svc.cluster.local")
    assert status == "NOERROR" and data(rows, "CNAME") == ["db.example.com."]


def test_unknown_cluster_name_is_nxdomain(dns, netns):
    assert dig(netns, "nope.default.svc.cluster.local")[0] == "NXDOMAIN"
    assert dig(netns, "10.96.0.99", "PTR")[0] == "NXDOMAIN"


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_outside_names_get_a_fast_negative_answer(dns, netns, tcp):
    started = time.monotonic()
    status, rows = dig(netns, "example.com", tcp=tcp)
    elapsed = time.monotonic() - started
    assert status == "NXDOMAIN" and rows == []
    assert elapsed < 0.5, f"negative answer took {elapsed:.2f}s"


def test_added_service_resolves_within_a_second_and_deleted_is_nxdomain(dns, netns):
    server, client = dns
    name = "late.default.svc.cluster.local"
    assert dig(netns, name)[0] == "NXDOMAIN"
    svc = service("late", cluster_ip="10.96.0.44")
    restarts = server.dnsmasq.restarts
    client.informers["Service"].on_add(svc)
    rows = wait_answer(netns, name, timeout=1.0)
    assert rows is not None and data(rows, "A") == ["10.96.0.44"]
    assert server.dnsmasq.restarts == restarts  # an A/PTR change is a reload, not a restart
    client.informers["Service"].on_delete(svc)
    assert wait_answer(netns, name, status="NXDOMAIN", timeout=1.0) is not None


# A config change restarts dnsmasq: a query that lands in the old socket as it closes is lost,
# and costs that client one timeout (dig: 1 s) before its retry meets the new dnsmasq.
RESTART_BUDGET = 2.5


def test_new_named_port_restarts_dnsmasq_and_srv_resolves_promptly(dns, netns):
    server, client = dns
    svc = service("api", cluster_ip="10.96.0.45", ports=[{"name": "https", "port": 443}])
    restarts = server.dnsmasq.restarts
    client.informers["Service"].on_add(svc)
    rows = wait_answer(netns, "_https._tcp.api.default.svc.cluster.local", "SRV",
                       timeout=RESTART_BUDGET)
    assert rows is not None and data(rows, "SRV") == ["0 100 443 api.default.svc.cluster.local."]
    assert server.dnsmasq.restarts == restarts + 1
    client.informers["Service"].on_delete(svc)
    assert wait_answer(netns, "_https._tcp.api.default.svc.cluster.local", "SRV",
                       status="NXDOMAIN", timeout=RESTART_BUDGET) is not None


def test_dnsmasq_killed_is_started_again(dns, netns):
    server, _ = dns
    first = server.dnsmasq.pid
    os.kill(first, 9)
    deadline = time.monotonic() + 3
    while server.dnsmasq.pid in (first, None) or not server.dnsmasq.alive():
        assert time.monotonic() < deadline, "dnsmasq was not restarted"
        time.sleep(0.05)
    assert wait_answer(netns, "service-test.default.svc.cluster.local", timeout=2) is not None


def test_dnsmasq_runs_in_the_namespace_not_the_machines(dns, netns):
    server, _ = dns
    pid = server.dnsmasq.pid
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/proc/{netns}/ns/net").st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino


def test_stopping_the_server_ends_dnsmasq(netns, tmp_path):
    client = FakeClient({"Service": [service("web", cluster_ip="10.96.0.20")]})
    settings = Settings(workdir=str(tmp_path), port=5353)
    server = ClusterDns(client, settings, FakeInformer, netns=netns)
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.dnsmasq.alive():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = server.dnsmasq.pid
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
