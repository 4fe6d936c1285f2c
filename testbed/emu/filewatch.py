"""Acts: wait for files to change in directories (Linux inotify), instead of polling them.

The agents report their syncs in status files (kube-proxy.json, netpol.json, flanneld.json),
written whole and renamed into place. Whoever waits for a sync holds a `DirWatch` on their
directories and re-reads them when something was written there, so it sees a sync as soon as
it is reported:

    with DirWatch([dir1, dir2]) as changes:
        while not done():
            changes.wait(0.5)     # True when something was written; False after 0.5 s

The watch is set up before the first check, so a report written in between is not missed.
Where inotify is not to be had, `wait` just sleeps its timeout (the caller still re-checks).
"""

from __future__ import annotations

import ctypes
import os
import select
import time
from collections.abc import Iterable
from pathlib import Path

IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch   # noqa: B018 - present?
        return libc
    except (OSError, AttributeError):
        return None


class DirWatch:
    """An inotify watch on some directories (each must exist); with none, `wait` is a sleep."""

    def __init__(self, directories: Iterable[Path]):
        self.fd = -1
        libc = _libc()
        if libc is None:
            return
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return
        for directory in directories:
            if libc.inotify_add_watch(fd, os.fsencode(str(directory)), MASK) < 0:
                os.close(fd)
                return
        self.fd = fd

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for something to be written; whether it was."""
        if self.fd < 0:
            time.sleep(max(0.0, timeout))
            return False
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
        try:
            while os.read(self.fd, 65536):   # drain: the events themselves are not needed
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
