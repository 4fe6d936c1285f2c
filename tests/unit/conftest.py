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
