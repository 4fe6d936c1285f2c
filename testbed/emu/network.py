"""Acts: builds the cluster's Mininet network from a Topology: nodes, gateway router, clients.

Every node, the gateway and every client is a Mininet host (a shell in its own network
namespace). Links are veth pairs that Mininet creates straight inside the two namespaces, so
nothing is ever made in the machine's own namespace. After Mininet has made the links, the
rest is configured over netlink from this process (pyroute2 sockets bound to each namespace):
the gateway's forwarding and, under routing `gateway` (the article's), its static routes to
every pod CIDR (under host-gw and vxlan it has none: flanneld on the nodes routes pods; under
bgp it learns them from the nodes' bird, emu/controlplane.py), each worker's cbr0 bridge with
the pod network's MTU (1450 under vxlan; under plugin cni the CNI bridge plugin makes cbr0
itself), default routes, and the per-namespace sysctls. The machine's own sysctls are never
written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from testbed.emu.record import Record
from testbed.net.netns import iproute_in, write_sysctl
from testbed.spec.cniconf import BRIDGE  # the name every Kubernetes networking article shows
from testbed.spec.names import ifname
from testbed.spec.topology import Topology

log = logging.getLogger(__name__)


class NetworkError(RuntimeError):
    pass


@dataclass
class Host:
    """A Mininet host of the cluster: its name, role, the pid holding its namespace, its address."""

    name: str
    role: str            # master, worker, gateway, client
    pid: int
    address: IPv4Address | None
    mn: object = field(repr=False, default=None)   # the mininet Host, for the CLI


def _mininet():
    from mininet.net import Mininet
    from mininet.node import Host as MnHost
    # Mininet.init() would call fixLimits(), which raises the *machine's* sysctls (buffer sizes,
    # ARP cache, file limits). This machine is shared and the testbed changes nothing outside
    # its own namespaces, so mark Mininet as initialised and skip it.
    Mininet.inited = True
    return Mininet, MnHost


def _attached_host():
    """Mininet's Host whose shell joins a running host's namespaces instead of new ones."""
    from mininet.node import Host as MnHost

    class AttachedHost(MnHost):
        def __init__(self, name: str, target: int, **params):
            self.target = target
            super().__init__(name, inNamespace=False, **params)

        def startShell(self, mnopts=None):  # noqa: N802 - Mininet's name
            # mnexec -c close fds, -d setsid, -a PID: the network and mount namespaces of PID
            super().startShell(mnopts=f"-cda{self.target}")

    return AttachedHost


class ClusterNetwork:
    """The built network: `hosts` by name; `stop()` ends it."""

    def __init__(self, topo: Topology, record: Record):
        self.topo = topo
        self.record = record
        self.hosts: dict[str, Host] = {}
        self.net = None
        self.attached = False   # the hosts belong to another process (attach())

    # -- building -------------------------------------------------------------------------

    def build(self) -> None:
        Mininet, MnHost = _mininet()
        topo = self.topo
        self.net = net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                                 autoStaticArp=False, waitConnected=False)
        gw = self._add_host(topo.gateway_name, "gateway", topo.master.gateway, MnHost)
        for node in topo.nodes:
            self._add_host(node.name, node.role, node.address, MnHost)
        for client in topo.clients:
            self._add_host(client.name, "client", client.address, MnHost)

        shared = topo.network_mode == "shared"
        gw_ports: list[str] = []
        for index, node in enumerate(topo.nodes):
            gw_port = ifname(gw.name, f"-eth{index}")
            gw_ip = None if shared else f"{node.gateway}/{node.subnet.prefixlen}"
            net.addLink(node.name, gw.name, intfName1=ifname(node.name, "-eth0"), intfName2=gw_port,
                        params1={"ip": f"{node.address}/{node.subnet.prefixlen}"},
                        params2={"ip": gw_ip} if gw_ip else {})
            gw_ports.append(gw_port)
        client_ports: list[str] = []
        for index, client in enumerate(topo.clients):
            gw_port = ifname(gw.name, f"-eth{len(topo.nodes) + index}")
            net.addLink(client.name, gw.name, intfName1=ifname(client.name, "-eth0"), intfName2=gw_port,
                        params1={"ip": f"{client.address}/{client.subnet.prefixlen}"})
            client_ports.append(gw_port)
        net.build()
        self._configure_gateway(gw, gw_ports if shared else [], client_ports)
        for node in topo.nodes:
            self._configure_node(node)
        for client in topo.clients:
            with iproute_in(self.hosts[client.name].pid) as ipr:
                ipr.route("replace", dst="0.0.0.0/0", gateway=str(client.gateway))

    def _add_host(self, name: str, role: str, address, host_cls) -> Host:
        mn_host = self.net.addHost(name, cls=host_cls, ip=None)
        pid = mn_host.pid
        self.record.add_process(pid, f"{role} {name}")
        host = Host(name, role, pid, address, mn_host)
        self.hosts[name] = host
        return host

    def _configure_gateway(self, gw: Host, lan_ports: list[str], client_ports: list[str]) -> None:
        topo = self.topo
        write_sysctl(gw.pid, "net.ipv4.ip_forward", "1")
        # Pod-to-pod traffic must visibly cross the router: no redirects that would let nodes
        # on a shared LAN shortcut it.
        write_sysctl(gw.pid, "net.ipv4.conf.all.send_redirects", "0")
        write_sysctl(gw.pid, "net.ipv4.conf.default.send_redirects", "0")
        with iproute_in(gw.pid) as ipr:
            if lan_ports:
                self._bridge(ipr, "br-nodes", lan_ports, topo.master.gateway, topo.node_cidr)
            if client_ports:
                self._bridge(ipr, "br-clients", client_ports, topo.clients[0].gateway, topo.client_cidr)
            if topo.pod_network.routing == "gateway":
                for node in topo.workers:
                    ipr.route("replace", dst=str(node.pod_cidr), gateway=str(node.address))

    @staticmethod
    def _bridge(ipr, name: str, ports: list[str], address: IPv4Address, subnet: IPv4Network,
                mtu: int | None = None) -> None:
        ipr.link("add", ifname=name, kind="bridge", **({"mtu": mtu} if mtu else {}))
        (index,) = ipr.link_lookup(ifname=name)
        for port in ports:
            (port_index,) = ipr.link_lookup(ifname=port)
            ipr.link("set", index=port_index, master=index, state="up")
        ipr.addr("add", index=index, address=str(address), prefixlen=subnet.prefixlen)
        ipr.link("set", index=index, state="up")

    def _configure_node(self, node) -> None:
        host = self.hosts[node.name]
        pid = host.pid
        if node.role == "worker":
            write_sysctl(pid, "net.ipv4.ip_forward", "1")
            # Service traffic between pods on one bridge must pass iptables (and hairpin needs
            # it too): must match the pod ports' hairpin_mode set in pods.py.
            try:
                write_sysctl(pid, "net.bridge.bridge-nf-call-iptables", "1")
            except FileNotFoundError as err:
                raise NetworkError("bridge netfilter is missing: load it with `modprobe br_netfilter`"
                                   " (scripts/install.sh does)") from err
        with iproute_in(pid) as ipr:
            ipr.route("replace", dst="0.0.0.0/0", gateway=str(node.gateway))
            if node.role == "worker" and self.topo.pod_network.plugin != "cni":
                # must match the MTU the kubelet gives the pods' veths (--mtu)
                self._bridge(ipr, BRIDGE, [], node.bridge_address, node.pod_cidr,
                             self.topo.pod_network.mtu)

    # -- attached to a cluster another process runs ------------------------------------------

    @classmethod
    def attach(cls, topo: Topology, record: Record, hosts: dict[str, dict]) -> ClusterNetwork:
        """The network of a running cluster, from its cluster.json `hosts`; nothing is built.
        `mininet()` makes Mininet host objects whose shells join those namespaces."""
        network = cls(topo, record)
        for name, h in hosts.items():
            address = IPv4Address(h["address"]) if h.get("address") else None
            network.hosts[name] = Host(name, h["role"], int(h["pid"]), address)
        network.attached = True
        return network

    def mininet(self):
        """A Mininet object for Mininet's CLI, over the running hosts: each host gets a shell
        of its own inside that host's namespaces (`mnexec -a PID`, as Mininet's `m` utility
        attaches), and its interfaces by name. `stop()` ends only those shells."""
        if self.net is not None:
            return self.net
        from mininet.link import Intf

        Mininet, _ = _mininet()
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        for host in self.hosts.values():
            host.mn = self.net.addHost(host.name, cls=_attached_host(), target=host.pid)
            with iproute_in(host.pid) as ipr:
                names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
            for name in names:
                if name != "lo":
                    Intf(name, node=host.mn)
        return self.net

    # -- running --------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return self.hosts[name].pid

    def stop(self) -> None:
        """End the hosts' shells (their namespaces, links and routes go with them). Attached
        to another process's cluster, end only the shells this process started."""
        if self.net is None:
            return
        for host in self.hosts.values():
            mn_host = host.mn
            if mn_host is None:
                continue
            try:
                mn_host.terminate()
            except Exception as err:  # a host already gone is fine
                log.debug("terminate %s: %s", host.name, err)
            host.mn = None
            if not self.attached:
                self.record.forget(host.pid)
        self.net = None
