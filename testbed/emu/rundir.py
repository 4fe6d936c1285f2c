"""Acts (files): the run directory, its one owner: every path in it and its typed state files.

Each run keeps a directory under RUN_ROOT (/run/testbed, or /dev/shm/testbed where /run is on
disk; TESTBED_RUN_ROOT overrides), named NAME-PID-TIME. What it holds, and who writes it:

    record.jsonl          the record of what the run created (emu/record.py)
    owner.json            the process owning the cluster: {"pid", "start", "name"}
    cluster.json          name, topology, hosts, the API server's loopback address (emu/access.py)
    kubeconfig            for that address (mode 0600)
    control.sock          a `testbed up` daemon's control socket (emu/daemon.py)
    apiserver.sock        the API server's Unix socket; apiserver.state its journal
    logs/AGENT.log        each agent's output (emu/controlplane.py); logs/daemon.log
    pods/NS_NAME/         a pod's hosts, resolv.conf, hostname (POD_FILES), and CONTAINER/ with
                          its log[.previous]
    kubelet-NODE.json     a kubelet's pods (SavedPod below; agents/kubelet.py)
    proxy/NODE/kube-proxy.json   a kube-proxy's status after each sync (ProxyStatus below)
    netpol/NODE/netpol.json      a NetworkPolicy agent's status after each sync that applied
                                 something (NetpolStatus below; agents/netpol.py)
    flanneld/NODE/flanneld.json  flanneld's status after each sync that wrote something or
                                 reached other nodes than before (FlanneldStatus below;
                                 agents/flanneld.py)
    bird/HOST/bird.conf, bird.ctl   bgp routing: bird's generated configuration and control
                                 socket on a worker or the gateway (emu/controlplane.py)
    cni/NODE/cache/results/NET-ID-IF   the CNI result cache of a node's kubelet under plugin
                                 cni (libcni's format; owner testbed/cni/cache.py)
    cni/NODE/networks/NET/       host-local's allocations on that node (its dataDir, set by
                                 testbed/spec/cniconf.py: the default one would be shared by all nodes)

Everything that names one of these paths, or reads or writes one of these files, does it
through this module. The files' formats stay what they have been (others' scripts read them).
Readers are forgiving: a missing or cut file reads as empty (no pods, no status).

The kubelet's state file, `kubelet-NODE.json`:

A kubelet saves the pods it runs here so that a restarted kubelet adopts them
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

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _run_root() -> Path:
    """/run/testbed where /run is in memory (as on most systems), else /dev/shm/testbed.

    A run writes a few files per pod (hosts, resolv.conf, logs); on a disk-backed /run that
    alone costs about 2 ms a pod. Both places are emptied by a reboot, with the processes
    they describe.
    """
    if "TESTBED_RUN_ROOT" in os.environ:
        return Path(os.environ["TESTBED_RUN_ROOT"])
    try:
        with open("/proc/mounts") as mounts:
            in_memory = {fields[1] for fields in (line.split() for line in mounts) if fields[2] == "tmpfs"}
    except OSError:
        in_memory = set()
    return Path("/run/testbed") if "/run" in in_memory or "/dev/shm" not in in_memory else Path("/dev/shm/testbed")


RUN_ROOT = _run_root()

RECORD_LOG = "record.jsonl"
OWNER_FILE = "owner.json"
CLUSTER_FILE = "cluster.json"
KUBECONFIG_FILE = "kubeconfig"
CONTROL_SOCKET = "control.sock"
API_SOCKET = "apiserver.sock"
API_STATE = "apiserver.state"
PROXY_STATUS = "kube-proxy.json"
NETPOL_STATUS = "netpol.json"
FLANNELD_STATUS = "flanneld.json"
BIRD_CONFIG = "bird.conf"
BIRD_SOCKET = "bird.ctl"


def new_run_directory(name: str, pid: int, when: int) -> Path:
    """Make the directory of a new run under RUN_ROOT."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    directory = RUN_ROOT / f"{name}-{pid}-{when}"
    directory.mkdir()
    return directory


def run_directories(run_root: Path | None = None) -> list[Path]:
    """Every run directory under the run root (none when it does not exist)."""
    root = run_root or RUN_ROOT
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir())


