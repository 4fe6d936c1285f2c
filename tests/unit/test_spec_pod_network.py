"""podNetwork: in topologies, scenarios and on the command line (testbed.spec.topology,
testbed.scenario.preflight): defaults, overrides, and every refusal with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testbed.scenario.preflight import check_scenario
from testbed.spec.source import SpecError
from testbed.spec.topology import (
    PodNetworkSpec,
    load_topology,
    topology_from_dict,
    topology_to_dict,
)


@pytest.fixture
def own_plugin(write, tmp_path: Path) -> Path:
    """bin/my-ptp (a plugin of the user's own) and net.conflist, a list that runs it, beside the
    files the test writes; -> the directory."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "my-ptp").write_text("#!/bin/sh\n")
    write("net.conflist", '{"cniVersion": "1.0.0", "name": "mynet", "plugins": [{"type": "my-ptp"}]}')
    return tmp_path


def problems_of(path: Path, tmp_path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_topology(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


def test_the_default_is_the_builtin_bridge_behind_the_gateway(write):
    topo = load_topology(write("t.yaml", "name: t\n"))
    assert topo.pod_network == PodNetworkSpec("builtin", "gateway", None, None)
    assert topo.pod_network.mtu == 1500
    assert topo.pod_network.cni_path == ("/usr/lib/cni",)


def test_every_routing_mode_and_its_mtu(write):
    for routing, mtu in (("gateway", 1500), ("host-gw", 1500), ("vxlan", 1450), ("bgp", 1500)):
        topo = load_topology(write("t.yaml", f"network: {{mode: shared}}\npodNetwork: {{routing: {routing}}}\n"))
        assert (topo.pod_network.routing, topo.pod_network.mtu) == (routing, mtu)


def test_cni_with_a_conf_and_bin_dir_relative_to_the_topology(write, tmp_path, own_plugin):
    topo = load_topology(write("t.yaml", "podNetwork: {plugin: cni, conf: net.conflist, binDir: bin}\n"))
    assert topo.pod_network.plugin == "cni"
    assert topo.pod_network.conf == str(tmp_path / "net.conflist")
    assert topo.pod_network.cni_path == (str(tmp_path / "bin"), "/usr/lib/cni")


def test_a_conf_alone_implies_cni(write, own_plugin):
    topo = load_topology(write("t.yaml", "podNetwork: {conf: net.conflist, binDir: bin}\n"))
    assert topo.pod_network.plugin == "cni"


def test_a_plugin_the_conf_names_must_be_found(write, tmp_path):
    write("net.conflist", '{"cniVersion": "1.0.0", "name": "mynet",\n "plugins": [{"type": "nosuch"}]}')
    (found,) = problems_of(write("t.yaml", "podNetwork: {conf: net.conflist}\n"), tmp_path)
    assert found == ('net.conflist:2: plugins[0].type: Invalid value: "nosuch": failed to find '
                     'plugin "nosuch" in path [/usr/lib/cni]')


def test_it_survives_cluster_json(write, kubenet_plugins):
    topo = load_topology(write("t.yaml", "network: {mode: shared}\npodNetwork: {plugin: cni, routing: host-gw}\n"))
    assert topology_from_dict(topology_to_dict(topo)) == topo


def test_refusals_name_the_field_and_the_reason(write, tmp_path):
    found = problems_of(write("t.yaml", """
        podNetwork:
          plugin: calico
          routing: host-gw
          colour: blue
        """), tmp_path)
    assert found == ['t.yaml:4: podNetwork.colour: unknown field "colour"',
                     't.yaml:2: podNetwork.plugin: Unsupported value: "calico": supported values: '
                     '"builtin", "cni"']


def test_host_gw_needs_the_shared_lan(write, tmp_path):
    (found,) = problems_of(write("t.yaml", "podNetwork: {routing: host-gw}\n"), tmp_path)
    assert found.startswith('t.yaml:1: podNetwork.routing: Invalid value: "host-gw": needs network '
                            "mode shared")


@pytest.mark.parametrize("overlay, words", [("ipip", "no IPIP"), ("IPIP", "no IPIP"),
                                            ("wireguard", "no WireGuard"), ("geneve", "no Geneve")])
def test_overlays_this_kernel_lacks_are_refused_with_the_reason(write, tmp_path, overlay, words):
    (found,) = problems_of(write("t.yaml", f"podNetwork: {{routing: {overlay}}}\n"), tmp_path)
    assert f'podNetwork.routing: Invalid value: "{overlay}": this kernel has {words}' in found
    assert "vxlan is the overlay that works" in found


def test_conf_and_bin_dir_must_exist_and_need_cni(write, tmp_path):
    found = problems_of(write("t.yaml", "podNetwork: {conf: nowhere.json, binDir: nodir}\n"), tmp_path)
    assert any("podNetwork.conf: Invalid value: \"nowhere.json\": no such file" in p for p in found)
    assert any("podNetwork.binDir: Invalid value: \"nodir\": no such directory" in p for p in found)
    (tmp_path / "bin").mkdir()
    (found,) = problems_of(write("t.yaml", "podNetwork: {plugin: builtin, binDir: bin}\n"), tmp_path)
    assert "podNetwork.binDir: Forbidden: binDir is for plugin: cni" in found


def _scenario(write, text: str) -> Path:
    write("topo.yaml", "name: t\nnetwork: {mode: routed}\nclients: []\n")
    return write("s.yaml", "name: s\ntopology: topo.yaml\n" + text)


def test_a_scenario_sets_the_pod_network_over_its_topology(write):
    checked = check_scenario(_scenario(write, "podNetwork: {routing: vxlan}\n"), which=shutil.which,
                             has_sctp=lambda: False)
    assert checked.problems == []
    assert checked.topology.pod_network.routing == "vxlan"
    assert checked.topology.pod_network.plugin == "builtin"


def test_a_scenario_is_checked_against_its_topology_network_mode(write, tmp_path):
    checked = check_scenario(_scenario(write, "podNetwork: {routing: host-gw}\n"), which=shutil.which,
                             has_sctp=lambda: False)
    (problem,) = checked.problems
    assert (problem.file, problem.line, problem.field) == (str(tmp_path / "s.yaml"), 3, "podNetwork.routing")
    assert "needs network mode shared" in problem.message


def test_the_command_line_wins_and_names_its_options(write, kubenet_plugins):
    path = _scenario(write, "podNetwork: {routing: vxlan}\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"plugin": "cni", "routing": "bgp"})
    assert checked.problems == []
    assert (checked.topology.pod_network.plugin, checked.topology.pod_network.routing) == ("cni", "bgp")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"routing": "host-gw", "binDir": "/nonexistent/bin"})
    fields = sorted((p.file, p.field) for p in checked.problems)
    assert fields == [("<command line>", "--cni-bin-dir")], checked.problems
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"routing": "host-gw"})
    assert [(p.file, p.field) for p in checked.problems] == [("<command line>", "--routing")]


