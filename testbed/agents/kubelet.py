"""Acts: the kubelet, one process per worker, inside that worker's network namespace.

    python -m testbed.agents.kubelet --node w1 --api http://172.16.0.2:6443 --run-dir DIR \\
        --pod-cidr 10.244.0.0/24 --node-ip 172.16.1.2 --cluster-dns 10.96.0.10 [--label k=v]

It registers its Node (labels, podCIDR, addresses, a Ready condition renewed every few
seconds), watches Pods through the API server, and keeps the Pods bound to its node running:
sandboxes and containers through the pod runtime (emu/pods.py), restarts per restartPolicy
with a growing back-off, readiness and liveness probes (prober.py), graceful deletion
(SIGTERM, then SIGKILL after the grace period, then the Pod object is removed), and status
reports (api/podstatus.py, which also holds the restart-policy and back-off decisions as pure
functions). Its pods' state is saved in `kubelet-NODE.json` beside the run record, so a killed
kubelet leaves its pods running and a restarted one adopts them.

As upstream's kubelet it records Events (Pulled, Created, Started, Killing, BackOff, Unhealthy,
Failed, with upstream's wording and the container as fieldPath) and renews its Node's Lease in
kube-node-lease every 10 seconds (leaseDurationSeconds 40), beside the Node status heartbeat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from testbed.agents.prober import ProbeTracker, run_probe
from testbed.api.discovery import VERSION_INFO
from testbed.api.events import Note, container_path, micro_timestamp, reference
from testbed.api.podstatus import (
    UNKNOWN_EXIT,
    ContainerObservation,
    PodObservation,
    exit_code,
    next_backoff,
    pod_status,
    should_restart,
)
from testbed.apiclient.client import ApiError, Client, put_status
from testbed.apiclient.events import EventRecorder
from testbed.apiclient.informer import Informer
from testbed.emu.pausebin import enter_argv
from testbed.emu.podnet import BridgeNetwork, NodeRef
from testbed.emu.pods import Container, Pod, PodError, PodRuntime
from testbed.emu.record import (
    Record,
    netns_of,
    processes_in,
    read_kubelet_state,
    write_kubelet_state,
)
from testbed.net.netns import write_sysctl

log = logging.getLogger("kubelet")

HEARTBEAT = 5.0
MAX_GRACE = 30.0
LEASE_DURATION = 40          # seconds (the kubelet's nodeLeaseDurationSeconds default)
LEASE_RENEW = LEASE_DURATION / 4  # upstream renews every quarter of the duration
LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class ContainerTrack:
    readiness: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    backoff_until: float = 0.0
    backoff: float = 0.0
    last_exit: int | None = None          # exitCode of the last ended run (128 + N for signal N)
    last_exit_known: bool = True
    finished_at: float | None = None
    backoff_noted: float = -1.0           # backoff_until of the last BackOff event recorded


@dataclass
class LocalPod:
    pod: Pod
    manifest: dict
    tracks: dict[str, ContainerTrack] = field(default_factory=dict)
    last_status: dict | None = None

    def track(self, name: str) -> ContainerTrack:
        if name not in self.tracks:
            spec = next(c for c in self.manifest["spec"]["containers"] if c["name"] == name)
            self.tracks[name] = ContainerTrack(
                ProbeTracker(spec["readinessProbe"]) if spec.get("readinessProbe") else None,
                ProbeTracker(spec["livenessProbe"]) if spec.get("livenessProbe") else None)
        return self.tracks[name]


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


def _uid(obj: dict) -> str:
    return obj["metadata"]["uid"]


class Kubelet:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name = args.node
        self.client = Client(args.api, component="kubelet")
        self.run_dir = Path(args.run_dir)
        self.record = Record.load(self.run_dir)
        self.node = NodeRef(self.name, os.getpid(), IPv4Network(args.pod_cidr))
        self.network = BridgeNetwork()
        self.runtime = PodRuntime(self.record, self.network, IPv4Address(args.cluster_dns))
        self.pods: dict[str, LocalPod] = {}
        self.failed: dict[str, float] = {}            # uid -> when to retry a failed creation
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.informer = Informer(self.client, "Pod", on_add=self._poke, on_update=self._poke,
                                 on_delete=self._poke, resync=30)
        self.probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.last_heartbeat = 0.0
        self.last_lease = 0.0
        self.events = EventRecorder(self.client, "kubelet", host=self.name)

    def note(self, obj: dict, kind: str, reason: str, message: str,
             container: str | None = None) -> None:
        """Record an Event about a pod (or its container) or the node, as the kubelet words it."""
        self.events.record(Note(reference(obj, container_path(container) if container else None),
                                kind, reason, message))

    def note_started(self, manifest: dict, container: str, image: str) -> None:
        self.note(manifest, "Normal", "Pulled",
                  f'Container image "{image}" already present on machine', container)
        self.note(manifest, "Normal", "Created", f"Created container: {container}", container)
        self.note(manifest, "Normal", "Started", f"Started container {container}", container)

    def _poke(self, *objs: dict) -> None:
        if any((o.get("spec") or {}).get("nodeName") == self.name for o in objs):
            self.wake.set()

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.events.start()
        self.register_node()
        self.note(self.node_object(), "Normal", "Starting", "Starting kubelet.")
        self.renew_lease()
        self.adopt()
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
            self.wake.wait(0.5)
            self.wake.clear()
        self.informer.stop()
        self.probes.shutdown(wait=False, cancel_futures=True)
        self.events.stop()

    def stop(self, *_: object) -> None:
        """Leave the pods running: a kubelet's death does not end its pods."""
        self.stopping.set()
        self.wake.set()

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

    # -- state across restarts --------------------------------------------------------------

    def save(self) -> None:
        write_kubelet_state(self.run_dir, self.name, {
            uid: {**lp.pod.to_state(), "manifest": lp.manifest} for uid, lp in self.pods.items()})

    def adopt(self) -> None:
        for uid, saved in read_kubelet_state(self.run_dir, self.name).items():
            pod = self.runtime.adopt(self.node, saved["manifest"], saved)
            if not pod.sandbox_alive():
                self.runtime.delete(self.node, pod, grace=0.2)
                continue
            self.pods[uid] = LocalPod(pod, saved["manifest"])
            log.info("adopted pod %s (pause %s)", pod.key, pod.pid)
        self.save()

    # -- reconcile --------------------------------------------------------------------------

    def sync(self) -> None:
        desired = {_uid(p): p for p in
                   self.informer.items(lambda p: (p.get("spec") or {}).get("nodeName") == self.name)}
        changed = False
        for uid, lp in list(self.pods.items()):
            obj = desired.get(uid)
            if obj is None:
                self.teardown(uid, lp, grace=0.5)
                changed = True
            elif obj["metadata"].get("deletionTimestamp"):
                grace = min(float(obj["metadata"].get("deletionGracePeriodSeconds") or 0), MAX_GRACE)
                self.teardown(uid, lp, grace=grace)
                changed = True
        for uid, obj in desired.items():
            # Terminating with nothing running here (just torn down above, its creation failed,
            # or it ended earlier): nothing to wait for, so the object goes now.
            if uid not in self.pods and obj["metadata"].get("deletionTimestamp"):
                self.failed.pop(uid, None)
                self.remove_object(obj)
        new = [p for uid, p in desired.items()
               if uid not in self.pods and not p["metadata"].get("deletionTimestamp")
               and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
               and self.failed.get(uid, 0) <= time.time()]
        if new:
            self.create(new)
            changed = True
        for uid, lp in list(self.pods.items()):
            if uid in desired and not desired[uid]["metadata"].get("deletionTimestamp"):
                changed |= self.tend(lp)
                self.report(lp, desired[uid])
        if changed:
            self.save()

    def create(self, objs: list[dict]) -> None:
        for obj in objs:  # one by one, so that one bad pod does not hold up the others
            uid = _uid(obj)
            try:
                (pod,) = self.runtime.run_pods(self.node, [obj])
            except (PodError, OSError) as err:
                log.warning("pod %s/%s: %s", obj["metadata"]["namespace"], obj["metadata"]["name"], err)
                self.failed[uid] = time.time() + 5
                self.report_failure(obj, str(err))
                self.note(obj, "Warning", "Failed", f"Error: {err}")
                continue
            self.failed.pop(uid, None)
            self.pods[uid] = LocalPod(pod, obj)
            for c in obj["spec"]["containers"]:
                self.note_started(obj, c["name"], str(c.get("image", "")))
            log.info("started pod %s at %s", pod.key, pod.ip)

    def teardown(self, uid: str, lp: LocalPod, grace: float) -> None:
        for name, container in lp.pod.containers.items():
            if container.running():
                self.note(lp.manifest, "Normal", "Killing", f"Stopping container {name}", name)
        self.runtime.delete(self.node, lp.pod, grace=max(grace, 0.2))
        del self.pods[uid]
        log.info("stopped pod %s", lp.pod.key)

    def remove_object(self, obj: dict) -> None:
        """Delete the Pod object for good (an object already gone is fine: delete gives None)."""
        self.client.delete("Pod", obj["metadata"]["namespace"], obj["metadata"]["name"], grace_seconds=0)

    def tend(self, lp: LocalPod) -> bool:
        """Restart ended containers per policy; run due probes; act on liveness failures."""
        changed = False
        now = time.monotonic()
        policy = lp.manifest["spec"].get("restartPolicy", "Always")
        due = []
        for name, container in lp.pod.containers.items():
            track = lp.track(name)
            if not container.running():
                if track.finished_at is None:
                    self.ended(track, container, lp.pod)
                if should_restart(policy, track.last_exit):
                    if time.monotonic() >= track.backoff_until:
                        self.restart(lp, container, track)
                        changed = True
                    elif track.backoff_noted != track.backoff_until:  # once per back-off
                        track.backoff_noted = track.backoff_until
                        self.note(lp.manifest, "Warning", "BackOff",
                                  f"Back-off restarting failed container {name} in pod "
                                  f"{lp.pod.name}_{lp.pod.namespace}({lp.pod.uid})", name)
                continue
            started = container.started_at or time.time()
            mono_started = now - (time.time() - started)
            for kind in ("liveness", "readiness"):
                tracker = getattr(track, kind)
                if tracker is not None and tracker.due(mono_started, now):
                    tracker.last_run = now  # not due again while in flight
                    due.append((name, kind, tracker))
        if due:
            self.run_probes(lp, due)
            for name, kind, tracker in due:
                if tracker.failures:  # this attempt failed: upstream notes every failed attempt
                    self.note(lp.manifest, "Warning", "Unhealthy",
                              f"{kind.capitalize()} probe failed: {tracker.message}", name)
                if kind == "liveness" and tracker.result is False:
                    container = lp.pod.containers[name]
                    log.info("container %s of %s failed liveness (%s); restarting", name, lp.pod.key, tracker.message)
                    self.note(lp.manifest, "Normal", "Killing",
                              f"Container {name} failed liveness probe, will be restarted", name)
                    # liveness restarts wait at most 2 s, whatever the pod's grace period
                    grace = min(float(lp.manifest["spec"].get("terminationGracePeriodSeconds", 30)), 2.0)
                    self.runtime.stop_container(lp.pod, container, grace=grace)
                    track = lp.track(name)
                    self.ended(track, container, lp.pod)
                    if should_restart(policy, track.last_exit):
                        self.restart(lp, container, track, now_backoff=False)
                    changed = True
        return changed

    @staticmethod
    def ended(track: ContainerTrack, container: Container, pod: Pod | None = None) -> None:
        """Note a container's end once: when, and its exit code (unknown for an adopted one).

        A container is all of its processes: what its main process left behind in the pod
        (children in its process group) is ended too, as a runtime ends a container's cgroup.
        """
        if pod is not None and container.pid is not None:
            end_group(container.pid, netns_of(pod.pid))
        code = exit_code(container.reap())
        track.finished_at, track.last_exit_known = time.time(), code is not None
        track.last_exit = UNKNOWN_EXIT if code is None else code
        if track.readiness:
            track.readiness.result = None

    def restart(self, lp: LocalPod, container: Container, track: ContainerTrack, now_backoff: bool = True) -> None:
        container.restart_count += 1
        self.runtime.start_container(lp.pod, container)
        track.backoff = next_backoff(track.backoff) if now_backoff else track.backoff
        track.backoff_until = time.monotonic() + track.backoff
        track.finished_at = None
        # A restarted container starts over: not ready until its probes say so again.
        del lp.tracks[container.name]
        fresh = lp.track(container.name)
        fresh.backoff_until, fresh.backoff = track.backoff_until, track.backoff
        fresh.last_exit, fresh.last_exit_known = track.last_exit, track.last_exit_known
        log.info("restarted container %s of %s (restart %d)", container.name, lp.pod.key, container.restart_count)
        self.note_started(lp.manifest, container.name, container.image)

    def run_probes(self, lp: LocalPod, due: list[tuple[str, str, ProbeTracker]]) -> None:
        pod = lp.pod
        prefix = enter_argv(self.runtime.pause_bin, pod.pid, pod.directory)
        env = {"PATH": self.runtime.path}
        specs = {c["name"]: c for c in lp.manifest["spec"]["containers"]}
        futures = [(tracker, self.probes.submit(run_probe, tracker.probe, specs[name], str(pod.ip), prefix, env))
                   for name, kind, tracker in due]
        for tracker, future in futures:
            try:
                ok, message = future.result(timeout=float(tracker.probe.get("timeoutSeconds", 1)) + 5)
            except Exception as err:  # a probe that blew up counts as failed
                ok, message = False, str(err)
            tracker.record(ok, message, time.monotonic())

    # -- status -----------------------------------------------------------------------------

    def observe(self, lp: LocalPod) -> PodObservation:
        containers = []
        for spec in lp.manifest["spec"]["containers"]:
            c = lp.pod.containers[spec["name"]]
            track = lp.track(spec["name"])
            running = c.running()
            ready = running and (track.readiness is None or track.readiness.result is True)
            waiting = None
            if not running and track.finished_at is not None and time.monotonic() < track.backoff_until \
                    and should_restart(lp.manifest["spec"].get("restartPolicy", "Always"), track.last_exit):
                waiting = "CrashLoopBackOff"
            containers.append(ContainerObservation(
                spec["name"], str(spec.get("image", "")), running, ready, c.restart_count,
                c.started_at, c.pid if running else None, None if running else track.last_exit,
                track.finished_at, waiting,
                f"back-off restarting failed container {spec['name']}" if waiting else None,
                track.last_exit if c.restart_count and track.last_exit_known else None,
                track.last_exit_known))
        return PodObservation(lp.manifest["spec"].get("restartPolicy", "Always"),
                              str(lp.pod.ip) if lp.pod.ip else None, self.args.node_ip,
                              lp.pod.created, containers, lp.pod.sandbox_alive())

    def report(self, lp: LocalPod, obj: dict) -> None:
        status = pod_status(self.observe(lp), time.time(), obj.get("status"))
        if _same(status, obj.get("status")) and _same(status, lp.last_status):
            return
        try:
            put_status(self.client, obj, status)
            lp.last_status = status
        except ApiError as err:
            if err.code != 404:
                raise

    def report_failure(self, obj: dict, message: str) -> None:
        containers = [ContainerObservation(c["name"], str(c.get("image", "")), False, False,
                                           waiting_reason="CreateContainerError", waiting_message=message)
                      for c in obj["spec"]["containers"]]
        obs = PodObservation(obj["spec"].get("restartPolicy", "Always"), None, self.args.node_ip, time.time(),
                             containers, sandbox_ready=False)
        try:
            put_status(self.client, obj, pod_status(obs, time.time(), obj.get("status")))
        except ApiError:
            pass


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


def _same(a: dict | None, b: dict | None) -> bool:
    """Equal but for timestamps that move by themselves."""
    def strip(status: dict | None) -> object:
        if not status:
            return None
        return json.dumps({**status, "conditions": [{k: v for k, v in c.items() if not k.endswith("Time")}
                                                     for c in status.get("conditions", [])]}, sort_keys=True)
    return strip(a) == strip(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubelet")
    parser.add_argument("--node", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--cluster-dns", default="10.96.0.10")
    parser.add_argument("--label", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s kubelet[{args.node}] %(message)s")
    # Per-namespace and harmless to repeat: forwarding and bridge netfilter on this node.
    for name in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        try:
            write_sysctl(os.getpid(), name, "1")
        except OSError as err:
            log.warning("cannot set %s: %s", name, err)
    kubelet = Kubelet(args)
    signal.signal(signal.SIGTERM, kubelet.stop)
    signal.signal(signal.SIGINT, kubelet.stop)
    kubelet.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
