"""testbed.dns.server without root: the informer-to-sync loop over fakes, and the dnsmasq
supervisor over a stand-in binary (a script that records its start and sleeps)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from testbed.dns.dnsmasq import Rendered, Settings
from testbed.dns.server import ClusterDns, Dnsmasq
from tests.unit.test_dns_records import endpoint, endpoint_slice, pod, service


class FakeInformer:
    """Same signature as testbed.apiclient.informer.Informer; the test calls the handlers."""

    def __init__(self, client, kind, namespace=None, selector=None, on_add=None, on_update=None,
                 on_delete=None, resync=None):
        self.client, self.kind = client, kind
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete
        self.started = self.stopped = False
        client.informers[kind] = self

    def start(self):
        self.started = True
        for obj in self.client.initial.get(self.kind, []):
            self.on_add(obj)

    def stop(self):
        self.stopped = True

    def has_synced(self):
        return self.started


class FakeClient:
    def __init__(self, initial=None):
        self.initial = initial or {}
        self.informers: dict[str, FakeInformer] = {}


class FakeDnsmasq:
    def __init__(self):
        self.applied: list[Rendered] = []
        self.tended = 0
        self.stopped = False

    def apply(self, rendered):
        self.applied.append(rendered)
        return "reloaded"

    def tend(self):
        self.tended += 1

    def stop(self):
        self.stopped = True


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def running(tmp_path):
    """A ClusterDns loop in a thread over fakes; yields (dns, client, fake dnsmasq)."""
    client = FakeClient({"Service": [service("web", cluster_ip="10.96.0.20")]})
    fake = FakeDnsmasq()
    dns = ClusterDns(client, Settings(workdir=str(tmp_path)), FakeInformer, dnsmasq=fake)
    stop = threading.Event()
    thread = threading.Thread(target=dns.run, args=(stop,))
    thread.start()
    assert wait_for(lambda: fake.applied)
    yield dns, client, fake
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_first_sync_has_what_the_informers_listed(running):
    dns, client, fake = running
    assert set(client.informers) == {"Service", "EndpointSlice", "Pod"}
    assert "10.96.0.20 web.default.svc.cluster.local" in fake.applied[0].hosts


def test_changes_are_applied_and_bursts_debounced_into_one_sync(running):
    dns, client, fake = running
    before = len(fake.applied)
    for i in range(30):
        client.informers["Pod"].on_add(pod(f"p{i}", f"10.244.1.{i + 2}"))
    assert wait_for(lambda: "10-244-1-31.default.pod" in fake.applied[-1].hosts)
    time.sleep(0.3)
    assert len(fake.applied) - before <= 2  # a burst of 30 events: one or two syncs, not 30


def test_update_and_delete_reach_dnsmasq(running):
    dns, client, fake = running
    old = service("web", cluster_ip="10.96.0.20")
    new = service("web", cluster_ip="10.96.0.21")
    client.informers["Service"].on_update(old, new)
    assert wait_for(lambda: "10.96.0.21 web.default" in fake.applied[-1].hosts)
    assert "10.96.0.20" not in fake.applied[-1].hosts
    client.informers["Service"].on_delete(new)
    assert wait_for(lambda: "web.default" not in fake.applied[-1].hosts)


def test_headless_endpoints_from_slices(running):
    dns, client, fake = running
    client.informers["Service"].on_add(service("db", cluster_ip="None",
                                               ports=[{"name": "pg", "port": 5432}]))
    client.informers["EndpointSlice"].on_add(endpoint_slice(
        "db", [endpoint("10.244.1.5", hostname="db-0")],
        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    assert wait_for(lambda: "srv-host=_pg._tcp.db.default.svc.cluster.local,"
                            "db-0.db.default.svc.cluster.local,5432" in fake.applied[-1].config)


def test_stop_ends_informers_and_dnsmasq(tmp_path):
    client = FakeClient()
    fake = FakeDnsmasq()
    dns = ClusterDns(client, Settings(workdir=str(tmp_path)), FakeInformer, dnsmasq=fake)
    stop = threading.Event()
    thread = threading.Thread(target=dns.run, args=(stop,))
    thread.start()
    assert wait_for(lambda: fake.tended > 0)
    stop.set()
    thread.join(5)
    assert fake.stopped and all(i.stopped for i in client.informers.values())


# The supervisor, over a stand-in for dnsmasq: it appends its pid to a file and sleeps.
STAND_IN = f"""#!{sys.executable}
import os, sys, time
with open(os.path.join(os.path.dirname(sys.argv[0]), "starts"), "a") as f:
    f.write(f"{{os.getpid()}} {{sys.argv[1:]}}\\n")
time.sleep(60)
"""


@pytest.fixture
def supervisor(tmp_path):
    binary = tmp_path / "fake-dnsmasq"
    binary.write_text(STAND_IN)
    binary.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    dnsmasq = Dnsmasq(Settings(workdir=str(work), binary=str(binary)))
    yield dnsmasq, tmp_path / "starts"
    dnsmasq.stop()


def starts(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_supervisor_restarts_only_when_the_config_changes(supervisor):
    dnsmasq, started = supervisor
    assert dnsmasq.apply(Rendered(config="a\n", hosts="h1\n")) == "started"
    assert wait_for(lambda: starts(started) == 1)
    first = dnsmasq.pid
    assert Path(dnsmasq.settings.conf_path).read_text() == "a\n"
    assert Path(dnsmasq.settings.hosts_path).read_text() == "h1\n"
    assert "--keep-in-foreground" in started.read_text()

    assert dnsmasq.apply(Rendered(config="a\n", hosts="h2\n")) == "reloaded"
    assert dnsmasq.pid == first and Path(dnsmasq.settings.hosts_path).read_text() == "h2\n"
    assert dnsmasq.apply(Rendered(config="a\n", hosts="h2\n")) == "unchanged"

    assert dnsmasq.apply(Rendered(config="b\n", hosts="h2\n")) == "restarted"
    assert dnsmasq.pid != first
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # the old one is gone, not left behind
    assert wait_for(lambda: starts(started) == 2)
    # The temporary file never sits in the hosts directory, where dnsmasq would read it.
    assert os.listdir(dnsmasq.settings.hosts_dir) == ["cluster"]


def test_supervisor_starts_a_dead_dnsmasq_again(supervisor):
    dnsmasq, started = supervisor
    dnsmasq.apply(Rendered(config="a\n", hosts=""))
    first = dnsmasq.pid
    os.kill(first, 9)
    assert wait_for(lambda: (dnsmasq.tend(), dnsmasq.alive() and dnsmasq.pid != first)[1])
    dnsmasq.stop()
    assert not dnsmasq.alive()
