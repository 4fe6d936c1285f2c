"""Acts: pod sandboxes and containers on a node, the part a container runtime plays.

A sandbox is a `testbed-pause` process holding the pod's network, UTS (hostname = pod name)
and IPC namespaces, wired to the node by the pod network plugin (podnet.py: the built-in one,
whose pod side the pause process does itself, or real CNI plugins, emu/cninet.py, which get
the pod's hostPort mappings and are deleted while the pod's namespace still exists). Containers are
processes that join those namespaces, each with its own working directory, environment and
private mount namespace in which the pod's own /etc/hosts, /etc/resolv.conf and /etc/hostname
are bind-mounted and /sys shows the pod's interfaces. Containers of a pod therefore reach each
other on localhost and are told apart only by port, as in Kubernetes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from testbed.emu.pausebin import container_process, pause_binary
from testbed.emu.podnet import Attachment, NodeRef, PodNetwork
from testbed.emu.probes import listening_ports
from testbed.emu.record import Record, alive, end_processes
from testbed.emu.rundir import (
    POD_HOSTNAME,
    POD_HOSTS,
    POD_RESOLV_CONF,
    SavedAttachment,
    SavedContainer,
    SavedPod,
    container_log,
    pod_directory,
    pod_file,
    pods_directory,
)
from testbed.node.images import (
    ImageError,
    container_path,
    resolve_command,
)
from testbed.spec.cniconf import port_mappings


class PodError(RuntimeError):
    pass




@dataclass
class Container:
    """One container process. `proc` is set when this process started it; an adopted container
    (found running by a restarted kubelet) has only its pid and kernel start time."""

    name: str
    argv: list[str]
    ports: list[dict]
    log: Path
    image: str = ""
    proc: subprocess.Popen | None = None
    pid: int | None = None
    start: int | None = None
    started_at: float | None = None      # wall clock, for status
    restart_count: int = 0
    exit_code: int | None = None         # of the last run, when known

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and alive(self.pid, self.start)

    def reap(self) -> int | None:
        """The exit code once the process has ended (None if running or unknown)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exit_code = self.proc.returncode
        return self.exit_code


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    node: str
    manifest: dict
    directory: Path
    pause: subprocess.Popen | None = None
    attachment: Attachment | None = None
    containers: dict[str, Container] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    pause_pid: int | None = None
    pause_start: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def hostname(self) -> str:
        """spec.hostname, else the pod's name (as the kubelet sets it)."""
        return self.manifest.get("spec", {}).get("hostname") or self.name

    @property
    def ip(self) -> IPv4Address | None:
        return None if self.attachment is None else self.attachment.ip

    @property
    def pid(self) -> int:
        assert self.pause_pid is not None
        return self.pause_pid

    def sandbox_alive(self) -> bool:
        return self.pause_pid is not None and alive(self.pause_pid, self.pause_start)

    def saved(self, manifest: dict | None = None) -> SavedPod:
        """What a restarted kubelet needs to adopt this pod (emu/rundir.py's form)."""
        a = self.attachment
        return SavedPod(
            self.uid, self.namespace, self.name, self.created, self.pause_pid, self.pause_start,
            None if a is None else SavedAttachment(str(a.ip), a.prefixlen, str(a.gateway), a.host_veth),
            {c.name: SavedContainer(c.pid, c.start, c.started_at, c.restart_count, c.exit_code)
             for c in self.containers.values()},
            self.manifest if manifest is None else manifest, self.node)


def hosts_file(pod: Pod, ip: IPv4Address) -> str:
    """/etc/hosts as the kubelet writes it for a pod."""
    spec = pod.manifest.get("spec", {})
    hostname = pod.hostname
    line = f"{ip}\t{hostname}"
    if spec.get("subdomain"):
        line = f"{ip}\t{hostname}.{spec['subdomain']}.{pod.namespace}.svc.cluster.local\t{hostname}"
    return ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
            f"{line}\n")


def resolv_conf(namespace: str, nameserver: IPv4Address, domain: str = "cluster.local") -> str:
    """/etc/resolv.conf as the kubelet writes it for dnsPolicy ClusterFirst."""
    return (f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
            f"nameserver {nameserver}\noptions ndots:5\n")


