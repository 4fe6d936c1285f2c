"""Acts: the PodRuntime of the emulated cluster: exec, attach and port-forward into the pods
that the kubelets run as `testbed-pause` sandboxes.

A pod is found through its kubelet's state file in the run directory, `kubelet-NODE.json`
(NODE the pod's spec.nodeName): pod uid -> its pause process (pid and kernel start time, so a
reused pid is never entered), its containers (pid, start) and its manifest. The format and
its reader belong to emu/rundir.py (`SavedPod`); read here, never written.

exec runs the command the way the kubelet starts a container (emu/pods.py start_container):
`testbed-pause enter` into the sandbox's namespaces with the pod's hosts, resolv.conf and
hostname bound over /etc, /sys remounted, the container's working directory and environment.
attach follows the container's log (RUN/pods/NS_NAME/CONTAINER/log, where the kubelet sends
its stdout and stderr) until the container's process ends: containers here start with stdin
from /dev/null and no terminal, so attach refuses -i and -t instead of pretending.
port-forward connects to 127.0.0.1:PORT from inside the pod's network namespace, as the CRI
runtimes do. The API server runs as root in the master's network namespace but shares the
machine's pid namespace and filesystem with every node, which is all this needs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.agents.streaming.protocol import Stdio
from testbed.agents.streaming.runtime import LocalProcess, StreamingError, spawn
from testbed.emu.pausebin import container_process, pause_binary
from testbed.emu.record import alive
from testbed.emu.rundir import SavedContainer, container_log, pod_directory, read_kubelet_state
from testbed.node.images import container_path


@dataclass(frozen=True)
class Sandbox:
    """What the kubelet's state says about one pod."""

    namespace: str
    name: str
    uid: str
    node: str
    pause_pid: int
    pause_start: int | None
    directory: Path                 # RUN/pods/NS_NAME: the pod's files, a directory per container
    manifest: dict
    containers: dict[str, SavedContainer]

    def container_spec(self, name: str) -> dict:
        for c in (self.manifest.get("spec") or {}).get("containers") or []:
            if c.get("name") == name:
                return c
        raise StreamingError(f"container {name} is not in the kubelet's copy of pod "
                             f"{self.namespace}/{self.name}")


def read_sandbox(run_dir: Path, pod: dict) -> Sandbox:
    """The sandbox of API object `pod` from its node's kubelet state; StreamingError if the
    kubelet has none (not started yet, or already gone)."""
    meta, node = pod["metadata"], (pod.get("spec") or {}).get("nodeName") or ""
    key = f"{meta.get('namespace', '')}/{meta['name']}"
    saved = read_kubelet_state(run_dir, node).get(meta.get("uid", ""))
    if saved is None or saved.pause_pid is None:
        raise StreamingError(f"pod {key} (uid {meta.get('uid')}) has no sandbox on node {node}")
    return Sandbox(saved.namespace, saved.name, meta.get("uid", ""), node, saved.pause_pid,
                   saved.pause_start, pod_directory(run_dir, saved.namespace, saved.name),
                   saved.manifest, saved.containers)


def exec_command(sandbox: Sandbox, container: str, argv: Sequence[str], tty: bool,
                 pause_bin: str) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run `argv` in `container` of `sandbox` as its own processes run."""
    sandbox.container_spec(container)   # StreamingError for a container the kubelet lacks
    command, env = container_process(pause_bin, sandbox.pause_pid, sandbox.directory,
                                     sandbox.manifest, container, list(argv), container_path())
    if tty:
        env["TERM"] = "xterm"   # as docker exec -t sets it
    return command, env


class EmulatedRuntime:
    """PodRuntime over the kubelets' state files in `run_dir`."""

    def __init__(self, run_dir: Path, pause_bin: Callable[[], str] = pause_binary):
        self.run_dir = Path(run_dir)
        self.pause_bin = pause_bin

    def sandbox(self, pod: dict) -> Sandbox:
        found = read_sandbox(self.run_dir, pod)
        if not alive(found.pause_pid, found.pause_start):
            raise StreamingError(f"the sandbox of pod {found.namespace}/{found.name} is not running")
        return found

    def exec(self, pod: dict, container: str, argv: Sequence[str], stdio: Stdio) -> LocalProcess:
        command, env = exec_command(self.sandbox(pod), container, argv, stdio.tty, self.pause_bin())
        try:
            return spawn(command, env, stdio)
        except OSError as err:
            raise StreamingError(f"cannot start {command[0]}: {err.strerror}") from err

    def attach(self, pod: dict, container: str, stdio: Stdio) -> LocalProcess:
        if stdio.stdin or stdio.tty:
            raise StreamingError("attach here follows the container's output only: the testbed "
                                 "starts containers with stdin from /dev/null and no terminal, "
                                 "so there is no input or tty to attach to (drop -i and -t)")
        found = self.sandbox(pod)
        state = found.containers.get(container) or SavedContainer()
        if not alive(state.pid, state.start):
            raise StreamingError(f"container {container} of pod {found.namespace}/{found.name} "
                                 "is not running")
        log = container_log(found.directory, container)
        # new output only, as attach shows; tail ends when the container's process does
        return spawn(["tail", "--bytes=0", "--follow", f"--pid={state.pid}", str(log)],
                     {"PATH": "/usr/bin:/bin"}, Stdio(False, stdio.stdout, False, False))

    def connect(self, pod: dict, port: int) -> socket.socket:
        from testbed.net.netns import socket_in  # pyroute2, only where it is needed

        found = self.sandbox(pod)
        sock = socket_in(found.pause_pid)
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError as err:
            sock.close()
            raise StreamingError(f"failed to connect to localhost:{port} inside the network "
                                 f"namespace of pod {found.namespace}/{found.name}: "
                                 f"{err.strerror or err}") from err
        sock.settimeout(None)
        return sock