def record_log(run_dir: Path) -> Path:
    return Path(run_dir) / RECORD_LOG


def cluster_file(run_dir: Path) -> Path:
    return Path(run_dir) / CLUSTER_FILE


def kubeconfig_file(run_dir: Path) -> Path:
    return Path(run_dir) / KUBECONFIG_FILE


def control_socket(run_dir: Path) -> Path:
    return Path(run_dir) / CONTROL_SOCKET


def api_socket(run_dir: Path) -> Path:
    return Path(run_dir) / API_SOCKET


def api_state(run_dir: Path) -> Path:
    """The API server's journal (agents/journal.py)."""
    return Path(run_dir) / API_STATE


def logs_directory(run_dir: Path) -> Path:
    return Path(run_dir) / "logs"


def agent_log(run_dir: Path, agent: str) -> Path:
    """An agent's output (`apiserver`, `kubelet-w1`, `kube-proxy-w1`, `daemon`, ...)."""
    return logs_directory(run_dir) / f"{agent}.log"


def pods_directory(run_dir: Path) -> Path:
    return Path(run_dir) / "pods"


def pod_directory(run_dir: Path, namespace: str, name: str) -> Path:
    """Where a pod's files live: its hosts, resolv.conf, and a directory per container."""
    return pods_directory(run_dir) / f"{namespace}_{name}"


# A pod's own files, written by the runtime and bind-mounted over /etc/<name> in its containers.
POD_HOSTS = "hosts"
POD_RESOLV_CONF = "resolv.conf"
POD_HOSTNAME = "hostname"
POD_FILES = (POD_HOSTS, POD_RESOLV_CONF, POD_HOSTNAME)


def pod_file(pod_dir: Path, name: str) -> Path:
    """One of the pod's POD_FILES."""
    return Path(pod_dir) / name


def container_directory(pod_dir: Path, container: str) -> Path:
    """A container's own directory: its log, and its working directory and HOME."""
    return Path(pod_dir) / container


def container_log(pod_dir: Path, container: str, previous: bool = False) -> Path:
    """A container's output: `log` for the current run, `log.previous` for the run before it
    (kept when the container restarts, for `kubectl logs --previous`)."""
    return container_directory(pod_dir, container) / ("log.previous" if previous else "log")


def container_logs(pod_dir: Path) -> Iterator[tuple[str, Path]]:
    """(container, file) for every log a pod's containers left, by container name: this run's
    (container_log) before the run before's (previous); none when the pod's directory is gone."""
    try:
        names = sorted(entry.name for entry in Path(pod_dir).iterdir() if entry.is_dir())
    except OSError:
        return
    for name in names:
        for previous in (False, True):
            path = container_log(pod_dir, name, previous)
            if path.is_file():
                yield name, path


def proxy_directory(run_dir: Path, node: str) -> Path:
    """A node's kube-proxy state directory (its --state-dir)."""
    return Path(run_dir) / "proxy" / node


def netpol_directory(run: Path, node: str) -> Path:
    """A node's NetworkPolicy agent state directory (its --state-dir)."""
    return Path(run) / "netpol" / node


def cni_directory(run_dir: Path, node: str) -> Path:
    """A node's CNI state under plugin cni: its result cache and host-local's store."""
    return Path(run_dir) / "cni" / node


def cni_cache_directory(run_dir: Path, node: str) -> Path:
    """libcni's cache directory of a node's kubelet (results/ below it, testbed/cni/cache.py)."""
    return cni_directory(run_dir, node) / "cache"


def cni_ipam_directory(run_dir: Path, node: str) -> Path:
    """host-local's dataDir on a node (a directory per network below it)."""
    return cni_directory(run_dir, node) / "networks"


def flanneld_directory(run: Path, node: str) -> Path:
    """A node's flanneld state directory (its --state-dir)."""
    return Path(run) / "flanneld" / node


def bird_directory(run: Path, host: str) -> Path:
    """A worker's or the gateway's bird directory: its configuration and control socket."""
    return Path(run) / "bird" / host


