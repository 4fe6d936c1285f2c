"""Acts: the record of everything a run created, and cleanup that works only from it.

Each run keeps a directory under RUN_ROOT (emu/rundir.py owns it and every path in it) holding
`record.jsonl`, an append-only
log written as things are created, so a run killed with SIGKILL still leaves a true account:

    {"proc": PID, "start": STARTTIME, "netns": INODE, "what": "pod default/a pause"}
    {"gone": PID}

Processes are identified by pid *and* kernel start time, so a reused pid is never touched.
Cleanup ends the recorded processes and then any process still inside a recorded network
namespace (orphans such as nginx workers keep a namespace and its veths alive); veths, bridges
and routes go with their namespaces. Nothing is found by name pattern, and nothing outside the
record is touched: another user's Mininet network is safe.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.emu import rundir


def start_time(pid: int) -> int | None:
    """The kernel start time of `pid` (clock ticks since boot), or None if it is gone.

    A zombie counts as gone: it holds no namespace. It is not reaped here; that is its
    parent's business (Popen.wait needs the exit status this would throw away).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def netns_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def alive(pid: int | None, start: int | None) -> bool:
    """The process `pid` that started at `start` still runs (a pid that was reused does not)."""
    return pid is not None and start is not None and start_time(pid) == start


@dataclass
class Entry:
    pid: int
    start: int
    netns: int | None
    what: str


@dataclass
class Record:
    """One run's record: its directory, and the processes it started and has not yet ended."""

    directory: Path
    procs: dict[int, Entry] = field(default_factory=dict)
    _log: object = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str) -> Record:
        me = os.getpid()
        directory = rundir.new_run_directory(name, me, int(time.time()))
        record = cls(directory)
        rundir.write_owner(directory, me, start_time(me), name)
        record._log_path.touch()
        return record

    @classmethod
    def load(cls, directory: Path, previous: Record | None = None) -> Record:
        """The record as written so far (by this process and by agents appending to it)."""
        if previous is not None and previous._log is not None:
            previous._log.close()
        record = cls(directory)
        try:
            lines = rundir.record_log(directory).read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: the entries before it still count
            if "proc" in item:
                record.procs[item["proc"]] = Entry(item["proc"], item["start"], item.get("netns"), item.get("what", ""))
            elif "gone" in item:
                record.procs.pop(item["gone"], None)
        return record

    @property
    def _log_path(self) -> Path:
        return rundir.record_log(self.directory)

    def _append(self, item: dict) -> None:
        # One O_APPEND file kept open: each entry is a single small write, so a kill between
        # entries never leaves half of one, and agents in other processes may append too.
        if self._log is None or self._log.closed:
            self._log = open(self._log_path, "a", buffering=1)
        self._log.write(json.dumps(item) + "\n")

    def add_process(self, pid: int, what: str, netns: int | None = None) -> Entry:
        """Record a process we started; `netns` names its namespace when it is still joining it."""
        start = start_time(pid)
        if start is None:
            raise ProcessLookupError(f"{what}: process {pid} ended before it could be recorded")
        ns = netns if netns is not None else netns_of(pid)
        entry = Entry(pid, start, None if ns == _root_netns() else ns, what)
        self.procs[pid] = entry
        self._append({"proc": pid, "start": start, "netns": entry.netns, "what": what})
        return entry

    def forget(self, pid: int) -> None:
        if self.procs.pop(pid, None) is not None:
            self._append({"gone": pid})

    def owner(self) -> dict:
        """owner.json: the owning process's pid, start time and the cluster's name ({} when
        it is gone or unreadable, as during a teardown)."""
        return rundir.read_owner(self.directory)

    def owner_alive(self) -> bool:
        owner = self.owner()
        return alive(owner.get("pid"), owner.get("start"))

    def clean(self, grace: float = 1.0) -> list[str]:
        """End every recorded process and everything left in recorded namespaces; remove the dir."""
        ended = end_processes(self.procs.values(), grace)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        return ended


def _root_netns() -> int | None:
    return netns_of(1)


def processes_in(namespaces: set[int]) -> list[int]:
    """Every pid whose network namespace is one of `namespaces` (by inode)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ns = netns_of(int(entry.name))
            if ns is not None and ns in namespaces:
                found.append(int(entry.name))
    return found


def end_processes(entries: Iterable[Entry], grace: float = 1.0, scan_namespaces: bool = True) -> list[str]:
    """SIGTERM the live ones, wait up to `grace`, SIGKILL what remains and any namespace stragglers.

    `scan_namespaces` False ends only the entries (one container of a pod whose other
    containers share its namespace and must live on).
    """
    entries = [e for e in entries if alive(e.pid, e.start)]
    namespaces = {e.netns for e in entries if e.netns is not None} if scan_namespaces else set()
    root = _root_netns()
    namespaces.discard(root)
    for e in entries:
        _signal(e.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while entries and time.monotonic() < deadline:
        entries_left = [e for e in entries if alive(e.pid, e.start)]
        if not entries_left:
            break
        time.sleep(0.005)
    for e in entries:
        if alive(e.pid, e.start):
            _signal(e.pid, signal.SIGKILL)
    for _ in range(50 if namespaces else 0):  # stragglers: anything in a namespace we made
        left = [p for p in processes_in(namespaces) if p != os.getpid()]
        if not left:
            break
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.02)
    return [e.what for e in entries]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def records() -> list[Record]:
    return [Record.load(d) for d in rundir.run_directories()]
