"""The kube-proxy agent with fake informers and a fake backend: wiring, rate limit, retries."""

from __future__ import annotations

import json
import threading
import time

import pytest

from testbed.agents.kube_proxy import (
    KubeProxy,
    Options,
    SyncRunner,
    make_proxier,
    parse_args,
    settings_for,
)
from testbed.emu import rundir
from testbed.proxy.fakes import FakeIptables
from testbed.proxy.proxier import Proxier, SyncResult
from tests.unit.test_proxier import eps, reach, svc

OPTS = Options(api="http://x", node="w1", node_ip="192.168.0.2", cluster_cidr="10.244.0.0/16")


class FakeInformer:
    """Same interface as testbed.apiclient.Informer; lists `objects[kind]` when started."""

    objects: dict[str, list[dict]] = {}
    started: list[FakeInformer] = []
    hold = threading.Event()  # set: listing completes

    def __init__(self, client, kind, namespace=None, selector=None, on_add=None,
                 on_update=None, on_delete=None, resync=None):
        self.kind, self.on_add, self.on_update, self.on_delete = kind, on_add, on_update, on_delete
        self._synced = False
        self.stopped = False

    def start(self):
        FakeInformer.started.append(self)

        def list_then_sync():
            FakeInformer.hold.wait(5)
            for obj in FakeInformer.objects.get(self.kind, []):
                self.on_add(obj)
            self._synced = True

        threading.Thread(target=list_then_sync, daemon=True).start()
        return self

    def stop(self):
        self.stopped = True

    def has_synced(self):
        return self._synced


@pytest.fixture
def agent(tmp_path):
    FakeInformer.objects = {"Service": [svc("web", "10.96.0.10")],
                            "EndpointSlice": [eps("web", ["10.244.1.5"])]}
    FakeInformer.started = []
    FakeInformer.hold = threading.Event()
    fake = FakeIptables()
    opts = Options(**{**OPTS.__dict__, "state_dir": str(tmp_path), "min_sync_period": 0.05})
    proxy = KubeProxy(Proxier(fake, settings_for(opts), new_lock=threading.Lock), object(),
                      FakeInformer, opts)
    stop = threading.Event()
    thread = threading.Thread(target=proxy.run, args=(stop,), daemon=True)
    thread.start()
    yield proxy, fake, stop, tmp_path
    stop.set()
    thread.join(3)


def test_agent_waits_for_informers_then_syncs_and_reports(agent):
    proxy, fake, stop, state = agent
    time.sleep(0.2)
    assert fake.restores == []  # nothing written before both informers listed
    FakeInformer.hold.set()
    assert proxy.synced.wait(3)
    assert trace_ok(fake)
    status = json.loads((state / rundir.PROXY_STATUS).read_text())
    assert status["mode"] == "iptables" and status["last"]["ok"] and status["last"]["full"]
    assert status["last"]["changed"] == ["default/web"]

    # an update through the informer's handler: recorded, then a partial sync follows
    informer = next(i for i in FakeInformer.started if i.kind == "EndpointSlice")
    informer.on_update(eps("web", ["10.244.1.5"]), eps("web", ["10.244.1.5", "10.244.2.5"]))
    deadline = time.time() + 3
    while time.time() < deadline and "10.244.2.5" not in reach(fake, "10.96.0.10", 80):
        time.sleep(0.02)
    assert reach(fake, "10.96.0.10", 80) == "10.244.1.5:8080, 10.244.2.5:8080"
    assert proxy.last.ok and not proxy.last.full
    stop.set()
    time.sleep(0.1)
    assert all(i.stopped for i in FakeInformer.started)


def trace_ok(fake: FakeIptables) -> bool:
    return reach(fake, "10.96.0.10", 80) == "10.244.1.5:8080"


def test_runner_rate_limits_bursts():
    calls: list[float] = []

    def sync():
        calls.append(time.monotonic())
        return SyncResult(True, False)

    runner = SyncRunner(sync, min_interval=0.1, max_interval=10)
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    for _ in range(30):  # a burst of events over 0.3 s
        runner.request()
        time.sleep(0.01)
    time.sleep(0.25)
    stop.set()
    runner.request()
    t.join(2)
    assert 2 <= len(calls) <= 5
    assert all(b - a >= 0.095 for a, b in zip(calls, calls[1:], strict=False))


def test_runner_retries_after_failure_without_being_asked():
    results = [SyncResult(False, True, error="boom"), SyncResult(True, True)]
    calls = []

    def sync():
        calls.append(1)
        return results[min(len(calls) - 1, 1)]

    runner = SyncRunner(sync, min_interval=0.01, max_interval=10, retry=0.05)
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    runner.request()
    time.sleep(0.3)
    stop.set()
    runner.request()
    t.join(2)
    assert len(calls) == 2


