"""The emulated cluster: container to container, pod to pod on one node and across nodes."""

from __future__ import annotations

import os
import signal
import time
from ipaddress import IPv4Address

import pytest

from testbed.emu.pods import PodError
from testbed.emu.probes import SocketWatch, probe_http, probe_icmp, probe_tcp, probe_udp
from testbed.emu.record import netns_of, processes_in
from testbed.net.run import run


def _namespaces(cluster):
    ns = {p.key: p.pid for p in cluster.pods.values()}
    ns.update({h.name: h.pid for h in cluster.network.hosts.values()})
    return ns


def test_containers_of_a_pod_share_localhost(two_node):
    pod_a = two_node.find_pod("pod-a")
    # The sidecar (serve-hostname on 9376) and the web container (netexec on 8080) are two
    # processes in two mount namespaces, but one network namespace: both answer on localhost.
    web = probe_http(pod_a.pid, IPv4Address("127.0.0.1"), 8080, "/hostname", "localhost", {}, 2,
                     SocketWatch(_namespaces(two_node)))
    side = probe_http(pod_a.pid, IPv4Address("127.0.0.1"), 9376, "/", "localhost", {}, 2,
                      SocketWatch(_namespaces(two_node)))
    assert (web.status, web.body) == (200, "pod-a")
    assert (side.status, side.body) == (200, "pod-a")
    web_pid = pod_a.containers["web"].pid
    side_pid = pod_a.containers["sidecar"].pid
    assert netns_of(web_pid) == netns_of(side_pid) == netns_of(pod_a.pid)
    assert os.stat(f"/proc/{web_pid}/ns/mnt").st_ino != os.stat(f"/proc/{side_pid}/ns/mnt").st_ino


def test_container_sees_the_pods_files_and_hostname(two_node):
    pod_a = two_node.find_pod("pod-a")
    web_pid = pod_a.containers["web"].pid
    root = f"/proc/{web_pid}/root"
    assert "nameserver 10.96.0.10" in open(f"{root}/etc/resolv.conf").read()
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in open(f"{root}/etc/resolv.conf").read()
    assert f"{pod_a.ip}\tpod-a" in open(f"{root}/etc/hosts").read()
    assert run(["hostname"], netns=None, check=True).stdout != "pod-a\n"  # the machine's is untouched
    uts = run(["nsenter", f"--uts=/proc/{pod_a.pid}/ns/uts", "hostname"]).stdout.strip()
    assert uts == "pod-a"


@pytest.mark.parametrize("src,dst", [("pod-a", "pod-b"), ("pod-a", "pod-c"), ("pod-c", "pod-b")])
def test_pod_to_pod_icmp(two_node, src, dst):
    obs = probe_icmp(two_node.find_pod(src).pid, two_node.find_pod(dst).ip, 2)
    assert obs.reachable, obs.text


@pytest.mark.parametrize("src,dst", [("pod-a", "pod-b"), ("pod-b", "pod-c"), ("pod-c", "pod-a")])
def test_pod_to_pod_tcp_keeps_the_source_pod_ip(two_node, src, dst):
    source, target = two_node.find_pod(src), two_node.find_pod(dst)
    obs = probe_tcp(source.pid, target.ip, 8080, 2, SocketWatch(_namespaces(two_node)))
    assert obs.reachable, obs.text
    assert obs.source_ip == str(source.ip)
    assert obs.served_by == target.key
    # The server's own account agrees with the kernel's.
    http = probe_http(source.pid, target.ip, 8080, "/clientip", "x", {}, 2, SocketWatch(_namespaces(two_node)))
    assert http.body.split(":")[0] == str(source.ip)


def test_cross_node_traffic_goes_through_the_gateway(two_node):
    pod_a, pod_c = two_node.find_pod("pod-a"), two_node.find_pod("pod-c")
    trace = run(["traceroute", "-n", "-q1", "-w1", str(pod_c.ip)], netns=pod_a.pid, check=False) \
        if os.path.exists("/usr/bin/traceroute") else None
    # TTL tells the path without traceroute: pod-a -> w1 -> gw -> w2 -> pod-c is three routers.
    out = run(["ping", "-n", "-c1", "-W2", str(pod_c.ip)], netns=pod_a.pid).stdout
    assert "ttl=61" in out, out
    gw_routes = run(["ip", "route"], netns=two_node.network.pid("gw")).stdout
    assert "10.244.0.0/24 via 172.16.1.2" in gw_routes and "10.244.1.0/24 via 172.16.2.2" in gw_routes
    if trace is not None:
        assert "172.16.1.1" in trace.stdout


