"""Acts: the routing modes' agents on a cluster: where each runs, its command line, bird's
generated configuration, and whether it has done its work (emu/controlplane.py starts, kills,
restarts and waits for them as for any agent).

- host-gw and vxlan: `flanneld` (testbed/agents/flanneld.py) on every node, the master
  included (it has no pod CIDR, and only reaches the others), with the node's uplink, its
  address as flannel's public IP, the cluster CIDR as flannel's Network and --ip-masq. It is
  done once its status (RUN/flanneld/NODE/flanneld.json, written by that very process) shows it
  reaching every other worker and, on a worker, holding its own lease.
- bgp: `bird` (bird2: `bird -f -c RUN/bird/HOST/bird.conf -s RUN/bird/HOST/bird.ctl`, in the
  foreground, its log the agent's) on every worker and on the gateway router, each with a
  configuration rendered here from the topology (testbed.routing.bird). A worker's bird is done
  once the gateway's kernel holds the route to its pod CIDR via its address that bird learned
  (`proto bird`); the gateway's, once it holds every worker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from testbed.emu import rundir
from testbed.net.netns import iproute_in
from testbed.net.overlay import main_routes
from testbed.routing import bird
from testbed.routing.flannel import BACKENDS
from testbed.spec.names import ifname
from testbed.spec.topology import NodeSpec, Topology

FLANNEL_MODES = BACKENDS      # the routing modes that are flannel backends
KINDS = ("flanneld", "bird")
COMMANDS = ("bird",)      # agents that are programs of their own, not `python -m` modules


@dataclass(frozen=True)
class Router:
    """The gateway router, as a host an agent (bird) runs on."""

    name: str
    role: str = "gateway"


def host(topo: Topology, kind: str, name: str) -> NodeSpec | Router:
    """The host `name` an agent of `kind` runs on: the gateway router for bird on the
    gateway, else the topology's node of that name (KeyError when there is none)."""
    if kind == "bird" and name == topo.gateway_name:
        return Router(name)
    return topo.node(name)


def hosts(topo: Topology, kind: str) -> list[str]:
    """The hosts `kind` runs on under the topology's routing mode, in the order they start
    (the gateway's bird first: the nodes' connect to it)."""
    routing = topo.pod_network.routing
    if kind == "flanneld" and routing in FLANNEL_MODES:
        return [n.name for n in topo.nodes]
    if kind == "bird" and routing == "bgp":
        return [topo.gateway_name, *(w.name for w in topo.workers)]
    return []


def refusal(topo: Topology, kind: str, host: str) -> str | None:
    """Why `kind` cannot run on `host` (None: it can)."""
    routing = topo.pod_network.routing
    if kind == "flanneld" and routing not in FLANNEL_MODES:
        return f"no flanneld runs under routing {routing} (only under host-gw and vxlan)"
    if kind == "bird" and routing != "bgp":
        return f"no bird runs under routing {routing} (only under bgp)"
    if host not in hosts(topo, kind):
        return f"no {kind} runs on {host} (it runs on {', '.join(hosts(topo, kind))})"
    return None


def argv(topo: Topology, kind: str, host: str, api: str, run_dir: Path) -> list[str]:
    """The agent's command: a module for `python -m` (flanneld), or a program (bird)."""
    if kind == "flanneld":
        node = topo.node(host)
        return ["testbed.agents.flanneld", "--api", api, "--node", host,
                "--backend", topo.pod_network.routing, "--uplink", ifname(host, "-eth0"),
                "--cluster-cidr", str(topo.cluster_cidr), "--public-ip", str(node.address),
                "--ip-masq", "--state-dir", str(rundir.flanneld_directory(run_dir, host))]
    if kind == "bird":
        return ["bird", "-f", "-c", str(rundir.bird_config(run_dir, host)),
                "-s", str(rundir.bird_socket(run_dir, host))]
    raise ValueError(kind)


def bird_config(topo: Topology, host: str) -> str:
    if host == topo.gateway_name:
        return bird.gateway_config(host, topo.master.gateway, topo.node_cidr, topo.cluster_cidr)
    node = topo.node(host)
    return bird.node_config(host, node.address, node.gateway, node.pod_cidr)


def prepare(topo: Topology, kind: str, host: str, run_dir: Path) -> None:
    """What the agent needs before it starts: its directory, and bird its configuration."""
    if kind == "flanneld":
        rundir.flanneld_directory(run_dir, host).mkdir(parents=True, exist_ok=True)
    elif kind == "bird":
        rundir.bird_directory(run_dir, host).mkdir(parents=True, exist_ok=True)
        rundir.bird_config(run_dir, host).write_text(bird_config(topo, host))


# -- whether they did their work --------------------------------------------------------------

def learned_routes(gateway_pid: int) -> dict[IPv4Network, set[IPv4Address]]:
    """The routes bird wrote into the gateway's main table: prefix -> next hops."""
    out: dict[IPv4Network, set[IPv4Address]] = {}
    with iproute_in(gateway_pid) as ipr:
        for route in main_routes(ipr):
            if route.proto == bird.KERNEL_PROTO:
                out.setdefault(route.dst, set()).update(route.hops)
    return out


def bgp_missing(topo: Topology, gateway_pid: int, nodes: list[str]) -> list[str]:
    """Of the workers `nodes`, those whose pod CIDR the gateway has not learned via their
    address."""
    learned = learned_routes(gateway_pid)
    return [n for n in nodes
            if topo.node(n).address not in learned.get(topo.node(n).pod_cidr, set())]


def flanneld_behind(topo: Topology, node: str, status: rundir.FlanneldStatus | None) -> str | None:
    """Why the flanneld of `node` is not done yet (None: done), given the status its running
    process wrote (None: none of its own yet)."""
    if status is None:
        return "no status of its own yet"
    missing = [w.name for w in topo.workers if w.name != node and w.name not in status.remotes]
    if missing:
        return f"not reaching {', '.join(missing)}" + "".join(
            f" ({n}: {status.ignored[n]})" for n in missing if n in status.ignored)
    if topo.node(node).role == "worker" and not status.subnet:
        return "no lease of its own yet (its Node's annotations)"
    return None
