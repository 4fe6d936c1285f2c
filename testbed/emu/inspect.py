"""Acts: what kube-proxy left in a node's kernel, as the article's screenshots show it.

`nat_table(pid, mode)` is `iptables -S -t nat` in the node's namespace (iptables and userspace
modes) or `nft list table ip kube-proxy` (nftables mode); `conntrack_table(pid)` is
`conntrack -L`. `proxy_mode(run_dir, node)` reads the mode the node's kube-proxy reported in
`RUN/proxy/NODE/kube-proxy.json (emu/rundir.py's ProxyStatus)`, falling back to what the kernel holds. `node_pid(run_dir,
node)` finds a node's namespace-holding shell in a run record ("worker w1" entries), so the
same functions serve the Mininet CLI (which knows the pids) and `testbed nat` from another
terminal (which has only the record). Every command is an argument list run with
testbed.net.run.run(argv, netns=pid).

The NetworkPolicy agent's rules likewise: `netpol_rules(pid, mode)` is, in iptables mode,
`iptables-save -t filter` cut to the agent's chains (KUBE-NWPLCY-*, KUBE-POD-FW-*) and the
rules that jump to them, then `ipset list` of its sets (KUBE-NP-*); in nftables mode
`nft list table ip kube-netpol`. `netpol_mode(run_dir, node)` reads the mode from the agent's
`RUN/netpol/NODE/netpol.json`, else the topology the cluster was built with, else the kernel.

The routing modes' state: `bgp_text(run_dir, host)` is bird's `show protocols` (the BGP
sessions) and `show route` (what it announces or learned) through birdc on the host's control
socket (`RUN/bird/HOST/bird.ctl`); `links_text(pid)` is `ip -d link` (the VXLAN device's VNI,
port, local address and learning, and every link's MTU); `fdb_text(pid)` the FDB of flannel.1
(where each remote VTEP's frames go) or, without one, of cbr0; `neigh_text(pid)` `ip neigh`.
"""

from __future__ import annotations

from pathlib import Path

from testbed.emu.rundir import bird_socket, read_cluster_info, read_netpol_status, read_proxy_status
from testbed.net.run import CommandError, run
from testbed.netpol import iptables as netpol_iptables
from testbed.netpol import nftables as netpol_nftables
from testbed.routing.flannel import device_name
from testbed.spec.cniconf import BRIDGE
from testbed.spec.topology import POLICY_MODES

MODES = ("iptables", "nftables", "userspace")
# The NetworkPolicy agent's names, as its renderers make them.
POLICY_CHAINS = (netpol_iptables.POLICY_PREFIX, netpol_iptables.POD_PREFIX)
POLICY_SETS = netpol_iptables.SET_PREFIX
POLICY_TABLE = netpol_nftables.TABLE
ROLES = ("worker", "master", "gateway", "client")


class InspectError(RuntimeError):
    """The node or its tables cannot be shown; the message says why."""


def node_pid(run_dir: Path, node: str) -> int:
    """The pid of the shell holding `node`'s namespace, from the run's record."""
    from testbed.emu.record import Record, alive

    record = Record.load(Path(run_dir))
    names = []
    for entry in record.procs.values():
        role, _, name = entry.what.partition(" ")
        if role in ROLES and " " not in name:
            names.append(name)
            if name == node and alive(entry.pid, entry.start):
                return entry.pid
    raise InspectError(f"no running node {node!r} in {run_dir} (nodes: {', '.join(sorted(names))})")


def proxy_mode(run_dir: Path | None, node: str, pid: int | None = None) -> str:
    """The kube-proxy mode of `node`: its status file, else guessed from the kernel."""
    if run_dir is not None:
        status = read_proxy_status(Path(run_dir), node)
        if status is not None and status.mode in MODES:
            return status.mode
    if pid is not None:
        found = run(["nft", "list", "tables"], netns=pid, check=False).stdout
        if "table ip kube-proxy" in found:
            return "nftables"
        nat = run(["iptables", "-S", "-t", "nat"], netns=pid, check=False).stdout
        if "KUBE-PORTALS-CONTAINER" in nat:
            return "userspace"
    return "iptables"


def nat_argv(mode: str, chain: str | None = None) -> list[str]:
    """The command that shows kube-proxy's NAT rules in `mode` (optionally one chain)."""
    if mode == "nftables":
        return ["nft", "list", "chain", "ip", "kube-proxy", chain] if chain else \
            ["nft", "list", "table", "ip", "kube-proxy"]
    return ["iptables", "-S", *([chain] if chain else []), "-t", "nat"]


def nat_table(pid: int, mode: str, chain: str | None = None) -> str:
    """`iptables -S -t nat` (or the kube-proxy nftables table) of the namespace of `pid`."""
    argv = nat_argv(mode, chain)
    try:
        return run(argv, netns=pid).stdout
    except CommandError as err:
        raise InspectError(f"{' '.join(argv)}: {err.output.strip()}") from err


def filter_table(pid: int) -> str:
    """`iptables -S -t filter`: KUBE-SERVICES rejects, KUBE-FORWARD, the firewall chains."""
    return run(["iptables", "-S", "-t", "filter"], netns=pid).stdout


def conntrack_argv(protocol: str | None = None, dst: str | None = None) -> list[str]:
    argv = ["conntrack", "-L"]
    if protocol:
        argv += ["-p", protocol]
    if dst:
        argv += ["--orig-dst", dst]
    return argv


def conntrack_table(pid: int, protocol: str | None = None, dst: str | None = None) -> str:
    """`conntrack -L` in the namespace of `pid`; the summary line conntrack prints is dropped."""
    argv = conntrack_argv(protocol, dst)
    res = run(argv, netns=pid, check=False)
    if res.returncode != 0 and "flow entries" not in res.stderr:
        raise InspectError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


