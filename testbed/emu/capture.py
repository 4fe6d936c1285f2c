"""Acts: packet captures and route reads inside a host's namespace, for scenario steps.

`capture_while(pid, interface, filter, during)` runs tcpdump in the host's network namespace
(`-n -v -l --immediate-mode`: numeric, decoded with tunnels' inner packets, line by line),
waits until it listens, calls `during()` (a probe), lets the last packets arrive, stops tcpdump
and returns the packets it printed. `routes_to(pid, cidr)` is `ip -j route show exact CIDR`.
Nothing here is left running: tcpdump is ended in every case, and only the process started here;
should this process die first, tcpdump gets the parent-death signal (setpriv), as the tracer's
monitors do.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from testbed.net.run import run, spawn

T = TypeVar("T")
LISTEN_TIMEOUT = 5.0     # seconds for tcpdump to open the interface
SETTLE = 0.3             # seconds after `during` for the last packets to be printed


class CaptureError(RuntimeError):
    pass


def capture_while(pid: int, interface: str, pcap_filter: str,
                  during: Callable[[], T]) -> tuple[list[str], str, T]:
    """(packets: each on one line, the whole decoded text, what `during` returned)."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise CaptureError("tcpdump is not installed (scripts/install.sh installs it)")
    # Ended with this process even when it is killed outright (the parent-death signal).
    proc = spawn(["setpriv", "--pdeathsig", "TERM", "--", tcpdump, "-i", interface, "-n", "-v",
                  "-l", "--immediate-mode", "-s", "256", pcap_filter], netns=pid, stderr=True)
    try:
        _wait_listening(proc, interface)
        result = during()
        time.sleep(SETTLE)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)   # tcpdump flushes what it has and exits
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.strip()]
    packets: list[str] = []       # a packet's header line and its indented decode, on one line
    for line in lines:
        if line[:1].isspace() and packets:
            packets[-1] += " " + line.strip()
        else:
            packets.append(line.strip())
    return packets, "\n".join(lines), result


def _wait_listening(proc: subprocess.Popen, interface: str) -> None:
    """Until tcpdump says "listening on" (stderr); CaptureError with its words if it fails.

    Its standard error is read unbuffered (os.read on the descriptor) and the text so far
    searched: a buffered readline could hold the line already read while select waits on an
    empty pipe."""
    fd = proc.stderr.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + LISTEN_TIMEOUT
    said = b""
    try:
        while b"listening on" not in said:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break       # tcpdump ended
            said += chunk
        else:
            return
    finally:
        sel.close()
    lines = said.decode(errors="replace").splitlines()
    words = "; ".join(s.strip() for s in lines if s.strip()) or "no answer"
    raise CaptureError(f"tcpdump on {interface} did not start: {words}")


def routes_to(pid: int, cidr: str) -> list[dict]:
    """The host's main-table routes to exactly `cidr`, as `ip -j route` gives them."""
    result = run(["ip", "-j", "route", "show", "exact", cidr], netns=pid, check=False, timeout=10)
    if result.returncode != 0:
        raise CaptureError(f"ip route show exact {cidr}: {result.stderr.strip()}")
    try:
        routes = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as err:
        raise CaptureError(f"ip -j route: {err}") from err
    return [r for r in routes if isinstance(r, dict)]
