"""Acts: the seam between the streaming protocols and whatever runs the pods.

`PodRuntime` is what exec, attach and port-forward need from a container runtime (the part
of CRI that the kubelet's streaming server calls): start a command in a container, attach to
a container's output, open a TCP connection to a port inside the pod. The protocols move bytes
between a `Process`'s file descriptors or a socket and the client, and know nothing else.

Here too: `spawn`, which starts a command with pipes or under a pseudo-terminal (the one way
both runtimes start processes), and `LocalRuntime`, the fake for tests: commands run on this
machine with no namespaces and no root. The emulated cluster's runtime is in emulated.py.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from testbed.agents.streaming.protocol import Stdio


class StreamingError(RuntimeError):
    """The runtime cannot do what was asked; the message goes to the client (exec and attach:
    an InternalError Status on the error stream; port-forward: the error stream's text)."""


class Process(Protocol):
    """A started command or an attachment, as file descriptors the protocol pumps."""

    stdin: int | None     # where the client's input goes (the terminal's master with a tty)
    stdout: int | None    # what the client reads (the same master with a tty)
    stderr: int | None

    def poll(self) -> int | None: ...
    def wait(self) -> int: ...                    # the exit code; 128+N after signal N
    def resize(self, width: int, height: int) -> None: ...
    def close_stdin(self) -> None: ...            # end of input (not under a tty)
    def kill(self) -> None: ...                   # the whole process group
    def close(self) -> None: ...                  # our file descriptors


class PodRuntime(Protocol):
    """`pod` is the API object (metadata.uid, spec.nodeName, spec.containers); `container` has
    been checked to be one of the pod's. Failures raise StreamingError."""

    def exec(self, pod: dict, container: str, argv: Sequence[str], stdio: Stdio) -> Process: ...
    def attach(self, pod: dict, container: str, stdio: Stdio) -> Process: ...
    def connect(self, pod: dict, port: int) -> socket.socket: ...


class LocalProcess:
    """A subprocess.Popen with its pipes or its pseudo-terminal's master."""

    def __init__(self, popen: subprocess.Popen, stdin: int | None, stdout: int | None,
                 stderr: int | None, master: int | None = None):
        self.popen, self.stdin, self.stdout, self.stderr = popen, stdin, stdout, stderr
        self.master = master

    def poll(self) -> int | None:
        code = self.popen.poll()
        return None if code is None else _exit_code(code)

    def wait(self) -> int:
        return _exit_code(self.popen.wait())

    def resize(self, width: int, height: int) -> None:
        """TIOCSWINSZ on the terminal; the kernel sends SIGWINCH to its foreground group."""
        if self.master is not None and width > 0 and height > 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        if self.stdin is not None and self.stdin != self.master:
            os.close(self.stdin)
            self.stdin = None

    def kill(self) -> None:
        for end in (lambda: os.killpg(self.popen.pid, signal.SIGKILL),   # spawn made it a group
                    self.popen.kill):                                    # leader; or not yet
            try:
                end()
            except OSError:
                pass

    def close(self) -> None:
        for fd in {self.stdin, self.stdout, self.stderr, self.master} - {None}:
            try:
                os.close(fd)  # type: ignore[arg-type]
            except OSError:
                pass
        self.stdin = self.stdout = self.stderr = self.master = None


def _exit_code(returncode: int) -> int:
    # a signal shows as 128+N, as runc (and so the kubelet) reports it and a shell prints it
    return 128 - returncode if returncode < 0 else returncode


def spawn(argv: Sequence[str], env: dict[str, str], stdio: Stdio, cwd: str | Path | None = None
          ) -> LocalProcess:
    """Start `argv` as its own session. With a tty it runs on a new pseudo-terminal that
    becomes its controlling terminal (through util-linux `setsid --ctty`, which execs in place:
    the pid stays the command's), so job control and ^C work as under `docker exec -t`.
    Without one it gets pipes; streams the client did not ask for go to /dev/null."""
    if stdio.tty:
        master, slave = os.openpty()
        try:
            popen = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, cwd=cwd)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return LocalProcess(popen, master if stdio.stdin else None, master, None, master)
    pipe = subprocess.PIPE
    popen = subprocess.Popen(list(argv), stdin=pipe if stdio.stdin else subprocess.DEVNULL,
                             stdout=pipe if stdio.stdout else subprocess.DEVNULL,
                             stderr=pipe if stdio.stderr else subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
    # the protocol pumps raw descriptors (select and os.read): keep copies, drop the file objects
    files = (popen.stdin, popen.stdout, popen.stderr)
    fds = [None if f is None else os.dup(f.fileno()) for f in files]
    for f in files:
        if f is not None:
            f.close()
    popen.stdin = popen.stdout = popen.stderr = None
    return LocalProcess(popen, fds[0], fds[1], fds[2])


class LocalRuntime:
    """The fake runtime for tests: exec runs the command here, as this user, with a small fixed
    environment; attach runs `attach_argv` (a stand-in for a container's output); connect
    reaches `ports[port]` (default 127.0.0.1:port). `started` records every argv, for tests."""

    def __init__(self, attach_argv: Sequence[str] = ("sleep", "infinity"),
                 ports: dict[int, tuple[str, int]] | None = None, cwd: str | Path | None = None):
        self.attach_argv = list(attach_argv)
        self.ports = dict(ports or {})
        self.cwd = cwd
        self.started: list[tuple[str, str, list[str]]] = []

    def _env(self, pod: dict, stdio: Stdio) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOSTNAME": pod["metadata"]["name"]}
        if stdio.tty:
            env["TERM"] = "xterm"
        return env

    def exec(self, pod: dict, container: str, argv: Sequence[str], stdio: Stdio) -> LocalProcess:
        self.started.append(("exec", container, list(argv)))
        try:
            return spawn(argv, self._env(pod, stdio), stdio, self.cwd)
        except OSError as err:
            raise StreamingError(f"cannot run {argv[0]!r}: {err.strerror}") from err

    def attach(self, pod: dict, container: str, stdio: Stdio) -> LocalProcess:
        self.started.append(("attach", container, list(self.attach_argv)))
        return spawn(self.attach_argv, self._env(pod, stdio), Stdio(False, True, True, stdio.tty))

    def connect(self, pod: dict, port: int) -> socket.socket:
        try:
            sock = socket.create_connection(self.ports.get(port, ("127.0.0.1", port)), timeout=5)
        except OSError as err:
            raise StreamingError(f"dial tcp4 127.0.0.1:{port}: connect: {err.strerror}") from err
        sock.settimeout(None)
        return sock
