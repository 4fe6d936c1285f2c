"""Acts: the agents' zygote, which starts them without paying for the interpreter each time.

    python -m testbed.emu.zygote ROOM

Starting an agent as `nsenter --net=/proc/PID/ns/net python -m testbed.agents.kubelet ...` costs
a fresh interpreter that imports the same modules as every other agent: about 0.2 s of CPU and
25-40 MB of private memory each. A cluster starts one zygote instead (`Zygote.start`, while its
network is being built): it imports the agents' modules once, freezes them for the garbage
collector, and forks every Python agent from there. Each child enters its node's network
namespace (setns), starts a session of its own, sends its output to its log and runs the
module's `main(argv)`, as `python -m MODULE ARGV` would: the same process as before (its own
pid, record entry, log, signals, kill and restart) whose imported code is shared with every
other agent copy-on-write.

Requests come on the zygote's standard input and answers go to its standard output, a JSON line
each:

    {"module": "testbed.agents.kubelet", "argv": [...], "netns": PID, "log": PATH, "cwd": DIR}
        ->   {"pid": N} | {"error": TEXT}

The zygote reaps its children as they end (an ended agent never lingers as a zombie, and a
record's liveness check sees it gone), and exits when its standard input closes, leaving the
agents running: they are its owner's to end, from the run record. ROOM is a blank argument
whose bytes each child overwrites with its own command line, so `ps` shows
`... -m testbed.agents.kubelet --node w1 ...` rather than the zygote's.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

# What the zygote imports before forking: every Python agent, and what they import lazily.
PRELOAD = (
    "testbed.agents.apiserver", "testbed.agents.kubelet", "testbed.agents.kube_proxy",
    "testbed.agents.netpol", "testbed.agents.cloud", "testbed.agents.flanneld",
    "testbed.apiclient", "testbed.proxy.nftables", "testbed.netpol.iptables",
    "testbed.netpol.nftables", "testbed.emu.cninet", "testbed.agents.controllers",
    "testbed.agents.streaming.emulated", "testbed.net.netfilter", "encodings.idna",
)
ROOM = 2048          # bytes of command line a child may show
CLONE_NEWNET = 0x40000000
PR_SET_NAME = 15


class ZygoteError(RuntimeError):
    """The zygote could not start an agent (or is gone)."""


# -- the client: what a control plane holds ------------------------------------------------------


class Zygote:
    """A running zygote, as its owner sees it: `spawn` starts an agent and returns its pid."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lock = threading.Lock()   # one request at a time (the daemon's control thread too)
        self.ready = False

    @classmethod
    def start(cls, cwd: Path) -> Zygote:
        """Start a zygote; it imports while the caller goes on (the first spawn waits for it)."""
        proc = subprocess.Popen([sys.executable, "-m", "testbed.emu.zygote", " " * ROOM],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                start_new_session=True, cwd=cwd)
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, module: str, argv: list[str], netns: int | None, log: Path, cwd: Path) -> int:
        """Start `python -m module argv` in the network namespace of process `netns`, its output
        appended to `log`; its pid. ZygoteError when the zygote cannot."""
        request = {"module": module, "argv": argv, "netns": netns, "log": str(log), "cwd": str(cwd)}
        with self.lock:
            try:
                if not self.ready:
                    self._expect("ready")
                    self.ready = True
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                self.proc.stdin.flush()
                answer = self._answer()
            except (OSError, ValueError) as err:
                raise ZygoteError(f"the agents' zygote (pid {self.proc.pid}) is gone: {err}") from None
        if "error" in answer:
            raise ZygoteError(answer["error"])
        return int(answer["pid"])

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise ZygoteError(f"the agents' zygote (pid {self.proc.pid}) exited "
                              f"(status {self.proc.wait()})")
        return json.loads(line)

    def _expect(self, word: str) -> None:
        answer = self._answer()
        if answer.get("status") != word:
            raise ZygoteError(f"the agents' zygote said {answer!r}")

    def close(self) -> None:
        """Let the zygote go (it exits when its input closes); the agents live on. Idempotent."""
        if self.proc.returncode is not None:
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the zygote itself --------------------------------------------------------------------------


def _reap(*_: object) -> None:
    """SIGCHLD: collect every child that ended."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_lines(fd: int):
    """Lines from `fd`, read unbuffered (a child must inherit no read-ahead)."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:   # pragma: no cover - PEP 475 retries for us
            continue
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line


def _say(fd: int, answer: dict) -> None:
    data = json.dumps(answer).encode() + b"\n"
    while data:
        data = data[os.write(fd, data):]


def _set_title(module: str, argv: list[str]) -> None:
    """Show `python -m module argv` as this process's command line (in the ROOM the zygote was
    given) and the module's last name as its name (`ps -e`, top: kubelet, kube-proxy)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        # fields[0] is field 3 of proc(5): arg_start and arg_end are fields 48 and 49
        start, end = int(fields[45]), int(fields[46])
        words = [Path(sys.executable).name, "-m", module, *argv]
        data = b"\0".join(w.encode() for w in words)[:end - start - 1]
        ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)
    except (OSError, ValueError, IndexError):
        pass
    name = module.rsplit(".", 1)[-1].replace("_", "-")
    ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _child(request: dict, requests_fd: int, answers_fd: int, setns) -> int:
    """In the forked child: become the agent; its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    gc.enable()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as in any Python program
    os.setsid()
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)   # the zygote's pipes (requests_fd, answers_fd) are replaced, not shared
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in {null, log, requests_fd, answers_fd} - {0, 1, 2}:
        os.close(fd)
    if request.get("netns") is not None:
        fd = os.open(f"/proc/{request['netns']}/ns/net", os.O_RDONLY)
        entered = setns(fd, CLONE_NEWNET) == 0
        err = ctypes.get_errno()
        os.close(fd)
        if not entered:
            print(f"zygote: cannot enter the network namespace of {request['netns']}: "
                  f"{os.strerror(err)}", file=sys.stderr, flush=True)
            return 1
    os.chdir(request["cwd"])
    _set_title(request["module"], request["argv"])
    sys.argv = [request["module"], *request["argv"]]
    try:
        return importlib.import_module(request["module"]).main(list(request["argv"])) or 0
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def serve(requests_fd: int = 0, answers_fd: int = 1) -> int:
    """Import, then fork an agent per request until the input closes. Returns in a child too,
    with the agent's exit status, so that the interpreter ends it as it ends any program."""
    gc.disable()   # no collection frees holes in the imported objects' pages for children to fill
    for name in PRELOAD:
        importlib.import_module(name)
    setns = ctypes.CDLL(None, use_errno=True).setns
    gc.freeze()   # what is imported stays out of the children's collections: its pages stay shared
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # its owner ends it
    _say(answers_fd, {"status": "ready"})
    for line in _read_lines(requests_fd):
        try:
            request = json.loads(line)
            str(request["module"]), list(request["argv"]), str(request["log"])
        except (ValueError, KeyError, TypeError) as err:
            _say(answers_fd, {"error": f"bad request {line[:200]!r}: {err}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as err:
            _say(answers_fd, {"error": f"fork: {err}"})
            continue
        if pid == 0:
            return _child(request, requests_fd, answers_fd, setns)
        _say(answers_fd, {"pid": pid})
    return 0


if __name__ == "__main__":
    sys.exit(serve())
