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


def test_the_last_warning_is_the_last_seen_as_kubectl_orders_events():
    series = event("dns-1", "FailedCreatePodSandBox", "still failing", "2026-01-01T00:00:01Z")
    series["series"] = {"count": 9, "lastObservedTime": "2026-01-01T00:00:30.000000Z"}
    micro = event("dns-1", "BackOff", "a microsecond later", "")
    micro["eventTime"] = "2026-01-01T00:00:20.000001Z"
    assert Cluster._warnings_about(SimpleNamespace(client=Client([
        series, micro, event("dns-1", "Failed", "before", "2026-01-01T00:00:20Z")])),
        {"kube-system/dns-1"}) == "; kube-system/dns-1: FailedCreatePodSandBox: still failing"
    assert Cluster._warnings_about(SimpleNamespace(client=Client([
        micro, event("dns-1", "Failed", "before", "2026-01-01T00:00:20Z")])),
        {"kube-system/dns-1"}) == "; kube-system/dns-1: BackOff: a microsecond later"


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


def view(name: str, labels: dict, ready: bool, namespace: str = "default", pid: int | None = 7):
    from testbed.emu.cluster import PodView

    return PodView(namespace, name, "uid-" + name, "w1", None, pid, ready,
                   "Running" if ready else "Pending", labels)


def deployment(name: str, selector: dict, replicas: int, namespace: str = "default") -> dict:
    return {"kind": "Deployment", "metadata": {"namespace": namespace, "name": name},
            "spec": {"replicas": replicas, "selector": selector,
                     "template": {"metadata": {"labels": {}}, "spec": {"containers": []}}}}


def waiter(views: list):
    told = []
    return told, SimpleNamespace(
        pod_views=lambda: {v.key: v for v in views},
        _warnings_about=lambda pods: told.append(("events", sorted(pods))) or "",
        _last_words=lambda pods: told.append(("logs", sorted(pods))) or "")


def test_a_deployments_pods_are_those_its_selector_and_namespace_pick():
    selector = {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}]}
    views = [view("web-1", {"app": "web", "track": "stable"}, True),
             view("web-2", {"app": "web", "track": "canary"}, True),       # NotIn: not its own
             view("web-3", {"app": "web"}, True, namespace="other"),       # another namespace
             view("web-4", {"app": "web"}, False)]
    told, fake = waiter(views)
    try:
        Cluster._wait_ready(fake, [deployment("web", selector, 3)], timeout=0, interval=0)
    except TimeoutError as err:
        assert str(err) == "not ready after 0s: deployment default/web (1/3 ready)"
    else:
        raise AssertionError("two of three replicas are missing")
    assert told == [("events", ["default/web-4"]), ("logs", ["default/web-4"])]
    views[3] = view("web-4", {"app": "web"}, True)
    views.append(view("web-5", {"app": "web", "track": "stable"}, True))
    views, theirs = Cluster._wait_ready(fake, [deployment("web", selector, 3)], timeout=0, interval=0)
    assert len(views) == 5
    assert [v.key for v in theirs] == ["default/web-1", "default/web-4", "default/web-5"]


def test_a_stuck_pod_is_told_with_its_deployments_not_ready_pods():
    pod = {"kind": "Pod", "metadata": {"namespace": "default", "name": "lone"}, "spec": {}}
    views = [view("lone", {}, True, pid=None), view("db-1", {"app": "db"}, False),
             view("db-2", {"app": "db"}, True)]
    told, fake = waiter(views)
    try:
        Cluster._wait_ready(fake, [pod, deployment("db", {"matchLabels": {"app": "db"}}, 1)],
                            timeout=0, interval=0)
    except TimeoutError as err:
        assert str(err) == "not ready after 0s: default/lone"
    else:
        raise AssertionError("a pod without its pause process is not ready")
    assert told[0] == ("events", ["default/db-1", "default/lone"])
