"""The pytest plugin's example (examples/) passes as a user would run it, in a pytest of its own."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import ROOT


def test_the_plugin_example_passes():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "examples" / "test_my_cluster.py")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
