"""Acts: the cluster's processes: API server on the master; kubelet, kube-proxy and the
NetworkPolicy agent (netpol) per worker.

Each agent is a process of its own, started inside its node's network namespace and recorded
in the run record, so it can be killed and restarted on its own (`kill`, `restart`) and talks
to the API server over the emulated network, as on a real cluster. The host reaches the API
server only through its Unix socket (`RUN/apiserver.sock`), so the emulated network stays
sealed. Logs go to `RUN/logs/AGENT-NODE.log`.

The NetworkPolicy agent (testbed/agents/netpol.py) runs on each worker whose policy mode is not
`none`, in that mode; it reports each sync that applied something in `RUN/netpol/NODE/netpol.json`
(emu/rundir.py's NetpolStatus). The cluster is up only once every agent has reported its first
sync, and a restarted agent is back only once it has reported one of its own (its pid in the
status), so that the next step finds the node's policies enforced.

The routing modes' agents (emu/routingagents.py): under host-gw and vxlan, flanneld on every
node, the master included; under bgp, bird on every worker and on the gateway router (agent
kind `bird` with the gateway's name as its node). The cluster is up only once every flanneld
reaches every other worker (and a worker's holds its lease), or once the gateway has learned
every worker's pod CIDR from its bird; a restarted one is back once it has done the same.

As soon as the API server answers, the cluster DNS add-on is applied through the API like any
workload (its pod starts once a Node is Ready, while the other agents come up): a
`kube-dns` Deployment in kube-system running dnsmasq (testbed/dns/server.py) behind the
`kube-dns` Service at the tenth address of the service CIDR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.apiclient.client import ApiError, Client, Expired
from testbed.controllers.common import is_ready
from testbed.emu import routingagents, rundir
from testbed.emu.addons import dns_addon
from testbed.emu.filewatch import DirWatch
from testbed.emu.network import ClusterNetwork
from testbed.emu.record import Record, alive, end_processes
from testbed.emu.routingagents import Router
from testbed.emu.rundir import SavedPod, sandboxes
from testbed.emu.zygote import Zygote, ZygoteError
from testbed.net.run import ns_prefix
from testbed.spec.topology import NodeSpec, Topology

API_PORT = 6443
ROOT = Path(__file__).resolve().parents[2]   # the agents' working directory
# What the NetworkPolicy agents watch: a write of one of these is enforced once every running
# agent reports a resourceVersion at least the write's.
POLICY_KINDS = ("Pod", "Namespace", "NetworkPolicy")
AGENTS = ("apiserver", "kubelet", "kube-proxy", "netpol", *routingagents.KINDS)
# the agents that write a status file, and its reader (emu/rundir.py)
STATUS_READERS = {"kube-proxy": rundir.read_proxy_status, "netpol": rundir.read_netpol_status,
                  "flanneld": rundir.read_flanneld_status}


class ControlPlaneError(RuntimeError):
    pass


def has_netpol(node: NodeSpec) -> bool:
    """Whether a NetworkPolicy agent runs on `node` (a worker whose policy mode is not none)."""
    return node.role == "worker" and node.policy_mode != "none"


@dataclass
class Agent:
    kind: str
    node: str
    argv: list[str]
    pid: int | None = None
    start: int | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.node}"

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid, self.start)


class ControlPlane:
    def __init__(self, topo: Topology, network: ClusterNetwork, record: Record, progress,
                 zygote: Zygote | None = None):
        self.topo = topo
        self.zygote = zygote   # forks the Python agents (emu/zygote.py); None: each its own python
        self.network = network
        self.record = record
        self.progress = progress
        self.agents: dict[str, Agent] = {}
        self._popen: dict[int, subprocess.Popen] = {}   # agents this process started, to reap
        self.socket = rundir.api_socket(record.directory)
        self.logs = rundir.logs_directory(record.directory)
        self.api = f"http://{topo.master.address}:{API_PORT}"
        self.client = Client(f"unix://{self.socket}", timeout=10)

    # -- agents -----------------------------------------------------------------------------

    def _argv(self, kind: str, node: NodeSpec) -> list[str]:
        topo, run_dir = self.topo, str(self.record.directory)
        if kind == "apiserver":
            return ["testbed.agents.apiserver", "--listen", f"{node.address}:{API_PORT}",
                    "--unix", str(self.socket), "--state", str(rundir.api_state(self.record.directory)),
                    "--service-cidr", str(topo.service_cidr), "--cluster-name", topo.name,
                    "--api-address", f"{node.address}:{API_PORT}"]
        if kind == "kubelet":
            labels = [f"--label={k}={v}" for k, v in node.labels]
            net = topo.pod_network
            cni = ["--cni-conf", net.conf] if net.conf else []
            cni += ["--cni-bin-dir", net.bin_dir] if net.bin_dir else []
            return ["testbed.agents.kubelet", "--node", node.name, "--api", self.api, "--run-dir", run_dir,
                    "--pod-cidr", str(node.pod_cidr), "--node-ip", str(node.address),
                    "--cluster-dns", str(topo.dns_service_ip), *labels,
                    "--pod-network", net.plugin, "--mtu", str(net.mtu), *cni]
        if kind == "kube-proxy":
            return ["testbed.agents.kube_proxy", "--api", self.api, "--node", node.name,
                    "--node-ip", str(node.address), "--cluster-cidr", str(topo.cluster_cidr),
                    "--mode", node.proxy_mode, "--service-cidr", str(topo.service_cidr),
                    "--state-dir", str(rundir.proxy_directory(self.record.directory, node.name))]
        if kind == "netpol":
            return ["testbed.agents.netpol", "--api", self.api, "--node", node.name,
                    "--mode", node.policy_mode,
                    "--state-dir", str(rundir.netpol_directory(self.record.directory, node.name))]
        if kind in routingagents.KINDS:
            return routingagents.argv(topo, kind, node.name, self.api, self.record.directory)
        if kind == "cloud":
            from testbed.emu.addons import cloud_argv
            return cloud_argv(topo, self.api)
        raise ValueError(kind)

    def start_agent(self, kind: str, node: NodeSpec | Router) -> Agent:
        if kind == "netpol" and not has_netpol(node):
            raise ControlPlaneError(f"no NetworkPolicy agent on {node.name}: its network policy "
                                    "mode is none")
        if kind in routingagents.KINDS and (why := routingagents.refusal(self.topo, kind, node.name)):
            raise ControlPlaneError(why)
        agent = self.agents.get(f"{kind}-{node.name}") or Agent(kind, node.name, self._argv(kind, node))
        if agent.running():
            return agent
        self.logs.mkdir(exist_ok=True)
        if kind == "kube-proxy":
            rundir.proxy_directory(self.record.directory, node.name).mkdir(parents=True, exist_ok=True)
        if kind == "netpol":
            rundir.netpol_directory(self.record.directory, node.name).mkdir(parents=True, exist_ok=True)
        if kind in routingagents.KINDS:
            routingagents.prepare(self.topo, kind, node.name, self.record.directory)
        netns = self.network.pid(node.name)
        log = rundir.agent_log(self.record.directory, agent.name)
        if kind in routingagents.COMMANDS:
            pid = self._popen_agent(ns_prefix(netns) + agent.argv, log)
        else:
            pid = self._spawn(agent.argv, netns, log)
        entry = self.record.add_process(pid, f"{kind} on {node.name}", netns=self.record.procs[netns].netns)
        agent.pid, agent.start = pid, entry.start
        self.agents[agent.name] = agent
        return agent

    def _spawn(self, argv: list[str], netns: int, log: Path) -> int:
        """Start a Python agent (`python -m` argv) from the zygote, or, when it is gone (or
        cannot fork), as a program of its own; its pid."""
        if self.zygote is not None and self.zygote.alive():
            try:
                return self.zygote.spawn(argv[0], argv[1:], netns, log, ROOT)
            except ZygoteError as err:
                with open(log, "a") as out:
                    out.write(f"testbed: {err}; starting it as a program of its own\n")
        return self._popen_agent(ns_prefix(netns) + [sys.executable, "-m", *argv], log)

    def _popen_agent(self, command: list[str], log: Path) -> int:
        """Start a program as an agent (bird; any agent when there is no zygote); its pid."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        self._popen[proc.pid] = proc
        return proc.pid

    def kill(self, kind: str, node: str, grace: float = 2.0) -> None:
        """End one agent (SIGTERM, SIGKILL after `grace`); what it set up stays, as on a real node."""
        agent = self.agents.get(f"{kind}-{node}")
        if agent is None or not agent.running():
            raise ControlPlaneError(f"no running {kind} on {node}")
        entry = self.record.procs.get(agent.pid)
        end_processes([entry] if entry else [], grace, scan_namespaces=False)
        proc = self._popen.pop(agent.pid, None)
        if proc is not None:
            proc.wait()
        self.record.forget(agent.pid)
        agent.pid = agent.start = None

    def restart(self, kind: str, node: str) -> Agent:
        return self.start_agent(kind, routingagents.host(self.topo, kind, node))

    def wait_agent(self, agent: Agent, timeout: float = 30) -> None:
        """Wait until a (re)started agent is serving: the API server answers; a NetworkPolicy
        agent has reported a sync of its own; any other agent has not died at start."""
        if agent.kind == "apiserver":
            self.wait(self._api_up, timeout, "the API server to answer", interval=0.02)
        elif agent.kind == "netpol":
            self.wait_netpol([agent.node], timeout)
        elif agent.kind == "flanneld":
            self.wait_flanneld([agent.node], timeout)
        elif agent.kind == "bird":
            self.wait_bgp(timeout, agent.node)
        else:
            self._check_alive(agent.kind, agent.node)

    # -- bring-up ---------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        master = self.topo.master
        self.progress(f"starting the API server on {master.name} ({master.address}:{API_PORT})")
        self.start_agent("apiserver", master)
        self.wait(lambda: self._api_up(), timeout, "the API server to answer", interval=0.01)
        # The add-ons are applied at once, as kubeadm applies its DNS add-on: their pods are
        # scheduled as soon as a Node is Ready and start while the other agents come up.
        self.progress("applying the DNS add-on (kube-dns)")
        self.client.apply_all(dns_addon(self.topo, self.api))
        if "ingress-nginx" in self.topo.addons:
            from testbed.emu.addons import ingress_nginx_addon
            self.progress("applying the ingress-nginx add-on")
            self.client.apply_all(ingress_nginx_addon(self.topo, self.api))
        if self.topo.lb_pool:
            from testbed.emu.addons import start_cloud
            start_cloud(self)
        policed = [node for node in self.topo.workers if has_netpol(node)]
        agents = "kubelet, kube-proxy and the NetworkPolicy agent" if policed else "kubelet and kube-proxy"
        self.progress(f"starting {agents} on {len(self.topo.workers)} workers")
        for node in self.topo.workers:
            self.start_agent("kubelet", node)
            self.start_agent("kube-proxy", node)
        self._start_routing()
        if policed:
            # After kube-proxy's first sync: it puts its KUBE-FORWARD jump first in FORWARD
            # when the jump is missing, and that chain accepts marked (NodePort, hairpin)
            # traffic; the policy agent's jump must come before it, so it is inserted after.
            # Each node's agent starts as soon as its own kube-proxy has synced.
            waiting = list(policed)

            def started() -> bool:
                for node in [n for n in waiting if self._proxy_synced(n.name)]:
                    self.start_agent("netpol", node)
                    waiting.remove(node)
                return not waiting

            self.wait(started, timeout, lambda: "kube-proxy's first sync on "
                      + ", ".join(n.name for n in waiting),
                      dirs=[rundir.proxy_directory(self.record.directory, n.name) for n in policed])
        self.wait_nodes_ready(timeout)
        self._wait_routing(timeout)
        if policed:
            self.progress("waiting for the NetworkPolicy agents' first sync")
            self.wait_netpol([node.name for node in policed], timeout)

    def wait_nodes_ready(self, timeout: float) -> None:
        """Wait until every worker's Node is Ready, watching the Nodes (and checking that the
        kubelets live at least every second)."""
        workers = {w.name for w in self.topo.workers}
        deadline = time.monotonic() + timeout
        ready: set[str] = set()
        rv = None
        while True:
            for name in sorted(workers):
                self._check_alive("kubelet", name)
            if rv is None:
                nodes, rv = self.client.list("Node")
                ready = {n["metadata"]["name"] for n in nodes if is_ready(n)}
            if workers <= ready:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlPlaneError(f"timed out after {timeout:g}s waiting for every worker's "
                                        f"kubelet to register its Node (not Ready: "
                                        f"{', '.join(sorted(workers - ready))})")
            try:
                for kind, node in self.client.watch("Node", since=rv, timeout=min(left, 1)):
                    rv = node["metadata"]["resourceVersion"]
                    name = node["metadata"]["name"]
                    if kind != "DELETED" and is_ready(node):
                        ready.add(name)
                    else:
                        ready.discard(name)
                    if workers <= ready:
                        break
            except Expired:
                rv = None   # list again

    # -- routing agents (flanneld, bird) ------------------------------------------------------

    def _start_routing(self) -> None:
        routing = self.topo.pod_network.routing
        flannel = routingagents.hosts(self.topo, "flanneld")
        if flannel:
            self.progress(f"starting flanneld ({routing}) on {len(flannel)} nodes")
            for name in flannel:
                self.start_agent("flanneld", self.topo.node(name))
        birds = routingagents.hosts(self.topo, "bird")
        if birds:
            self.progress(f"starting bird (BGP, AS {routingagents.bird.AS_NUMBER}) on the gateway "
                          f"router and {len(birds) - 1} workers")
            for name in birds:
                self.start_agent("bird", routingagents.host(self.topo, "bird", name))

    def _wait_routing(self, timeout: float) -> None:
        flannel = routingagents.hosts(self.topo, "flanneld")
        if flannel:
            self.progress("waiting for flanneld to reach every node")
            self.wait_flanneld(flannel, timeout)
        if routingagents.hosts(self.topo, "bird"):
            self.progress("waiting for the gateway router to learn every pod CIDR over BGP")
            self.wait_bgp(timeout)

    def wait_flanneld(self, nodes: list[str], timeout: float, interval: float = 0.1) -> None:
        """Wait until the flanneld of each of `nodes`, as now running, reports reaching every
        other worker (and on a worker, its lease published); the error names what each lacks,
        with the end of its log."""
        behind: dict[str, str] = {}

        def done() -> bool:
            behind.clear()
            for node in nodes:
                self._check_alive("flanneld", node)
                why = routingagents.flanneld_behind(self.topo, node, self._own_status("flanneld", node))
                if why:
                    behind[node] = why
            return not behind

        def what() -> str:
            return "flanneld on " + "; ".join(f"{n}: {why}" for n, why in behind.items()) + "".join(
                self._log_end(f"flanneld-{n}") for n in behind)

        self.wait(done, timeout, what, interval,
                  dirs=[rundir.flanneld_directory(self.record.directory, n) for n in nodes])

    def wait_bgp(self, timeout: float, host: str | None = None, interval: float = 0.2) -> None:
        """Wait until the gateway's kernel holds the route bird learned to the pod CIDR of each
        worker whose bird runs (only `host`'s when a worker is named); nothing is waited for
        while the gateway's bird is down."""
        gateway = self.topo.gateway_name
        gw_bird = self.agents.get(f"bird-{gateway}")
        if host is not None:
            self._check_alive("bird", host)
        if gw_bird is None or not gw_bird.running():
            return
        workers = [host] if host not in (None, gateway) else [
            w.name for w in self.topo.workers
            if (a := self.agents.get(f"bird-{w.name}")) is not None and a.running()]
        missing: list[str] = []

        def done() -> bool:
            self._check_alive("bird", gateway)
            missing[:] = routingagents.bgp_missing(self.topo, self.network.pid(gateway), workers)
            return not missing

        def what() -> str:
            return (f"the gateway router to learn the pod CIDR of {', '.join(missing)} over BGP"
                    + self._log_end(f"bird-{gateway}", f"bird's log on {gateway}"))

        self.wait(done, timeout, what, interval)

    def _api_up(self) -> bool:
        if not self.socket.exists():
            self._check_alive("apiserver", self.topo.master.name)
            return False
        try:
            self.client.list("Namespace")
            return True
        except (ApiError, OSError):
            return False

    def _own_status(self, kind: str, node: str):
        """The status file of the running `kind` agent of `node` when that very process wrote
        it (its pid), else None (a predecessor's, or none yet)."""
        agent = self.agents.get(f"{kind}-{node}")
        status = STATUS_READERS[kind](self.record.directory, node)
        return status if agent is not None and status is not None and status.pid == agent.pid \
            else None

    def netpol_synced(self, node: str) -> bool:
        """The node's NetworkPolicy agent, as now running, has reported a sync (a status
        written by its pid); raises when it has exited."""
        self._check_alive("netpol", node)
        return self._own_status("netpol", node) is not None

    def policy_marks(self) -> dict[str, list[int]]:
        """What the agents must hold to reflect the API as it is now, per kind they watch:
        [objects, the newest resourceVersion among them] (testbed.netpol.syncer's marks)."""
        marks = {}
        for kind in POLICY_KINDS:
            items, _ = self.client.list(kind)
            marks[kind] = [len(items), max((int(o["metadata"]["resourceVersion"]) for o in items),
                                           default=0)]
        return marks

    def wait_policies_enforced(self, timeout: float = 10, interval: float = 0.1,
                               skip: dict[str, str] | None = None) -> list[str]:
        """Wait until every running NetworkPolicy agent's rules reflect the API's pods,
        namespaces and policies as they are: for each kind, it holds as many objects as the
        API and has seen the newest one's version (a watch delivers one kind in order, so it
        has seen every change before it too). Dead agents hold their rules as they were and
        are not waited for, nor those of `skip` (node -> why: cut off from the API server).
        The nodes waited for; a ControlPlaneError names the agents still behind."""
        skip = skip or {}
        agents = {n.name: a for n in self.topo.workers if has_netpol(n) and n.name not in skip
                  and (a := self.agents.get(f"netpol-{n.name}")) is not None}
        deadline = time.monotonic() + timeout
        while True:
            # one that died (or was dead) holds its rules as they were: not waited for
            agents = {node: a for node, a in agents.items() if a.running()}
            wanted = self.policy_marks() if agents else {}
            behind = {}
            for node in agents:
                status = self._own_status("netpol", node)
                if status is None:
                    behind[node] = "no sync of its own yet"
                    continue
                late = [f"{kind} {have or [0, 0]} of {want}" for kind, want in wanted.items()
                        if (have := status.caught_up.get(kind)) is None or have[0] != want[0]
                        or have[1] < want[1]]
                if late:
                    behind[node] = ", ".join(late)
            if not behind:
                return list(agents)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"the NetworkPolicy agents did not enforce the change within {timeout:g}s ("
                    + "; ".join(f"{n}: {why}" for n, why in behind.items())
                    + ": [objects, newest resourceVersion] seen of the API's)"
                    + "".join(self._log_end(f"netpol-{n}") for n in behind))
            time.sleep(interval)

    def wait_netpol(self, nodes: list[str], timeout: float, interval: float = 0.1) -> None:
        """Wait until the NetworkPolicy agents of `nodes` have each reported a sync; the
        error names the nodes still waited for, with their status files and logs."""
        waiting = list(nodes)

        def done() -> bool:
            waiting[:] = [node for node in nodes if not self.netpol_synced(node)]
            return not waiting

        self.wait(done, timeout, lambda: f"the NetworkPolicy agent on {', '.join(waiting)} to "
                                         "report a sync" + "".join(map(self._netpol_why, waiting)),
                  interval, dirs=[rundir.netpol_directory(self.record.directory, n) for n in nodes])

    def _netpol_why(self, node: str) -> str:
        """What a NetworkPolicy agent left to go by: its status file and the end of its log."""
        status = rundir.netpol_directory(self.record.directory, node) / rundir.NETPOL_STATUS
        return f"\n{node}: no status of its own in {status}; " + self._log_end(f"netpol-{node}").lstrip("\n")

    def _log_tail(self, name: str, lines: int = 8) -> tuple[Path, list[str]]:
        """An agent's log (`kube-proxy-w1`, ...) and its last `lines` lines."""
        log = rundir.agent_log(self.record.directory, name)
        return log, log.read_text(errors="replace").strip().splitlines()[-lines:] if log.exists() else []

    def _log_end(self, name: str, what: str | None = None) -> str:
        """"the end of LOG:" and its last lines, indented, on lines of their own (`what` names
        the log instead of its path), for an error message."""
        log, tail = self._log_tail(name)
        return f"\nthe end of {what or log}:\n  " + ("\n  ".join(tail) or "(empty)")

    def _proxy_synced(self, node: str) -> bool:
        """Has the running kube-proxy of `node` reported a successful sync of its own?"""
        self._check_alive("kube-proxy", node)
        status = self._own_status("kube-proxy", node)
        return status is not None and bool((status.last or {}).get("ok"))

    def force_full_sync(self, node: str, timeout: float = 10) -> None:
        """Make the running kube-proxy of `node` do a full sync now and wait for it: SIGUSR1
        (agents/kube_proxy.py), then its status (emu/rundir.py ProxyStatus) showing a
        successful full sync that began after the signal. The signal goes only to a
        kube-proxy that has reported a sync of its own (so it handles SIGUSR1 by then).
        ControlPlaneError naming the node when there is none running, it dies, or no full
        sync is reported within `timeout` seconds."""
        agent = self.agents.get(f"kube-proxy-{node}")
        if agent is None or not agent.running():
            raise ControlPlaneError(f"no running kube-proxy on {node}")
        dirs = [rundir.proxy_directory(self.record.directory, node)]
        asked = 0.0  # wall clock just before the signal; 0: not sent yet

        def done() -> bool:
            nonlocal asked
            self._check_alive("kube-proxy", node)
            status = self._own_status("kube-proxy", node)
            if status is not None and not asked:
                asked = time.time()
                os.kill(agent.pid, signal.SIGUSR1)
                return False
            return status is not None and status.last_full >= asked > 0

        self.wait(done, timeout,
                  lambda: f"kube-proxy on {node} to report " + (
                      "a full sync after SIGUSR1" if asked else "its first sync")
                  + self._log_end(f"kube-proxy-{node}"), dirs=dirs)

    def _check_alive(self, kind: str, node: str) -> None:
        agent = self.agents.get(f"{kind}-{node}")
        if agent is not None and not agent.running():
            _, tail = self._log_tail(agent.name)
            raise ControlPlaneError(f"{kind} on {node} exited:\n  " + "\n  ".join(tail))

    def wait(self, check, timeout: float, what: str | Callable[[], str],
             interval: float = 0.1, dirs: list[Path] | None = None) -> None:
        """Poll `check` until true; ControlPlaneError naming `what` (text, or made when it is
        needed) after `timeout` seconds. With `dirs` (the agents' state directories), `check`
        runs again as soon as a file is written there, and at least every `interval`."""
        deadline = time.monotonic() + timeout
        with DirWatch(dirs or []) as changes:   # none: each wait is a sleep of `interval`
            while True:
                if check():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    what = what() if callable(what) else what
                    raise ControlPlaneError(f"timed out after {timeout:g}s waiting for {what}")
                changes.wait(min(interval, left))

    def stop(self) -> None:
        """End the agents, all at once, and the zygote (the pods are ended by the cluster from
        the record)."""
        entries = [self.record.procs[a.pid] for a in self.agents.values()
                   if a.running() and a.pid in self.record.procs]
        end_processes(entries, 2.0, scan_namespaces=False)
        if self.zygote is not None:
            self.zygote.close()
            self.record.forget(self.zygote.pid)
        for proc in self._popen.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    # -- what the kubelets know -------------------------------------------------------------

    def sandboxes(self) -> dict[str, SavedPod]:
        """uid -> the kubelet's saved state of each pod (pause pid and start, containers, node)."""
        return sandboxes(self.record.directory, [node.name for node in self.topo.workers])
