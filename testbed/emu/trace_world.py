"""Acts: reads what every host and pod of a running cluster holds now, for the static trace.

Owns `collect_world(cluster) -> World` (testbed.trace.static): per Mininet host (nodes, master,
gateway, clients) its interfaces, addresses and link indexes (one `ip -j addr`), routes (`ip -j
route`), and its netfilter dumps: `iptables-save` and `ipset save` (what iptables-mode
kube-proxy and policy agents leave), `nft list table ip kube-proxy` and `nft list table ip
kube-netpol` (nftables modes; empty where there is no such table); per worker its bridge
(cbr0), its kube-proxy and NetworkPolicy modes (testbed.emu.inspect) and the host-side veth of
each of its pods (the node's interface whose index is the pod's eth0 `link_index`); per running
pod with an address its interfaces and routes, read in the pod's namespace (pods hold no
rules). Every command is run with testbed.net.run.run(argv, netns=pid); nothing is changed.
"""

from __future__ import annotations

import json

from testbed.emu import inspect
from testbed.emu.network import BRIDGE
from testbed.net.run import run
from testbed.trace.static import HostState, World


def _text(argv: list[str], pid: int) -> str:
    result = run(argv, netns=pid, check=False)
    return result.stdout if result.returncode == 0 else ""


def _json(argv: list[str], pid: int) -> list[dict]:
    text = _text(argv, pid)
    if not text.strip():
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return []


def _interfaces(pid: int) -> tuple[dict[str, tuple[str, ...]], list[dict]]:
    """ifname -> its IPv4 addresses ("10.0.1.1/24"), and the `ip -j addr` entries (one per
    link, with its ifindex and link_index)."""
    links = _json(["ip", "-j", "addr"], pid)
    out = {link["ifname"]: tuple(f"{a['local']}/{a['prefixlen']}"
                                 for a in link.get("addr_info", []) if a.get("family") == "inet")
           for link in links if "ifname" in link}
    return out, links


def collect_world(cluster) -> World:
    """The World of a running cluster (module docstring)."""
    run_dir = cluster.record.directory if cluster.record is not None else None
    hosts: dict[str, HostState] = {}
    node_links: dict[str, list[dict]] = {}
    for name, host in cluster.network.hosts.items():
        interfaces, links = _interfaces(host.pid)
        node_links[name] = links
        state = HostState(
            name=name, kind=host.role, interfaces=interfaces,
            routes=tuple(_json(["ip", "-j", "route"], host.pid)),
            iptables_save=_text(["iptables-save"], host.pid),
            ipset_save=_text(["ipset", "save"], host.pid),
            nft_proxy=_text(["nft", "list", "table", "ip", "kube-proxy"], host.pid),
            nft_netpol=_text(["nft", "list", "table", "ip", inspect.POLICY_TABLE], host.pid))
        if host.role == "worker":
            state.bridge = BRIDGE if BRIDGE in interfaces else None
            state.proxy_mode = inspect.proxy_mode(run_dir, name, host.pid)
            state.netpol_mode = inspect.netpol_mode(run_dir, name, host.pid)
        hosts[name] = state
    for pod in cluster.all_pods():
        if pod.pid is None or pod.ip is None or pod.node not in hosts:
            continue
        interfaces, links = _interfaces(pod.pid)
        if not any(interfaces.values()):
            continue                        # gone between the listing and now
        hosts[pod.key] = HostState(name=pod.key, kind="pod", interfaces=interfaces,
                                   routes=tuple(_json(["ip", "-j", "route"], pod.pid)),
                                   node=pod.node)
        eth0 = next((link for link in links if link.get("ifname") == "eth0"), None)
        index = eth0.get("link_index") if eth0 else None
        veth = next((link["ifname"] for link in node_links[pod.node]
                     if index is not None and link.get("ifindex") == index), None)
        if veth is not None:
            node = hosts[pod.node]
            node.pod_veths = {**node.pod_veths, pod.key: (str(pod.ip), veth)}
    return World(hosts)
