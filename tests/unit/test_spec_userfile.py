"""testbed.spec.userfile: regular files only, within the limit, as the user who ran sudo."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.spec import userfile
from testbed.spec.userfile import MAX_BYTES, FileRefused, Invoker, read_text, refusal, sudo_invoker

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="sudo's environment counts only as root")
NOBODY = Invoker(65534, frozenset({65534}), "nobody")


def refused(path: str | Path) -> FileRefused:
    with pytest.raises(FileRefused) as info:
        read_text(str(path))
    return info.value


def test_reads_a_regular_file(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("a: 1\n")
    assert read_text(str(tmp_path / "a.yaml")) == "a: 1\n"


def test_missing_and_not_a_directory(tmp_path: Path):
    (tmp_path / "f").write_text("")
    assert refused(tmp_path / "nope.yaml").message == "no such file"
    assert refused(tmp_path / "f" / "x.yaml").message == "no such file"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path):
    os.mkfifo(tmp_path / "p")
    done = []
    reader = threading.Thread(target=lambda: done.append(refused(tmp_path / "p")), daemon=True)
    reader.start()
    reader.join(5)
    assert done and done[0].message == "a named pipe (FIFO), not a regular file"


def test_other_kinds(tmp_path: Path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "s"))
    s.close()
    assert refused(tmp_path / "s").message == "a socket, not a regular file"
    assert refused(tmp_path).message == "a directory, not a regular file"
    assert refused("/dev/zero").message == "a character device, not a regular file"
    assert refused("/dev/null").message == "a character device, not a regular file"


@pytest.mark.parametrize("path", ["/proc/self/status", "/proc/self/environ", "/proc/version"])
def test_proc_files_are_pseudo_files(path):
    assert refused(path).message == "a kernel pseudo-file under /proc, not a regular file"


def test_a_symlink_into_proc_is_refused_too(tmp_path: Path):
    os.symlink("/proc/self/status", tmp_path / "link.yaml")
    assert "pseudo-file under /proc" in refused(tmp_path / "link.yaml").message


def test_sys_files_are_pseudo_files():
    path = "/sys/kernel/uevent_seqnum"
    if not os.path.exists(path):
        pytest.skip("no sysfs here")
    assert refused(path).message == "a kernel pseudo-file under /sys, not a regular file"


def test_size_limit(tmp_path: Path):
    with open(tmp_path / "big", "wb") as f:
        f.truncate(MAX_BYTES + 1)
    assert refused(tmp_path / "big").message == (f"too large: {MAX_BYTES + 1} bytes (input files "
                                                 f"may have at most {MAX_BYTES})")
    with open(tmp_path / "ok", "wb") as f:
        f.truncate(MAX_BYTES)
    assert len(read_text(str(tmp_path / "ok"))) == MAX_BYTES


def test_not_utf8_names_offset_and_line(tmp_path: Path):
    (tmp_path / "l.yaml").write_bytes(b"a: 1\nb: 2\nc: \xff\n")
    err = refused(tmp_path / "l.yaml")
    assert (err.message, err.line) == ("not UTF-8: byte 0xff at byte offset 13", 3)


# -- the user who ran sudo -------------------------------------------------------------------------

def _st(uid: int, gid: int, mode: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(("uid", "gid", "mode", "bit", "allowed"), [
    (65534, 0, 0o400, 4, True),      # owner: owner bits
    (65534, 0, 0o044, 4, False),     # owner bits rule even when group/other allow (as the kernel)
    (0, 65534, 0o040, 4, True),      # in the group
    (0, 65534, 0o404, 4, False),     # group bits rule for a member
    (0, 0, 0o004, 4, True),          # others
    (0, 0, 0o770, 4, False),
    (0, 0, 0o001, 1, True),          # search permission on a directory
    (0, 0, 0o004, 1, False),
])
def test_permission_bits(uid, gid, mode, bit, allowed):
    assert userfile._permits(_st(uid, gid, mode), NOBODY, bit) is allowed


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's tmp_path is under a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="testbed-userfile-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_unreadable_for_checks_every_directory_on_the_way(open_dir: Path):
    tmp_path = open_dir
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "closed").mkdir(mode=0o700)
    for d in ("open", "closed"):
        (tmp_path / d / "f.yaml").write_text("a: 1\n")
        (tmp_path / d / "f.yaml").chmod(0o644)
    (tmp_path / "open" / "private.yaml").write_text("a: 1\n")
    (tmp_path / "open" / "private.yaml").chmod(0o600)
    os.symlink(tmp_path / "closed" / "f.yaml", tmp_path / "open" / "link.yaml")
    if not all(userfile._permits(os.stat(p), NOBODY, 1) for p in tmp_path.parents):
        pytest.skip(f"nobody cannot reach {tmp_path} at all")
    assert not userfile._unreadable_for(str(tmp_path / "open" / "f.yaml"), NOBODY)
    assert userfile._unreadable_for(str(tmp_path / "open" / "private.yaml"), NOBODY)
    assert userfile._unreadable_for(str(tmp_path / "closed" / "f.yaml"), NOBODY)
    # through a symlink, the target's directories count too
    assert userfile._unreadable_for(str(tmp_path / "open" / "link.yaml"), NOBODY)
    owner = Invoker(os.stat(tmp_path).st_uid, frozenset(), "owner")
    assert not userfile._unreadable_for(str(tmp_path / "closed" / "f.yaml"), owner)


def test_refusal_names_the_sudo_user(tmp_path: Path):
    (tmp_path / "s.yaml").write_text("secret: 1\n")
    (tmp_path / "s.yaml").chmod(0o600)
    owner = os.stat(tmp_path / "s.yaml").st_uid
    if owner == NOBODY.uid:
        pytest.skip("running as nobody")
    assert refusal(str(tmp_path / "s.yaml"), NOBODY) == (
        "not readable by nobody (uid 65534), who ran sudo: refused unread")
    assert refusal(str(tmp_path / "s.yaml"), None) is None


@ROOT_ONLY
def test_sudo_invoker_from_the_environment():
    who = sudo_invoker({"SUDO_UID": "65534", "SUDO_GID": "65534"})
    assert who is not None and (who.uid, who.name) == (65534, "nobody") and 65534 in who.gids
    assert sudo_invoker({}) is None
    assert sudo_invoker({"SUDO_UID": "0", "SUDO_GID": "0"}) is None     # root ran sudo
    assert sudo_invoker({"SUDO_UID": "x"}) is None
    unknown = sudo_invoker({"SUDO_UID": "54321", "SUDO_GID": "54321"})
    assert unknown == Invoker(54321, frozenset({54321}), "54321")


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, SUDO_UID is honoured")
def test_sudo_environment_means_nothing_unless_root():
    assert sudo_invoker({"SUDO_UID": "65534", "SUDO_GID": "65534"}) is None


@ROOT_ONLY
def test_read_text_under_sudo_refuses_unread(tmp_path: Path, monkeypatch):
    (tmp_path / "s.yaml").write_text("secret: 1\n")
    (tmp_path / "s.yaml").chmod(0o644)
    tmp_path.chmod(0o700)
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    err = refused(tmp_path / "s.yaml")
    assert err.message == "not readable by nobody (uid 65534), who ran sudo: refused unread"
    monkeypatch.delenv("SUDO_UID")
    assert read_text(str(tmp_path / "s.yaml")) == "secret: 1\n"
