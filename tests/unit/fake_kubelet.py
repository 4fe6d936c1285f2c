"""Fakes for the kubelet's two seams (agents/kubeletsync.py): a container runtime whose pods and
containers are plain records the test drives (crash a container, fail a creation, script probe
results), and an API that keeps what the kubelet wrote. No processes, no root."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from testbed.agents.kubeletsync import PodFailed
from testbed.api.events import Note
from testbed.emu.rundir import SavedAttachment, SavedContainer, SavedPod
from testbed.node.kubeletplan import ContainerSeen, PodSeen


@dataclass
class FakeContainer:
    name: str
    running: bool = True
    exit_code: int | None = None      # Kubernetes form, once ended; None: unknown
    restart_count: int = 0
    started_at: float | None = None
    pid: int = 0


@dataclass
class FakePod:
    uid: str
    manifest: dict
    ip: str
    created: float
    alive: bool = True
    containers: dict[str, FakeContainer] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.manifest['metadata']['namespace']}/{self.manifest['metadata']['name']}"


class FakeRuntime:
    """Runtime over records; `calls` lists what the kubelet asked, in order."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.pods: dict[str, FakePod] = {}
        self.calls: list[tuple] = []
        self.fail: dict[str, str | PodFailed] = {}      # uid -> why its creation fails
        self.stop_exit = 143                            # what a stopped container exits with
        self.probe: Callable[[str, str, dict], tuple[bool, str]] = lambda uid, name, probe: (True, "ok")
        self._pids = iter(range(1000, 100000))
        self._ips = iter(range(2, 250))

    # test controls
    def crash(self, uid: str, name: str, code: int | None = 1) -> None:
        c = self.pods[uid].containers[name]
        c.running, c.exit_code = False, code

    # the Runtime protocol
    def run_pod(self, manifest: dict) -> FakePod:
        uid = manifest["metadata"]["uid"]
        self.calls.append(("run_pod", uid))
        if uid in self.fail:
            why = self.fail[uid]
            raise why if isinstance(why, PodFailed) else PodFailed(why)
        pod = FakePod(uid, manifest, f"10.0.1.{next(self._ips)}", self.clock())
        for c in manifest["spec"]["containers"]:
            pod.containers[c["name"]] = FakeContainer(c["name"], started_at=self.clock(),
                                                      pid=next(self._pids))
        self.pods[uid] = pod
        return pod

    def delete_pod(self, pod: FakePod, grace: float) -> None:
        self.calls.append(("delete_pod", pod.uid, grace))
        pod.alive = False
        for c in pod.containers.values():
            c.running = False
        self.pods.pop(pod.uid, None)

    def observe(self, pod: FakePod) -> PodSeen:
        return PodSeen(pod.alive, pod.ip, pod.created, {
            n: ContainerSeen(n, c.running, None if c.running else c.exit_code, c.started_at,
                             c.restart_count, c.pid)
            for n, c in pod.containers.items()})

    def start_container(self, pod: FakePod, name: str) -> None:
        self.calls.append(("start_container", pod.uid, name))
        c = pod.containers[name]
        c.running, c.exit_code, c.started_at = True, None, self.clock()
        c.restart_count += 1
        c.pid = next(self._pids)

    def stop_container(self, pod: FakePod, name: str, grace: float) -> None:
        self.calls.append(("stop_container", pod.uid, name, grace))
        c = pod.containers[name]
        c.running, c.exit_code = False, self.stop_exit

    def end_container(self, pod: FakePod, name: str) -> None:
        self.calls.append(("end_container", pod.uid, name))

    def run_probes(self, pod: FakePod, probes: Sequence[tuple[dict, dict]]) -> list[tuple[bool, str]]:
        self.calls.append(("run_probes", pod.uid, tuple(spec["name"] for spec, _ in probes)))
        return [self.probe(pod.uid, spec["name"], probe) for spec, probe in probes]

    def saved(self, pod: FakePod, manifest: dict) -> SavedPod:
        meta = manifest["metadata"]
        return SavedPod(pod.uid, meta["namespace"], meta["name"], pod.created, 4242, 7,
                        SavedAttachment(pod.ip, 24, "10.0.1.1", "veth0"),
                        {n: SavedContainer(c.pid, 8, c.started_at, c.restart_count, None)
                         for n, c in pod.containers.items()}, manifest)

    def adopt(self, saved: SavedPod) -> FakePod:
        self.calls.append(("adopt", saved.uid))
        pod = FakePod(saved.uid, saved.manifest, saved.ip or "", saved.created or 0.0,
                      alive=saved.pause_pid != 0)
        for n, c in saved.containers.items():
            pod.containers[n] = FakeContainer(n, pod.alive, None, c.restart_count, c.started_at,
                                              c.pid or 0)
        self.pods[saved.uid] = pod
        return pod


class FakeApi:
    """KubeletApi keeping Events, status writes and removals."""

    def __init__(self) -> None:
        self.notes: list[Note] = []
        self.statuses: list[tuple[str, dict]] = []     # (pod name, status)
        self.removed: list[str] = []
        self.gone: set[str] = set()                    # pod names whose status writes 404

    def record(self, note: Note) -> None:
        self.notes.append(note)

    def put_status(self, obj: dict, status: dict, best_effort: bool = False) -> bool:
        name = obj["metadata"]["name"]
        if name in self.gone:
            return False
        self.statuses.append((name, status))
        return True

    def remove(self, obj: dict) -> None:
        self.removed.append(obj["metadata"]["name"])

    def events(self) -> list[tuple[str, str]]:
        return [(n.reason, n.message) for n in self.notes]
