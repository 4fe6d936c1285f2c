"""Real CNI plugins as the pod network (testbed/emu/cninet.py), over fake plugins that record
their calls: a pod's networks (loopback on lo, the kubenet chain on eth0) with the kubelet's
CNI_ARGS and hostPort mappings, DEL after a failed ADD, DELs retried with a doubling back-off,
adoption and collection after a kubelet restart. No root: the fakes touch no namespace."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.cni import cache
from testbed.cni.invoke import container_id
from testbed.emu.cninet import DEL_RETRY_MAX, CniNetwork, make_pod_network
from testbed.emu.podnet import Attachment, BridgeNetwork, NodeRef, SandboxNetworkError
from testbed.emu.rundir import cni_cache_directory, cni_ipam_directory
from testbed.spec.cniconf import ConfList, kubenet
from testbed.spec.source import SpecError
from tests.unit.fake_cni import FakePlugins

NODE = NodeRef("w1", 100, IPv4Network("10.244.1.0/24"))
PID = 4242
CID = container_id("uid-1", PID)
MAPPINGS = {"default/web": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def net(tmp_path):
    plugins = FakePlugins(tmp_path / "bin")
    clock = Clock()
    network = CniNetwork(tmp_path / "run", None, mtu=1450, plugin_dirs=[str(tmp_path / "bin")],
                         clock=clock)
    return network, plugins, clock


def entries(tmp_path) -> list[tuple[str, str, bool]]:
    return [(e.network, e.ifname, e.result is not None)
            for e in cache.entries(cni_cache_directory(tmp_path / "run", "w1"))]


def test_a_pod_joins_loopback_then_the_kubenet_chain_as_containerd_runs_them(net, tmp_path):
    network, plugins, _ = net
    (attachment,) = network.add_many(NODE, [("default/web", "uid-1", PID)], port_mappings=MAPPINGS)
    assert attachment == Attachment("default/web", IPv4Address("10.244.1.2"), 24,
                                    IPv4Address("10.244.1.1"), "veth1234abcd")
    assert plugins.order() == [("loopback", "ADD"), ("bridge", "ADD"), ("portmap", "ADD")]
    lo, bridge, portmap = plugins.calls()
    assert (lo["env"]["CNI_IFNAME"], lo["stdin"]["name"], lo["stdin"]["cniVersion"]) == ("lo", "cni-loopback", "0.3.1")
    assert {c["env"]["CNI_NETNS"] for c in plugins.calls()} == {f"/proc/{PID}/ns/net"}
    assert {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {CID}
    assert bridge["env"]["CNI_ARGS"] == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                                         f"K8S_POD_INFRA_CONTAINER_ID={CID};K8S_POD_UID=uid-1")
    assert bridge["stdin"]["mtu"] == 1450 and bridge["stdin"]["bridge"] == "cbr0"
    assert bridge["stdin"]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert bridge["stdin"]["ipam"]["dataDir"] == str(cni_ipam_directory(tmp_path / "run", "w1"))
    assert "runtimeConfig" not in bridge["stdin"]
    assert portmap["stdin"]["runtimeConfig"] == {"portMappings": MAPPINGS["default/web"]}
    assert entries(tmp_path) == [("cni-loopback", "lo", True), ("kubenet", "eth0", True)]


def test_delete_runs_in_the_pods_namespace_and_leaves_no_cache(net, tmp_path):
    network, plugins, _ = net
    (attachment,) = network.add_many(NODE, [("default/web", "uid-1", PID)])
    plugins.forget()
    network.delete(NODE, attachment, sandbox_pid=PID)
    assert plugins.order() == [("loopback", "DEL"), ("portmap", "DEL"), ("bridge", "DEL")]
    assert {c["env"]["CNI_NETNS"] for c in plugins.calls()} == {f"/proc/{PID}/ns/net"}
    assert entries(tmp_path) == [] and network.pending == []
    plugins.forget()
    network.delete(NODE, attachment)      # nothing known any more: nothing run
    assert plugins.calls() == []


def test_a_failed_add_is_deleted_again_and_reported_in_containerds_words(net, tmp_path):
    network, plugins, _ = net
    plugins.control("bridge", ADD={"code": 999, "msg": "failed to allocate for range 0: no IP "
                                                       "addresses available in range set: 10.244.1.1-10.244.1.2"})
    with pytest.raises(SandboxNetworkError) as info:
        network.add(NODE, "default/web", "uid-1", PID)
    assert str(info.value) == (
        f'failed to setup network for sandbox "{CID}": plugin type="bridge" name="kubenet" failed '
        "(add): failed to allocate for range 0: no IP addresses available in range set: "
        "10.244.1.1-10.244.1.2")
    assert info.value.sandbox_id == CID
    assert plugins.order() == [("loopback", "ADD"), ("bridge", "ADD"),
                               ("loopback", "DEL"), ("portmap", "DEL"), ("bridge", "DEL")]
    dels = [c for c in plugins.calls() if c["command"] == "DEL"]
    assert {c["env"]["CNI_NETNS"] for c in dels} == {f"/proc/{PID}/ns/net"}   # while it lives
    assert entries(tmp_path) == [] and network.pending == [] and network.sandboxes == {}


def test_when_a_later_pod_fails_the_earlier_ones_are_deleted_too(net, tmp_path):
    network, plugins, _ = net
    plugins.control("bridge", ADD={"msg": "boom", "pod": "b"})
    with pytest.raises(SandboxNetworkError, match="boom"):
        network.add_many(NODE, [("default/a", "uid-a", 11), ("default/b", "uid-b", 12)])
    dels = {(c["env"]["CNI_CONTAINERID"], c["type"], c["env"]["CNI_NETNS"])
            for c in plugins.calls() if c["command"] == "DEL"}
    assert dels == {(container_id(uid, pid), kind, f"/proc/{pid}/ns/net")
                    for uid, pid in (("uid-a", 11), ("uid-b", 12))
                    for kind in ("loopback", "portmap", "bridge")}
    assert entries(tmp_path) == [] and network.sandboxes == {}


def test_a_failing_del_is_kept_and_retried_with_a_doubling_back_off_until_it_succeeds(net, tmp_path):
    network, plugins, clock = net
    attachment = network.add(NODE, "default/web", "uid-1", PID)
    plugins.control("bridge", DEL={"msg": "device busy", "times": 3})
    plugins.forget()
    network.delete(NODE, attachment, sandbox_pid=PID)
    assert len(network.pending) == 1 and network.pending[0].network.ifname == "eth0"
    assert ("kubenet", "eth0", True) in entries(tmp_path)          # kept, with its result
    assert ("cni-loopback", "lo", True) not in entries(tmp_path)   # lo's DEL succeeded
    plugins.forget()
    assert network.retry_pending() == 1 and plugins.calls() == []   # not due yet
    waits = []
    for _ in range(3):
        clock.now += network.pending[0].delay if network.pending else 0
        waits.append(network.pending[0].delay)
        left = network.retry_pending()
    assert waits == [1.0, 2.0, 4.0] and left == 0
    # retries run without the namespace, which is gone by then, and with the cached result
    retried = [c for c in plugins.calls() if c["command"] == "DEL"]
    assert {c["env"]["CNI_NETNS"] for c in retried} == {""}
    assert all("prevResult" in c["stdin"] for c in retried)
    assert entries(tmp_path) == []


def test_the_back_off_is_capped(net):
    network, plugins, clock = net
    attachment = network.add(NODE, "default/web", "uid-1", PID)
    plugins.control("bridge", DEL={"msg": "never"})
    network.delete(NODE, attachment, sandbox_pid=PID)
    for _ in range(12):
        clock.now += network.pending[0].delay
        network.retry_pending()
    assert network.pending[0].delay == DEL_RETRY_MAX


def test_a_del_owed_after_a_failed_add_survives_a_restart_and_is_collected(net, tmp_path):
    network, plugins, _ = net
    plugins.control("bridge", ADD={"msg": "no"}, DEL={"msg": "still no", "times": 1})
    with pytest.raises(SandboxNetworkError):
        network.add(NODE, "default/web", "uid-1", PID)
    assert ("kubenet", "eth0", False) in entries(tmp_path)     # an entry without a result
    # the kubelet restarts: a new network finds the entry and deletes it
    plugins.forget()
    again = CniNetwork(tmp_path / "run", None, plugin_dirs=[str(tmp_path / "bin")])
    again.collect(NODE)
    assert [(c["type"], c["env"]["CNI_NETNS"]) for c in plugins.calls()] == [("portmap", ""), ("bridge", "")]
    assert entries(tmp_path) == [] and again.pending == []


def test_adopted_pods_keep_their_attachment_and_others_are_collected(net, tmp_path):
    network, plugins, _ = net
    web = network.add(NODE, "default/web", "uid-1", PID)
    network.add(NODE, "default/gone", "uid-2", 4343)
    plugins.forget()
    again = CniNetwork(tmp_path / "run", None, plugin_dirs=[str(tmp_path / "bin")])
    again.adopt(NODE, web)
    assert again.sandboxes["default/web"].container_id == CID and again.sandboxes["default/web"].pid == PID
    again.collect(NODE)
    assert {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {container_id("uid-2", 4343)}
    plugins.forget()
    again.delete(NODE, web, sandbox_pid=PID)
    assert {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {CID}
    assert entries(tmp_path) == []


def test_each_adopted_pod_gets_its_own_entry_and_a_pod_never_adopted_is_deleted_from_the_cache(
        net, tmp_path):
    network, plugins, _ = net
    web = network.add(NODE, "default/web", "uid-1", PID)
    db = network.add(NODE, "kube-system/db", "uid-2", 4343)
    plugins.forget()
    again = CniNetwork(tmp_path / "run", None, plugin_dirs=[str(tmp_path / "bin")])
    again.adopt(NODE, db)
    again.adopt(NODE, web)
    assert {pod: (s.container_id, s.pid) for pod, s in again.sandboxes.items()} == {
        "default/web": (CID, PID), "kube-system/db": (container_id("uid-2", 4343), 4343)}
    again.collect(NODE)
    assert plugins.calls() == [] and again.pending == []
    # a network that adopted nothing (podlab's, say) still finds a pod's entry to DEL it
    third = CniNetwork(tmp_path / "run", None, plugin_dirs=[str(tmp_path / "bin")])
    third.delete(NODE, db, sandbox_pid=4343)
    assert {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {container_id("uid-2", 4343)}
    assert [e.container_id for e in cache.entries(cni_cache_directory(tmp_path / "run", "w1"))
            if e.ifname == "eth0"] == [CID]


def test_a_new_sandbox_of_the_same_pod_has_its_own_id_and_an_old_del_cannot_undo_it(net, tmp_path):
    network, plugins, _ = net
    attachment = network.add(NODE, "default/web", "uid-1", PID)
    plugins.control("bridge", DEL={"msg": "busy", "times": 1})
    network.delete(NODE, attachment, sandbox_pid=PID)
    assert [p.rt.container_id for p in network.pending] == [CID]
    plugins.forget()
    network.add(NODE, "default/web", "uid-1", 5000)      # at once: another sandbox, another ID
    new = container_id("uid-1", 5000)
    assert new != CID and {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {new}
    assert network.sandboxes["default/web"].container_id == new
    for item in network.pending:
        item.due = 0.0
    plugins.forget()
    network.retry_pending()                               # the old sandbox's DEL, by its own ID
    assert {c["env"]["CNI_CONTAINERID"] for c in plugins.calls()} == {CID}
    assert plugins.order() == [("portmap", "DEL"), ("bridge", "DEL")] and network.pending == []


def test_check_runs_the_chains_that_have_it(tmp_path):
    plugins = FakePlugins(tmp_path / "bin")
    chain = dataclasses.replace(kubenet(1500), disable_check=False)
    network = CniNetwork(tmp_path / "run", chain, plugin_dirs=[str(tmp_path / "bin")])
    attachment = network.add(NODE, "default/web", "uid-1", PID)
    plugins.forget()
    assert network.check(NODE, attachment, PID) == []
    assert plugins.order() == [("bridge", "CHECK"), ("portmap", "CHECK")]   # not loopback's 0.3.1
    assert CniNetwork(tmp_path / "run2", None, plugin_dirs=[str(tmp_path / "bin")]).check(
        NODE, attachment, PID) == ["no CNI attachment is known for default/web"]
    kubenets = CniNetwork(tmp_path / "run3", None, plugin_dirs=[str(tmp_path / "bin")])
    kubenets.add(NODE, "default/web", "uid-1", PID)
    plugins.forget()
    assert kubenets.check(NODE, attachment, PID) == [] and plugins.calls() == []   # disableCheck
    plugins.control("bridge", CHECK={"msg": "eth0 lacks 10.244.1.2/24"})
    assert network.check(NODE, attachment, PID) == [
        'plugin type="bridge" name="kubenet" failed (check): eth0 lacks 10.244.1.2/24']


def test_a_users_list_and_a_result_without_an_ipv4_address(tmp_path):
    plugins = FakePlugins(tmp_path / "bin", ("ptp", "loopback"))
    conf = ConfList("mine", "0.4.0", ({"type": "ptp", "address": "10.9.0.5/32", "gateway": "10.9.0.1",
                                       "hostVeth": "vethpod"},))
    network = CniNetwork(tmp_path / "run", conf, plugin_dirs=[str(tmp_path / "bin")])
    attachment = network.add(NODE, "default/web", "uid-1", PID)
    assert (str(attachment.ip), attachment.prefixlen, attachment.host_veth) == ("10.9.0.5", 32, "vethpod")
    plugins.forget()
    bad = ConfList("v6", "1.0.0", ({"type": "ptp", "address": "fd00::5/64"},))
    with pytest.raises(SandboxNetworkError, match='network "v6" gave the pod no IPv4 address'):
        CniNetwork(tmp_path / "run", bad, plugin_dirs=[str(tmp_path / "bin")]).add(
            NODE, "default/x", "uid-9", PID)
    assert [c["command"] for c in plugins.calls()] == ["ADD", "ADD", "DEL", "DEL"]
    calls = json.loads(json.dumps(plugins.calls()))
    assert calls[-1]["env"]["CNI_CONTAINERID"] == container_id("uid-9", PID)


def test_system_pods_ask_host_local_for_the_highest_free_address(net, tmp_path):
    network, plugins, _ = net
    store = cni_ipam_directory(tmp_path / "run", "w1") / "kubenet"
    store.mkdir(parents=True)
    for taken in ("10.244.1.254", "10.244.1.2", "last_reserved_ip.0", "lock"):
        (store / taken).write_text("x")
    network.add(NODE, "kube-system/kube-dns-1", "uid-dns", PID)
    network.add(NODE, "default/web", "uid-1", 4343)
    bridges = [c["stdin"] for c in plugins.calls() if c["type"] == "bridge"]
    assert bridges[0]["runtimeConfig"] == {"ips": ["10.244.1.253/24"]}
    assert "runtimeConfig" not in bridges[1]                       # a workload: host-local's turn
    portmap = [c["stdin"] for c in plugins.calls() if c["type"] == "portmap"][0]
    assert "runtimeConfig" not in portmap                          # it does not declare ips
    # A user's list gets the same when its plugin declares ips and delegates to host-local,
    # and not otherwise (its addresses are its own).
    user = CniNetwork(tmp_path / "run", ConfList("u", "1.0.0", ({"type": "bridge", "capabilities": {"ips": True},
                                                                 "address": "10.244.1.9/24", "ipam": {"type": "host-local"}},)),
                      plugin_dirs=[str(tmp_path / "bin")])
    plugins.forget()
    user.add(NODE, "kube-system/other", "uid-o", PID)
    assert plugins.calls()[-1]["stdin"]["runtimeConfig"] == {"ips": ["10.244.1.254/24"]}
    other = CniNetwork(tmp_path / "run", ConfList("v", "1.0.0", ({"type": "bridge", "address": "10.244.1.9/24",
                                                                  "ipam": {"type": "host-local"}},)),
                       plugin_dirs=[str(tmp_path / "bin")])
    plugins.forget()
    other.add(NODE, "kube-system/third", "uid-t", PID)
    assert "runtimeConfig" not in plugins.calls()[-1]["stdin"]     # no ips capability: no such help


def test_one_factory_makes_either_pod_network(tmp_path):
    builtin = make_pod_network(tmp_path / "run", "builtin", mtu=1450)
    assert isinstance(builtin, BridgeNetwork) and builtin.mtu == 1450
    builtin.collect(NODE)                    # nothing to collect or retry on the built-in one
    assert builtin.retry_pending() == 0
    kubenets = make_pod_network(tmp_path / "run", "cni", None, str(tmp_path / "bin"), 1450)
    assert isinstance(kubenets, CniNetwork) and kubenets.conf is None and not kubenets.enter_node
    assert kubenets.plugin_dirs == [str(tmp_path / "bin"), "/usr/lib/cni"] and kubenets.mtu == 1450
    (tmp_path / "list.json").write_text('{"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "bridge"}]}')
    user = make_pod_network(tmp_path / "run", "cni", str(tmp_path / "list.json"), enter_node=True)
    assert user.conf.name == "mine" and user.enter_node and user.plugin_dirs == ["/usr/lib/cni"]
    (tmp_path / "bad.json").write_text('{"cniVersion": "9.9.9", "name": "bad", "plugins": []}')
    with pytest.raises(SpecError, match="bad.json"):
        make_pod_network(tmp_path / "run", "cni", str(tmp_path / "bad.json"))
