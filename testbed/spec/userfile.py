"""Reading a file a user names (topology, scenario, manifest, case file): refusals, not hangs.

The only I/O of testbed.spec: `stat`, `open` and `read` of the one file, nothing else. Before
opening anything it refuses, naming why:

* anything but a regular file: a directory, FIFO, device, socket (a FIFO is never opened,
  so it cannot block; /dev/zero is never read, so it cannot fill memory);
* kernel pseudo-files under /proc and /sys: they claim a size they do not have and their
  contents are made up as they are read (/proc/self/environ, /sys/...);
* files over MAX_BYTES;
* under sudo, a file the user who ran sudo could not read themselves (SUDO_UID/SUDO_GID; as
  root `os.access` says yes to everything, so the mode bits, owner and group of the file and
  of every directory above it are checked against that user's uid and groups). Such a file is
  never read, so no error can quote it. POSIX ACLs are not consulted: a file that only an ACL
  makes readable to the user is refused; say so with `chmod`, or run as that user's root.

The file is then opened without blocking and checked again through the open descriptor (a
path swapped for a FIFO or another file between the checks is refused), read up to the
limit and decoded as UTF-8; bytes that are not UTF-8 are refused with their offset and line.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from dataclasses import dataclass

MAX_BYTES = 3 * 1024 * 1024   # as the API server's limit on a request body
PSEUDO_ROOTS = ("/proc", "/sys")

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


class FileRefused(Exception):
    """The file is not read: `message` says why (`line` for bytes that are not UTF-8)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Invoker:
    """The user who ran `sudo testbed ...`, whose rights the files are read with."""

    uid: int
    gids: frozenset[int]
    name: str


def sudo_invoker(environ: dict[str, str] | None = None) -> Invoker | None:
    """The invoking user when running as root under sudo (SUDO_UID other than 0), else None."""
    env = os.environ if environ is None else environ
    if os.geteuid() != 0:
        return None
    uid_text, gid_text = env.get("SUDO_UID", ""), env.get("SUDO_GID", "")
    if not uid_text.isdigit() or int(uid_text) == 0:
        return None
    uid = int(uid_text)
    gid = int(gid_text) if gid_text.isdigit() else None
    try:
        entry = pwd.getpwuid(uid)
        name = entry.pw_name
        gid = entry.pw_gid if gid is None else gid
        gids = set(os.getgrouplist(name, gid))
    except (KeyError, OSError):
        name, gids = str(uid), set()
    if gid is not None:
        gids.add(gid)
    return Invoker(uid, frozenset(gids), name)


def _permits(st: os.stat_result, who: Invoker, bit: int) -> bool:
    """POSIX permission check of one bit (4 read, 1 search) for `who`: the owner's bits if
    they own it, else the group's if in its group, else the others' (as the kernel does)."""
    if st.st_uid == who.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in who.gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _unreadable_for(path: str, who: Invoker) -> bool:
    """Whether `who` could not open `path` for reading: search permission on every directory
    on the way (as written and with symlinks resolved), read permission on the file."""
    for way in {os.path.abspath(path), os.path.realpath(path)}:
        directory = os.path.dirname(way)
        while True:
            try:
                if not _permits(os.stat(directory), who, 1):
                    return True
            except OSError:
                return True
            if directory == os.path.dirname(directory):
                break
            directory = os.path.dirname(directory)
    try:
        return not _permits(os.stat(path), who, 4)
    except OSError:
        return True


def _is_pseudo(path: str, st: os.stat_result) -> str | None:
    """The pseudo file system root a path lies in (/proc, /sys), or None."""
    real = os.path.realpath(path)
    for root in PSEUDO_ROOTS:
        if real == root or real.startswith(root + "/"):
            return root
        try:
            if os.stat(root).st_dev == st.st_dev:
                return root
        except OSError:
            continue
    return None


def _kind_problem(st: os.stat_result) -> str | None:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        return f"{kind}, not a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size > MAX_BYTES:
        return f"too large: {st.st_size} bytes (input files may have at most {MAX_BYTES})"
    return None


def _stat_problem(err: OSError) -> str:
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file"
    if err.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {err.strerror or err}"


def _check(path: str, who: Invoker | None) -> tuple[str | None, os.stat_result | None]:
    try:
        st = os.stat(path)
    except OSError as err:
        return _stat_problem(err), None
    problem = _kind_problem(st)
    if problem is not None:
        return problem, st
    root = _is_pseudo(path, st)
    if root is not None:
        return f"a kernel pseudo-file under {root}, not a regular file", st
    if who is not None and _unreadable_for(path, who):
        return f"not readable by {who.name} (uid {who.uid}), who ran sudo: refused unread", st
    return None, st


def refusal(path: str, who: Invoker | None = None) -> str | None:
    """Why `path` would be refused before it is opened (None: it may be read). Only `stat`s:
    never opens the file, so it is safe for FIFOs and devices."""
    return _check(path, who)[0]


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_text(path: str) -> str:
    """The text of a regular file the (invoking) user may read; FileRefused otherwise."""
    problem, checked = _check(path, sudo_invoker())
    if problem is not None or checked is None:
        raise FileRefused(problem or "no such file")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise FileRefused(_stat_problem(err)) from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
            raise FileRefused("replaced by another file while it was being checked")
        problem = _kind_problem(st)
        if problem is not None:
            raise FileRefused(problem)
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise FileRefused(f"cannot read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_BYTES:
        raise FileRefused(f"too large: over {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileRefused(f"not UTF-8: byte 0x{data[err.start]:02x} at byte offset {err.start}",
                          _line_at(data, err.start)) from None
