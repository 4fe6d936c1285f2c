"""Acts: one emulated cluster's life, as an ordered list of named steps.

`Cluster(topo).up()` makes the run record, builds the Mininet network and starts the control
plane (API server, kubelets, kube-proxies, the DNS add-on: emu/controlplane.py); `apply(objs)`
sends ordinary Kubernetes objects through the API server and `wait_ready()` waits for their
pods. `down()` ends everything from the run record.

The pod network and runtime alone, without a control plane, are emu/podlab.py's (for the
benchmarks and the runtime's own tests).

`endpoint(name)` turns a pod, node, gateway, client or Service name into the namespace to act
from and the address to reach, for probes and the CLI. A pod is NAMESPACE/NAME, or a bare NAME
when one namespace only has a pod of that name (`find_pod`; several: KeyError naming them,
which scenarios refuse at load already).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

from testbed.api.events import event_time
from testbed.api.meta import selector_matches
from testbed.apiclient.client import Client
from testbed.apiclient.informer import Informer
from testbed.controllers.common import is_ready
from testbed.emu import access, rundir
from testbed.emu.addons import dns_addon
from testbed.emu.controlplane import ROOT, ControlPlane
from testbed.emu.network import ClusterNetwork
from testbed.emu.pods import declared_tcp_ports, wait_listening
from testbed.emu.record import Record
from testbed.emu.rundir import container_logs, kubelet_ps_state, pod_directory
from testbed.emu.shield import shielded
from testbed.emu.zygote import Zygote
from testbed.net.forward import UnixForwarder
from testbed.spec.topology import Topology, topology_to_dict

log = logging.getLogger(__name__)
LISTEN_SETTLE = 5.0   # seconds wait_ready waits, after Ready, for pods' declared ports to listen


@dataclass(frozen=True)
class Endpoint:
    """Something traffic can come from or go to: its name, kind, namespace-holding pid, address."""

    name: str
    kind: str            # pod, master, worker, gateway, client
    pid: int
    address: IPv4Address | None


@dataclass(frozen=True)
class PodView:
    """A pod as the API server and its node's kubelet know it (control-plane mode)."""

    namespace: str
    name: str
    uid: str
    node: str
    ip: IPv4Address | None
    pid: int | None          # the pause process holding its namespaces
    ready: bool
    phase: str
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    ports: frozenset[int] = field(default=frozenset(), compare=False)   # declared, TCP

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _selects(deployment: dict, pod: PodView) -> bool:
    """Whether `pod` is one of `deployment`'s: its namespace, and the Deployment's label
    selector (matchLabels and matchExpressions, as the Deployment controller matches)."""
    return (pod.namespace == deployment["metadata"]["namespace"]
            and selector_matches(deployment["spec"]["selector"], pod.labels))


class PodEvents:
    """A watch of Pods that ends a wait as soon as any Pod changes, so that wait_ready looks
    when something happened rather than on a fixed poll; its cache is what it looks at, with
    no list of every Pod per look."""

    def __init__(self, client: Client, sync_timeout: float = 10):
        self.changed = threading.Event()
        poke = lambda *_: self.changed.set()  # noqa: E731
        self.informer = Informer(client, "Pod", on_add=poke, on_update=poke, on_delete=poke).start()
        self.informer.wait_for_sync(sync_timeout)

    def pods(self) -> list[dict]:
        return self.informer.items()

    def wait(self, timeout: float) -> None:
        """Until a Pod changes (or changed since the last wait), at most `timeout` seconds."""
        self.changed.wait(timeout)
        self.changed.clear()

    def stop(self) -> None:
        self.informer.stop()


TEARDOWN_GRACE = 0.2   # seconds between SIGTERM and SIGKILL for what is left at teardown


