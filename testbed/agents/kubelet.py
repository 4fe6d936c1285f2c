"""Acts: the kubelet, one process per worker, inside that worker's network namespace.

    python -m testbed.agents.kubelet --node w1 --api http://172.16.0.2:6443 --run-dir DIR \\
        --pod-cidr 10.244.0.0/24 --node-ip 172.16.1.2 --cluster-dns 10.96.0.10 [--label k=v] \\
        [--pod-network builtin|cni] [--cni-conf PATH] [--cni-bin-dir PATH] [--mtu 1500]

The pod network is the built-in one (emu/podnet.py) or real CNI plugins (emu/cninet.py: the
user's network configuration list, or the kubenet chain, with the user's plugins found before
Debian's); either way the pods' interfaces get the MTU. A pod whose network cannot be set up
gets upstream's FailedCreatePodSandBox event and is tried again with a growing back-off; a
CNI DEL that failed is tried again from the sync loop until it succeeds. After a restart, the
pods it adopts are CHECKed (CNI CHECK, or the built-in network's own; a complaint is a
NetworkNotReady event of the pod) and, under CNI, the cached attachments of pods no longer
there are deleted.

It registers its Node (labels, podCIDR, addresses, a Ready condition renewed every few
seconds), watches Pods through the API server, and keeps the Pods bound to its node running.
What to do about them is decided by node/kubeletplan.py (pure: creation, teardown and its grace
period, restarts per restartPolicy with a growing back-off, probes and liveness failures,
adoption, when a status is worth writing) and done by agents/kubeletsync.py's `PodSync`
through the two seams defined here: `NodeRuntime` (sandboxes and containers through the pod
runtime, emu/pods.py; probes, prober.py) and `ApiSink` (Events, status, removal through the
API client). Its pods' state is saved in `kubelet-NODE.json` beside the run record (format:
emu/rundir.py), so a killed kubelet leaves its pods running and a restarted one adopts
them.

As upstream's kubelet it records Events (Pulled, Created, Started, Killing, BackOff, Unhealthy,
Failed, with upstream's wording and the container as fieldPath) and renews its Node's Lease in
kube-node-lease every 10 seconds (leaseDurationSeconds 40), beside the Node status heartbeat.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from testbed.agents.kubeletsync import PodFailed, PodSync
from testbed.agents.prober import run_probe
from testbed.api.discovery import VERSION_INFO
from testbed.api.events import Note, micro_timestamp, reference
from testbed.api.podstatus import exit_code
from testbed.apiclient.client import ApiError, Client, put_status
from testbed.apiclient.events import EventRecorder
from testbed.apiclient.informer import Informer
from testbed.emu.cninet import make_pod_network
from testbed.emu.pausebin import enter_argv
from testbed.emu.podnet import NodeRef, PodNetworkError, SandboxNetworkError
from testbed.emu.pods import Pod, PodError, PodRuntime
from testbed.emu.record import Record, alive, netns_of, processes_in
from testbed.emu.rundir import SavedPod
from testbed.net.netns import write_sysctl
from testbed.node.kubeletplan import ContainerSeen, PodSeen
from testbed.spec.source import SpecError
from testbed.spec.topology import CNI_BIN_DIR, POD_NETWORK_PLUGINS

log = logging.getLogger("kubelet")

HEARTBEAT = 5.0
SYNC_PERIOD = 0.5   # the loop's longest wait for an event before it syncs anyway
NODE_STATUS_UPDATE_RETRY = 5   # upstream kubelet: nodeStatusUpdateRetry
LEASE_DURATION = 40          # seconds (the kubelet's nodeLeaseDurationSeconds default)
LEASE_RENEW = LEASE_DURATION / 4  # upstream renews every quarter of the duration
LEASE_NAMESPACE = "kube-node-lease"


class Machine:
    """What the kubelet reports of the machine it runs on: every emulated node shares this
    one (as kind's nodes share their host), so each shows the whole machine's capacity."""

    def __init__(self) -> None:
        self.capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_mem_kib()}Ki",
                         "pods": "110", "ephemeral-storage": f"{_disk_kib()}Ki"}
        uname = os.uname()
        self.node_info = {
            "machineID": _read("/etc/machine-id"), "systemUUID": _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release, "osImage": _os_image(),
            "containerRuntimeVersion": "testbed://0.1.0",
            "kubeletVersion": VERSION_INFO["gitVersion"], "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine,
                                                                       uname.machine)}


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _mem_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _disk_kib() -> int:
    try:
        st = os.statvfs("/")
    except OSError:
        return 0
    return st.f_blocks * st.f_frsize // 1024


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


MACHINE = Machine()


class NodeRuntime:
    """kubeletsync's Runtime for one node: emu/pods.py's PodRuntime, with probes run from the
    node's namespace (several at once) and a container's leftovers ended by process group."""

    def __init__(self, runtime: PodRuntime, node: NodeRef, probes: ThreadPoolExecutor):
        self.runtime = runtime
        self.node = node
        self.probes = probes

    def run_pod(self, manifest: dict) -> Pod:
        try:
            (pod,) = self.runtime.run_pods(self.node, [manifest])
        except SandboxNetworkError as err:
            raise PodFailed(str(err), sandbox=True) from err
        except (PodError, PodNetworkError, OSError) as err:
            raise PodFailed(str(err)) from err
        return pod

    def delete_pod(self, pod: Pod, grace: float) -> None:
        self.runtime.delete(self.node, pod, grace=grace)

    def observe(self, pod: Pod) -> PodSeen:
        return observe_pod(pod)

    def start_container(self, pod: Pod, name: str) -> None:
        container = pod.containers[name]
        container.restart_count += 1
        self.runtime.start_container(pod, container)

    def stop_container(self, pod: Pod, name: str, grace: float) -> None:
        container = pod.containers[name]
        self.runtime.stop_container(pod, container, grace=grace)
        # An adopted container has no record entry of this kubelet's, so the runtime left it
        # running: end its process group (the plan restarts it once stopped). One the runtime
        # did stop gets its group ended by the ContainerEnded that follows.
        if alive(container.pid, container.start):
            self.end_container(pod, name)

    def end_container(self, pod: Pod, name: str) -> None:
        container = pod.containers[name]
        # Only while the sandbox lives (pid and kernel start time): once it is gone, its pid
        # and so the namespace found through it may be another's.
        if container.pid is not None and pod.sandbox_alive():
            end_group(container.pid, netns_of(pod.pid))

    def run_probes(self, pod: Pod, probes: Sequence[tuple[dict, dict]]) -> list[tuple[bool, str]]:
        prefix = enter_argv(self.runtime.pause_bin, pod.pid, pod.directory)
        env = {"PATH": self.runtime.path}
        futures = [(probe, self.probes.submit(run_probe, probe, spec, str(pod.ip), prefix, env))
                   for spec, probe in probes]
        results = []
        for probe, future in futures:
            try:
                results.append(future.result(timeout=float(probe.get("timeoutSeconds", 1)) + 5))
            except Exception as err:  # a probe that blew up counts as failed
                results.append((False, str(err)))
        return results

    def saved(self, pod: Pod, manifest: dict) -> SavedPod:
        return pod.saved(manifest)

    def adopt(self, saved: SavedPod) -> Pod:
        return self.runtime.adopt(self.node, saved)


def observe_pod(pod: Pod) -> PodSeen:
    """What the plan sees of a pod: sandbox, address, each container running or its exit code
    (unknown for an adopted container that ended while no kubelet was its parent)."""
    containers = {}
    for name, c in pod.containers.items():
        running = c.running()
        containers[name] = ContainerSeen(name, running, None if running else exit_code(c.reap()),
                                         c.started_at, c.restart_count, c.pid)
    return PodSeen(pod.sandbox_alive(), str(pod.ip) if pod.ip else None, pod.created, containers)


class ApiSink:
    """kubeletsync's KubeletApi over the API client and the kubelet's event recorder."""

    def __init__(self, client: Client, events: EventRecorder):
        self.client = client
        self.events = events

    def record(self, note: Note) -> None:
        self.events.record(note)

    def put_status(self, obj: dict, status: dict, best_effort: bool = False) -> bool:
        try:
            put_status(self.client, obj, status)
        except ApiError as err:
            if best_effort or err.code == 404:
                return False
            raise
        return True

    def remove(self, obj: dict) -> None:
        """Delete the Pod object for good (an object already gone is fine: delete gives None)."""
        self.client.delete("Pod", obj["metadata"]["namespace"], obj["metadata"]["name"],
                           grace_seconds=0)


class Kubelet:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name = args.node
        self.client = Client(args.api, component="kubelet")
        self.run_dir = Path(args.run_dir)
        self.record = Record.load(self.run_dir)
        self.node = NodeRef(self.name, os.getpid(), IPv4Network(args.pod_cidr))
        self.network = make_pod_network(self.run_dir, args.pod_network, args.cni_conf,
                                        args.cni_bin_dir, args.mtu)
        self.runtime = PodRuntime(self.record, self.network, IPv4Address(args.cluster_dns))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        # Only this node's Pods, as upstream's kubelet watches them (spec.nodeName=NODE): a Pod
        # write elsewhere wakes no other kubelet, and none caches the whole cluster's pods.
        self.informer = Informer(self.client, "Pod", on_add=self._poke, on_update=self._poke,
                                 on_delete=self._poke, resync=30, fields=f"spec.nodeName={self.name}")
        self.probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.last_heartbeat = 0.0
        self.last_lease = 0.0
        self.events = EventRecorder(self.client, "kubelet", host=self.name)
        self.pods = PodSync(NodeRuntime(self.runtime, self.node, self.probes),
                            ApiSink(self.client, self.events), self.run_dir, self.name,
                            args.node_ip)

    def note(self, obj: dict, kind: str, reason: str, message: str) -> None:
        """Record an Event about the node, as the kubelet words it."""
        self.events.record(Note(reference(obj), kind, reason, message))

    def _poke(self, *_: dict) -> None:
        self.wake.set()   # the informer holds this node's Pods only (its field selector)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.events.start()
        self.register_node()
        self.note(self.node_object(), "Normal", "Starting", "Starting kubelet.")
        self.renew_lease()
        self.pods.adopt()
        self.network.collect(self.node)   # DEL what a previous kubelet attached to pods now gone
        self.check_adopted()
        self.informer.start()
        self.informer.wait_for_sync(timeout=30)
        while not self.stopping.is_set():
            try:
                if time.time() - self.last_heartbeat > HEARTBEAT:
                    self.register_node()
                if time.time() - self.last_lease > LEASE_RENEW:
                    self.renew_lease()
                self.sync()
            except ApiError as err:
                log.warning("API: %s", err)
            except Exception:
                log.exception("sync failed")
            self.wake.wait(self.pause())
            self.wake.clear()
        self.informer.stop()
        self.probes.shutdown(wait=False, cancel_futures=True)
        self.events.stop()

    def pause(self) -> float:
        """How long the loop waits for an event: until the next probe tick or back-off end
        (PodSync.next_due), at most SYNC_PERIOD."""
        due = self.pods.next_due()
        return SYNC_PERIOD if due is None else min(SYNC_PERIOD, max(0.0, due - time.time()))

    def check_adopted(self) -> None:
        """CHECK of the pods a previous kubelet attached and this one adopted: a plugin that
        finds a pod's network not as it left it (an interface, address or rule gone) says so,
        and the pod gets a Warning event with the plugin's words. Under CNI, lists that disable
        CHECK (the kubenet chain: Debian's portmap fails it, containernetworking/plugins#819)
        and versions before 0.4.0 are not checked, as the specification says; the built-in
        network checks its own (the veth on cbr0, the pod's address and default route)."""
        for local in list(self.pods.local.pods.values()):
            pod = local.handle
            if not isinstance(pod, Pod) or pod.attachment is None or not pod.sandbox_alive():
                continue
            for problem in self.network.check(self.node, pod.attachment, pod.pid):
                log.warning("pod %s: CNI CHECK: %s", pod.key, problem)
                self.events.record(Note(reference(local.manifest), "Warning", "NetworkNotReady",
                                        f"network of the pod failed its CNI CHECK: {problem}"))

    def stop(self, *_: object) -> None:
        """Leave the pods running: a kubelet's death does not end its pods."""
        self.stopping.set()
        self.wake.set()

    def sync(self) -> None:
        """The Pods bound to this node, planned and applied (agents/kubeletsync.py)."""
        self.pods.sync(self.informer.items())   # this node's Pods: the informer's field selector
        self.network.retry_pending()

    # -- node -------------------------------------------------------------------------------

    def node_object(self) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "node-role.kubernetes.io/worker": ""}
        labels.update(dict(kv.split("=", 1) for kv in self.args.label))
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": labels},
                "spec": {"podCIDR": self.args.pod_cidr, "podCIDRs": [self.args.pod_cidr]},
                "status": {"addresses": [{"type": "InternalIP", "address": self.args.node_ip},
                                         {"type": "Hostname", "address": self.name}],
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status",
                                           "lastHeartbeatTime": now, "lastTransitionTime": now}],
                           "capacity": MACHINE.capacity, "allocatable": MACHINE.capacity,
                           "nodeInfo": MACHINE.node_info,
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}

    def register_node(self) -> None:
        """Create or update the Node and its status. A write that conflicts with another's (a
        routing agent annotating the Node between ours: 409) is tried again on the object as it
        now is, up to NODE_STATUS_UPDATE_RETRY times, as upstream's kubelet retries."""
        for attempt in range(NODE_STATUS_UPDATE_RETRY):
            try:
                self._register_node()
                return
            except ApiError as err:
                if err.code != 409 or attempt == NODE_STATUS_UPDATE_RETRY - 1:
                    raise
                log.info("node %s: %s; trying again", self.name, err)

    def _register_node(self) -> None:
        node = self.node_object()
        current = self.client.get("Node", "", self.name)
        if current is None:
            current = self.client.create({**node, "status": {}})
        for cond in (current.get("status") or {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                node["status"]["conditions"][0]["lastTransitionTime"] = cond.get("lastTransitionTime")
        current["metadata"]["labels"] = node["metadata"]["labels"]
        current["spec"].update(node["spec"])
        current = self.client.update(current)
        current["status"] = node["status"]
        self.client.update_status(current)
        self.last_heartbeat = time.time()

    def lease_object(self, node_uid: str | None) -> dict:
        """The Node's Lease as the kubelet keeps it: held by the node, renewed now."""
        meta: dict = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if node_uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                        "uid": node_uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION,
                         "renewTime": micro_timestamp(datetime.now(UTC))}}

    def renew_lease(self) -> None:
        """Create or renew the Node's Lease; a failure is logged and retried next time."""
        try:
            current = self.client.get("Lease", LEASE_NAMESPACE, self.name)
            if current is None:
                node = self.client.get("Node", "", self.name)
                self.client.create(self.lease_object((node or {}).get("metadata", {}).get("uid")))
            else:
                current["spec"] = {**(current.get("spec") or {}),
                                   **self.lease_object(None)["spec"]}
                self.client.update(current)
            self.last_lease = time.time()
        except (ApiError, OSError) as err:
            log.warning("lease: %s", err)