def test_the_command_line_wins_over_a_scenario_that_could_not_hold_alone(write, tmp_path):
    path = _scenario(write, "podNetwork: {routing: host-gw}\n")     # the topology is routed
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"routing": "vxlan"})
    assert checked.problems == []
    assert checked.topology.pod_network.routing == "vxlan"
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"plugin": "builtin"})     # the scenario's routing stays
    assert [(p.file, p.line, p.field) for p in checked.problems] == [
        (str(tmp_path / "s.yaml"), 3, "podNetwork.routing")]


def test_the_layers_are_checked_once_as_a_whole(write, tmp_path, own_plugin, monkeypatch):
    import testbed.spec.cniconf as cniconf

    path = _scenario(write, "podNetwork: {conf: net.conflist, binDir: bin}\n")
    read = []
    real = cniconf.load_conflist
    monkeypatch.setattr(cniconf, "load_conflist", lambda *args: read.append(args) or real(*args))
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"routing": "vxlan"})
    assert checked.problems == []
    assert read == [(str(tmp_path / "net.conflist"), (str(tmp_path / "bin"), "/usr/lib/cni"))]
    assert checked.topology.pod_network == PodNetworkSpec(
        "cni", "vxlan", str(tmp_path / "net.conflist"), str(tmp_path / "bin"))


def test_the_builtin_plugin_on_the_command_line_drops_the_topologys_cni_configuration(write, tmp_path, own_plugin):
    write("topo.yaml", "name: t\nclients: []\npodNetwork: {conf: net.conflist, binDir: bin}\n")
    path = write("s.yaml", "name: s\ntopology: topo.yaml\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False, pod_network={"plugin": "builtin"})
    assert checked.problems == []
    assert checked.topology.pod_network == PodNetworkSpec("builtin", "gateway", None, None)


def test_a_bad_cni_conf_on_the_command_line_keeps_its_own_file_and_line(write, tmp_path):
    bad = write("bad.conflist", '{"cniVersion": "9.9.9",\n "name": "n", "plugins": [{"type": "ptp"}]}')
    path = _scenario(write, "")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False, pod_network={"conf": str(bad)})
    assert [(p.file, p.line, p.field) for p in checked.problems] == [(str(bad), 1, "cniVersion")]
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"conf": str(tmp_path / "none.conflist")})
    assert [(p.file, p.line, p.field) for p in checked.problems] == [("<command line>", None, "--cni-conf")]


