"""Acts: one exec or attach session, between a runtime Process and the client's streams.

What the kubelet's ServeExec/ServeAttach do once the streams exist: start the command (or
attach), copy stdin in, stdout and stderr out, apply terminal resizes, wait for the end, then
write the Status on the error stream (exec: Success, or NonZeroExitCode with the exit code;
attach: Success; a runtime failure: InternalError) and close. Transport-neutral: the streams
come from channels.py, SPDY or WebSocket alike.

Two choices of ours, where upstream depends on the container runtime: output is read until
its end, or until it has been quiet for DRAIN_IDLE after the command exited (a background
child holding the pipe must not hold the session forever); and a client that goes away ends
the command (its process group is killed) instead of leaving it running in the pod.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence

from testbed.agents.streaming.channels import Channel, RemoteStreams
from testbed.agents.streaming.protocol import (
    SUCCESS,
    error_stream_bytes,
    exit_status,
    internal_error,
    parse_resizes,
)
from testbed.agents.streaming.runtime import Process, StreamingError

log = logging.getLogger("testbed.streaming")

DRAIN_IDLE = 0.5       # seconds of quiet output after the command exited that end the session
READ_SIZE = 32 << 10


def run_session(start: Callable[[], Process], streams: RemoteStreams,
                argv: Sequence[str] | None, tty: bool) -> None:
    """Run one session to its end; `argv` is the exec command (None for attach, whose end is
    always Success). Returns after `streams.finish()`."""
    what = "executing command in container" if argv is not None else "attaching to container"
    try:
        proc = start()
    except (StreamingError, OSError) as err:
        return _end(streams, internal_error(f"error {what}: {err}"))
    exited = threading.Event()
    outputs = [_thread(_pump_out, fd, channel, exited)
               for fd, channel in ((proc.stdout, streams.stdout), (proc.stderr, streams.stderr))
               if fd is not None]
    stdin = None
    if streams.stdin is not None and proc.stdin is not None:
        stdin = _thread(_pump_in, streams.stdin, proc, not tty)
    if streams.resize is not None and tty:
        _thread(_pump_resize, streams.resize, proc)
    _thread(_kill_when_gone, streams.ended, proc)
    code = proc.wait()
    exited.set()
    for thread in outputs:
        thread.join()
    for channel in (streams.stdin, streams.resize):
        if channel is not None:
            channel.stop_reading()
    if stdin is not None:
        stdin.join(1.0)
    status = exit_status(code, argv) if argv is not None else SUCCESS
    _end(streams, status)
    if stdin is None or not stdin.is_alive():
        proc.close()   # a writer still stuck on stdin keeps its descriptor (never reuse one)


def _end(streams: RemoteStreams, status: dict) -> None:
    try:
        data = error_stream_bytes(status, streams.version)
        if data:
            streams.error.write(data)
    except OSError:
        pass
    for channel in streams.all():
        channel.close()
    streams.finish()


def _thread(target: Callable, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=f"streaming-{target.__name__}",
                              daemon=True)
    thread.start()
    return thread


def _pump_out(fd: int, channel: Channel | None, exited: threading.Event) -> None:
    """Output to the client until end of file, or DRAIN_IDLE of quiet after the exit."""
    quiet_until: float | None = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            if exited.is_set():
                now = time.monotonic()
                if quiet_until is None:
                    quiet_until = now + DRAIN_IDLE
                elif now >= quiet_until:
                    return
            continue
        quiet_until = None
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:          # EIO: a terminal whose every other end is closed
            return
        if not data:
            return
        if channel is not None:
            try:
                channel.write(data)
            except OSError:
                channel = None   # the client is gone; keep draining so the command can finish


def _pump_in(channel: Channel, proc: Process, close_at_end: bool) -> None:
    """The client's input to the command; its end closes the command's stdin (without a tty:
    under one, end of input is a keystroke, and the terminal stays open)."""
    fd = proc.stdin
    while fd is not None and (data := channel.read()):
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            channel.stop_reading()
            break
    if close_at_end:
        proc.close_stdin()


def _pump_resize(channel: Channel, proc: Process) -> None:
    pending = b""
    while data := channel.read():
        sizes, pending = parse_resizes(pending + data)
        for width, height in sizes:
            try:
                proc.resize(width, height)
            except OSError as err:
                log.debug("resize to %sx%s: %s", width, height, err)
        if len(pending) > 4096:   # not JSON after all; do not hoard it
            pending = b""


def _kill_when_gone(ended: threading.Event, proc: Process) -> None:
    ended.wait()
    if proc.poll() is None:
        proc.kill()