def end_group(pgid: int, netns: int | None) -> None:
    """SIGKILL the processes of process group `pgid` that live in network namespace `netns`.

    Containers start in a session (and process group) of their own, so the group is exactly
    the container's processes; the namespace check keeps a reused pid from ever matching
    anything outside the pod.
    """
    if netns is None:
        return
    for pid in processes_in({netns}):
        try:
            if os.getpgid(pid) == pgid:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubelet")
    parser.add_argument("--node", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--cluster-dns", default="10.96.0.10")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--pod-network", choices=POD_NETWORK_PLUGINS, default="builtin")
    parser.add_argument("--cni-conf", default=None, help="network configuration list (JSON or "
                        "YAML); default: the kubenet chain")
    parser.add_argument("--cni-bin-dir", default=None, help=f"plugins searched before {CNI_BIN_DIR}")
    parser.add_argument("--mtu", type=int, default=1500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s kubelet[{args.node}] %(message)s")
    # Per-namespace and harmless to repeat: forwarding and bridge netfilter on this node.
    for name in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        try:
            write_sysctl(os.getpid(), name, "1")
        except OSError as err:
            log.warning("cannot set %s: %s", name, err)
    try:
        kubelet = Kubelet(args)
    except SpecError as err:
        print(f"kubelet: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, kubelet.stop)
    signal.signal(signal.SIGINT, kubelet.stop)
    kubelet.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
