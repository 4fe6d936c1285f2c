"""Acts: the pod network and runtime on their own, without a control plane.

The benchmarks measure the pod network and the container runtime with it, and the runtime's
own tests use it (pods, veths, processes, cleanup): there is no API server, scheduler or
kubelet, so what is measured or tested is the runtime alone.

    with PodLab(topo) as lab:
        pods = lab.run_pods(manifests)   # spec.nodeName, else the least-loaded matching worker
        lab.delete_pod(pods[0].key)

Like a Cluster it keeps a run record, so `down()` (and `testbed clean` after a crash) ends
everything it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from testbed.emu.cninet import make_pod_network
from testbed.emu.network import ClusterNetwork
from testbed.emu.podnet import NodeRef
from testbed.emu.pods import Pod, PodError, PodRuntime
from testbed.emu.record import Record
from testbed.emu.shield import shielded
from testbed.spec.topology import NodeSpec, Topology


def least_loaded(manifest: dict, workers: list[NodeSpec], planned: dict[str, int]) -> str:
    """spec.nodeName when given (PodError unless it is a worker), else the least-loaded worker
    whose labels match spec.nodeSelector (ties go to the first listed)."""
    spec = manifest["spec"]
    key = f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
    names = [w.name for w in workers]
    if spec.get("nodeName"):
        if spec["nodeName"] not in names:
            raise PodError(f"pod {key}: spec.nodeName {spec['nodeName']!r} is not a worker "
                           f"(workers: {', '.join(names)})")
        return spec["nodeName"]
    selector = spec.get("nodeSelector") or {}
    fits = [w for w in workers if all(dict(w.labels).get(k) == v for k, v in selector.items())]
    if not fits:
        raise PodError(f"pod {key}: no worker matches nodeSelector {selector}")
    return min(fits, key=lambda w: planned[w.name]).name


class PodLab:
    def __init__(self, topo: Topology, progress: Callable[[str], None] | None = None):
        self.topo = topo
        self.progress = progress or (lambda msg: None)
        self.record: Record | None = None
        self.network: ClusterNetwork | None = None
        self.runtime: PodRuntime | None = None
        self.pods: dict[str, Pod] = {}    # "namespace/name" -> Pod
        self.timings: dict[str, float] = {}

    def up(self) -> PodLab:
        try:
            started = time.monotonic()
            self.record = Record.create(self.topo.name)
            self.progress(f"building {self.topo.name}: master, gateway, "
                          f"{len(self.topo.workers)} workers")
            self.network = ClusterNetwork(self.topo, self.record)
            self.network.build()
            self.timings["network"] = time.monotonic() - started
            net = self.topo.pod_network
            # Real CNI plugins run inside each node's namespace, as under its kubelet.
            network = make_pod_network(self.record.directory, net.plugin, net.conf, net.bin_dir,
                                       net.mtu, enter_node=True)
            self.runtime = PodRuntime(self.record, network, self.topo.dns_service_ip)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """End everything, from the record: safe after a partial up(), and no signal cuts it
        short (emu/shield.py)."""
        with shielded():
            self._down()

    def _down(self) -> None:
        if self.record is not None:
            self.record = Record.load(self.record.directory, self.record)
        if self.runtime is not None and self.pods:
            try:
                self.runtime.delete_many(None, list(self.pods.values()), grace=0.5)
            finally:
                self.pods.clear()
        if self.network is not None:
            self.network.stop()
            self.network = None
        if self.record is not None:
            self.record.clean()
            self.record = None

    def __enter__(self) -> PodLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def node_ref(self, name: str) -> NodeRef:
        return NodeRef(name, self.network.pid(name), self.topo.node(name).pod_cidr)

    def run_pods(self, manifests: list[dict]) -> list[Pod]:
        """Start every Pod of `manifests` (already validated), node by node."""
        names = set(self.network.hosts)
        planned = {w.name: sum(1 for p in self.pods.values() if p.node == w.name)
                   for w in self.topo.workers}
        by_node: dict[str, list[dict]] = {}
        for m in manifests:
            key = f"{m['metadata']['namespace']}/{m['metadata']['name']}"
            if key in self.pods:
                raise PodError(f"pod {key} already exists")
            if m["metadata"]["name"] in names:
                raise PodError(f"pod {key}: the name {m['metadata']['name']!r} is taken by a "
                               "node or client")
            node = least_loaded(m, list(self.topo.workers), planned)
            planned[node] += 1
            by_node.setdefault(node, []).append(m)
        created: list[Pod] = []
        for node, group in by_node.items():
            self.progress(f"starting {len(group)} pod(s) on {node}")
            for pod in self.runtime.run_pods(self.node_ref(node), group):
                self.pods[pod.key] = pod
                created.append(pod)
        return created

    def delete_pod(self, key: str) -> None:
        pod = self.pods.pop(key)
        self.runtime.delete(self.node_ref(pod.node), pod)

    def find_pod(self, name: str) -> Pod | None:
        """A pod by `namespace/name`, or by bare name when that is unambiguous."""
        if name in self.pods:
            return self.pods[name]
        matches = [p for p in self.pods.values() if p.name == name]
        if len(matches) > 1:
            raise KeyError(f"{name!r} names pods in several namespaces")
        return matches[0] if matches else None
