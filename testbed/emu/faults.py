"""Acts: faults and link conditions on a running cluster, each undone by its counterpart.

* `link(node, up)`: the node's uplink down or up (its pods go dark with it).
* `node_state(node, up)`: a whole node down (uplink down, kubelet, kube-proxy, its
  NetworkPolicy agent and its routing agent, flanneld or bird, stopped, so it stops
  heart-beating; the rules and routes they made stay) or back up.
* `partition(groups)` / `heal()`: DROP rules in the gateway's FORWARD chain between the node
  addresses and pod CIDRs of each pair of groups (bridged traffic on a shared LAN passes the
  same chain through bridge netfilter); `heal` removes exactly the rules it added.
* `readiness(pod, ok)`: the pod drops its node's probe traffic (from the node's cbr0
  address), so httpGet and tcpSocket probes fail as if the pod were unhealthy.
* `shape(node, rate=, delay=, loss=)`: tc on the node's uplink. Rate uses TBF, which every
  kernel here has; delay and loss need the netem qdisc, and where the kernel lacks it the
  step fails with a message naming netem instead of silently leaving the link unshaped.

Everything runs inside the cluster's namespaces through the argv runner.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from testbed.emu import routingagents
from testbed.emu.controlplane import has_netpol
from testbed.emu.network import BRIDGE
from testbed.net.run import CommandError, run
from testbed.spec.names import ifname

PARTITION_COMMENT = "testbed partition"
# The xtables lock is one file for every namespace on the machine: with many kube-proxies
# syncing, a rule change may wait its turn for a while.
XTABLES_WAIT = 30


class FaultError(RuntimeError):
    pass


def uplink(node: str) -> str:
    return ifname(node, "-eth0")


def _gateway_of(cluster, name: str) -> str:
    for host in (*cluster.topo.nodes, *cluster.topo.clients):
        if host.name == name:
            return str(host.gateway)
    raise FaultError(f"no node or client is named {name!r}")


def link(cluster, node: str, up: bool) -> str:
    pid = cluster.network.pid(node)
    gateway = _gateway_of(cluster, node)
    run(["ip", "link", "set", uplink(node), "up" if up else "down"], netns=pid)
    if not up:
        cluster.links_down.add(node)
    else:
        cluster.links_down.discard(node)
        # The kernel dropped the default route with the link; a real node's network manager
        # would put it back, and so does this.
        run(["ip", "route", "replace", "default", "via", gateway], netns=pid)
    return f"{uplink(node)} on {node} {'up' if up else 'down'}"


def _node_agents(cluster, node: str) -> tuple[str, ...]:
    """The agents a worker runs: kubelet, kube-proxy, netpol unless its policy mode is none,
    and its routing mode's agent (flanneld or bird), if any."""
    return (("kubelet", "kube-proxy") + (("netpol",) if has_netpol(cluster.topo.node(node)) else ())
            + tuple(k for k in routingagents.KINDS if node in routingagents.hosts(cluster.topo, k)))


def _and(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}"


def node_state(cluster, node: str, up: bool) -> str:
    if node not in {w.name for w in cluster.topo.workers}:
        raise FaultError(f"{node} is not a worker")
    agents = _node_agents(cluster, node)
    if up:
        link(cluster, node, True)
        for agent in agents:
            cluster.cp.restart(agent, node)
        return f"{node} up: uplink up, {_and(agents)} started"
    for agent in agents:
        agent_state = cluster.cp.agents.get(f"{agent}-{node}")
        if agent_state is not None and agent_state.running():
            cluster.cp.kill(agent, node)
    link(cluster, node, False)
    return f"{node} down: {_and(agents)} stopped, uplink down"


def _networks(cluster, name: str) -> list[IPv4Network]:
    topo = cluster.topo
    for node in topo.nodes:
        if node.name == name:
            nets = [IPv4Network(f"{node.address}/32")]
            return nets + ([node.pod_cidr] if node.pod_cidr else [])
    for client in topo.clients:
        if client.name == name:
            return [IPv4Network(f"{client.address}/32")]
    raise FaultError(f"no node or client is named {name!r}")


def _partition_rules(cluster, groups: list[list[str]]) -> list[list[str]]:
    rules = []
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            for src in (n for name in a for n in _networks(cluster, name)):
                for dst in (n for name in b for n in _networks(cluster, name)):
                    for s, d in ((src, dst), (dst, src)):
                        rules.append(["FORWARD", "-s", str(s), "-d", str(d), "-m", "comment",
                                      "--comment", PARTITION_COMMENT, "-j", "DROP"])
    return rules


def partition(cluster, groups: list[list[str]]) -> str:
    gw = cluster.network.pid(cluster.topo.gateway_name)
    rules = _partition_rules(cluster, groups)
    for rule in rules:
        run(["iptables", "-w", str(XTABLES_WAIT), "-I", *rule], netns=gw)
    cluster.partitions = cluster.partitions + rules
    cluster.partition_groups = cluster.partition_groups + [[list(g) for g in groups]]
    # Established connections must not slip through on old conntrack entries.
    run(["conntrack", "-F"], netns=gw, check=False)
    return f"{' | '.join(','.join(g) for g in groups)}: {len(rules)} DROP rules on {cluster.topo.gateway_name}"