def test_udp_across_nodes(two_node):
    obs = probe_udp(two_node.find_pod("pod-c").pid, two_node.find_pod("pod-a").ip, 8081, "clientip", 2)
    assert obs.reachable and obs.reply.split(":")[0] == str(two_node.find_pod("pod-c").ip)


def test_pod_reaches_its_node_and_the_gateway(two_node):
    pod_c = two_node.find_pod("pod-c")
    assert probe_icmp(pod_c.pid, IPv4Address("172.16.2.2"), 2).reachable   # w2
    assert probe_icmp(pod_c.pid, IPv4Address("10.244.1.1"), 2).reachable   # w2's cbr0
    assert probe_icmp(pod_c.pid, IPv4Address("172.16.2.1"), 2).reachable   # the gateway
    assert probe_icmp(pod_c.pid, IPv4Address("203.0.113.2"), 2).reachable  # the external client


def test_node_wiring(two_node):
    w1 = two_node.network.pid("w1")
    links = run(["ip", "-d", "link", "show", "master", "cbr0"], netns=w1).stdout
    assert links.count("hairpin on") == 2, links                 # pod-a and pod-b's ports
    assert run(["sysctl", "-n", "net.ipv4.ip_forward"], netns=w1).stdout.strip() == "1"
    assert run(["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"], netns=w1).stdout.strip() == "1"
    assert "10.244.0.1/24" in run(["ip", "-o", "addr", "show", "cbr0"], netns=w1).stdout
    assert "default via 172.16.1.1" in run(["ip", "route"], netns=w1).stdout
    pod_route = run(["ip", "route"], netns=two_node.find_pod("pod-a").pid).stdout
    assert "default via 10.244.0.1 dev eth0" in pod_route


def test_unknown_port_is_refused(two_node):
    obs = probe_tcp(two_node.find_pod("pod-a").pid, two_node.find_pod("pod-b").ip, 9999, 2,
                    SocketWatch(_namespaces(two_node)))
    assert not obs.reachable and obs.text == "connection refused"


def _pod(name, node, command=("sleep", "infinity"), ports=()):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [
                {"name": "main", "image": "busybox", "command": list(command),
                 "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports]}]}}


def test_deleting_a_pod_ends_every_process_in_it_and_frees_its_ip(two_node):
    # The container forks a child that ignores SIGTERM: deletion must still end it.
    manifest = _pod("forker", "w2", ["bash", "-c", "trap '' TERM; sleep 1000 & trap '' TERM; wait"])
    (pod,) = two_node.run_pods([manifest])
    ns = netns_of(pod.pid)
    deadline = time.monotonic() + 5
    while len(processes_in({ns})) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes_in({ns})) >= 3  # pause, bash, sleep
    ip, veth = pod.ip, pod.attachment.host_veth
    two_node.delete_pod(pod.key)
    assert processes_in({ns}) == []
    w2 = two_node.network.pid("w2")
    assert veth not in run(["ip", "-o", "link"], netns=w2).stdout
    assert ip not in two_node.runtime.network.ipam["w2"].used().values()


def test_pod_ips_are_never_handed_out_twice(two_node):
    pods = two_node.run_pods([_pod(f"many-{i}", "w2") for i in range(6)])
    try:
        ips = [p.ip for p in two_node.pods.values() if p.node == "w2"]
        assert len(ips) >= 7
        assert len(set(ips)) == len(ips)
        assert all(str(ip).startswith("10.244.1.") and not str(ip).endswith((".0", ".1")) for ip in ips)
    finally:
        for p in pods:
            two_node.delete_pod(p.key)


def test_a_command_that_cannot_run_is_refused_before_anything_starts(two_node):
    before = set(two_node.pods)
    with pytest.raises(PodError, match="not found on the node"):
        two_node.run_pods([_pod("nocmd", "w1", ["no-such-program-anywhere"])])
    assert set(two_node.pods) == before


def test_pause_exits_on_sigterm_like_kubernetes_pause():
    import subprocess

    from testbed.emu.pausebin import pause_binary

    proc = subprocess.Popen([pause_binary(), "pause", "p1"], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ok\n"
    rss_kb = int(next(x for x in open(f"/proc/{proc.pid}/status") if x.startswith("VmRSS")).split()[1])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert rss_kb <= 1024, f"pause resident memory {rss_kb} kB"
