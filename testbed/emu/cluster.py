"""Acts: one emulated cluster's life, as an ordered list of named steps: record, network, pods.

`Cluster(topo).up()` builds the Mininet network; `apply_pods(manifests)` places Pods on their
nodes (spec.nodeName, else the least-loaded worker matching spec.nodeSelector); `down()` ends
everything from the run record. `endpoint(name)` turns a pod, node, gateway or client name
into the namespace to act from and the address to reach, for probes and the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from testbed.emu.network import ClusterNetwork
from testbed.emu.podnet import BridgeNetwork, NodeRef
from testbed.emu.pods import Pod, PodError, PodRuntime
from testbed.emu.record import Record
from testbed.spec.topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Something traffic can come from or go to: its name, kind, namespace-holding pid, address."""

    name: str
    kind: str            # pod, master, worker, gateway, client
    pid: int
    address: IPv4Address | None


class Cluster:
    def __init__(self, topo: Topology, progress: Callable[[str], None] | None = None):
        self.topo = topo
        self.progress = progress or (lambda msg: None)
        self.record: Record | None = None
        self.network: ClusterNetwork | None = None
        self.runtime: PodRuntime | None = None
        self.pods: dict[str, Pod] = {}          # "namespace/name" -> Pod
        self.timings: dict[str, float] = {}

    # -- life -------------------------------------------------------------------------------

    def up(self) -> Cluster:
        steps = [("record", self._make_record), ("network", self._build_network),
                 ("runtime", self._make_runtime)]
        try:
            for name, step in steps:
                started = time.monotonic()
                step()
                self.timings[name] = time.monotonic() - started
        except BaseException:
            self.down()
            raise
        return self

    def _make_record(self) -> None:
        self.record = Record.create(self.topo.name)
        (self.record.directory / "topology.json").write_text(json.dumps({"file": os.path.abspath(self.topo.file)}))

    def _build_network(self) -> None:
        self.progress(f"building {self.topo.name}: master, gateway, {len(self.topo.workers)} workers, "
                      f"{len(self.topo.clients)} clients")
        self.network = ClusterNetwork(self.topo, self.record)
        self.network.build()

    def _make_runtime(self) -> None:
        self.runtime = PodRuntime(self.record, BridgeNetwork(), self.topo.dns_service_ip)

    def down(self) -> None:
        """Tear everything down; works from the record, so it is safe after a partial up()."""
        if self.runtime is not None and self.pods:
            try:
                self.runtime.delete_many(None, list(self.pods.values()), grace=0.5)
            except Exception as err:  # keep going: the record clean-up below catches the rest
                log.warning("deleting pods: %s", err)
            self.pods.clear()
        if self.network is not None:
            self.network.stop()
            self.network = None
        if self.record is not None:
            self.record.clean()
            self.record = None

    def __enter__(self) -> Cluster:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- pods ---------------------------------------------------------------------------------

    def node_ref(self, name: str) -> NodeRef:
        node = self.topo.node(name)
        return NodeRef(name, self.network.pid(name), node.pod_cidr)

    def schedule(self, manifest: dict, planned: dict[str, int]) -> str:
        """spec.nodeName when given, else the least-loaded worker whose labels match nodeSelector."""
        spec = manifest["spec"]
        key = f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
        workers = {w.name: w for w in self.topo.workers}
        if spec.get("nodeName"):
            if spec["nodeName"] not in workers:
                raise PodError(f"pod {key}: spec.nodeName {spec['nodeName']!r} is not a worker of "
                               f"{self.topo.name} (workers: {', '.join(workers)})")
            return spec["nodeName"]
        selector = spec.get("nodeSelector") or {}
        fits = [w for w in workers.values() if all(dict(w.labels).get(k) == v for k, v in selector.items())]
        if not fits:
            raise PodError(f"pod {key}: no worker matches nodeSelector {selector}")
        return min(fits, key=lambda w: planned[w.name]).name

    def apply_pods(self, manifests: list[dict]) -> list[Pod]:
        """Create every Pod in `manifests` (already validated), node by node."""
        names = set(self.network.hosts)
        planned = {w.name: sum(1 for p in self.pods.values() if p.node == w.name) for w in self.topo.workers}
        by_node: dict[str, list[dict]] = {}
        for m in manifests:
            key = f"{m['metadata']['namespace']}/{m['metadata']['name']}"
            if key in self.pods:
                raise PodError(f"pod {key} already exists")
            if m["metadata"]["name"] in names:
                raise PodError(f"pod {key}: the name {m['metadata']['name']!r} is taken by a node or client")
            node = self.schedule(m, planned)
            planned[node] += 1
            by_node.setdefault(node, []).append(m)
        created: list[Pod] = []
        for node, group in by_node.items():
            self.progress(f"starting {len(group)} pod(s) on {node}")
            for pod in self.runtime.run_pods(self.node_ref(node), group):
                self.pods[pod.key] = pod
                created.append(pod)
        self.save_state()
        return created

    def delete_pod(self, key: str) -> None:
        pod = self.pods.pop(key)
        self.runtime.delete(self.node_ref(pod.node), pod)
        self.save_state()

    def find_pod(self, name: str) -> Pod | None:
        """A pod by `namespace/name`, or by bare name when that is unambiguous."""
        if name in self.pods:
            return self.pods[name]
        matches = [p for p in self.pods.values() if p.name == name]
        if len(matches) > 1:
            raise KeyError(f"{name!r} names pods in several namespaces: {', '.join(p.key for p in matches)}")
        return matches[0] if matches else None

    # -- names --------------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """A pod, node, gateway or client by name; KeyError naming what exists otherwise."""
        pod = self.find_pod(name)
        if pod is not None:
            return Endpoint(pod.key, "pod", pod.pid, pod.ip)
        host = self.network.hosts.get(name) if self.network else None
        if host is not None:
            return Endpoint(name, host.role, host.pid, host.address)
        known = sorted([*self.network.hosts, *(p.name for p in self.pods.values())])
        raise KeyError(f"no pod, node or client is named {name!r} (known: {', '.join(known)})")

    def address_of(self, name: str) -> IPv4Address:
        """An IP address given as text, or the address of a named pod, node or client."""
        if name == "localhost":
            return IPv4Address("127.0.0.1")
        try:
            return IPv4Address(name)
        except ValueError:
            address = self.endpoint(name).address
            if address is None:
                raise KeyError(f"{name} has no single address to reach") from None
            return address

    # -- state for other terminals (testbed ps) ---------------------------------------------

    def save_state(self) -> None:
        state = {"cluster": self.topo.name, "pods": [
            {"namespace": p.namespace, "name": p.name, "uid": p.uid, "node": p.node, "ip": str(p.ip),
             "created": p.created, "pause": {"pid": p.pid, "start": p.pause_start},
             "containers": [{"name": c.name, "pid": c.pid, "argv": c.argv, "image": c.image,
                             "start": c.start,
                             "ports": [f"{x['containerPort']}/{x.get('protocol', 'TCP')}" for x in c.ports]}
                            for c in p.containers.values()]}
            for p in self.pods.values()]}
        tmp = self.record.directory / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.record.directory / "state.json")