def bird_config(run: Path, host: str) -> Path:
    return bird_directory(run, host) / BIRD_CONFIG


def bird_socket(run: Path, host: str) -> Path:
    """bird's control socket (`bird -s`, `birdc -s`)."""
    return bird_directory(run, host) / BIRD_SOCKET


def _write_atomically(path: Path, text: str) -> None:
    """Readers in other processes never see half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    """The file's JSON, None when it is missing, unreadable or cut short."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# -- owner.json and cluster.json ---------------------------------------------------------------

def write_owner(run_dir: Path, pid: int, start: int | None, name: str) -> None:
    (Path(run_dir) / OWNER_FILE).write_text(json.dumps({"pid": pid, "start": start, "name": name}))


def read_owner(run_dir: Path) -> dict:
    """owner.json: the owning process's pid, start time and the cluster's name ({} when it is
    gone or unreadable, as during a teardown)."""
    owner = _read_json(Path(run_dir) / OWNER_FILE)
    return owner if isinstance(owner, dict) else {}


def write_cluster_info(run_dir: Path, info: dict) -> None:
    _write_atomically(cluster_file(run_dir), json.dumps(info, indent=1))


def read_cluster_info(run_dir: Path) -> dict:
    info = _read_json(cluster_file(run_dir))
    return info if isinstance(info, dict) else {}


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner may read (a kubeconfig)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


# -- kube-proxy's status -----------------------------------------------------------------------

@dataclass
class ProxyStatus:
    """What a kube-proxy writes to proxy/NODE/kube-proxy.json after every sync that did work:

        {"mode": MODE, "node": NODE, "pid": PID, "syncs": N, "time": EPOCH,
         "last": {... the last SyncResult ...} | null, "services": N,
         "full_syncs": N, "last_full": EPOCH, "full_sync_period": SECONDS}

    `full_syncs` counts the successful full syncs of this process and `last_full` is when
    the newest of them began (wall clock), so that whoever asked for one (SIGUSR1, see
    ControlPlane.force_full_sync) can tell it came after the asking; `full_sync_period` is
    its --full-sync-period (0 where it has none: userspace mode). Files written before these
    fields existed read as 0 for each.
    """

    mode: str
    node: str
    pid: int
    syncs: int = 0
    time: float = 0.0
    last: dict | None = None
    services: int = 0
    full_syncs: int = 0
    last_full: float = 0.0
    full_sync_period: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ProxyStatus | None:
        if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
            return None
        last = data.get("last")
        return cls(data["mode"], str(data.get("node") or ""), int(data.get("pid") or 0),
                   int(data.get("syncs") or 0), float(data.get("time") or 0.0),
                   last if isinstance(last, dict) else None, int(data.get("services") or 0),
                   int(data.get("full_syncs") or 0), float(data.get("last_full") or 0.0),
                   float(data.get("full_sync_period") or 0.0))


def write_proxy_status(state_dir: Path, status: ProxyStatus) -> None:
    """kube-proxy's side: its --state-dir is proxy_directory(run, node)."""
    _write_atomically(Path(state_dir) / PROXY_STATUS, json.dumps(status.to_json(), indent=1) + "\n")


def read_proxy_status(run_dir: Path, node: str) -> ProxyStatus | None:
    """A node's kube-proxy status, None before its first sync (or without a kube-proxy)."""
    return ProxyStatus.from_json(_read_json(proxy_directory(run_dir, node) / PROXY_STATUS))


# -- the NetworkPolicy agent's status ---------------------------------------------------------

