"""Acts (signal handlers): teardowns that no signal cuts short.

A teardown interrupted half-way leaves processes and namespaces behind while the command says
the cluster is gone. `shielded()` holds SIGINT, SIGTERM and SIGHUP while a teardown runs:
they are noted (with one line saying so) and ignored until it ends; then, if one came, the
command goes on as interrupted (KeyboardInterrupt), so that what it says afterwards is true.
`interrupted_once()` is for the commands that build a cluster: the first signal stops them,
the rest are noted. Outside the main thread (tests, the API server's handlers) signals cannot
be caught and nothing changes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def shielded(what: str = "tearing down") -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: object) -> None:
        if not noted:
            print(f"testbed: {signal.Signals(signum).name} noted; {what} first", file=sys.stderr,
                  flush=True)
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if noted and not sys.exc_info()[0]:
        raise KeyboardInterrupt(f"signal {noted[0]} during teardown")


@contextlib.contextmanager
def interrupted_once() -> Iterator[None]:
    """For a command that builds a cluster: the first SIGINT or SIGTERM stops what it does
    (KeyboardInterrupt, so that it tears down and exits 130); from then on, further signals
    are only noted, so nothing cuts the teardown or the exit short. Handlers come back when
    the block ends without an interruption."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []

    def note(signum: int, _frame: object) -> None:
        print(f"testbed: {signal.Signals(signum).name} noted; tearing down first",
              file=sys.stderr, flush=True)

    def first(signum: int, _frame: object) -> None:
        hit.append(signum)
        for sig in SIGNALS:
            signal.signal(sig, note)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, first)
    try:
        yield
    finally:
        if not hit:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
