"""The routing modes' agents in the cluster, without root (emu/routingagents.py,
emu/controlplane.py, emu/faults.py, scenario preflight): where flanneld and bird run under
each mode, their command lines and bird's generated configuration, the refusals, what a node
fault stops, how the control plane waits for flanneld (a status written by hand for this
test's own process), and the scenario checks that name the agents."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest

from testbed.emu import routingagents, rundir
from testbed.emu.controlplane import AGENTS, Agent, ControlPlane, ControlPlaneError
from testbed.emu.record import Record, start_time
from testbed.emu.routingagents import Router
from testbed.scenario.preflight import check_scenario
from testbed.spec.topology import PodNetworkSpec, load_topology, with_pod_network

from .conftest import ROOT

ARTICLE = ROOT / "topologies" / "article.yaml"
TWO_NODE = ROOT / "topologies" / "two-node.yaml"


def topo_of(path, routing: str):
    return with_pod_network(load_topology(path), PodNetworkSpec(routing=routing))


def control_plane(topo, tmp_path) -> ControlPlane:
    return ControlPlane(topo, SimpleNamespace(pid=lambda name: os.getpid()), Record(tmp_path),
                        progress=lambda text: None)


@pytest.mark.parametrize("routing, flanneld, bird", [
    ("gateway", [], []),
    ("host-gw", ["master", "node1", "node2"], []),
    ("vxlan", ["master", "node1", "node2"], []),
    ("bgp", [], ["gateway", "node1", "node2"]),
])
def test_each_mode_runs_its_agent_where_it_belongs(routing, flanneld, bird):
    topo = topo_of(ARTICLE, routing)
    assert routingagents.hosts(topo, "flanneld") == flanneld
    assert routingagents.hosts(topo, "bird") == bird
    assert set(routingagents.KINDS) <= set(AGENTS)


def test_an_agent_the_mode_has_none_of_is_refused_with_the_reason():
    assert "no flanneld runs under routing bgp" in routingagents.refusal(topo_of(ARTICLE, "bgp"), "flanneld", "node1")
    assert "no bird runs under routing vxlan" in routingagents.refusal(topo_of(ARTICLE, "vxlan"), "bird", "node1")
    bgp = topo_of(ARTICLE, "bgp")
    assert "no bird runs on master" in routingagents.refusal(bgp, "bird", "master")
    assert routingagents.refusal(bgp, "bird", "gateway") is None
    assert routingagents.refusal(topo_of(ARTICLE, "host-gw"), "flanneld", "master") is None


def test_flanneld_gets_the_nodes_uplink_address_network_and_ip_masq(tmp_path):
    topo = topo_of(TWO_NODE, "vxlan")
    cp = control_plane(topo, tmp_path)
    argv = cp._argv("flanneld", topo.node("w1"))
    assert argv == ["testbed.agents.flanneld", "--api", cp.api, "--node", "w1", "--backend", "vxlan",
                    "--uplink", "w1-eth0", "--cluster-cidr", "10.244.0.0/16", "--public-ip", "172.16.1.2",
                    "--ip-masq", "--state-dir", str(tmp_path / "flanneld" / "w1")]
    from testbed.agents.flanneld import parse_args

    args = parse_args(argv[1:])
    assert (args.backend, args.uplink, str(args.public_ip), args.ip_masq) == ("vxlan", "w1-eth0", "172.16.1.2", True)


def test_bird_runs_in_the_foreground_with_its_configuration_and_socket_in_the_run_directory(tmp_path):
    topo = topo_of(TWO_NODE, "bgp")
    cp = control_plane(topo, tmp_path)
    assert cp._argv("bird", Router("gw")) == ["bird", "-f", "-c", str(tmp_path / "bird" / "gw" / "bird.conf"),
                                              "-s", str(tmp_path / "bird" / "gw" / "bird.ctl")]
    routingagents.prepare(topo, "bird", "w2", tmp_path)
    conf = rundir.bird_config(tmp_path, "w2").read_text()
    assert "router id 172.16.2.2;" in conf and "neighbor 172.16.2.1 as 64512;" in conf
    assert "route 10.244.1.0/24 blackhole;" in conf


def test_the_gateways_bird_takes_sessions_from_the_whole_node_network():
    topo = topo_of(TWO_NODE, "bgp")
    conf = routingagents.bird_config(topo, "gw")
    assert "router id 172.16.0.1;" in conf and "neighbor range 172.16.0.0/16 as 64512;" in conf
    assert "import where net ~ [ 10.244.0.0/16+ ];" in conf


def test_the_control_plane_refuses_to_start_an_agent_the_mode_has_none_of(tmp_path):
    cp = control_plane(topo_of(TWO_NODE, "gateway"), tmp_path)
    with pytest.raises(ControlPlaneError, match="no bird runs under routing gateway"):
        cp.restart("bird", "gw")
    with pytest.raises(ControlPlaneError, match="no flanneld runs under routing gateway"):
        cp.restart("flanneld", "w1")


def test_a_node_fault_stops_and_starts_its_routing_agent(tmp_path):
    from testbed.emu.faults import _node_agents

    for routing, extra in (("vxlan", ("flanneld",)), ("bgp", ("bird",)), ("gateway", ())):
        cluster = SimpleNamespace(topo=topo_of(TWO_NODE, routing))
        assert _node_agents(cluster, "w1") == ("kubelet", "kube-proxy", "netpol", *extra)


def running(cp: ControlPlane, kind: str, node: str) -> Agent:
    agent = Agent(kind, node, cp._argv(kind, cp.topo.node(node)), os.getpid(), start_time(os.getpid()))
    cp.agents[agent.name] = agent
    return agent


def status(cp: ControlPlane, node: str, pid: int, subnet: str, remotes: dict) -> None:
    directory = rundir.flanneld_directory(cp.record.directory, node)
    directory.mkdir(parents=True, exist_ok=True)
    rundir.write_flanneld_status(directory, rundir.FlanneldStatus(
        "vxlan", node, pid, 1, 1.0, None, subnet, "0a:58:00:00:00:01", remotes))


def test_flanneld_is_waited_for_until_it_reaches_every_other_worker_and_holds_its_lease(tmp_path):
    cp = control_plane(topo_of(TWO_NODE, "vxlan"), tmp_path)
    for node in ("master", "w1"):
        running(cp, "flanneld", node)
    with pytest.raises(ControlPlaneError, match="(?s)flanneld on master: no status of its own yet; "
                                                 "w1: no status of its own yet"):
        cp.wait_flanneld(["master", "w1"], timeout=0.2)
    status(cp, "w1", os.getpid() + 1, "10.244.0.0/24", {"w2": "10.244.1.0/24"})      # a predecessor's
    status(cp, "master", os.getpid(), "", {"w1": "10.244.0.0/24"})
    with pytest.raises(ControlPlaneError, match="master: not reaching w2; w1: no status of its own"):
        cp.wait_flanneld(["master", "w1"], timeout=0.2)
    status(cp, "w1", os.getpid(), "", {"w2": "10.244.1.0/24"})
    status(cp, "master", os.getpid(), "", {"w1": "10.244.0.0/24", "w2": "10.244.1.0/24"})
    with pytest.raises(ControlPlaneError, match="w1: no lease of its own yet"):
        cp.wait_flanneld(["master", "w1"], timeout=0.2)
    status(cp, "w1", os.getpid(), "10.244.0.0/24", {"w2": "10.244.1.0/24"})
    cp.wait_flanneld(["master", "w1"], timeout=1)      # the master needs no lease


def test_a_scenario_that_kills_an_agent_its_routing_has_none_of_is_refused(write, tmp_path):
    write("topo.yaml", "name: t\nnetwork: {mode: routed}\nclients: []\n")
    path = write("s.yaml", "name: s\ntopology: topo.yaml\nsteps:\n"
                           "  - kill: {agent: bird, node: w1}\n"
                           "  - restart: {agent: bird, node: w1}\n"
                           "    when: {routing: bgp}\n"
                           "  - kill: {agent: flanneld, node: master}\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False)
    found = [(p.line, p.field, p.message) for p in checked.problems]
    assert found == [(4, "steps[0].kill.agent", 'Invalid value: "bird": no bird runs under routing '
                                                 "gateway (flanneld runs under host-gw and vxlan, bird under bgp)"),
                     (7, "steps[2].kill.agent", 'Invalid value: "flanneld": no flanneld runs under '
                                                 "routing gateway (flanneld runs under host-gw and vxlan, bird under bgp)")]
    assert check_scenario(path, which=shutil.which, has_sctp=lambda: False,
                          pod_network={"routing": "bgp"}).problems[0].field == "steps[2].kill.agent"


def test_a_scenario_names_routing_agents_on_the_hosts_they_run_on(write):
    write("topo.yaml", "name: t\nnetwork: {mode: routed}\nclients: []\npodNetwork: {routing: bgp}\n")
    path = write("s.yaml", "name: s\ntopology: topo.yaml\nsteps:\n"
                           "  - kill: {agent: bird, node: gw}\n"
                           "  - kill: {agent: bird, node: master}\n"
                           "  - inspect: {bgp: gw}\n"
                           "  - inspect: {bgp: master}\n")
    checked = check_scenario(path, which=shutil.which, has_sctp=lambda: False)
    assert [p.field for p in checked.problems] == ["steps[1].kill.node", "steps[3].inspect.bgp"]


def test_the_gateway_router_is_a_host_for_bird_only(tmp_path):
    cp = control_plane(topo_of(TWO_NODE, "bgp"), tmp_path)
    assert routingagents.host(cp.topo, "bird", "gw") == Router("gw")
    assert routingagents.host(cp.topo, "bird", "w1") == cp.topo.node("w1")
    with pytest.raises(KeyError):
        cp.restart("kubelet", "gw")        # no node of that name: the CLI says so
    with pytest.raises(KeyError):
        cp.restart("flanneld", "gw")


def test_inspect_bgp_where_no_bird_runs_says_so(tmp_path):
    from testbed.emu.inspect import bgp_text

    text = bgp_text(tmp_path, "node1")
    assert text.startswith("no bird runs on node1: BGP is the bgp routing mode's")


def test_flanneld_asks_for_a_sync_only_when_a_node_changed_what_routing_reads():
    from testbed.agents.flanneld import Flanneld
    from testbed.routing.fakes import FakeNode
    from testbed.routing.syncer import RouteSyncer

    from .test_routing_flannel import hostgw, node

    syncer = RouteSyncer(FakeNode(), hostgw(), lambda name, notes: None)
    agent = Flanneld(syncer, None, None)
    asked: list[str] = []
    agent.runner = SimpleNamespace(request=lambda: asked.append("sync"))
    on_update = agent._recording(syncer.node_changes.on_update)
    w2 = node("w2", "10.244.2.0/24", "172.16.0.3")
    on_update(w2, w2)
    assert asked == ["sync"]                       # a Node routing had not seen
    beat = {**w2, "status": {**w2["status"], "conditions": [{"type": "Ready"}]}}
    on_update(w2, beat)
    assert asked == ["sync"]                       # a heartbeat: no sync
    agent._recording(lambda obj: None)(w2)         # a handler that returns nothing (netpol's)
    assert asked == ["sync", "sync"]


def test_flanneld_writes_its_lease_once_at_the_top_of_its_status(tmp_path):
    import json

    from testbed.agents.flanneld import Flanneld
    from testbed.routing.fakes import FakeNode
    from testbed.routing.syncer import RouteSyncer

    from .test_routing_flannel import hostgw, node

    syncer = RouteSyncer(FakeNode(), hostgw(), lambda name, notes: None)
    for obj in (node("w1", "10.244.0.0/24", "172.16.0.2"), node("w2", "10.244.1.0/24", "172.16.0.3")):
        syncer.node_changes.on_add(obj)
    agent = Flanneld(syncer, None, None, state_dir=str(tmp_path))
    agent._report(syncer.sync())
    status = rundir.FlanneldStatus.from_json(json.loads((tmp_path / rundir.FLANNELD_STATUS).read_text()))
    assert (status.subnet, status.remotes, status.pid) == ("10.244.0.0/24", {"w2": "10.244.1.0/24"}, os.getpid())
    assert status.last["ok"] and "route add 10.244.1.0/24 via 172.16.0.3 dev eth0" in status.last["changes"]
    assert not {"subnet", "vtep_mac", "remotes", "ignored"} & set(status.last)


def test_flanneld_without_a_state_directory_logs_its_lease_once(caplog):
    from testbed.agents.flanneld import Flanneld
    from testbed.routing.fakes import FakeNode
    from testbed.routing.syncer import RouteSyncer

    from .test_routing_flannel import hostgw, node

    syncer = RouteSyncer(FakeNode(), hostgw(), lambda name, notes: None)
    syncer.node_changes.on_add(node("w2", "10.244.1.0/24", "172.16.0.3"))
    agent = Flanneld(syncer, None, None)
    with caplog.at_level("INFO", logger="testbed.flanneld"):
        for _ in range(3):
            agent._report(syncer.sync())
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("lease")] == [
        "lease none; reaching w2 (10.244.1.0/24)"]
