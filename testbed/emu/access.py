"""Acts (files): how the host finds and reaches the clusters that run on this machine.

Every running cluster's run directory (testbed/emu/rundir.py, which owns its paths) holds,
beside its record:

    owner.json     the process that owns the cluster (the `testbed up` daemon, a `testbed run`,
                   a `testbed cli`, a Python script); the cluster runs while it lives
    cluster.json   its name, topology file, the Mininet hosts (pid, role, address), and the
                   API server's loopback address for kubectl (written once it is up)
    kubeconfig     a kubeconfig for that address (plain HTTP on 127.0.0.1, no credentials)
    control.sock   for `testbed up` clusters: the daemon's control socket (down, kill, ...)

`running()` lists the clusters whose owner is alive and `find(name)` picks one: by name, or
the only one when `name` is None; every command that acts on a running cluster (`down`,
`kubeconfig`, `cli NAME`, `get`, `ps`, `nat`, `conntrack`) chooses it this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.emu import rundir
from testbed.emu.record import Record


class NoCluster(Exception):
    """No running cluster matches (or several do): the message says which exist."""


@dataclass(frozen=True)
class RunningCluster:
    name: str
    directory: Path

    @property
    def info(self) -> dict:
        return rundir.read_cluster_info(self.directory)

    @property
    def topology(self):
        """The Topology it was built from (cluster.json keeps it), or None before it says;
        commands check manifests against it before they apply them."""
        from testbed.spec.topology import topology_from_dict

        data = self.info.get("topology")
        try:
            return topology_from_dict(data) if isinstance(data, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def api_socket(self) -> Path:
        return rundir.api_socket(self.directory)

    @property
    def kubeconfig(self) -> Path:
        return rundir.kubeconfig_file(self.directory)

    @property
    def control_socket(self) -> Path:
        return rundir.control_socket(self.directory)


def kubeconfig_text(name: str, server: str) -> str:
    """A kubeconfig whose current context is this cluster (`testbed-NAME`, as kind names its
    contexts `kind-NAME`)."""
    ctx = f"testbed-{name}"
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: {ctx}\n  cluster:\n"
            f"    server: {server}\ncontexts:\n- name: {ctx}\n  context:\n"
            f"    cluster: {ctx}\n    user: {ctx}\n    namespace: default\n"
            f"current-context: {ctx}\npreferences: {{}}\nusers:\n- name: {ctx}\n  user: {{}}\n")


def write_kubeconfig(directory: Path, name: str, server: str) -> Path:
    return rundir.write_private(rundir.kubeconfig_file(directory), kubeconfig_text(name, server))


def running(run_root: Path | None = None) -> list[RunningCluster]:
    """Every cluster whose owner is alive, by run directory."""
    try:
        dirs = rundir.run_directories(run_root)
    except PermissionError as err:
        raise NoCluster(f"cannot read {run_root or rundir.RUN_ROOT}: {err.strerror} "
                        "(run as root?)") from err
    out = []
    for d in dirs:
        record = Record(d)
        if record.owner_alive():
            out.append(RunningCluster(record.owner().get("name") or d.name, d))
    return out


def find(name: str | None = None, run_root: Path | None = None,
         hint: str = "give its name") -> RunningCluster:
    """The running cluster called `name` (or whose run directory is `name`); with `name`
    None, the only one running."""
    found = running(run_root)
    if name is not None:
        found = [c for c in found if name in (c.name, c.directory.name)]
    if not found:
        which = f" named {name!r}" if name else ""
        others = ", ".join(c.name for c in running(run_root))
        raise NoCluster(f"no cluster{which} is running" + (f" (running: {others})" if others
                                                           else "; start one with `testbed up "
                                                           "TOPOLOGY`"))
    if len(found) > 1:
        names = ", ".join(f"{c.name} ({c.directory.name})" for c in found)
        raise NoCluster(f"{len(found)} clusters are running: {names}; {hint}")
    return found[0]