def test_settings_and_arguments():
    opts, _ = parse_args(["--api", "http://172.16.0.2:6443", "--node", "w1", "--node-ip",
                          "172.16.0.11", "--cluster-cidr", "10.244.0.0/16", "--mode",
                          "nftables", "--service-cidr", "10.96.0.0/12"])
    s = settings_for(opts)
    assert opts.mode == "nftables" and s.node_name == "w1" and s.node_ip == "172.16.0.11"
    assert s.masquerade_mark == "0x00004000"
    assert s.local_detector.if_not_local() == ["!", "-s", "10.244.0.0/16"]
    assert s.service_cidrs == ("10.96.0.0/12",) and not s.nfacct_counters
    # a sync at least every minute, a full one every hour (upstream's FullSyncPeriod)
    assert (opts.sync_period, opts.full_sync_period) == (60, 3600)
    assert make_proxier(opts).full_sync_period == 3600
    opts, _ = parse_args(["--api", "x", "--node", "w1", "--node-ip", "172.16.0.11",
                          "--cluster-cidr", "10.244.0.0/16", "--full-sync-period", "120"])
    assert make_proxier(opts).full_sync_period == 120
    with pytest.raises(SystemExit):
        parse_args(["--api", "x", "--node", "w1", "--node-ip", "nope", "--cluster-cidr",
                    "10.0.0.0/8"])


def test_status_counts_full_syncs_and_a_request_makes_one(agent):
    proxy, fake, stop, state = agent
    FakeInformer.hold.set()
    assert proxy.synced.wait(3)
    status = rundir.ProxyStatus.from_json(json.loads((state / rundir.PROXY_STATUS).read_text()))
    assert status.full_syncs == 1 and status.last_full > 0 and status.full_sync_period == 3600
    first = status.last_full
    # a partial sync is not counted as full
    informer = next(i for i in FakeInformer.started if i.kind == "EndpointSlice")
    informer.on_update(eps("web", ["10.244.1.5"]), eps("web", ["10.244.1.5", "10.244.2.5"]))
    deadline = time.time() + 3
    while time.time() < deadline and (proxy.last is None or proxy.last.full):
        time.sleep(0.02)
    assert proxy.last.ok and not proxy.last.full and proxy.full_syncs == 1
    asked = time.time()
    proxy.request_full_sync()  # what SIGUSR1 does (through full_sync_on_signal's pipe)
    while time.time() < deadline and proxy.full_syncs < 2:
        time.sleep(0.02)
    status = rundir.ProxyStatus.from_json(json.loads((state / rundir.PROXY_STATUS).read_text()))
    assert status.full_syncs == 2 and status.last_full >= asked > first
    assert status.last["full"] and status.last["ok"]


def test_a_full_sync_asked_for_during_a_sync_is_the_next_one(tmp_path):
    """A signal can arrive while a sync runs (even in its thread): that sync, which began
    before the asking, is not the answer; the next one is full."""
    fake = FakeIptables()
    opts = Options(**{**OPTS.__dict__, "state_dir": str(tmp_path)})
    proxy = KubeProxy(Proxier(fake, settings_for(opts)), object(), FakeInformer, opts)
    proxy.proxier.service_changes.on_add(svc("web", "10.96.0.10"))
    proxy._report(proxy._sync())
    assert proxy.full_syncs == 1
    restore = fake.restore

    def restore_asking(text: str) -> None:  # the request lands in the middle of the sync
        proxy.request_full_sync()
        restore(text)

    fake.restore = restore_asking
    proxy.proxier.endpoint_changes.on_add(eps("web", ["10.244.1.5"]))
    proxy._report(proxy._sync())
    assert proxy.last.ok and not proxy.last.full and proxy.full_syncs == 1
    fake.restore = restore
    proxy._report(proxy._sync())
    assert proxy.last.ok and proxy.last.full and proxy.full_syncs == 2
    proxy._report(proxy._sync())  # served: back to partial syncs
    assert not proxy.last.full and proxy.full_syncs == 2


def test_sigusr1_asks_for_a_full_sync(tmp_path):
    import os
    import signal

    opts = Options(**{**OPTS.__dict__, "state_dir": str(tmp_path)})
    proxy = KubeProxy(Proxier(FakeIptables(), settings_for(opts)), object(), FakeInformer, opts)
    proxy.proxier.service_changes.on_add(svc("web", "10.96.0.10"))
    proxy._report(proxy._sync())  # the first, full
    proxy._report(proxy._sync())  # nothing asked: partial
    assert not proxy.last.full and proxy.full_syncs == 1
    old = signal.getsignal(signal.SIGUSR1)
    try:
        proxy.full_sync_on_signal(signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert proxy.runner._wanted.wait(3)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert proxy._full_asked == 1
    proxy._report(proxy._sync())
    assert proxy.last.full and proxy.full_syncs == 2