# -- the NetworkPolicy agent's rules -----------------------------------------------------------

def netpol_mode(run_dir: Path | None, node: str, pid: int | None = None) -> str:
    """The NetworkPolicy agent's mode on `node` (POLICY_MODES): what its status file says, else
    the node's policy mode in the topology the cluster was built with (cluster.json), else what
    the kernel holds."""
    if run_dir is not None:
        status = read_netpol_status(Path(run_dir), node)
        if status is not None and status.mode in POLICY_MODES:
            return status.mode
        topology = read_cluster_info(Path(run_dir)).get("topology")
        workers = topology.get("workers") if isinstance(topology, dict) else None
        for worker in workers if isinstance(workers, list) else []:
            if isinstance(worker, dict) and worker.get("name") == node \
                    and worker.get("policy_mode") in POLICY_MODES:
                return worker["policy_mode"]
    if pid is not None:
        found = run(["nft", "list", "tables"], netns=pid, check=False).stdout
        if f"table ip {POLICY_TABLE}" in found:
            return "nftables"
    return "iptables"


def is_policy_chain(chain: str) -> bool:
    return chain.startswith(POLICY_CHAINS)


def policy_filter_rules(save: str) -> str:
    """Of `iptables-save -t filter` text, the NetworkPolicy agent's part: its chains' heads
    and rules, and the rules of other chains (FORWARD, INPUT, ...) that jump to them, in the
    order iptables-save gives them, under the table's header and before its COMMIT."""
    out = []
    for line in save.splitlines():
        words = line.split()
        if not words or line.startswith("#"):
            continue
        if words[0] in ("*filter", "COMMIT"):
            out.append(line)
        elif words[0].startswith(":") and is_policy_chain(words[0][1:]):
            out.append(line)
        elif words[0] in ("-A", "-I") and len(words) > 1 and (
                is_policy_chain(words[1])
                or any(w in ("-j", "-g", "--jump", "--goto") and i + 1 < len(words)
                       and is_policy_chain(words[i + 1]) for i, w in enumerate(words))):
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def policy_sets(listing: str) -> str:
    """Of `ipset list` text, the sets the NetworkPolicy agent made (KUBE-NP-*), whole."""
    blocks, current = [], None
    for line in listing.splitlines():
        if line.startswith("Name: "):
            current = [] if line[len("Name: "):].strip().startswith(POLICY_SETS) else None
            if current is not None:
                blocks.append(current)
        if current is not None and line.strip():
            current.append(line)
    return "\n\n".join("\n".join(block) for block in blocks) + ("\n" if blocks else "")


def netpol_rules(pid: int, mode: str) -> str:
    """The NetworkPolicy agent's rules in the namespace of `pid`, in `mode` (module docstring)."""
    if mode == "none":
        return "no NetworkPolicy agent runs here (network policy mode none): nothing is enforced\n"
    if mode == "nftables":
        argv = ["nft", "list", "table", "ip", POLICY_TABLE]
        result = run(argv, netns=pid, check=False)
        if result.returncode != 0:
            if "No such file" in result.stderr:
                return (f"no table ip {POLICY_TABLE} here: no NetworkPolicy agent in nftables "
                        "mode has synced on this node\n")
            raise InspectError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout
    out = []
    for argv, pick in ((["iptables-save", "-t", "filter"], policy_filter_rules),
                       (["ipset", "list"], policy_sets)):
        try:
            out.append(pick(run(argv, netns=pid).stdout))
        except CommandError as err:
            raise InspectError(f"{' '.join(argv)}: {err.output.strip()}") from err
    return "\n".join(text for text in out if text)


# -- the routing modes ---------------------------------------------------------------------------

def bgp_text(run_dir: Path, host: str) -> str:
    """bird's BGP sessions and routes on `host` (a worker or the gateway), through birdc."""
    sock = bird_socket(Path(run_dir), host)
    if not sock.exists():
        return f"no bird runs on {host}: BGP is the bgp routing mode's (no {sock})\n"
    out = []
    for words in (["show", "protocols"], ["show", "route"]):
        argv = ["birdc", "-s", str(sock), *words]
        result = run(argv, check=False)
        if result.returncode != 0:
            text = (result.stdout + result.stderr).strip()
            return f"bird on {host} does not answer (is it running?): {' '.join(argv)}: {text}\n"
        out.append(f"$ birdc {' '.join(words)}\n{result.stdout.strip()}")
    return "\n\n".join(out) + "\n"


def links_text(pid: int) -> str:
    """`ip -d link show`: links with their details (a VXLAN device's VNI, port, local address,
    learning) and MTUs."""
    return run(["ip", "-d", "link", "show"], netns=pid).stdout


def fdb_text(pid: int) -> str:
    """The FDB of the VXLAN device flannel.1 (`bridge fdb show dev flannel.1`), or, where that
    fails (no such device), of the pod bridge (`bridge fdb show br cbr0`)."""
    for argv in (["bridge", "fdb", "show", "dev", device_name()], ["bridge", "fdb", "show", "br", BRIDGE]):
        result = run(argv, netns=pid, check=False)
        if result.returncode == 0:
            return f"$ {' '.join(argv)}\n{result.stdout}"
    raise InspectError(f"{' '.join(argv)}: {result.stderr.strip()}")


def neigh_text(pid: int) -> str:
    """`ip neigh show`: the neighbour (ARP) entries, flannel.1's permanent ones among them."""
    return run(["ip", "neigh", "show"], netns=pid).stdout