@dataclass(frozen=True)
class NetpolStatus:
    """What a NetworkPolicy agent writes to netpol/NODE/netpol.json after every sync that
    applied something (its first sync among them):

        {"mode": MODE, "node": NODE, "pid": PID, "syncs": N, "time": EPOCH,
         "last": {... the last SyncResult ...} | null, "policies": N, "pods": N,
         "generation": N, "caught_up": {"Pod": [OBJECTS, RV], "Namespace": ..., ...}}
    """

    mode: str                   # iptables | nftables
    node: str
    pid: int
    syncs: int = 0              # syncs done
    time: float = 0.0           # wall clock of this write
    last: dict | None = None    # the last sync's result (asdict of the agent's SyncResult)
    policies: int = 0           # NetworkPolicies known
    pods: int = 0               # local pods it protects with at least one policy
    generation: int = 0         # bumps on every sync that applied something
    # what the rules reflect, per kind watched: [objects held, newest resourceVersion seen]
    caught_up: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> NetpolStatus | None:
        if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
            return None
        last = data.get("last")
        caught = data.get("caught_up") if isinstance(data.get("caught_up"), dict) else {}
        try:
            return cls(data["mode"], str(data.get("node") or ""), int(data.get("pid") or 0),
                       int(data.get("syncs") or 0), float(data.get("time") or 0.0),
                       last if isinstance(last, dict) else None,
                       int(data.get("policies") or 0), int(data.get("pods") or 0),
                       int(data.get("generation") or 0),
                       {str(k): [int(v[0]), int(v[1])] for k, v in caught.items()})
        except (TypeError, ValueError, IndexError, KeyError):
            return None


def write_netpol_status(directory: Path, status: NetpolStatus) -> None:
    """The agent's side: its --state-dir is netpol_directory(run, node)."""
    _write_atomically(Path(directory) / NETPOL_STATUS, json.dumps(status.to_json(), indent=1) + "\n")


def read_netpol_status(run: Path, node: str) -> NetpolStatus | None:
    """A node's NetworkPolicy agent status, None before its first sync (or without an agent)."""
    return NetpolStatus.from_json(_read_json(netpol_directory(run, node) / NETPOL_STATUS))


# -- flanneld's status ------------------------------------------------------------------------

@dataclass(frozen=True)
class FlanneldStatus:
    """What flanneld writes to flanneld/NODE/flanneld.json after each sync that wrote
    something or reached another set of nodes (its first sync among them):

        {"backend": "host-gw" | "vxlan", "node": NODE, "pid": PID, "syncs": N, "time": EPOCH,
         "last": {"ok", "full", "error", "seconds", "changes": [...]: the rest of that sync's
                  SyncResult},
         "subnet": CIDR | "", "vtep_mac": MAC | "", "remotes": {NODE: CIDR, ...},
         "ignored": {NODE: WHY, ...}}
    """

    backend: str
    node: str
    pid: int
    syncs: int = 0
    time: float = 0.0
    last: dict | None = None
    subnet: str = ""            # its own lease ("": none, as on the master)
    vtep_mac: str = ""          # vxlan: its flannel.1's MAC
    remotes: dict = dataclasses.field(default_factory=dict)   # node -> pod CIDR it reaches
    ignored: dict = dataclasses.field(default_factory=dict)   # node -> why it is not reached

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> FlanneldStatus | None:
        if not isinstance(data, dict) or not isinstance(data.get("backend"), str):
            return None
        last = data.get("last")
        try:
            return cls(data["backend"], str(data.get("node") or ""), int(data.get("pid") or 0),
                       int(data.get("syncs") or 0), float(data.get("time") or 0.0),
                       last if isinstance(last, dict) else None, str(data.get("subnet") or ""),
                       str(data.get("vtep_mac") or ""),
                       {str(k): str(v) for k, v in (data.get("remotes") or {}).items()},
                       {str(k): str(v) for k, v in (data.get("ignored") or {}).items()})
        except (TypeError, ValueError, AttributeError):
            return None


def write_flanneld_status(directory: Path, status: FlanneldStatus) -> None:
    """flanneld's side: its --state-dir is flanneld_directory(run, node)."""
    _write_atomically(Path(directory) / FLANNELD_STATUS, json.dumps(status.to_json(), indent=1) + "\n")


def read_flanneld_status(run: Path, node: str) -> FlanneldStatus | None:
    """A node's flanneld status, None before its first sync (or without a flanneld)."""
    return FlanneldStatus.from_json(_read_json(flanneld_directory(run, node) / FLANNELD_STATUS))


# -- the kubelet's state file ------------------------------------------------------------------

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
    _write_atomically(kubelet_state_path(run_dir, node),
                      json.dumps({uid: pod.to_json() for uid, pod in pods.items()}))


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
