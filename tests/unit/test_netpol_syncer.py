"""The policy syncer: the fewest writes per change, adoption after a restart, recovery after a
failure, and the jumps kept first; over the fake kernels of testbed/netpol/fakes.py."""

from __future__ import annotations

import pytest

from testbed.netpol import iptables
from testbed.netpol.fakes import FakeError, FakeIptables, FakeNft, trace
from testbed.netpol.syncer import JUMP_CHECK_PERIOD, PolicySyncer
from tests.unit.test_netpol_rules import namespace_object, pod_object, policy

A, B, C = "10.244.1.11", "10.244.1.12", "10.244.2.11"


def deny_a_except_b() -> dict:
    return policy("x", "a-from-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})


def fed(kernel, node: str = "w1") -> PolicySyncer:
    s = PolicySyncer(kernel, node)
    s.namespace_changes.on_add(namespace_object("x"))
    s.pod_changes.on_add(pod_object("x/a", A, "w1"))
    s.pod_changes.on_add(pod_object("x/b", B, "w1", {"pod": "b", "role": "client"}))
    s.pod_changes.on_add(pod_object("x/c", C, "w2"))
    s.policy_changes.on_add(deny_a_except_b())
    return s


@pytest.fixture(params=["iptables", "nftables"])
def kernel(request):
    return FakeIptables() if request.param == "iptables" else FakeNft()


def writes(kernel) -> int:
    return len(kernel.restores) + len(getattr(kernel, "ipset_restores", []))


def test_first_sync_is_full_and_enforces(kernel):
    s = fed(kernel)
    result = s.sync()
    assert result.ok and result.full and result.rules and result.protected == 1
    assert trace(kernel, "FORWARD", B, A) == "ACCEPT"
    assert trace(kernel, "FORWARD", C, A) == "DROP"
    assert trace(kernel, "FORWARD", A, C) == "ACCEPT"


def test_nothing_changed_nothing_written(kernel):
    s = fed(kernel)
    s.sync()
    before = writes(kernel)
    assert s.sync().skipped
    # an update that changes nothing policies see (a pod's readiness) does not even ask
    pod = pod_object("x/b", B, "w1", {"pod": "b", "role": "client"})
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    s.pod_changes.on_update(pod, pod)
    assert not s.dirty and s.sync().skipped and writes(kernel) == before


def test_the_generation_counts_syncs_that_applied_something(kernel):
    s = fed(kernel)
    s.sync()
    assert s.generation == 1
    s.sync()                                                   # skipped
    assert s.generation == 1
    s.pod_changes.on_update({}, pod_object("x/c", C, "w2", {"pod": "c", "role": "client"}))
    s.sync()                                                   # one set
    assert s.generation == 2
    s.pod_changes.on_update({}, pod_object("x/c", C, "w2", {"pod": "c", "role": "client", "z": "1"}))
    result = s.sync()                                          # nothing policies use changed
    assert result.ok and not result.rules and result.sets == 0 and s.generation == 2


def test_a_peer_label_change_rewrites_a_set_not_the_rules(kernel):
    s = fed(kernel)
    s.sync()
    restores = list(kernel.restores)
    s.pod_changes.on_update({}, pod_object("x/c", C, "w2", {"pod": "c", "role": "client"}))
    result = s.sync()
    assert result.ok and not result.rules and result.sets == 1
    assert trace(kernel, "FORWARD", C, A) == "ACCEPT"
    if isinstance(kernel, FakeIptables):
        assert kernel.restores == restores                       # no iptables-restore at all
        assert "swap" in kernel.ipset_restores[-1]
    else:
        assert kernel.restores[-1].startswith("flush set ip kube-netpol ")   # sets only
        assert "chain" not in kernel.restores[-1]


def test_a_policy_change_rewrites_rules(kernel):
    s = fed(kernel)
    s.sync()
    s.policy_changes.on_delete(deny_a_except_b())
    result = s.sync()
    assert result.ok and result.rules and result.protected == 0
    assert trace(kernel, "FORWARD", C, A) == "ACCEPT"
    if isinstance(kernel, FakeIptables):
        assert {c for c in kernel.chains_ if iptables.is_ours(c)} == set(iptables.TOP_CHAINS)  # stale gone
        assert not kernel.sets                                       # and their sets
    else:
        assert kernel.table.chains.keys() == {"forward", "input"}


def test_a_restarted_agent_adopts_prunes_and_never_duplicates(kernel):
    old = fed(kernel)
    old.policy_changes.on_add(policy("x", "gone-later", {"podSelector": {}, "policyTypes": ["Egress"]}))
    old.sync()
    # the agent dies; meanwhile the second policy is deleted and x/c becomes a client
    new = fed(kernel)
    new.pod_changes.on_update({}, pod_object("x/c", C, "w2", {"pod": "c", "role": "client"}))
    assert new.sync().full
    assert trace(kernel, "FORWARD", C, A) == "ACCEPT"
    assert trace(kernel, "FORWARD", A, C) == "ACCEPT"              # the egress deny is gone
    if isinstance(kernel, FakeIptables):
        assert kernel.chains_["FORWARD"].count(f"-j {iptables.FORWARD_CHAIN}") == 1
        wanted = {iptables.pod_chain("x/a", "Ingress"), iptables.policy_chain("x/a-from-b", "Ingress")}
        assert {c for c in kernel.chains_ if iptables.is_ours(c)} == wanted | set(iptables.TOP_CHAINS)
        assert len(kernel.sets) == 1
    else:
        assert set(kernel.table.chains) == {"forward", "input", "pod-ingress-x/a",
                                            "policy-ingress-x/a-from-b"}
    # and a third start changes nothing a packet sees
    again = fed(kernel)
    again.pod_changes.on_update({}, pod_object("x/c", C, "w2", {"pod": "c", "role": "client"}))
    again.sync()
    assert trace(kernel, "FORWARD", C, A) == "ACCEPT" and trace(kernel, "FORWARD", "10.9.9.9", A) == "DROP"


def test_a_failed_apply_changes_nothing_and_the_next_sync_is_full(kernel):
    s = fed(kernel)
    s.sync()
    kernel.fail_next = 1
    s.policy_changes.on_delete(deny_a_except_b())
    failed = s.sync()
    assert not failed.ok and "injected" in failed.error
    assert trace(kernel, "FORWARD", C, A) == "DROP"        # the old rules still hold
    retry = s.sync()
    assert retry.ok and retry.full
    assert trace(kernel, "FORWARD", C, A) == "ACCEPT"


def test_the_jumps_stay_first_when_something_else_prepends():
    kernel = FakeIptables()
    s = fed(kernel)
    s.sync()
    kernel.chains_["FORWARD"].insert(0, "-j KUBE-FORWARD")
    kernel.chains_["KUBE-FORWARD"] = ["-m mark --mark 0x4000/0x4000 -j ACCEPT"]
    s.policy_changes.on_add(policy("x", "more", {"podSelector": {}, "policyTypes": ["Egress"]}))
    s.sync()
    assert kernel.chains_["FORWARD"][0] == f"-j {iptables.FORWARD_CHAIN}"
    assert kernel.chains_["FORWARD"].count(f"-j {iptables.FORWARD_CHAIN}") == 1


def test_a_sync_with_nothing_to_write_still_puts_the_jumps_back_first():
    kernel = FakeIptables()
    now = [100.0]
    s = fed(kernel)
    s.clock = lambda: now[0]
    s.sync()
    assert s.sync().skipped                                     # nothing moved, nothing done
    kernel.chains_["FORWARD"].insert(0, "-j KUBE-FORWARD")      # kube-proxy's, inserted later
    kernel.chains_["KUBE-FORWARD"] = ["-m mark --mark 0x4000/0x4000 -j ACCEPT"]
    now[0] += 1
    assert s.sync().skipped               # checked at most every JUMP_CHECK_PERIOD
    now[0] += JUMP_CHECK_PERIOD
    result = s.sync()
    assert result.ok and not result.skipped and result.rules and result.sets == 0
    assert kernel.chains_["FORWARD"] == [f"-j {iptables.FORWARD_CHAIN}", "-j KUBE-FORWARD"]
    now[0] += JUMP_CHECK_PERIOD
    assert s.sync().skipped


def test_a_sync_reports_what_its_rules_reflect_per_kind(kernel):
    s = fed(kernel)
    pod = pod_object("x/c", C, "w2", {"pod": "c", "role": "client"})
    pod["metadata"]["resourceVersion"] = "41"
    s.pod_changes.on_update({}, pod)
    assert dict((k, (n, rv)) for k, n, rv in s.sync().caught_up)["Pod"] == (3, 41)
    # a change policies do not see still moves the mark on, with nothing written
    pod = pod_object("x/c", C, "w2", {"pod": "c", "role": "client"})
    pod["metadata"]["resourceVersion"] = "57"
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    s.pod_changes.on_update({}, pod)
    result = s.sync()
    assert result.skipped and ("Pod", 3, 57) in result.caught_up and ("Pod", 3, 57) in s.caught_up
    # a deletion: one object fewer, and its version seen
    gone = deny_a_except_b()
    gone["metadata"]["resourceVersion"] = "58"
    s.policy_changes.on_delete(gone)
    # a failed apply reflects nothing new
    kernel.fail_next = 1
    assert not s.sync().ok and ("NetworkPolicy", 1, 0) in s.caught_up
    assert ("NetworkPolicy", 0, 58) in s.sync().caught_up and ("NetworkPolicy", 0, 58) in s.caught_up
    # per kind: a policy's version is not a pod's
    assert [k for k, _, _ in s.caught_up] == ["Namespace", "Pod", "NetworkPolicy"]


def test_before_its_first_apply_an_agent_inserts_no_jump():
    kernel = FakeIptables()
    s = PolicySyncer(kernel, "w1")
    s.dirty = False
    s.need_full = False
    s.last_full = s.clock()
    assert s.sync().skipped and kernel.chains_["FORWARD"] == []


def test_a_temporary_set_left_by_a_dead_agent_is_cleared():
    kernel = FakeIptables()
    kernel.ipset_restore(f"create {iptables.TMP_SET} hash:ip family inet\n")
    s = fed(kernel)
    assert s.sync().ok
    assert iptables.TMP_SET not in kernel.sets


def test_sets_swap_in_whole():
    text = iptables.ipset_restore_text([iptables.IPSet("KUBE-NP-P-X", "hash:ip", ("10.0.0.1", "10.0.0.2"))])
    assert text.splitlines() == [
        "create KUBE-NP-P-X hash:ip family inet -exist", f"create {iptables.TMP_SET} hash:ip family inet",
        f"add {iptables.TMP_SET} 10.0.0.1", f"add {iptables.TMP_SET} 10.0.0.2",
        f"swap {iptables.TMP_SET} KUBE-NP-P-X", f"destroy {iptables.TMP_SET}"]


def test_the_fake_refuses_what_the_kernel_refuses():
    kernel = FakeIptables()
    with pytest.raises(FakeError):
        kernel.restore("*filter\n:A - [0:0]\n-A A -j KUBE-MISSING\nCOMMIT\n")
    with pytest.raises(FakeError):
        kernel.restore("*filter\n:A - [0:0]\n-A A -m set --match-set NOPE src -j DROP\nCOMMIT\n")


def test_a_full_sync_comes_when_its_period_is_up():
    now = [1000.0]
    kernel = FakeNft()
    s = PolicySyncer(kernel, "w1", full_sync_period=60, clock=lambda: now[0])
    assert s.sync().full
    now[0] += 30
    assert s.sync().skipped
    now[0] += 31
    assert s.sync().full
