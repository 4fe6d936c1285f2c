"""Acts (reads the process's uid): what a command that builds or attaches to a cluster checks
first, and the errors that mean the cluster could not be set up (reported in a sentence, exit
1, after tearing down what was built) rather than bad input (exit 2) or a bug."""

from __future__ import annotations

import os

from testbed.apiclient.client import ApiError
from testbed.emu.controlplane import ControlPlaneError
from testbed.emu.network import NetworkError
from testbed.emu.pods import PodError
from testbed.spec.source import Problem, SpecError

SETUP_ERRORS = (ApiError, ControlPlaneError, NetworkError, PodError, TimeoutError, OSError)


def require_root(where: str = "<command line>") -> None:
    """SpecError (exit 2, nothing built) unless this process is root."""
    if os.geteuid() != 0:
        raise SpecError([Problem(where, None, "", "building or attaching to a cluster needs root "
                                                   "(run it with sudo, or as root)")])
