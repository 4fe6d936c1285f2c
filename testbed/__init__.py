"""An emulated multi-node Kubernetes cluster on Mininet, for seeing and testing Kubernetes networking.

    from testbed import Cluster      # the Python API for scripts (testbed/experiment.py)

Importing `testbed` stays cheap (the agents import it in every process): `Cluster` is loaded
on first use. When the package is imported by another interpreter than the project's virtual
environment (the distribution's python3 running a script, through the path scripts/install.sh
registers), that environment's packages (pyroute2, PyYAML) are put first on sys.path, so the
script sees the versions the testbed is pinned to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__version__ = "0.1.0"
__all__ = ["Cluster"]


def _use_project_venv() -> None:
    venv = Path(__file__).resolve().parents[1] / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve() or not venv.is_dir():
        return
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(1, str(site))


_use_project_venv()


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from testbed.experiment import Cluster

        return Cluster
    raise AttributeError(f"module 'testbed' has no attribute {name!r}")
