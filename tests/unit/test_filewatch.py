"""DirWatch (testbed/emu/filewatch.py): a waiter wakes when a file is written in a watched
directory, whether written in place or renamed into place, and not otherwise."""

from __future__ import annotations

import os
import threading
import time

from testbed.emu.filewatch import DirWatch


def later(delay, action):
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_a_write_wakes_the_waiter_at_once(tmp_path):
    with DirWatch([tmp_path]) as changes:
        later(0.1, lambda: (tmp_path / "status.json").write_text("{}"))
        started = time.monotonic()
        assert changes.wait(5)
        assert time.monotonic() - started < 2


def test_a_file_renamed_into_place_wakes_it(tmp_path, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / "new").write_text("{}")
    with DirWatch([tmp_path]) as changes:
        later(0.05, lambda: os.replace(other / "new", tmp_path / "status.json"))
        assert changes.wait(5)


def test_nothing_written_means_the_timeout(tmp_path):
    (tmp_path / "status.json").write_text("{}")
    with DirWatch([tmp_path]) as changes:
        (tmp_path / "status.json").read_text()   # a read is no change
        started = time.monotonic()
        assert not changes.wait(0.2)
        assert time.monotonic() - started >= 0.15


def test_a_write_before_the_wait_is_not_missed(tmp_path):
    with DirWatch([tmp_path]) as changes:
        (tmp_path / "status.json").write_text("{}")
        assert changes.wait(0)
        assert not changes.wait(0)   # drained


def test_several_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with DirWatch([a, b]) as changes:
        (b / "x").write_text("1")
        assert changes.wait(1)


def test_a_missing_directory_falls_back_to_sleeping(tmp_path):
    with DirWatch([tmp_path / "missing"]) as changes:
        assert changes.fd == -1
        started = time.monotonic()
        assert not changes.wait(0.1)
        assert time.monotonic() - started >= 0.08


def test_no_directories_make_each_wait_a_sleep():
    with DirWatch([]) as changes:
        started = time.monotonic()
        assert not changes.wait(0.1)
        assert time.monotonic() - started >= 0.08