class Cluster:
    def __init__(self, topo: Topology, progress: Callable[[str], None] | None = None):
        self.topo = topo
        self.progress = progress or (lambda msg: None)
        self.record: Record | None = None
        self.network: ClusterNetwork | None = None
        self.cp: ControlPlane | None = None
        self.zygote: Zygote | None = None
        self.timings: dict[str, float] = {}
        self.partitions: list[list[str]] = []   # iptables rules a partition fault inserted
        self.partition_groups: list[list[list[str]]] = []   # the groups of each partition fault
        self.links_down: set[str] = set()       # nodes whose uplink a link fault took down
        self.forwarder: UnixForwarder | None = None   # kubectl's way in, on 127.0.0.1
        self.kubeconfig: Path | None = None
        self.attached = False   # another process owns it (emu/attach.py): down() lets go only

    # -- life -------------------------------------------------------------------------------

    def up(self) -> Cluster:
        steps = [("record", self._make_record), ("zygote", self._start_zygote),
                 ("network", self._build_network),
                 ("control plane", self._start_control_plane), ("access", self._open_access)]
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
        rundir.write_cluster_info(self.record.directory, self.info())

    def info(self) -> dict:
        """What other processes need to find and reach this cluster (cluster.json)."""
        hosts = {} if self.network is None else {
            h.name: {"role": h.role, "pid": h.pid, "address": str(h.address) if h.address else None}
            for h in self.network.hosts.values()}
        return {"name": self.topo.name, "topology": topology_to_dict(self.topo),
                "owner": os.getpid(), "hosts": hosts,
                "server": self.forwarder.url if self.forwarder is not None else None}

    def _open_access(self) -> None:
        """A loopback listener for kubectl on the host, its kubeconfig, and cluster.json."""
        self.forwarder = UnixForwarder(str(self.cp.socket)).start()
        self.kubeconfig = access.write_kubeconfig(self.record.directory, self.topo.name,
                                                  self.forwarder.url)
        rundir.write_cluster_info(self.record.directory, self.info())

    def _start_zygote(self) -> None:
        """The agents' zygote (emu/zygote.py), started first: it imports while the network is
        built."""
        self.zygote = Zygote.start(ROOT)
        self.record.add_process(self.zygote.pid, "the agents' zygote")

    def _build_network(self) -> None:
        self.progress(f"building {self.topo.name}: master, gateway, {len(self.topo.workers)} workers, "
                      f"{len(self.topo.clients)} clients")
        self.network = ClusterNetwork(self.topo, self.record)
        self.network.build()

    def _start_control_plane(self) -> None:
        self.cp = ControlPlane(self.topo, self.network, self.record, self.progress, self.zygote)
        self.cp.start()
        self.progress("waiting for cluster DNS")
        self.wait_ready(dns_addon(self.topo, self.cp.api), timeout=60)

    @property
    def client(self) -> Client:
        if self.cp is None:
            raise RuntimeError("this cluster runs without a control plane")
        return self.cp.client

    def down(self) -> None:
        """Tear everything down; works from the record, so it is safe after a partial up().
        No signal cuts it short (emu/shield.py)."""
        with shielded():
            self._down()

    def _down(self) -> None:
        if self.attached:
            if self.network is not None:
                self.network.stop()   # the shells this process attached, nothing else
            if self.cp is not None:
                self.cp.stop()
            return
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        if self.cp is not None:
            self.cp.stop()   # the zygote too
            self.cp = None
        elif self.zygote is not None and self.record is not None:   # up() failed before
            self.zygote.close()
            self.record.forget(self.zygote.pid)
        self.zygote = None
        if self.record is not None:
            # Agents appended what they started (pods) to the record file: read it back whole.
            self.record = Record.load(self.record.directory, self.record)
        if self.network is not None:
            self.network.stop()
            self.network = None
        if self.record is not None:
            # The pods' processes go with the cluster, as `docker rm -f` ends a kind node's:
            # a short SIGTERM, then SIGKILL; nothing they could do on the way out outlives the
            # namespaces and the run directory, and a server that keeps serving after SIGTERM
            # (agnhost serve-hostname does for 60 s) would hold every teardown up.
            self.record.clean(grace=TEARDOWN_GRACE)
            self.record = None

    def __enter__(self) -> Cluster:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- pods ---------------------------------------------------------------------------------

    # -- control-plane mode ------------------------------------------------------------------

    def apply(self, objects: list[dict]) -> list[dict]:
        """Create or update objects through the API server, all or nothing."""
        return self.client.apply_all(objects)

    def pod_views(self, pods: list[dict] | None = None) -> dict[str, PodView]:
        """Every Pod (`pods`, or listed now) with what its kubelet saved of its sandbox."""
        sandboxes = self.cp.sandboxes()
        items = pods if pods is not None else self.client.list("Pod")[0]
        out = {}
        for pod in items:
            meta, status = pod["metadata"], pod.get("status") or {}
            box = sandboxes.get(meta["uid"])
            ip = status.get("podIP")
            out[f"{meta['namespace']}/{meta['name']}"] = PodView(
                meta["namespace"], meta["name"], meta["uid"], pod["spec"].get("nodeName") or "",
                IPv4Address(ip) if ip else None, box.pause_pid if box else None, is_ready(pod),
                status.get("phase", "Pending"), meta.get("labels") or {},
                declared_tcp_ports(pod["spec"]))
        return out

    def wait_ready(self, objects: list[dict], timeout: float = 60, interval: float = 0.2,
                   settle: float = LISTEN_SETTLE) -> list[PodView]:
        """Wait until the pods of `objects` (Pods, and Deployments' replicas) are Ready, then
        up to `settle` seconds more until they listen on their declared TCP container ports.

        A pod without a readiness probe is Ready once its containers run, before its server
        listens (upstream too); the first connection of a test would then race the server's
        start. So a harness waits a moment for the declared ports, as e2e tests poll, and goes
        on regardless after `settle` (a declared port is no promise to listen on it)."""
        events = PodEvents(self.client)
        try:
            views, theirs = self._wait_ready(objects, timeout, interval, events.wait,
                                             lambda: self.pod_views(events.pods()))
        finally:
            events.stop()
        self._wait_listening(theirs, settle, interval / 4)
        return views

    def _wait_listening(self, views: list[PodView], settle: float, interval: float) -> None:
        """Up to `settle` seconds until each of `views` listens on its declared TCP ports."""
        deadline = time.monotonic() + settle
        for view in views:
            if view.ports and view.pid is not None:
                wait_listening(view.pid, view.ports, deadline - time.monotonic(), interval)

    def _wait_ready(self, objects: list[dict], timeout: float, interval: float,
                    pause: Callable[[float], object] = time.sleep,
                    look: Callable[[], dict[str, PodView]] | None = None,
                    ) -> tuple[list[PodView], list[PodView]]:
        """(every pod, the pods of `objects`) once those are Ready; TimeoutError telling the
        missing ones, and the stuck pods' last Warning events and log lines, after `timeout`.
        Between looks, `pause(seconds)`: at most `interval`, or until a Pod changes (PodEvents);
        a pod Ready but not yet in its kubelet's state file (no pause pid: the kubelet saves it
        just after the status it wrote) is looked at again after a tenth of it. `look` gives
        the views (default: pod_views, listing the Pods)."""
        wanted_pods = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects if o["kind"] == "Pod"}
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        deadline = time.monotonic() + timeout
        look = look or self.pod_views
        while True:
            views = look()
            missing = [k for k in wanted_pods if k not in views or not views[k].ready or views[k].pid is None]
            saving = any(v.ready and v.pid is None for v in views.values())
            stuck = set(missing)   # the pods whose events and logs a timeout tells
            theirs = {k for k in wanted_pods if k in views}
            for d in deployments:
                # matched here, on the listing above, not with one more API call per poll
                picked = [v for v in views.values() if _selects(d, v)]
                have = [v for v in picked if v.ready and v.pid is not None]
                stuck |= {v.key for v in picked if not v.ready}
                theirs |= {v.key for v in picked}
                want = d["spec"].get("replicas", 1)
                if len(have) < want:
                    missing.append(f"deployment {d['metadata']['namespace']}/{d['metadata']['name']} "
                                   f"({len(have)}/{want} ready)")
            if not missing:
                return list(views.values()), [views[k] for k in sorted(theirs)]
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(sorted(missing))}"
                                   + self._warnings_about(stuck) + self._last_words(stuck))
            pause(interval / 10 if saving else interval)

    def _last_words(self, pods: set[str], lines: int = 4) -> str:
        """The last lines each container of `pods` printed, this run's or, after a crash, the
        run before's (a container that fails says why there)."""
        out = []
        for key in sorted(pods):
            for container, log_file in container_logs(self.pod_files(key)):
                try:
                    tail = log_file.read_text(errors="replace").splitlines()[-lines:]
                except OSError:
                    continue
                if tail:
                    out.append(f"; {key} {container} ({log_file.name}): " + " | ".join(tail))
        return "".join(out)

    def _warnings_about(self, pods: set[str]) -> str:
        """The last Warning event of each of `pods` ("; NS/NAME: Reason: message"): why a pod
        does not come up (a CNI plugin's error, a command that cannot start) is said there."""
        try:
            events, _ = self.client.list("Event", None, fields="type=Warning")
        except Exception as err:   # an answer about the timeout matters more than this detail
            log.debug("events: %s", err)
            return ""
        last: dict[str, tuple[datetime, dict]] = {}
        for event in events:
            about = event.get("involvedObject") or {}
            key = f"{about.get('namespace')}/{about.get('name')}"
            if about.get("kind") == "Pod" and key in pods:
                when = event_time(event) or datetime.min.replace(tzinfo=UTC)
                if key not in last or when >= last[key][0]:
                    last[key] = (when, event)
        return "".join(f"; {key}: {e.get('reason')}: {str(e.get('message', '')).strip()}"
                       for key, (_, e) in sorted(last.items()))

    def pod_files(self, key: str):
        """The directory holding a pod's hosts and resolv.conf (namespace/name)."""
        namespace, _, name = key.partition("/")
        return pod_directory(self.record.directory, namespace, name)

    def pod_process(self, pod: PodView, argv: list[str],
                    container: str | None = None) -> tuple[list[str], dict[str, str]]:
        """(argv, env) that run `argv` in a container of `pod` (its first by default) as that
        container's own processes run: namespaces, pod files, environment, working directory."""
        from testbed.emu.pausebin import container_process, pause_binary
        from testbed.node.images import container_path

        box = self.cp.sandboxes().get(pod.uid)
        manifest = box.manifest if box else {}
        names = [c["name"] for c in (manifest.get("spec") or {}).get("containers") or []]
        if container is not None and container not in names:
            raise KeyError(f"container {container} is not valid for pod {pod.key} "
                           f"(containers: {', '.join(names)})")
        manifest = manifest or {"metadata": {"name": pod.name}, "spec": {}}
        return container_process(pause_binary(), pod.pid, self.pod_files(pod.key), manifest,
                                 container or (names[0] if names else ""), argv,
                                 container_path())

    def kill_container(self, pod: PodView, container: str | None) -> list[str]:
        """SIGKILL a container's process (all of the pod's with None); its kubelet restarts it."""
        import signal

        from testbed.emu.record import alive

        box = self.cp.sandboxes().get(pod.uid)
        killed = []
        for name, c in (box.containers if box else {}).items():
            if container in (None, name) and c.pid and alive(c.pid, c.start):
                os.kill(c.pid, signal.SIGKILL)
                killed.append(name)
        if not killed:
            raise KeyError(f"no running container {container or ''} in {pod.key}".replace("  ", " "))
        return killed

    def pods_matching(self, namespace: str, selector: str, views: dict[str, PodView] | None = None) -> list[PodView]:
        """The pods of `namespace` whose labels match the label selector `selector`."""
        items, _ = self.client.list("Pod", namespace, selector=selector)
        views = views if views is not None else self.pod_views()
        return [views[f"{p['metadata']['namespace']}/{p['metadata']['name']}"] for p in items
                if f"{p['metadata']['namespace']}/{p['metadata']['name']}" in views]

    def service_ip(self, name: str) -> IPv4Address | None:
        """The ClusterIP of Service `name` or `namespace/name` (default namespace)."""
        ns, _, svc = name.rpartition("/")
        found = self.client.get("Service", ns or "default", svc)
        ip = (found or {}).get("spec", {}).get("clusterIP")
        return IPv4Address(ip) if ip and ip != "None" else None

    def _pod_map(self) -> dict:
        """Pods by key, from one API listing."""
        return self.pod_views()

    def find_pod(self, name: str, pods: dict | None = None) -> PodView | None:
        """A pod by `namespace/name`, or by bare name when that is unambiguous (`pods`: a
        `_pod_map()` the caller already has)."""
        pods = self._pod_map() if pods is None else pods
        if name in pods:
            return pods[name]
        matches = [p for p in pods.values() if p.name == name]
        if len(matches) > 1:
            raise KeyError(f"{name!r} names pods in several namespaces: {', '.join(p.key for p in matches)}")
        return matches[0] if matches else None

    # -- names --------------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """A pod, node, gateway or client by name; KeyError naming what exists otherwise."""
        pods = self._pod_map()
        pod = self.find_pod(name, pods)
        if pod is not None:
            return Endpoint(pod.key, "pod", pod.pid, pod.ip)
        host = self.network.hosts.get(name) if self.network else None
        if host is not None:
            return Endpoint(name, host.role, host.pid, host.address)
        known = sorted([*self.network.hosts, *(p.key for p in pods.values())])   # NAMESPACE/NAME
        raise KeyError(f"no pod, node or client is named {name!r} (known: {', '.join(known)})")

    def address_of(self, name: str) -> IPv4Address:
        """An IP address given as text, or the address of a named pod, node, client or Service."""
        if name == "localhost":
            return IPv4Address("127.0.0.1")
        try:
            return IPv4Address(name)
        except ValueError:
            pass
        try:
            address = self.endpoint(name).address
        except KeyError:
            ip = self.service_ip(name) if self.cp is not None else None
            if ip is None:
                raise
            return ip
        if address is None:
            raise KeyError(f"{name} has no single address to reach")
        return address

    def all_pods(self) -> list:
        """Every pod, as the API server and the kubelets know it."""
        return list(self._pod_map().values())

    # -- state for other terminals (testbed ps) ---------------------------------------------

    def ps_state(self) -> dict:
        return kubelet_ps_state(self.topo.name, self.record.directory,
                                [w.name for w in self.topo.workers])
