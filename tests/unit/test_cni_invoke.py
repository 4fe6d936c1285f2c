"""The plugin chains (testbed/cni/invoke.py) against fake plugins that record their calls: the
environment and standard input each gets, the order of ADD, DEL and CHECK, the result cache in
libcni's format and its use, and the plugins' errors in libcni's words."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from testbed.cni import cache
from testbed.cni.invoke import Cni, CniError, RuntimeConf, container_id, pod_args
from testbed.spec.cniconf import ConfList
from tests.unit.fake_cni import FakePlugins

NETNS = "/proc/4242/ns/net"
CID = container_id("uid-1")
ARGS = pod_args("default", "web", "uid-1", CID)
RT = RuntimeConf(CID, NETNS, "eth0", ARGS, {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                              "protocol": "tcp"}]})


def chain(version: str = "1.0.0", disable_check: bool = False) -> ConfList:
    return ConfList("kubenet", version, (
        {"type": "bridge", "name": "kubenet", "bridge": "cbr0", "address": "10.244.1.2/24",
         "gateway": "10.244.1.1"},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}), disable_check)


@pytest.fixture
def fake(tmp_path):
    plugins = FakePlugins(tmp_path / "bin")
    runner = Cni([str(tmp_path / "bin"), str(tmp_path / "empty")], tmp_path / "cache",
                 path="/usr/sbin:/usr/bin")
    return plugins, runner


def test_the_container_id_is_64_hex_and_stable_and_the_args_are_the_kubelets():
    assert len(CID) == 64 and int(CID, 16) >= 0 and CID == container_id("uid-1") != container_id("uid-2")
    assert ARGS == (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web"),
                    ("K8S_POD_INFRA_CONTAINER_ID", CID), ("K8S_POD_UID", "uid-1"))


def test_add_runs_the_chain_in_order_with_exactly_the_cni_environment(fake, tmp_path):
    plugins, runner = fake
    result = runner.add(chain(), RT)
    assert plugins.order() == [("bridge", "ADD"), ("portmap", "ADD")]
    bridge, portmap = plugins.calls()
    assert bridge["env"] == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": CID, "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                    f"K8S_POD_INFRA_CONTAINER_ID={CID};K8S_POD_UID=uid-1",
        "CNI_PATH": f"{tmp_path / 'bin'}:{tmp_path / 'empty'}", "PATH": "/usr/sbin:/usr/bin"}
    # standard input: the list's name and version injected, no prevResult for the first, the
    # first one's result for the second, runtimeConfig only where the capability is declared
    assert bridge["stdin"] == {"type": "bridge", "name": "kubenet", "cniVersion": "1.0.0",
                               "bridge": "cbr0", "address": "10.244.1.2/24", "gateway": "10.244.1.1"}
    first = json.loads(json.dumps(result))
    assert portmap["stdin"]["prevResult"] == first
    assert portmap["stdin"]["runtimeConfig"] == {"portMappings": RT.capability_args["portMappings"]}
    assert (portmap["stdin"]["name"], portmap["stdin"]["cniVersion"]) == ("kubenet", "1.0.0")
    assert result["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]


def test_the_result_is_cached_in_libcnis_format(fake, tmp_path):
    _, runner = fake
    result = runner.add(chain(), RT)
    path = tmp_path / "cache" / "results" / f"kubenet-{CID}-eth0"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["kind"] == "cniCacheV1" and data["containerId"] == CID
    assert (data["ifName"], data["networkName"], data["netns"]) == ("eth0", "kubenet", NETNS)
    assert data["cniArgs"] == [list(kv) for kv in ARGS]
    assert data["capabilityArgs"] == dict(RT.capability_args)
    assert json.loads(base64.b64decode(data["config"])) == chain().to_json()
    assert data["result"] == result
    assert [e.container_id for e in cache.entries(tmp_path / "cache")] == [CID]


def test_del_runs_in_reverse_with_the_cached_result_then_drops_the_cache(fake, tmp_path):
    plugins, runner = fake
    result = runner.add(chain(), RT)
    plugins.forget()
    runner.delete(chain(), RT)
    assert plugins.order() == [("portmap", "DEL"), ("bridge", "DEL")]
    assert all(c["stdin"]["prevResult"] == result for c in plugins.calls())
    assert all(c["env"]["CNI_COMMAND"] == "DEL" for c in plugins.calls())
    assert cache.entries(tmp_path / "cache") == []
    plugins.forget()
    runner.delete(chain(), RT)          # again: fine, now without a prevResult
    assert [("prevResult" in c["stdin"]) for c in plugins.calls()] == [False, False]


def test_check_runs_in_order_with_the_cached_result(fake):
    plugins, runner = fake
    result = runner.add(chain(), RT)
    plugins.forget()
    runner.check(chain(), RT)
    assert plugins.order() == [("bridge", "CHECK"), ("portmap", "CHECK")]
    assert all(c["stdin"]["prevResult"] == result for c in plugins.calls())


def test_check_is_refused_before_040_and_skipped_with_disable_check(fake):
    plugins, runner = fake
    runner.add(chain("0.3.1"), RT)
    plugins.forget()
    with pytest.raises(CniError, match='configuration version "0.3.1" does not support the CHECK command'):
        runner.check(chain("0.3.1"), RT)
    runner.check(chain(disable_check=True), RT)
    assert plugins.calls() == []


def test_a_0_3_1_del_gets_no_cached_result_and_a_040_one_gets_it_in_its_version(fake, tmp_path):
    plugins, runner = fake
    runner.add(chain("0.3.1"), RT)
    plugins.forget()
    runner.delete(chain("0.3.1"), RT)
    assert [("prevResult" in c["stdin"]) for c in plugins.calls()] == [False, False]
    # cached by an ADD of a 1.0.0 list, deleted by a 0.4.0 one: converted, as GetAsVersion does
    runner.add(chain("1.0.0"), RT)
    plugins.forget()
    runner.delete(ConfList("kubenet", "0.4.0", chain().plugins), RT)
    prev = plugins.calls()[0]["stdin"]["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"


def test_a_failing_plugin_stops_the_chain_with_its_own_message_and_nothing_is_cached(fake, tmp_path):
    plugins, runner = fake
    plugins.control("bridge", ADD={"code": 11, "msg": "failed to allocate for range 0",
                                   "details": "no IP addresses available in range set"})
    with pytest.raises(CniError) as info:
        runner.add(chain(), RT)
    err = info.value
    assert str(err) == ('plugin type="bridge" name="kubenet" failed (add): failed to allocate for '
                        "range 0; no IP addresses available in range set")
    assert (err.plugin_type, err.plugin_name, err.network, err.command, err.code) == (
        "bridge", "kubenet", "kubenet", "ADD", 11)
    assert plugins.order() == [("bridge", "ADD")]
    assert cache.entries(tmp_path / "cache") == []


def test_del_failures_are_named_delete_and_keep_the_cache(fake, tmp_path):
    plugins, runner = fake
    runner.add(chain(), RT)
    plugins.control("portmap", DEL={"msg": "could not flush chain"})
    with pytest.raises(CniError, match=r'^plugin type="portmap" failed \(delete\): could not flush chain$'):
        runner.delete(chain(), RT)
    assert len(cache.entries(tmp_path / "cache")) == 1


@pytest.mark.parametrize("control, words", [
    ({"ADD": {"msg": None}}, "netplugin failed with no error message: exit status 1"),
    ({"ADD": {"msg": None}, "stderr": "boom\n"}, "netplugin failed: 'boom\\n': exit status 1"),
    ({"raw": "not json", "exit": 1}, "netplugin failed but error parsing its diagnostic message 'not json'"),
    ({"raw": "not json"}, "netplugin returned a result that cannot be read"),
    ({"raw": '{"cniVersion": "1.0.0", "ips": [{"address": "x"}]}'},
     "netplugin returned a result that cannot be read: ips[0]: address 'x'"),
    ({"sleep": 3}, "netplugin failed with no error message: timed out after 0.5s"),
])
def test_failures_without_an_error_result_are_worded_as_libcni_words_them(fake, control, words):
    plugins, runner = fake
    runner.timeout = 0.5
    plugins.control("bridge", **control)
    with pytest.raises(CniError) as info:
        runner.add(chain(), RT)
    assert words in str(info.value)


def test_a_missing_plugin_and_bad_names(fake, tmp_path):
    plugins, runner = fake
    conf = ConfList("n", "1.0.0", ({"type": "nosuch"},))
    with pytest.raises(CniError) as info:
        runner.add(conf, RT)
    assert str(info.value) == (f'plugin type="nosuch" failed (add): failed to find plugin "nosuch" '
                               f'in path [{tmp_path / "bin"} {tmp_path / "empty"}]')
    with pytest.raises(CniError, match="invalid interface name"):
        runner.add(chain(), RuntimeConf(CID, NETNS, "a/b"))
    with pytest.raises(CniError, match="invalid characters in containerID"):
        runner.add(chain(), RuntimeConf("-x", NETNS, "eth0"))
    assert plugins.calls() == []


def test_the_users_plugin_directory_comes_first(tmp_path):
    mine = FakePlugins(tmp_path / "mine", ("bridge",))
    FakePlugins(tmp_path / "system", ("bridge", "portmap"))
    runner = Cni([str(tmp_path / "mine"), str(tmp_path / "system")], tmp_path / "cache")
    assert runner.find("bridge") == str(tmp_path / "mine" / "bridge")
    assert runner.find("portmap") == str(tmp_path / "system" / "portmap")
    os.mkdir(tmp_path / "mine" / "portmap")            # a directory is not a plugin
    assert runner.find("portmap") == str(tmp_path / "system" / "portmap")
    runner.add(chain(), RT)
    assert mine.order() == [("bridge", "ADD")]
