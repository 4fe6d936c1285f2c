"""Acts: what kube-proxy left in a node's kernel, as the article's screenshots show it.

`nat_table(pid, mode)` is `iptables -S -t nat` in the node's namespace (iptables and userspace
modes) or `nft list table ip kube-proxy` (nftables mode); `conntrack_table(pid)` is
`conntrack -L`. `proxy_mode(run_dir, node)` reads the mode the node's kube-proxy reported in
`RUN/proxy/NODE/kube-proxy.json (emu/rundir.py's ProxyStatus)`, falling back to what the kernel holds. `node_pid(run_dir,
node)` finds a node's namespace-holding shell in a run record ("worker w1" entries), so the
same functions serve the Mininet CLI (which knows the pids) and `testbed nat` from another
terminal (which has only the record). Every command is an argument list run with
testbed.net.run.run(argv, netns=pid).
"""

from __future__ import annotations

from pathlib import Path

from testbed.emu.rundir import read_proxy_status
from testbed.net.run import CommandError, run

MODES = ("iptables", "nftables", "userspace")
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
