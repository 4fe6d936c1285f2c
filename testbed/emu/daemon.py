"""Acts: the process that keeps a `testbed up` cluster running, and its control socket.

    python -m testbed.emu.daemon --topology FILE [--name NAME] [-f MANIFEST ...] --ready-fd N

`testbed up` starts it in a session of its own and reads its progress from the pipe `N`
(JSON lines: {"progress": text}, then {"ready": cluster.json} or {"error": text, "code": n}).
The daemon builds the cluster exactly as `testbed run` does (emu/cluster.py), applies the
manifests and waits for their pods, then owns the cluster until told to stop: it is the
run record's owner, so the cluster counts as running while it lives, and a `testbed clean`
after a SIGKILL finds everything it made.

It serves RUN/control.sock, one JSON request per connection, for the commands that change a
running cluster from other processes:

    {"op": "status"}                                  -> cluster.json
    {"op": "kill" | "restart", "agent": A, "node": N} -> {"pid": ...}
    {"op": "down"}                                    -> {"down": true}, once torn down

SIGTERM, SIGINT and SIGHUP tear it down too. Teardown is never cut short: signals that arrive
during it are ignored, and the reply to `down` is sent only when everything is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from pathlib import Path
from typing import Any

from testbed.emu import rundir

log = logging.getLogger("testbed.daemon")

READY_TIMEOUT = 180.0   # seconds for the manifests' pods to become Ready


class ControlError(RuntimeError):
    """A control request the daemon refused, or a daemon that did not answer."""


def request(control_socket: Path, message: dict, timeout: float = 300.0) -> dict:
    """Send one request to a daemon's control socket; its answer (ControlError on refusal)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(control_socket))
            sock.sendall(json.dumps(message).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as err:
            raise ControlError(f"the cluster's daemon did not answer at {control_socket}: "
                               f"{err}") from err
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"the cluster's daemon answered {data[:200]!r}") from None
    if "error" in answer:
        raise ControlError(answer["error"])
    return answer


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        daemon: Daemon = self.server.daemon  # type: ignore[attr-defined]
        try:
            message = json.loads(self.rfile.readline())
            answer = daemon.serve(message)
        except Exception as err:  # the caller gets the reason, the daemon lives on
            answer = {"error": str(err)}
        try:
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()
        except OSError:
            pass
        if answer.get("down"):
            daemon.replied.set()   # the daemon may exit now


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Daemon:
    def __init__(self, cluster: Any):
        self.cluster = cluster
        self.stop = threading.Event()
        self.gone = threading.Event()
        self.asked_down = False            # by a `down` request (not a signal)
        self.replied = threading.Event()   # ... which has had its answer
        self.lock = threading.Lock()   # one agent action at a time
        path = rundir.control_socket(cluster.record.directory)
        self.server = _Server(str(path), _Handler)
        self.server.daemon = self  # type: ignore[attr-defined]
        os.chmod(path, 0o600)

    def start(self) -> Daemon:
        threading.Thread(target=self.server.serve_forever, args=(0.2,), name="control",
                         daemon=True).start()
        return self

    def serve(self, message: dict) -> dict:
        op = message.get("op")
        if op == "status":
            return self.cluster.info()
        if op in ("kill", "restart"):
            agent, node = str(message.get("agent")), str(message.get("node"))
            with self.lock:
                if self.stop.is_set():
                    raise RuntimeError("the cluster is being torn down")
                if op == "kill":
                    self.cluster.cp.kill(agent, node)
                    return {"killed": agent, "node": node}
                started = self.cluster.cp.restart(agent, node)
                self.cluster.cp.wait_agent(started)
                return {"pid": started.pid, "node": node}
        if op == "down":
            self.asked_down = True
            self.stop.set()
            self.gone.wait()
            return {"down": True}
        raise ValueError(f"unknown request {op!r}")

    def teardown(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown()
        with self.lock:   # an agent restart under way finishes first; none starts after
            self.cluster.down()
        self.gone.set()
        if self.asked_down:
            self.replied.wait(10)
        self.server.server_close()


def _interrupt(signum: int, _frame: Any) -> None:
    """The first signal during bring-up stops it; the teardown that follows ignores more."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.emu.daemon")
    p.add_argument("--topology", required=True)
    p.add_argument("--name")
    p.add_argument("-f", "--filename", action="append", default=[])
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--wait", type=float, default=READY_TIMEOUT)
    args = p.parse_args(argv)
    pipe = os.fdopen(args.ready_fd, "w", buffering=1)

    def say(**item: Any) -> None:
        try:
            pipe.write(json.dumps(item) + "\n")
        except OSError:
            pass  # `testbed up` went away: the cluster stays up regardless

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    from testbed.api.manifests import load_manifests
    from testbed.emu.cluster import Cluster
    from testbed.emu.errors import SETUP_ERRORS
    from testbed.spec.source import SpecError
    from testbed.spec.topology import load_topology

    cluster = None
    try:
        topo = load_topology(args.topology)
        if args.name:
            topo = dataclasses.replace(topo, name=args.name)
        objects = load_manifests(args.filename)
        cluster = Cluster(topo, progress=lambda text: say(progress=text)).up()
        _log_to(rundir.agent_log(cluster.record.directory, "daemon"))
        if objects:
            say(progress=f"applying {len(objects)} objects")
            cluster.apply(objects)
            say(progress="waiting for their pods to be Ready")
            try:
                cluster.wait_ready(objects, timeout=args.wait)
            except TimeoutError as err:
                say(warning=str(err))
        daemon = Daemon(cluster).start()
    except SpecError as err:
        say(error="\n".join(str(p) for p in err.problems), code=2)
        return 2
    except KeyboardInterrupt:
        _teardown_quietly(cluster)
        say(error="interrupted; the cluster was torn down", code=130)
        return 130
    except SETUP_ERRORS as err:
        _teardown_quietly(cluster)
        say(error=f"the cluster could not be set up: {err}", code=1)
        return 1
    except Exception as err:  # a bug: tear down, and say what it was
        log.exception("bring-up failed")
        _teardown_quietly(cluster)
        say(error=f"the cluster could not be set up: {type(err).__name__}: {err}", code=1)
        return 1
    say(ready=cluster.info())
    pipe.close()
    # Up: from now on a signal asks for a teardown, which the main thread does.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: daemon.stop.set())
    daemon.stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)   # a teardown is never cut short
    log.info("tearing down")
    daemon.teardown()
    return 0


def _teardown_quietly(cluster: Any) -> None:
    """Tear down whatever was built; signals wait until it is done."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if cluster is not None:
        cluster.down()


def _log_to(path: Path) -> None:
    """From here on, the daemon's log and anything printed go to RUN/logs/daemon.log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s daemon %(message)s")


if __name__ == "__main__":
    raise SystemExit(main())
