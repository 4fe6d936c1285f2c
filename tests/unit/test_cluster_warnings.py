"""Why pods are not ready, in wait_ready's timeout: their last Warning events (emu/cluster.py)."""

from __future__ import annotations

from types import SimpleNamespace

from testbed.emu.cluster import Cluster


def event(name: str, reason: str, message: str, when: str, kind: str = "Pod") -> dict:
    return {"involvedObject": {"kind": kind, "namespace": "kube-system", "name": name},
            "type": "Warning", "reason": reason, "message": message, "lastTimestamp": when}


class Client:
    def __init__(self, events):
        self.events = events
        self.asked = None

    def list(self, kind, namespace=None, selector=None, fields=None):
        self.asked = (kind, namespace, fields)
        return self.events, "1"


def test_the_last_warning_of_each_stuck_pod_is_told():
    client = Client([
        event("dns-1", "FailedCreatePodSandBox", "plugin failed (add): old", "2026-01-01T00:00:01Z"),
        event("dns-1", "FailedCreatePodSandBox", "plugin failed (add): new ", "2026-01-01T00:00:09Z"),
        event("dns-1", "BackOff", "older still", "2026-01-01T00:00:00Z"),
        event("other", "Failed", "not waited for", "2026-01-01T00:00:05Z"),
        event("dns-1", "Failed", "a Node's, not the pod's", "2026-01-01T00:00:10Z", kind="Node"),
    ])
    text = Cluster._warnings_about(SimpleNamespace(client=client), {"kube-system/dns-1"})
    assert text == "; kube-system/dns-1: FailedCreatePodSandBox: plugin failed (add): new"
    assert client.asked == ("Event", None, "type=Warning")


def test_no_warnings_and_a_failing_api_add_nothing():
    assert Cluster._warnings_about(SimpleNamespace(client=Client([])), {"kube-system/dns-1"}) == ""

    class Broken:
        def list(self, *args, **kwargs):
            raise OSError("the API server is gone")

    assert Cluster._warnings_about(SimpleNamespace(client=Broken()), {"kube-system/dns-1"}) == ""


def test_the_last_lines_of_each_stuck_pods_containers_are_told(tmp_path):
    pod = tmp_path / "kube-system_dns-1"
    (pod / "dnsmasq").mkdir(parents=True)
    (pod / "dnsmasq" / "log").write_text("starting\nconnecting to 10.100.0.10:6443\n")
    (pod / "dnsmasq" / "log.previous").write_text("a\nb\nc\nd\nTraceback: boom\n")
    fake = SimpleNamespace(pod_files=lambda key: tmp_path / key.replace("/", "_"))
    text = Cluster._last_words(fake, {"kube-system/dns-1", "kube-system/gone"})
    assert text == ("; kube-system/dns-1 dnsmasq (log): starting | connecting to 10.100.0.10:6443"
                    "; kube-system/dns-1 dnsmasq (log.previous): b | c | d | Traceback: boom")
