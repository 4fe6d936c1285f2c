"""Cluster DNS as pods see it: the kube-dns add-on at 10.96.0.10 on a real two-node cluster.

Names are looked up from inside a pod, through the pod's own resolv.conf (search path and
ndots:5), with the tools a user would run there: getent (the C library's resolver, as
`curl service-test` uses) and dig. One cluster for the module.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from testbed.emu import rundir
from testbed.emu.cluster import Cluster
from testbed.emu.pausebin import pause_binary

from .conftest import SCENARIOS, article_cluster

ARTICLE = SCENARIOS / "manifests" / "article-service-test.yaml"
FQDN = "service-test.default.svc.cluster.local"


@pytest.fixture(scope="module")
def cluster():
    yield from article_cluster()


@pytest.fixture(scope="module")
def pod(cluster):
    """One of the article's pods, on w2 (the DNS pod runs on w1: the lookups cross nodes)."""
    views = [v for v in cluster.all_pods() if v.name.startswith("service-test-")]
    return next((v for v in views if v.node == "w2"), views[0])


def in_pod(cluster: Cluster, view, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    d = rundir.pod_directory(cluster.record.directory, view.namespace, view.name)
    return subprocess.run([pause_binary(), "enter", str(view.pid), "--bind", f"{d / 'hosts'}:/etc/hosts",
                           "--bind", f"{d / 'resolv.conf'}:/etc/resolv.conf", "--", *argv],
                          capture_output=True, text=True, timeout=timeout)


def dig(cluster: Cluster, view, *args: str) -> str:
    proc = in_pod(cluster, view, "dig", "+time=2", "+tries=1", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pod_resolv_conf_is_the_kubelets(cluster, pod):
    text = in_pod(cluster, pod, "cat", "/etc/resolv.conf").stdout
    assert text.splitlines() == ["search default.svc.cluster.local svc.cluster.local cluster.local",
                                 "nameserver 10.96.0.10", "options ndots:5"]


@pytest.mark.parametrize("name", ["service-test", "service-test.default", FQDN])
def test_service_names_resolve_through_the_search_path(cluster, pod, name):
    ip = str(cluster.service_ip("service-test"))
    got = in_pod(cluster, pod, "getent", "hosts", name)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split()[0] == ip
    assert dig(cluster, pod, "+search", "+short", name).split() == [ip]


def test_tcp_answers_too(cluster, pod):
    assert dig(cluster, pod, "+tcp", "+short", FQDN).split() == [str(cluster.service_ip("service-test"))]


def test_srv_for_a_named_port(cluster, pod):
    out = dig(cluster, pod, "+short", "SRV", "_dns._udp.kube-dns.kube-system.svc.cluster.local")
    priority, weight, port, target = out.split()
    assert (port, target) == ("53", "kube-dns.kube-system.svc.cluster.local.")


def test_ptr_for_the_cluster_ip(cluster, pod):
    ip = str(cluster.service_ip("service-test"))
    assert dig(cluster, pod, "+short", "-x", ip).split() == [FQDN + "."]


def test_pod_record(cluster, pod):
    name = f"{str(pod.ip).replace('.', '-')}.default.pod.cluster.local"
    assert dig(cluster, pod, "+short", name).split() == [str(pod.ip)]


def test_outside_names_get_a_fast_negative_answer(cluster, pod):
    started = time.monotonic()
    out = dig(cluster, pod, "example.com")
    assert "status: NXDOMAIN" in out or "status: REFUSED" in out, out
    # Through the search path too (ndots:5 tries the three cluster suffixes first).
    got = in_pod(cluster, pod, "getent", "hosts", "example.com")
    took = time.monotonic() - started
    assert got.returncode == 2 and got.stdout == ""
    assert took < 1.5, f"negative answers took {took:.2f}s"


def test_curl_service_test_from_a_pod(cluster, pod):
    """The article's own check: `curl service-test` from any pod reaches one of its pods."""
    names = {v.name for v in cluster.all_pods() if v.name.startswith("service-test-")}
    seen = set()
    deadline = time.monotonic() + 10
    while seen != names and time.monotonic() < deadline:
        got = in_pod(cluster, pod, "curl", "-s", "--max-time", "2", "http://service-test/")
        assert got.returncode == 0, got.stderr
        seen.add(got.stdout.strip().removeprefix("<p>Hello from ").removesuffix("</p>"))
    assert seen == names


def test_a_new_service_resolves_promptly_and_a_deleted_one_stops(cluster, pod):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late", "namespace": "default"},
           "spec": {"selector": {"app": "none"}, "ports": [{"name": "web", "port": 8080}]}}
    created = cluster.client.create(svc)
    started = time.monotonic()
    while in_pod(cluster, pod, "getent", "hosts", "late").returncode != 0:
        assert time.monotonic() - started < 3, "the new Service never resolved"
        time.sleep(0.1)
    assert in_pod(cluster, pod, "getent", "hosts", "late").stdout.split()[0] == created["spec"]["clusterIP"]
    out = dig(cluster, pod, "+short", "SRV", "_web._tcp.late.default.svc.cluster.local")
    assert out.split()[2:] == ["8080", "late.default.svc.cluster.local."]
    cluster.client.delete("Service", "default", "late")
    started = time.monotonic()
    while in_pod(cluster, pod, "getent", "hosts", "late").returncode == 0:
        assert time.monotonic() - started < 3, "the deleted Service still resolves"
        time.sleep(0.1)
