"""Acts: a `Cluster` object for a cluster another process runs (a `testbed up` daemon).

`attach(found)` builds one from the run directory's cluster.json without building anything:
the same topology, the hosts' namespaces by pid, the API server through its Unix socket, and
agent kill/restart through the owner's control socket (the daemon starts and reaps agents,
so that it keeps one account of them). `down()` on an attached cluster only lets go of it:
the cluster goes on running until `testbed down`.
"""

from __future__ import annotations

from types import SimpleNamespace

from testbed.apiclient.client import Client
from testbed.emu import rundir
from testbed.emu.access import RunningCluster
from testbed.emu.cluster import Cluster
from testbed.emu.controlplane import API_PORT, ControlPlaneError
from testbed.emu.network import ClusterNetwork
from testbed.emu.record import Record
from testbed.emu.rundir import SavedPod, sandboxes


class AttachError(RuntimeError):
    pass


class RemoteControlPlane:
    """The control plane of a cluster another process owns: read here, act through it."""

    def __init__(self, found: RunningCluster, cluster: Cluster):
        self.found = found
        self.cluster = cluster
        self.socket = found.api_socket
        self.client = Client(f"unix://{self.socket}", timeout=10)
        self.api = f"http://{cluster.topo.master.address}:{API_PORT}"

    def _request(self, message: dict) -> dict:
        from testbed.emu.daemon import ControlError, request

        if not self.found.control_socket.exists():
            raise ControlPlaneError(f"cluster {self.found.name} was not started by `testbed up`:"
                                    " its agents can be killed and restarted only by the "
                                    "process that owns it")
        try:
            return request(self.found.control_socket, message)
        except ControlError as err:
            raise ControlPlaneError(str(err)) from None

    def kill(self, kind: str, node: str) -> None:
        self._request({"op": "kill", "agent": kind, "node": node})

    def restart(self, kind: str, node: str):
        answer = self._request({"op": "restart", "agent": kind, "node": node})
        return SimpleNamespace(kind=kind, node=node, pid=answer.get("pid"))

    def wait_agent(self, agent) -> None:
        """The daemon answers a restart only once the agent serves: nothing left to wait for."""

    def sandboxes(self) -> dict[str, SavedPod]:
        return sandboxes(self.found.directory, [w.name for w in self.cluster.topo.workers])

    def stop(self) -> None:
        self.client.close()


def attach(found: RunningCluster) -> Cluster:
    """The running cluster `found`, as a Cluster this process can use (and not tear down)."""
    from testbed.spec.topology import topology_from_dict

    info = found.info
    if not info.get("hosts") or not isinstance(info.get("topology"), dict):
        raise AttachError(f"cluster {found.name} is not ready to attach to yet (its "
                          f"{rundir.cluster_file(found.directory)} names no hosts)")
    topo = topology_from_dict(info["topology"])   # what was built, whatever its file holds now
    cluster = Cluster(topo)
    cluster.attached = True
    cluster.record = Record.load(found.directory)
    cluster.network = ClusterNetwork.attach(topo, cluster.record, info["hosts"])
    cluster.cp = RemoteControlPlane(found, cluster)
    cluster.kubeconfig = found.kubeconfig
    return cluster
