"""`testbed describe node` shows the node's kube-proxy: mode, syncs and full syncs, and the
full-sync period with when the next full sync is due, from its status file."""

from __future__ import annotations

import io
import time
from pathlib import Path

from testbed.apiclient import Client
from testbed.emu import rundir
from testbed.emu.kubectl_command import node_sections
from testbed.kubectl.format import go_duration, kube_proxy_section
from testbed.kubectl.verbs import run_kubectl

from .test_kubectl import client, server  # noqa: F401 - fixtures

NOW = 1_700_000_000.0


def status(**fields) -> dict:
    return rundir.ProxyStatus(**{"mode": "iptables", "node": "w1", "pid": 42, "syncs": 7,
                                 "time": NOW - 5, "last": {"ok": True, "full": False},
                                 "services": 3, "full_syncs": 2, "last_full": NOW - 600,
                                 "full_sync_period": 3600.0, **fields}).to_json()


def test_go_duration() -> None:
    assert [go_duration(s) for s in (3600, 90, 45, 0, 5400)] == \
        ["1h0m0s", "1m30s", "45s", "0s", "1h30m0s"]


def test_kube_proxy_section_says_the_full_sync_period_and_when_the_next_is_due() -> None:
    title, pairs = kube_proxy_section(status(), NOW)
    assert title == "kube-proxy"
    assert dict(pairs) == {
        "Mode": "iptables", "Pid": 42, "Syncs": "7 (2 full)", "Last sync": "partial, ok, 5s ago",
        "Last full sync": "10m ago",
        "Full sync period": "1h0m0s (next within 50m; SIGUSR1 forces one)"}
    overdue = dict(kube_proxy_section(status(last_full=NOW - 7200), NOW)[1])
    assert overdue["Full sync period"].startswith("1h0m0s (next within 0s;")
    failed = dict(kube_proxy_section(status(last={"ok": False, "full": True, "error": "boom"}),
                                     NOW)[1])
    assert failed["Last sync"] == "full, failed: boom, 5s ago"
    userspace = dict(kube_proxy_section(status(mode="userspace", full_sync_period=0.0), NOW)[1])
    assert userspace["Full sync period"] == "<none> (every sync rewrites the rules)"
    assert dict(kube_proxy_section(None, NOW)[1]) == {
        "Status": "<no sync reported: not running, or not synced yet>"}


def test_describe_node_shows_its_kube_proxy(tmp_path: Path, client: Client) -> None:  # noqa: F811
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"},
                   "spec": {"podCIDR": "10.244.1.0/24"}})
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "master"}})
    run = tmp_path / "run"
    state = rundir.proxy_directory(run, "w1")
    state.mkdir(parents=True)
    rundir.write_proxy_status(state, rundir.ProxyStatus.from_json(
        status(time=time.time() - 3, last_full=time.time() - 60)))

    def describe(node: str) -> list[str]:
        out = io.StringIO()
        assert run_kubectl(["describe", "node", node], client, out,
                           node_sections=lambda n: node_sections(run, n)) == 0
        return out.getvalue().splitlines()

    lines = describe("w1")
    at = lines.index("kube-proxy:")
    assert lines[at + 1].split() == ["Mode:", "iptables"]
    assert "  Syncs:            7 (2 full)" in lines
    assert any(line.startswith("  Full sync period: 1h0m0s (next within 5") for line in lines)
    assert lines.index("kube-proxy:") < next(i for i, x in enumerate(lines) if x.startswith("Events:"))
    assert "kube-proxy:" not in describe("master")  # it has none
