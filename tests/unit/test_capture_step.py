"""The capture step's verdict (testbed.scenario.steps.capture_step), over a fake tcpdump."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from testbed.emu.capture import CaptureError
from testbed.scenario import steps
from testbed.scenario.spec import Capture, Expect, Probe, Target

PROBE = Probe("icmp", "pod-1", Target("10.0.2.2"), Expect(True))
CLUSTER = SimpleNamespace(network=SimpleNamespace(pid=lambda name: 42))


def run(cap: Capture, packets: list[str], probe_passed: bool = True):
    def fake_capture(pid, interface, pcap_filter, during):
        assert (pid, interface, pcap_filter) == (42, cap.interface or "node1-eth0", cap.filter)
        return packets, "\n".join(packets), during()

    def fake_probe(cluster, probe, started):
        assert (cluster, probe) == (CLUSTER, cap.probe)
        return steps.Outcome(probe_passed, "reachable", "reply" if probe_passed else "no reply")

    return steps.capture_step(CLUSTER, cap, capture=fake_capture, probe=fake_probe)


@pytest.mark.parametrize("seen, packets, shows, probe_passed, passed", [
    (True, ["IP 10.100.0.2.1 > 10.100.0.3.8472: OTV"], ("8472",), True, True),
    (True, ["IP 10.100.0.2.1 > 10.100.0.3.8472: OTV"], ("mss 1410",), True, False),   # not shown
    (True, [], (), True, False),                                  # nothing seen
    (False, [], (), True, True),                                  # nothing, as wanted
    (False, ["IP 10.0.1.2 > 10.0.2.2: ICMP"], (), True, False),   # something seen
    (False, [], (), False, False),      # nothing seen because nothing went: proves nothing
    (True, ["IP 10.100.0.2.1 > 10.100.0.3.8472: OTV"], (), False, False),
])
def test_the_verdict(seen, packets, shows, probe_passed, passed):
    out = run(Capture("node1", "", "udp port 8472", PROBE, seen, shows), packets, probe_passed)
    assert out.passed is passed
    assert out.details["packets"] == len(packets)
    if not probe_passed:
        assert "the probe failed" in out.observed


def test_a_failed_capture_is_a_failed_step():
    def broken(*args):
        raise CaptureError("tcpdump on cbr0 did not start: no such device")

    out = steps.capture_step(CLUSTER, Capture("node1", "cbr0", "icmp", PROBE), capture=broken)
    assert not out.passed and out.observed == "failed: tcpdump on cbr0 did not start: no such device"
