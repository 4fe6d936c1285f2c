"""NetworkPolicy from Python: examples/network_policy.py runs as a user runs it (the
distribution's python3, as root), and what it prints shows each policy taking effect."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT


def _registered_here() -> bool:
    where = subprocess.run(["/usr/bin/python3", "-c", "import os, site; print(*(os.path.join(d, "
                            "'k8s-net-testbed.pth') for d in site.getsitepackages()), sep='\\n')"],
                           cwd="/", text=True, capture_output=True, timeout=60).stdout.split()
    registered = [Path(p).read_text().strip() for p in where if Path(p).is_file()]
    return not registered or Path(registered[0]).resolve() == ROOT.resolve()


def test_the_network_policy_example():
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no distribution python3 at /usr/bin/python3")
    if not _registered_here():
        pytest.skip("the distribution's python3 is registered to another checkout: run "
                    "scripts/install.sh here")
    done = subprocess.run(["/usr/bin/python3", "examples/network_policy.py"], cwd=ROOT, text=True,
                          capture_output=True, timeout=240,
                          env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = {line.split(":", 1)[0]: line for line in done.stdout.splitlines()
             if line[:1].isalpha() and ":" in line}
    assert "connected" in lines["open"]
    assert "timed out" in lines["default deny"]
    assert "connected" in lines["friend"]
    assert "timed out" in lines["not a friend"]
    assert "-A FORWARD -j KUBE-NWPLCY-FORWARD" in done.stdout
    assert '"policy default/pod-a-from-friends"' in done.stdout
