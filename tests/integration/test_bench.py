"""The benchmarks leave the machine as they found it: its mount table and /run/netns included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.integration.conftest import ROOT


def _mounts() -> list[str]:
    """Mount points and their sources (not the ids, which count up)."""
    return sorted(" ".join(line.split()[3:5]) for line in Path("/proc/self/mountinfo").read_text()
                  .splitlines())


def _netns_files() -> list[str] | None:
    """The files of named network namespaces (None: no /run/netns at all)."""
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else None


def test_the_bringup_baseline_leaves_the_mount_table_as_it_was():
    spec = importlib.util.spec_from_file_location("bringup", ROOT / "bench" / "bringup.py")
    bringup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bringup)
    before, files = _mounts(), _netns_files()
    assert bringup.measure_baseline(5) > 0
    assert _mounts() == before
    assert _netns_files() == files     # ip netns add's files on /run are gone too
