"""Acts: the public Python API, for experiments written as scripts, in Mininet's style.

    from testbed import Cluster

    with Cluster("topologies/article.yaml") as cluster:            # built here, torn down at the end
        cluster.apply("scenarios/manifests/service-test-deployment.yaml",
                      "scenarios/manifests/service-test-service.yaml")
        print(cluster.probe("http", "client", "http://10.3.241.152/"))
        print(cluster.nat("node1", chain="KUBE-SERVICES"))
        cluster.kill("kube-proxy", "node1")
        with cluster.partitioned(["node1"], ["node2"]):
            print(cluster.probe("icmp", "node1", "node2"))
        cluster.cli()                                                 # Mininet's CLI, here

Run a script as root with the distribution's python3 (`sudo python3 my_experiment.py`) once
scripts/install.sh has run. `Cluster.attach(NAME)` gives the same object for a cluster
`testbed up` started (the cluster stays up when the script ends). The pytest plugin's
`cluster` fixture is this object too.

A topology is a file or a mapping written as the file would be (`{"name": "lab",
"workers": ["w1", "w2"], ...}`); either is validated as `testbed run` validates it, and bad
input raises SpecError naming the field. Methods take the names a scenario uses: pods (by
name, or NAMESPACE/NAME), nodes, the gateway, clients and Services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testbed.spec.source import Document, SpecError


def _load_topology(topology: str | Path | dict, name: str | None):
    from testbed.spec.topology import build_topology, load_topology

    if isinstance(topology, dict):
        topo = build_topology(Document("<python>", topology))
    else:
        topo = load_topology(topology)
    return dataclasses.replace(topo, name=name) if name else topo


class Cluster:
    """An emulated cluster for a script: build it with `with Cluster(topology):` (or
    `start()`/`stop()`), or `Cluster.attach(name)` to one that runs already."""

    def __init__(self, topology: str | Path | dict, *, name: str | None = None,
                 progress: bool = True, root: str | Path | None = None):
        self.topology = _load_topology(topology, name)
        self.root = Path(root) if root is not None else Path.cwd()  # relative paths' base
        self._progress = progress
        self.cluster: Any = None   # the running testbed.emu.cluster.Cluster

    @classmethod
    def attach(cls, name: str | None = None) -> Cluster:
        """The cluster `testbed up` runs under `name` (or the only one running)."""
        from testbed.emu.access import find
        from testbed.emu.attach import attach
        from testbed.emu.errors import require_root

        require_root("<python>")
        running = attach(find(name))
        self = cls.__new__(cls)
        self.topology, self.root, self._progress = running.topo, Path.cwd(), False
        self.cluster = running
        return self

    # -- life --------------------------------------------------------------------------------

    def start(self) -> Cluster:
        from testbed.emu.cluster import Cluster as Running
        from testbed.emu.errors import require_root

        require_root("<python>")
        say = (lambda text: print(f"*** {text}", flush=True)) if self._progress else None
        self.cluster = Running(self.topology, progress=say).up()
        return self

    def stop(self) -> None:
        """Tear the cluster down (an attached cluster is only let go of)."""
        if self.cluster is not None:
            self.cluster.down()
            self.cluster = None

    def __enter__(self) -> Cluster:
        return self.start() if self.cluster is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _c(self):
        if self.cluster is None:
            raise RuntimeError("the cluster is not running: use `with Cluster(...)` or start()")
        return self.cluster

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def kubeconfig(self) -> Path | None:
        """A kubeconfig for kubectl on this machine (KUBECONFIG=... kubectl get pods)."""
        return self._c.kubeconfig

    @property
    def client(self):
        """The testbed's own API client (get, list, create, update, delete, watch)."""
        return self._c.client

    # -- objects -----------------------------------------------------------------------------

    def _path(self, path: str | Path) -> str:
        p = Path(path)
        return str(p if p.is_absolute() else self.root / p)

    def apply(self, *paths: str | Path, objects: list[dict] | None = None,
              timeout: float | None = 90) -> list[dict]:
        """Apply manifest files and/or objects (validated first: SpecError names the file
        and field), then wait up to `timeout` seconds for their pods to be Ready and for the
        NetworkPolicy agents to enforce what changed (None: do not wait)."""
        from testbed.api.manifests import Loaded, check_object, read_manifests
        from testbed.checks import check_loaded, report_warnings

        # The checks every command makes (testbed/checks.py): the API server's validation, its
        # allocators, commands on the nodes, against this cluster's topology; warnings printed.
        loaded, problems = read_manifests([self._path(p) for p in paths]) if paths else ([], [])
        for index, obj in enumerate(objects or []):
            doc = Document(f"<objects[{index}]>", obj)
            checked, found = check_object(doc)
            problems += found
            if checked is not None:
                loaded.append(Loaded(checked, doc, ()))
        result = check_loaded(loaded, self.topology, which=shutil.which)
        problems += result.problems
        if problems:
            raise SpecError(problems)
        report_warnings(result.warnings, sys.stderr)
        objs = result.objects
        from testbed.scenario.steps import policies_exist

        had_policies = policies_exist(self._c)
        self._c.apply(objs)
        if timeout:
            self._c.wait_ready(objs, timeout=timeout)
            self._enforced(had_policies)
        return objs

    def _enforced(self, had_policies: bool) -> None:
        """When there are NetworkPolicies (or were, before a write), wait until the running
        policy agents enforce the cluster as it is now, as scenario steps do."""
        from testbed.emu import faults
        from testbed.scenario.steps import policies_exist

        if had_policies or policies_exist(self._c):
            self._c.cp.wait_policies_enforced(skip=faults.cut_off(self._c))

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        """Delete an object; the NetworkPolicy agents enforce the deletion on return."""
        from testbed.scenario.steps import policies_exist

        had_policies = policies_exist(self._c)
        self._c.client.delete(kind, None if kind == "Namespace" else namespace, name)
        self._enforced(had_policies)

    def label(self, kind: str, name: str, labels: dict[str, str | None],
              namespace: str | None = "default") -> dict:
        """Set labels of a Pod or Namespace (or any object) in place, as `kubectl label
        --overwrite` does; None removes one. The object as stored after it, once the
        NetworkPolicy agents enforce the change."""
        from testbed.scenario.steps import policies_exist

        if kind == "Namespace":
            namespace = None
        had_policies = policies_exist(self._c)
        obj = self._c.client.merge_patch(kind, namespace, name, {"metadata": {"labels": labels}})
        self._enforced(had_policies)
        return obj

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        self._c.client.scale("Deployment", namespace, deployment, replicas)

    def pods(self) -> list:
        """Every pod: namespace, name, node, ip, ready, phase, labels."""
        return sorted(self._c.all_pods(), key=lambda p: p.key)

    def ip(self, name: str):
        """The address of a pod, node, client or Service (its ClusterIP)."""
        return self._c.address_of(name)

    # -- traffic -----------------------------------------------------------------------------

    def probe(self, kind: str, source: str, target: str, **options: Any):
        """One probe (icmp, tcp, udp, http, dns) as a scenario step writes it; the Observation.

        `target` is NAME, NAME:PORT (tcp, udp) or a URL (http). options: timeout, payload,
        headers, record (dns), retry_for (seconds to keep trying until it is reachable).
        The Observation has reachable, text, source_ip (as the server saw it), served_by
        (the pod that answered), status, body, reply.
        """
        deadline = time.monotonic() + float(options.pop("retry_for", 0))
        while True:
            seen = self._probe_once(kind, source, target, **options)
            if seen.reachable or time.monotonic() >= deadline:
                return seen
            time.sleep(0.2)

    def _probe_once(self, kind: str, source: str, target: str, **options: Any):
        from urllib.parse import urlsplit

        from testbed.scenario.spec import Expect, Probe, Target
        from testbed.scenario.steps import run_probe

        if kind == "http":
            url = urlsplit(target if "://" in target else f"http://{target}")
            t = Target(url.hostname or "", url.port or 80, url.path or "/")
        elif ":" in target and kind in ("tcp", "udp"):
            host, _, port = target.rpartition(":")
            t = Target(host, int(port))
        else:
            t = Target(target, None)
        probe = Probe(kind, source, t, Expect(), float(options.get("timeout", 2.0)),
                      payload=str(options.get("payload", "hostname")),
                      headers=tuple((k, str(v)) for k, v in (options.get("headers") or {}).items()),
                      record=options.get("record", "A"))
        c = self._c
        origin = c.endpoint(source)
        address = None if kind == "dns" else c.address_of(t.host)
        namespaces = {p.key: p.pid for p in c.all_pods() if p.pid}
        namespaces.update({h.name: h.pid for h in c.network.hosts.values()})
        files = c.pod_files(origin.name) if origin.kind == "pod" else None
        return run_probe(probe, origin.pid, address, namespaces, files)

    def run(self, where: str, argv: list[str], check: bool = True,
            container: str | None = None) -> str:
        """Run a command (an argument list) in a node's, the gateway's or a client's
        namespace, or in a pod's container (its first by default) as that container's own
        processes run; its standard output."""
        from testbed.net.run import run

        c = self._c
        pod = c.find_pod(where)
        if pod is not None:
            command, env = c.pod_process(pod, argv, container)
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
            if check and proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} in pod {pod.key} exited "
                                   f"{proc.returncode}: {proc.stderr.strip()}")
            return proc.stdout
        return run(argv, netns=c.network.pid(where), check=check).stdout

    # -- faults ------------------------------------------------------------------------------

    def kill(self, agent: str, node: str | None = None) -> None:
        """End an agent (apiserver, kubelet NODE, kube-proxy NODE, netpol NODE) as a crash would."""
        self._c.cp.kill(agent, node or self.topology.master.name)

    def restart(self, agent: str, node: str | None = None) -> None:
        """Start a killed agent again; returns once it serves."""
        cp = self._c.cp
        cp.wait_agent(cp.restart(agent, node or self.topology.master.name))

    def partition(self, *groups: list[str]) -> str:
        """Cut traffic between groups of nodes (and the gateway/clients named); heal() ends it."""
        from testbed.emu import faults

        return faults.partition(self._c, [list(g) for g in groups])

    def heal(self) -> str:
        from testbed.emu import faults

        return faults.heal(self._c)

    @contextlib.contextmanager
    def partitioned(self, *groups: list[str]) -> Iterator[None]:
        """`with cluster.partitioned(["w1"], ["w2"]):` a partition that heals afterwards."""
        self.partition(*groups)
        try:
            yield
        finally:
            self.heal()

    def link(self, node: str, up: bool) -> str:
        """Take a node's link to the gateway down or up."""
        from testbed.emu import faults

        return faults.link(self._c, node, up)

    # -- looking -----------------------------------------------------------------------------

    def nat(self, node: str, chain: str | None = None) -> str:
        """A node's NAT rules as kube-proxy left them (`iptables -S -t nat`, or the nftables
        table in nftables mode)."""
        from testbed.emu.inspect import nat_table, proxy_mode

        c = self._c
        pid = c.network.pid(node)
        return nat_table(pid, proxy_mode(c.record.directory, node, pid), chain)

    def netpol(self, node: str) -> str:
        """A node's NetworkPolicy rules as its agent wrote them (its KUBE-NWPLCY/KUBE-POD-FW
        chains and KUBE-NP ipsets, or the `kube-netpol` nftables table)."""
        from testbed.emu.inspect import netpol_mode, netpol_rules

        c = self._c
        pid = c.network.pid(node)
        return netpol_rules(pid, netpol_mode(c.record.directory, node, pid))

    def conntrack(self, node: str, protocol: str | None = None) -> str:
        from testbed.emu.inspect import conntrack_table

        return conntrack_table(self._c.network.pid(node), protocol)

    def ps(self, node: str | None = None) -> str:
        """Pause processes and containers per node, as `docker ps` on a worker shows them."""
        from testbed.emu.record import alive
        from testbed.node.psview import format_rows, ps_rows

        return format_rows(ps_rows(self._c.ps_state(), node, time.time(), alive))

    def cli(self) -> None:
        """Mininet's CLI with this cluster's pods, nodes and kubectl (returns when left)."""
        from mininet.log import setLogLevel

        from testbed.emu.mncli import ClusterCLI

        setLogLevel("info")
        ClusterCLI(self._c)