def test_a_captures_probe_names_a_service_that_must_exist(write):
    write("topo.yaml", "name: t\nclients: [client]\n")
    path = write("s.yaml", "name: s\ntopology: topo.yaml\nsteps:\n"
                           "  - capture: {host: w1, filter: tcp, while: {probe: tcp, from: client,\n"
                           "              to: {service: nope, nodePort: 80, node: w1}}}\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False)
    (problem,) = checked.problems
    assert problem.field == "steps[0].capture.while.to.service" and '"nope"' in problem.message


def test_the_kubenet_chain_needs_its_plugins_installed(write, tmp_path, monkeypatch):
    import testbed.spec.topology as topology

    (tmp_path / "bin").mkdir()
    for kind in ("bridge", "loopback"):
        (tmp_path / "bin" / kind).write_text("#!/bin/sh\n")
    monkeypatch.setattr(topology, "CNI_BIN_DIR", str(tmp_path / "nowhere"))
    (found,) = problems_of(write("t.yaml", "podNetwork: {plugin: cni, binDir: bin}\n"), tmp_path)
    assert found == ('t.yaml:1: podNetwork.plugin: Invalid value: "cni": the kubenet chain needs the '
                     "CNI plugins host-local, portmap, not found in [bin nowhere]: "
                     "install containernetworking-plugins "
                     "(scripts/install.sh does)")
    for kind in ("host-local", "portmap"):
        (tmp_path / "bin" / kind).write_text("#!/bin/sh\n")
    assert load_topology(tmp_path / "t.yaml").pod_network.plugin == "cni"


def test_a_plugin_that_bin_dir_implied_is_refused_at_bin_dir(write, tmp_path, monkeypatch):
    import testbed.spec.topology as topology

    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(topology, "CNI_BIN_DIR", str(tmp_path / "nowhere"))
    (found,) = problems_of(write("t.yaml", "name: t\nclients: []\npodNetwork:\n  binDir: bin\n"),
                           tmp_path)
    assert found == ('t.yaml:4: podNetwork.binDir: Invalid value: "bin": the kubenet chain needs '
                     "the CNI plugins loopback, bridge, host-local, portmap, not found in "
                     "[bin nowhere]: install containernetworking-plugins (scripts/install.sh does)")
    write("topo.yaml", "name: t\nclients: []\n")
    path = write("s.yaml", "name: s\ntopology: topo.yaml\npodNetwork: {plugin: cni}\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                             pod_network={"binDir": str(tmp_path / "bin")})
    assert [(p.file, p.line, p.field) for p in checked.problems] == [
        ("<command line>", None, "--cni-bin-dir")]      # given last, where the plugins were not


def test_a_conf_that_is_no_regular_file_and_a_bin_dir_that_is_no_directory(write, tmp_path):
    (tmp_path / "adir").mkdir()
    write("afile", "x")
    found = problems_of(write("t.yaml", "podNetwork: {conf: adir, binDir: afile}\n"), tmp_path)
    assert found == ['t.yaml:1: podNetwork.conf: Invalid value: "adir": not a regular file: adir',
                     't.yaml:1: podNetwork.binDir: Invalid value: "afile": not a directory: afile']


def test_the_builtin_plugin_needs_no_cni_plugins(write, tmp_path, monkeypatch):
    import testbed.spec.topology as topology

    monkeypatch.setattr(topology, "CNI_BIN_DIR", str(tmp_path / "nowhere"))
    topo = load_topology(write("t.yaml", "podNetwork: {plugin: builtin, routing: vxlan}\n"))
    assert (topo.pod_network.plugin, topo.pod_network.routing) == ("builtin", "vxlan")


@pytest.mark.parametrize("value", ['""', "5", "[bin]"])
def test_conf_and_bin_dir_must_be_paths(write, tmp_path, value):
    found = problems_of(write("t.yaml", f"podNetwork: {{conf: {value}, binDir: {value}}}\n"), tmp_path)
    shown = value.replace("[bin]", '["bin"]')
    assert found == [f"t.yaml:1: podNetwork.conf: Invalid value: {shown}: must be the path of a file",
                     f"t.yaml:1: podNetwork.binDir: Invalid value: {shown}: must be the path of a "
                     "directory"]
