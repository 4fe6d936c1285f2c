"""The policy agent's loop over fakes: informers feed the syncer, the first sync writes the
status and only then removes the other mode's rules, and a change is enforced at once."""

from __future__ import annotations

import threading
import time

from testbed.agents.netpol import PolicyAgent
from testbed.emu.rundir import read_netpol_status
from testbed.netpol.fakes import FakeIptables, trace
from testbed.netpol.syncer import PolicySyncer
from tests.unit.test_netpol_rules import namespace_object, pod_object, policy


class FakeInformer:
    """Lists `objects[kind]` at start; the test adds more with `emit`."""

    made: list[FakeInformer] = []

    def __init__(self, client, kind, on_add, on_update, on_delete):
        self.kind, self.on_add, self.on_update, self.on_delete = kind, on_add, on_update, on_delete
        self.client = client
        FakeInformer.made.append(self)

    def start(self):
        for obj in self.client.get(self.kind, []):
            self.on_add(obj)
        return self

    def has_synced(self) -> bool:
        return True

    def stop(self) -> None:
        pass


def test_the_agent_syncs_reports_cleans_up_after_and_follows_changes(tmp_path):
    FakeInformer.made = []
    kernel = FakeIptables()
    objects = {"Namespace": [namespace_object("x")],
               "Pod": [pod_object("x/a", "10.244.1.11", "w1"), pod_object("x/b", "10.244.1.12", "w1")],
               "NetworkPolicy": [policy("x", "deny", {"podSelector": {"matchLabels": {"pod": "a"}}})]}
    order: list[str] = []

    def cleanup() -> list[str]:
        order.append("cleanup")
        assert trace(kernel, "FORWARD", "10.244.1.12", "10.244.1.11") == "DROP"   # enforced first
        return []

    (tmp_path / "netpol" / "w1").mkdir(parents=True)
    syncer = PolicySyncer(kernel, "w1", new_lock=threading.Lock)
    agent = PolicyAgent(syncer, objects, FakeInformer, "iptables", "w1",
                        state_dir=str(tmp_path / "netpol" / "w1"), min_sync_period=0.01,
                        sync_period=0.05, after_first_sync=cleanup)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert agent.synced.wait(5)
        status = read_netpol_status(tmp_path, "w1")
        assert status is not None and status.mode == "iptables" and status.policies == 1
        assert status.pods == 1 and status.generation >= 1
        assert order == ["cleanup"]
        # a change policies do not see (readiness) moves the reported mark on, nothing written
        [pods] = [i for i in FakeInformer.made if i.kind == "Pod"]
        generation = read_netpol_status(tmp_path, "w1").generation
        ready = pod_object("x/b", "10.244.1.12", "w1")
        ready["metadata"]["resourceVersion"] = "33"
        ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        pods.on_update(objects["Pod"][1], ready)
        deadline = time.monotonic() + 5
        while read_netpol_status(tmp_path, "w1").caught_up.get("Pod") != [2, 33]:
            assert time.monotonic() < deadline, "the status did not follow a skipped sync"
            time.sleep(0.01)
        assert read_netpol_status(tmp_path, "w1").generation == generation
        # a policy deleted: the informer's handler asks for a sync, which opens x/a again
        [informer] = [i for i in FakeInformer.made if i.kind == "NetworkPolicy"]
        informer.on_delete(objects["NetworkPolicy"][0])
        deadline = time.monotonic() + 5
        while trace(kernel, "FORWARD", "10.244.1.12", "10.244.1.11") == "DROP":
            assert time.monotonic() < deadline, "the deletion was not enforced"
            time.sleep(0.01)
        time.sleep(0.2)                        # several periodic syncs later: still one cleanup
        assert order == ["cleanup"]
    finally:
        stop.set()
        runner.join(5)
