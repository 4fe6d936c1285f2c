"""Waiting for declared TCP ports to listen: emu/pods.py's wait_listening and
declared_tcp_ports, as PodRuntime.wait_listening and Cluster.wait_ready use them."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import SimpleNamespace

from testbed.emu.cluster import Cluster, PodView
from testbed.emu.pods import declared_tcp_ports, wait_listening


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_declared_tcp_ports_are_every_containers_tcp_ones():
    spec = {"containers": [
        {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]},
        {"name": "b", "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9, "protocol": "SCTP"}]},
        {"name": "c"}]}
    assert declared_tcp_ports(spec) == {80, 8080}
    assert declared_tcp_ports({}) == frozenset()


def test_wait_listening_returns_once_every_port_listens():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    timer = threading.Timer(0.2, server.listen)
    timer.start()
    try:
        started = time.monotonic()
        assert wait_listening(os.getpid(), [port], timeout=5)
        assert 0.15 < time.monotonic() - started < 4
        assert not wait_listening(os.getpid(), [port, unused_port()], timeout=0.2)
    finally:
        timer.join()
        server.close()
    assert wait_listening(os.getpid(), [], timeout=0)


def quiet_watch(*args, **kwargs):
    """A watch on which nothing happens before it times out (soon)."""
    time.sleep(0.05)
    yield from ()


class Listed(Cluster):
    """A Cluster whose API server lists `pods` (no network, no kubelets)."""

    def __init__(self, pods: list[dict]):
        client = SimpleNamespace(list=lambda kind, *a, **kw: (pods, "1"), watch=quiet_watch)
        self.cp = SimpleNamespace(client=client, sandboxes=lambda: {
            p["metadata"]["uid"]: SimpleNamespace(pause_pid=os.getpid()) for p in pods})


def pod(name: str, port: int, labels: dict | None = None) -> dict:
    return {"kind": "Pod", "metadata": {"namespace": "default", "name": name, "uid": "u-" + name,
                                        "labels": labels or {}},
            "spec": {"nodeName": "w1", "containers": [{"name": "c", "ports": [{"containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def test_pod_views_carry_the_declared_tcp_ports():
    (view,) = Listed([pod("web", 8080)]).pod_views().values()
    assert view.ports == {8080}
    assert view == PodView("default", "web", "u-web", "w1", view.ip, os.getpid(), True, "Running")


def test_wait_ready_waits_for_the_ports_of_its_objects_pods_only():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        mine = pod("web", server.getsockname()[1], {"app": "web"})
        other = pod("other", unused_port())                         # never listens
        cluster = Listed([mine, other])
        deployment = {"kind": "Deployment", "metadata": {"namespace": "default", "name": "web"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}}
        started = time.monotonic()
        views = cluster.wait_ready([deployment], timeout=1, interval=0.01, settle=3)
        assert time.monotonic() - started < 1
        assert sorted(v.key for v in views) == ["default/other", "default/web"]
        started = time.monotonic()
        cluster.wait_ready([other], timeout=1, interval=0.01, settle=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        server.close()


def test_a_ready_pod_its_kubelet_has_not_saved_yet_is_looked_at_again_soon():
    views = [PodView("default", "web", "u-web", "w1", None, None, True, "Running")]
    pauses = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        views[0] = PodView("default", "web", "u-web", "w1", None, 7, True, "Running")

    fake = SimpleNamespace(pod_views=lambda: {v.key: v for v in views})
    _, theirs = Cluster._wait_ready(fake, [pod("web", 80)], timeout=5, interval=0.2, pause=pause)
    assert pauses == [0.02] and [v.pid for v in theirs] == [7]


def test_pod_events_end_a_wait_when_a_pod_changes():
    from testbed.emu.cluster import PodEvents

    def watch(*args, **kwargs):
        time.sleep(0.3)
        yield "MODIFIED", pod("web", 80)
        time.sleep(5)

    events = PodEvents(SimpleNamespace(list=lambda kind, *a, **kw: ([], "1"), watch=watch))
    try:
        started = time.monotonic()
        events.wait(5)                          # the list holds no pod: the event wakes it
        assert 0.25 < time.monotonic() - started < 2
    finally:
        events.stop()