def _delete_rule(rule: list[str], netns: int, what: str) -> None:
    """`iptables -D rule` in `netns`; a rule already gone is fine."""
    result = run(["iptables", "-w", str(XTABLES_WAIT), "-D", *rule], netns=netns, check=False)
    if result.returncode != 0 and "does a matching rule exist" not in result.stderr:
        raise FaultError(f"could not remove {what}: {result.stderr.strip()}")


def heal(cluster) -> str:
    gw = cluster.network.pid(cluster.topo.gateway_name)
    rules = cluster.partitions
    for rule in rules:
        _delete_rule(rule, gw, "a partition rule")
    cluster.partitions = []
    cluster.partition_groups = []
    return f"removed {len(rules)} partition rules"


def cut_off(cluster) -> dict[str, str]:
    """The workers these faults have cut off from the API server (node -> how): an uplink
    down, or a partition that put the master in another group."""
    master = cluster.topo.master.name
    if master in cluster.links_down:
        return {w.name: "the master's uplink is down" for w in cluster.topo.workers}
    out = {node: "its uplink is down" for node in cluster.links_down}
    for groups in cluster.partition_groups:
        home = next((g for g in groups if master in g), None)
        if home is None:
            continue
        for group in groups:
            if group is not home:
                for node in group:
                    out.setdefault(node, "partitioned from the master")
    return out


def readiness(cluster, pod, ok: bool) -> str:
    """Make `pod` (a PodView) fail or pass its node's httpGet/tcpSocket probes."""
    node = cluster.topo.node(pod.node)
    rule = ["INPUT", "-s", str(node.bridge_address), "-p", "tcp", "-m", "comment", "--comment",
            "testbed readiness fault", "-j", "DROP"]
    if ok:
        _delete_rule(rule, pod.pid, "the readiness fault")
        return f"{pod.key} answers its node's probes again"
    run(["iptables", "-w", str(XTABLES_WAIT), "-I", *rule], netns=pod.pid)
    return f"{pod.key} drops probes from {pod.node} ({node.bridge_address})"


def shape(cluster, node: str, rate: str | None = None, delay: str | None = None,
          loss: str | None = None) -> str:
    """Condition `node`'s uplink; `rate` None, `delay` None and `loss` None clears it."""
    pid = cluster.network.pid(node)
    dev = uplink(node)
    run(["tc", "qdisc", "del", "dev", dev, "root"], netns=pid, check=False)
    if rate is None and delay is None and loss is None:
        return f"{dev} on {node}: no shaping"
    try:
        if delay is not None or loss is not None:
            argv = ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem"]
            argv += ["delay", delay] if delay else []
            argv += ["loss", loss] if loss else []
            argv += ["rate", rate] if rate else []
            run(argv, netns=pid)
        else:
            run(["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit",
                 "latency", "50ms"], netns=pid)
    except CommandError as err:
        if "netem" in " ".join(err.argv) and ("unknown" in err.output.lower() or "not supported" in err.output.lower()
                                               or "no such file" in err.output.lower()):
            raise FaultError(f"the kernel has no netem qdisc (sch_netem), which delay and loss need: "
                             f"{err.output.strip()}") from None
        raise FaultError(str(err)) from None
    shown = run(["tc", "qdisc", "show", "dev", dev], netns=pid).stdout.strip()
    return f"{dev} on {node}: {shown}"


def inspect(cluster, what: str, node: str) -> str:
    """Text of a node's NAT rules (iptables -S, or kube-proxy's nftables table in that mode),
    NetworkPolicy rules (emu/inspect.netpol_rules, in its agent's mode), nftables ruleset,
    conntrack table, routes or bridge ports; bird's BGP sessions and routes, links with their
    details and MTUs, the VXLAN device's FDB, or the neighbour entries."""
    from testbed.emu import inspect as tables

    pid = cluster.network.pid(node)
    if what == "nat":
        return tables.nat_table(pid, tables.proxy_mode(cluster.record.directory, node, pid)).strip()
    if what == "netpol":
        return tables.netpol_rules(pid, tables.netpol_mode(cluster.record.directory, node, pid)).strip()
    if what == "conntrack":
        return tables.conntrack_table(pid).strip()
    if what == "bgp":
        return tables.bgp_text(cluster.record.directory, node).strip()
    if what in ("links", "fdb", "neigh"):
        show = {"links": tables.links_text, "fdb": tables.fdb_text, "neigh": tables.neigh_text}[what]
        return show(pid).strip()
    argv = {"nft": ["nft", "list", "ruleset"], "routes": ["ip", "route"],
            "bridge": ["bridge", "link", "show", "master", BRIDGE]}[what]
    result = run(argv, netns=pid, check=False)
    return (result.stdout + result.stderr).strip()