class PodRuntime:
    """Runs the pods of every node of one cluster; records every process it starts."""

    def __init__(self, record: Record, network: PodNetwork, nameserver: IPv4Address,
                 python_bin: str | None = None):
        self.record = record
        pods_directory(record.directory).mkdir(exist_ok=True)
        self.network = network
        self.nameserver = nameserver
        self.pause_bin = pause_binary()
        self.path = container_path(python_bin) if python_bin else container_path()
        self.timings: dict[str, float] = {}   # seconds spent per phase of run_pods

    # -- sandboxes ----------------------------------------------------------------------------

    def run_pods(self, node: NodeRef, manifests: list[dict]) -> list[Pod]:
        """Create sandboxes for `manifests` on `node` and start their containers.

        The pause processes are all started before any is waited for, so their start-up
        overlaps; then each is wired and its containers started.
        """
        pods = []
        for manifest in manifests:
            meta = manifest["metadata"]
            uid = meta.get("uid") or str(uuid.uuid4())
            directory = pod_directory(self.record.directory, meta["namespace"], meta["name"])
            pods.append(Pod(meta["namespace"], meta["name"], uid, node.name, manifest, directory))
        for pod in pods:  # argv checks before anything is started
            self._plan_containers(pod)
        started: list[Pod] = []
        clock = time.perf_counter()
        try:
            wire = self.network.pause_wires   # else the plugins set up eth0 themselves
            for pod in pods:
                pod.pause = subprocess.Popen([self.pause_bin, "pause", pod.hostname, *(["--wire"] if wire else [])],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, start_new_session=True)
                started.append(pod)
            for pod in pods:
                line = pod.pause.stdout.readline()
                if line != b"ok\n":
                    err = (line + pod.pause.stdout.read()).decode(errors="replace")
                    raise PodError(f"pod {pod.key}: sandbox failed to start: {err.strip() or 'no answer'}")
                pod.pause_pid = pod.pause.pid
                pod.pause_start = self.record.add_process(pod.pid, f"pod {pod.key} pause").start
                if not wire:
                    pod.pause.stdin.close()
                    pod.pause.stdout.close()
            clock = self._tick("sandboxes", clock)
            attachments = self.network.add_many(
                node, [(p.key, p.uid, p.pid) for p in pods],
                pod_side=(lambda jobs: self._configure_sandboxes(pods, jobs)) if wire else None,
                port_mappings={p.key: port_mappings(p.manifest) for p in pods})
            clock = self._tick("network", clock)
            for pod, attachment in zip(pods, attachments, strict=True):
                pod.attachment = attachment
                self._write_files(pod)
            clock = self._tick("files", clock)
            for pod in pods:
                for container in pod.containers.values():
                    self.start_container(pod, container)
            self._tick("containers", clock)
        except BaseException:
            for pod in started:
                self.delete(node, pod)
            raise
        return pods

    def _configure_sandboxes(self, pods: list[Pod], jobs) -> None:
        """The pause processes set up their own eth0 (pause.c): hand each its line, then collect
        every answer, so the pods configure themselves in parallel."""
        by_pid = {p.pid: p for p in pods}
        for pid, a in jobs:
            pause = by_pid[pid].pause
            pause.stdin.write(f"{a.ip} {a.prefixlen} {a.gateway} {self.network.mtu}\n".encode())
            pause.stdin.close()
        for pid, _ in jobs:
            pause = by_pid[pid].pause
            answer = pause.stdout.readline().decode(errors="replace").strip()
            pause.stdout.close()
            if answer != "ready":
                raise PodError(f"pod {by_pid[pid].key}: sandbox could not set up eth0: {answer or 'no answer'}")

    def _tick(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase` in self.timings (for the benchmarks)."""
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def _plan_containers(self, pod: Pod) -> None:
        spec = pod.manifest["spec"]
        for index, c in enumerate(spec.get("containers", [])):
            try:
                argv = resolve_command(c, self.path, shutil.which)
            except ImageError as err:
                raise PodError(f"pod {pod.key}: spec.containers[{index}] ({c['name']}): {err}") from None
            log = container_log(pod.directory, c["name"])   # in the container's own directory
            pod.containers[c["name"]] = Container(c["name"], argv, c.get("ports", []), log, str(c.get("image", "")))

    def _write_files(self, pod: Pod) -> None:
        pod.directory.mkdir(exist_ok=True)
        pod_file(pod.directory, POD_HOSTS).write_text(hosts_file(pod, pod.ip))
        pod_file(pod.directory, POD_RESOLV_CONF).write_text(resolv_conf(pod.namespace, self.nameserver))
        pod_file(pod.directory, POD_HOSTNAME).write_text(pod.hostname + "\n")

    def start_container(self, pod: Pod, container: Container) -> None:
        """Start (or restart) one container of a running sandbox."""
        container.log.parent.mkdir(exist_ok=True)
        argv, env = container_process(self.pause_bin, pod.pid, pod.directory, pod.manifest,
                                      container.name, container.argv, self.path)
        if container.log.exists():  # a restart: the last run's output becomes the previous log
            os.replace(container.log, container_log(pod.directory, container.name, previous=True))
        with open(container.log, "ab") as log:
            container.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        container.pid = container.proc.pid
        container.exit_code = None
        container.started_at = time.time()
        netns = self.record.procs[pod.pid].netns if pod.pid in self.record.procs else None
        container.start = self.record.add_process(container.pid, f"pod {pod.key} container {container.name}",
                                                  netns=netns).start

    def stop_container(self, pod: Pod, container: Container, grace: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after `grace`; the container's exit code is kept when known."""
        if container.pid is None:
            return
        entry = self.record.procs.get(container.pid)
        end_processes([entry] if entry else [], grace, scan_namespaces=False)
        if container.proc is not None:
            if container.proc.poll() is None:
                container.proc.kill()
            container.exit_code = container.proc.wait()
        self.record.forget(container.pid)

    def adopt(self, node: NodeRef, saved: SavedPod) -> Pod:
        """A pod found running by a restarted kubelet: rebuild its record from its saved state."""
        meta = saved.manifest["metadata"]
        pod = Pod(meta["namespace"], meta["name"], saved.uid, node.name, saved.manifest,
                  pod_directory(self.record.directory, meta["namespace"], meta["name"]),
                  created=time.time() if saved.created is None else saved.created,
                  pause_pid=saved.pause_pid, pause_start=saved.pause_start)
        if saved.attachment is not None:
            a = saved.attachment
            pod.attachment = Attachment(pod.key, IPv4Address(a.ip), a.prefixlen,
                                        IPv4Address(a.gateway), a.host_veth)
            self.network.adopt(node, pod.attachment)
        self._plan_containers(pod)
        for name, c in saved.containers.items():
            if name in pod.containers:
                container = pod.containers[name]
                container.pid, container.start = c.pid, c.start
                container.started_at, container.restart_count = c.started_at, c.restart_count
                container.exit_code = c.exit_code
        return pod

    # -- deletion -----------------------------------------------------------------------------

    def delete(self, node: NodeRef, pod: Pod, grace: float = 2.0) -> None:
        """End every process in the pod's namespace, then unwire it. Safe to call twice."""
        self.delete_many(node, [pod], grace)

    def delete_many(self, node: NodeRef | None, pods: list[Pod], grace: float = 2.0) -> None:
        """Delete pods together: one grace period for all, not one each.

        Containers first (SIGTERM, SIGKILL after the grace), then the sandboxes; anything left
        in their namespaces (a server's forked workers) is ended by namespace identity. A
        network that deletes in the pod's namespace (CNI DEL) is deleted between the two, the
        sandbox's pid given while it lives; the built-in one after both. With `node` None the
        pods' node is going away too, so their networks are not deleted one by one.
        """
        containers = [self.record.procs[c.pid] for pod in pods for c in pod.containers.values()
                      if c.pid in self.record.procs]
        sandboxes = [self.record.procs[pod.pid] for pod in pods
                     if pod.pause_pid is not None and pod.pid in self.record.procs]
        in_netns = self.network.delete_in_netns and node is not None
        # With a DEL in the pod's namespace to come, the containers' stragglers are left to the
        # sandboxes' end (the same namespaces): a scan now would end the pause process too, and
        # the DEL would find no namespace (the kubelet tears the network down before it stops
        # the sandbox).
        end_processes(containers, grace, scan_namespaces=not in_netns)
        if in_netns:
            for pod in pods:
                if pod.attachment is not None:
                    self.network.delete(node, pod.attachment,
                                        sandbox_pid=pod.pid if pod.sandbox_alive() else None)
        end_processes(sandboxes, grace)
        for pod in pods:
            for proc in [pod.pause, *(c.proc for c in pod.containers.values())]:
                if proc is not None:  # processes we started: make sure, and reap them
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait()
        for entry in containers + sandboxes:
            self.record.forget(entry.pid)
        for pod in pods:
            if pod.attachment is not None and node is not None and not in_netns:
                self.network.delete(node, pod.attachment)
            pod.attachment = None
            shutil.rmtree(pod.directory, ignore_errors=True)

    def wait_listening(self, pod: Pod, timeout: float = 5.0) -> bool:
        """Wait until `pod` listens on every TCP port its containers declare (servers take a
        moment); False when `timeout` passed first."""
        return wait_listening(pod.pid, declared_tcp_ports(pod.manifest.get("spec") or {}), timeout)


def declared_tcp_ports(spec: dict) -> frozenset[int]:
    """The TCP containerPorts a pod spec's containers declare."""
    return frozenset(p["containerPort"] for c in spec.get("containers") or [] for p in c.get("ports") or []
                     if p.get("protocol", "TCP") == "TCP" and isinstance(p.get("containerPort"), int))


def wait_listening(pid: int, ports: Iterable[int], timeout: float, interval: float = 0.05) -> bool:
    """Wait until the network namespace of `pid` listens on every TCP port of `ports` (read
    from the kernel's socket tables, so nothing connects to the servers); False when `timeout`
    passed first (at once when it is not positive, after one look)."""
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while not wanted <= listening_ports(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
