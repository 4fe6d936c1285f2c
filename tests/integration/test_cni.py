"""Debian's real CNI plugins (containernetworking-plugins, /usr/lib/cni) run as the kubelet runs
them (testbed/emu/cninet.py over testbed/cni), in throwaway namespaces the tests make: one
`testbed-pause` holds the "node" (the plugins run there, through nsenter, as they run inside a
kubelet's node), others the pods. The kubenet chain's ADD, CHECK and DEL leave nothing behind,
and a plugin that fails on ADD (host-local out of addresses) leaves nothing behind either:
no veth, no address in host-local's store, no cache entry, no sandbox process. Root.
"""

from __future__ import annotations

import dataclasses
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from testbed.cni import cache
from testbed.cni.invoke import CniError, container_id
from testbed.emu.cninet import CniNetwork
from testbed.emu.pausebin import pause_binary
from testbed.emu.podnet import NodeRef, SandboxNetworkError
from testbed.emu.pods import PodRuntime
from testbed.emu.record import Record, alive
from testbed.emu.rundir import cni_cache_directory, cni_ipam_directory
from testbed.net.run import run
from testbed.spec.cniconf import load_conflist

PLUGINS = Path("/usr/lib/cni")
pytestmark = pytest.mark.skipif(not (PLUGINS / "bridge").exists(),
                                reason="containernetworking-plugins are not installed (scripts/install.sh)")
CIDR = IPv4Network("10.244.1.0/24")


