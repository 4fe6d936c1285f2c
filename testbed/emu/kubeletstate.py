"""The kubelet's state file, `kubelet-NODE.json` in a run's directory: its one owner.

Pure but for reading and writing that file (json, os.replace; no processes, sockets or
netlink). A kubelet saves the pods it runs here so that a restarted kubelet adopts them
(agents/kubelet.py); the API server's exec, attach and logs (agents/streaming/emulated.py,
agents/podlogs.py), the CLI (emu/cluster.py, emu/attach.py) and `testbed ps` read it. Every
reader and writer goes through `SavedPod` / `SavedContainer` and the functions below; the
file format stays what it has been (others' scripts read it):

    {UID: {"namespace": NS, "name": NAME, "uid": UID, "created": EPOCH,
           "pause": [PID, STARTTIME],
           "attachment": [IP, PREFIXLEN, GATEWAY, HOST_VETH] | null,
           "containers": {NAME: {"pid": PID, "start": STARTTIME, "startedAt": EPOCH,
                                 "restartCount": N, "exitCode": RETURNCODE | null}},
           "manifest": {... the Pod as the kubelet got it ...}}}

STARTTIME is the kernel start time (/proc/PID/stat), so a reused pid never matches; exitCode
is the process's raw return code (negative for a signal), as the runtime saw it. Readers are
forgiving: a missing or cut file is no pods, a missing field its default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SavedContainer:
    """One container of a saved pod: its current (or last) process."""

    pid: int | None = None
    start: int | None = None              # kernel start time of `pid`
    started_at: float | None = None       # wall clock, for status
    restart_count: int = 0
    exit_code: int | None = None          # raw return code of the last run, when known

    def to_json(self) -> dict:
        return {"pid": self.pid, "start": self.start, "startedAt": self.started_at,
                "restartCount": self.restart_count, "exitCode": self.exit_code}

    @classmethod
    def from_json(cls, data: object) -> SavedContainer:
        d = data if isinstance(data, dict) else {}
        return cls(d.get("pid"), d.get("start"), d.get("startedAt"),
                   d.get("restartCount") or 0, d.get("exitCode"))


@dataclass(frozen=True)
class SavedAttachment:
    """The pod's network attachment (podnet.Attachment, addresses as text)."""

    ip: str
    prefixlen: int
    gateway: str
    host_veth: str

    def to_json(self) -> list:
        return [self.ip, self.prefixlen, self.gateway, self.host_veth]

    @classmethod
    def from_json(cls, data: object) -> SavedAttachment | None:
        if not isinstance(data, list | tuple) or len(data) != 4:
            return None
        ip, prefixlen, gateway, veth = data
        return cls(str(ip), int(prefixlen), str(gateway), str(veth))


@dataclass
class SavedPod:
    """What a restarted kubelet needs to adopt a pod, and what readers look up in it.

    `node` is the node whose file it came from; it is not stored in the entry."""

    uid: str
    namespace: str = ""
    name: str = ""
    created: float | None = None
    pause_pid: int | None = None
    pause_start: int | None = None
    attachment: SavedAttachment | None = None
    containers: dict[str, SavedContainer] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    node: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ip(self) -> str | None:
        return None if self.attachment is None else self.attachment.ip

    def container_spec(self, name: str) -> dict | None:
        """The manifest's spec of container `name`, None when the kubelet's copy lacks it."""
        for c in (self.manifest.get("spec") or {}).get("containers") or []:
            if c.get("name") == name:
                return c
        return None

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                "created": self.created, "pause": [self.pause_pid, self.pause_start],
                "attachment": None if self.attachment is None else self.attachment.to_json(),
                "containers": {name: c.to_json() for name, c in self.containers.items()},
                "manifest": self.manifest}

    @classmethod
    def from_json(cls, uid: str, data: object, node: str = "") -> SavedPod:
        d = data if isinstance(data, dict) else {}
        pause = d.get("pause")
        pid, start = pause if isinstance(pause, list | tuple) and len(pause) == 2 else (None, None)
        containers = d.get("containers") if isinstance(d.get("containers"), dict) else {}
        manifest = d.get("manifest") if isinstance(d.get("manifest"), dict) else {}
        return cls(str(d.get("uid") or uid), d.get("namespace") or "", d.get("name") or "",
                   d.get("created"), pid, start, SavedAttachment.from_json(d.get("attachment")),
                   {str(n): SavedContainer.from_json(c) for n, c in containers.items()},
                   manifest, node)


def kubelet_state_path(run_dir: Path, node: str) -> Path:
    """Where a node's kubelet keeps its pods' state."""
    return Path(run_dir) / f"kubelet-{node}.json"


def read_kubelet_state(run_dir: Path, node: str) -> dict[str, SavedPod]:
    """A kubelet's saved pods by uid; empty when it has saved none (yet) or the file is cut."""
    try:
        state = json.loads(kubelet_state_path(run_dir, node).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not isinstance(state, dict):
        return {}
    return {uid: SavedPod.from_json(uid, entry, node) for uid, entry in state.items()}


def write_kubelet_state(run_dir: Path, node: str, pods: Mapping[str, SavedPod]) -> None:
    """Replace the state file atomically: readers in other processes never see half of it."""
    path = kubelet_state_path(run_dir, node)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({uid: pod.to_json() for uid, pod in pods.items()}))
    os.replace(tmp, path)


def kubelet_nodes(run_dir: Path) -> list[str]:
    """The nodes whose kubelets have saved state in `run_dir`."""
    return sorted(p.name[len("kubelet-"):-len(".json")] for p in Path(run_dir).glob("kubelet-*.json"))


def sandboxes(run_dir: Path, nodes: Iterable[str]) -> dict[str, SavedPod]:
    """uid -> the saved pod, over the state files of `nodes` (each SavedPod knows its node)."""
    return {uid: pod for node in nodes for uid, pod in read_kubelet_state(run_dir, node).items()}


def kubelet_ps_state(cluster: str, run_dir: Path, nodes: Iterable[str]) -> dict:
    """What `testbed ps` lists (node/psview.py), from the kubelets' saved pods."""
    from testbed.node.images import ImageError, container_argv, container_env

    pods = []
    for uid, pod in sandboxes(run_dir, nodes).items():
        containers = []
        for name, c in pod.containers.items():
            spec = pod.container_spec(name) or {}
            try:
                argv = container_argv(spec, container_env(spec))
            except ImageError:
                argv = []
            containers.append({"name": name, "pid": c.pid, "start": c.start, "argv": argv,
                               "image": str(spec.get("image", "")),
                               "ports": [f"{x['containerPort']}/{x.get('protocol', 'TCP')}"
                                         for x in spec.get("ports", [])]})
        pods.append({"namespace": pod.namespace, "name": pod.name, "uid": uid, "node": pod.node,
                     "ip": pod.ip or "-", "created": pod.created,
                     "pause": {"pid": pod.pause_pid, "start": pod.pause_start},
                     "containers": containers})
    return {"cluster": cluster, "pods": pods}