@pytest.fixture
def sandbox():
    """Start a namespace holder (a pause process) and give its pid; all ended by pid after."""
    procs: list[subprocess.Popen] = []

    def start(name: str) -> int:
        proc = subprocess.Popen([pause_binary(), "pause", name], stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout.readline() == b"ok\n"
        return proc.pid

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def sh(pid: int, *argv: str) -> str:
    """A command's output in the namespace of `pid`."""
    return run(list(argv), netns=pid).stdout


def links(pid: int) -> set[str]:
    return {line.split()[0].split("@")[0] for line in sh(pid, "ip", "-br", "link").splitlines()}


def store(run_dir: Path, network: str) -> dict[str, str]:
    """host-local's allocations: address -> the container ID holding it."""
    directory = cni_ipam_directory(run_dir, "w1") / network
    return {p.name: p.read_text().split()[0] for p in directory.iterdir()
            if p.name[0].isdigit() and not p.name.startswith("last_reserved")} if directory.is_dir() else {}


def test_the_kubenet_chain_adds_checks_and_deletes_leaving_nothing(sandbox, tmp_path):
    node_pid, pod_pid = sandbox("node"), sandbox("pod")
    node = NodeRef("w1", node_pid, CIDR)
    net = CniNetwork(tmp_path, None, mtu=1450, enter_node=True)
    (a,) = net.add_many(node, [("default/web", "uid-1", pod_pid)],
                        port_mappings={"default/web": [{"hostPort": 8080, "containerPort": 80,
                                                        "protocol": "tcp"}]})
    cid = container_id("uid-1", pod_pid)
    assert (a.ip, a.prefixlen, a.gateway) == (IPv4Address("10.244.1.2"), 24, IPv4Address("10.244.1.1"))
    # the node: cbr0 as the pods' gateway, the host veth on it with hairpin on
    assert links(node_pid) == {"lo", "cbr0", a.host_veth}
    assert "10.244.1.1/24" in sh(node_pid, "ip", "-br", "addr", "show", "cbr0")
    port = sh(node_pid, "ip", "-d", "link", "show", a.host_veth)
    assert "master cbr0" in port and "hairpin on" in port and "mtu 1450" in port
    # the pod: eth0 with its address, the MTU, a default route via cbr0; lo up
    assert "10.244.1.2/24" in sh(pod_pid, "ip", "-br", "addr", "show", "eth0")
    assert "mtu 1450" in sh(pod_pid, "ip", "link", "show", "eth0")
    assert sh(pod_pid, "ip", "route").splitlines()[0].startswith("default via 10.244.1.1 dev eth0")
    assert "UP" in sh(pod_pid, "ip", "-br", "link", "show", "lo")
    sh(pod_pid, "ping", "-c1", "-W2", "10.244.1.1")
    # portmap's DNAT for the hostPort; host-local's record; libcni's cache
    assert "--dport 8080 -j DNAT --to-destination 10.244.1.2:80" in sh(node_pid, "iptables-save", "-t", "nat")
    assert store(tmp_path, "kubenet") == {"10.244.1.2": cid}
    results = cni_cache_directory(tmp_path, "w1")
    assert sorted((e.network, e.ifname) for e in cache.entries(results)) == [("cni-loopback", "lo"),
                                                                              ("kubenet", "eth0")]

    # CHECK: the kubenet list disables it (Debian's portmap fails CHECK of IPv4 pods), so the
    # bridge and host-local are checked on their own, over the same cached result
    assert net.check(node, a, pod_pid) == []
    bridge_only = dataclasses.replace(net.networks(node)[1].conf, plugins=net.networks(node)[1].conf.plugins[:1],
                                      disable_check=False)
    rt = net.sandboxes["default/web"].runtime_conf("eth0", f"/proc/{pod_pid}/ns/net")
    net.cni(node).check(bridge_only, rt)
    sh(pod_pid, "ip", "addr", "del", "10.244.1.2/24", "dev", "eth0")
    with pytest.raises(CniError) as info:
        net.cni(node).check(bridge_only, rt)
    assert str(info.value).startswith('plugin type="bridge" name="kubenet" failed (check): ')

    # DEL, in the pod's namespace: nothing is left
    net.delete(node, a, sandbox_pid=pod_pid)
    assert net.pending == []
    assert links(node_pid) == {"lo", "cbr0"} and links(pod_pid) == {"lo"}
    assert store(tmp_path, "kubenet") == {}
    assert cache.entries(results) == []
    nat = sh(node_pid, "iptables-save", "-t", "nat")
    assert "10.244.1.2" not in nat and cid not in nat and "CNI-DN-" not in nat


TINY = """# one address to give: the second pod's ADD fails in host-local
cniVersion: 1.0.0
name: tiny
plugins:
- type: bridge
  bridge: cbr0
  isGateway: true
  ipam:
    type: host-local
    ranges: [[{subnet: "{{.PodCIDR}}", rangeStart: 10.244.1.2, rangeEnd: 10.244.1.2}]]
"""


def test_a_real_plugin_failing_on_add_is_reported_and_leaves_nothing(sandbox, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    conf = load_conflist(tmp_path / "tiny.yaml")
    node_pid, first, second = sandbox("node"), sandbox("a"), sandbox("b")
    node = NodeRef("w1", node_pid, CIDR)
    net = CniNetwork(tmp_path / "run", conf, enter_node=True)
    a = net.add(node, "default/a", "uid-a", first)
    with pytest.raises(SandboxNetworkError) as info:
        net.add(node, "default/b", "uid-b", second)
    message = str(info.value)
    assert message.startswith(f'failed to setup network for sandbox "{container_id("uid-b", second)}": '
                              'plugin type="bridge" failed (add): ')
    assert "no IP addresses available in range set: 10.244.1.2-10.244.1.2" in message
    # the bridge plugin made b's veth before host-local failed; the DEL that followed took it
    assert links(node_pid) == {"lo", "cbr0", a.host_veth} and links(second) == {"lo"}
    assert store(tmp_path / "run", "tiny") == {"10.244.1.2": container_id("uid-a", first)}
    entries = cache.entries(cni_cache_directory(tmp_path / "run", "w1"))
    assert {e.container_id for e in entries} == {container_id("uid-a", first)} and net.pending == []


def test_through_the_runtime_a_failed_add_also_ends_the_sandbox(sandbox, tmp_path):
    """emu/pods.py: the pause process of a pod whose network failed goes too."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    node_pid = sandbox("node")
    node = NodeRef("w1", node_pid, CIDR)
    record = Record.create("cni-test")
    try:
        net = CniNetwork(record.directory, load_conflist(tmp_path / "tiny.yaml"), enter_node=True)
        runtime = PodRuntime(record, net, IPv4Address("10.96.0.10"))

        def manifest(name: str) -> dict:
            return {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}"},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}

        (a,) = runtime.run_pods(node, [manifest("a")])
        assert str(a.ip) == "10.244.1.2" and "eth0" in links(a.pid)
        with pytest.raises(SandboxNetworkError, match="no IP addresses available"):
            runtime.run_pods(node, [manifest("b")])
        assert [e.what for e in record.procs.values()] == ["pod default/a pause",
                                                           "pod default/a container c"]
        assert links(node_pid) == {"lo", "cbr0", a.attachment.host_veth}
        assert store(record.directory, "tiny") == {"10.244.1.2": container_id("uid-a", a.pause_pid)}
        pause_pid, pause_start = a.pause_pid, a.pause_start
        runtime.delete(node, a, grace=0.5)
        assert not alive(pause_pid, pause_start) and record.procs == {}
        # the DEL succeeded at once (nothing pending, no cache entry) and freed the address
        assert net.pending == [] and cache.entries(cni_cache_directory(record.directory, "w1")) == []
        assert store(record.directory, "tiny") == {}
        # and the pod's link is gone at once: the DEL ran in the pod's namespace, before the
        # sandbox ended (had the namespace gone first, the link would go with it, later: the
        # kernel frees a namespace asynchronously)
        assert links(node_pid) == {"lo", "cbr0"}
    finally:
        record.clean()


@pytest.mark.parametrize("plugin", ["cni", "builtin"])
def test_a_restarted_kubelet_checks_the_pods_it_adopts_and_reports_what_a_plugin_finds(tmp_path, plugin):
    """On a cluster: kill node1's kubelet, take pod-1's address away behind its back, start the
    kubelet again: it adopts pod-1, runs CNI CHECK (bridge + host-local, 1.0.0, CHECK enabled),
    and the bridge plugin's complaint becomes a NetworkNotReady event of pod-1. The built-in
    network's own check finds the same."""
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import PodNetworkSpec, load_topology, with_pod_network

    from .conftest import SCENARIOS, TOPOLOGIES, wait_for

    conf = tmp_path / "checked.conflist"
    conf.write_text('{"cniVersion": "1.0.0", "name": "checked", "plugins": [{"type": "bridge",'
                    ' "bridge": "cbr0", "isGateway": true, "capabilities": {"ips": true}, "ipam": {'
                    '"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]],'
                    ' "routes": [{"dst": "0.0.0.0/0"}]}}]}')
    topo = with_pod_network(load_topology(TOPOLOGIES / "article.yaml"),
                            PodNetworkSpec("cni", "gateway", str(conf)) if plugin == "cni" else PodNetworkSpec())
    c = Cluster(topo).up()
    try:
        objs = load_manifests([str(SCENARIOS / "manifests" / "pods-node1-node2.yaml")])
        c.apply(objs)
        c.wait_ready(objs, timeout=60)
        pod = c.find_pod("pod-1")
        c.cp.kill("kubelet", "node1")
        run(["ip", "addr", "flush", "dev", "eth0"], netns=pod.pid)
        c.cp.wait_agent(c.cp.restart("kubelet", "node1"))

        def complaint():
            events, _ = c.client.list("Event", "default", fields="involvedObject.name=pod-1,reason=NetworkNotReady")
            return events[0]["message"] if events else None

        message = wait_for(complaint, 20, "a NetworkNotReady event for pod-1")
        assert message.startswith("network of the pod failed its CNI CHECK: ")
        if plugin == "cni":
            assert 'plugin type="bridge"' in message and "(check)" in message
        else:
            events, _ = c.client.list("Event", "default", fields="involvedObject.name=pod-1,reason=NetworkNotReady")
            assert f"eth0 in default/pod-1 lacks {pod.ip}" in {e["message"].split(": ", 1)[1] for e in events}
        # pod-3, on node2, was not touched: no event
        events, _ = c.client.list("Event", "default", fields="involvedObject.name=pod-3,reason=NetworkNotReady")
        assert events == []
    finally:
        c.down()
