"""YAML request bodies go through the testbed's one YAML reader (testbed.spec.yamlload): an
alias bomb or deep nesting in a POST body or a server-side apply patch is a quick 400, not a
server busy expanding it."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from tests.unit.conftest import start_api

BOMB = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: bomb}\n"
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"{k}: &{k} [" + ", ".join([f"*{p}"] * 9) + "]\n"
                  for p, k in zip("abcdefgh", "bcdefghi", strict=True)))
DEEP = "apiVersion: v1\nkind: Namespace\nmetadata: {name: deep}\nx: " + "[" * 5000 + "]" * 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_api(Path(tmp_path_factory.mktemp("yaml-bodies")))
    yield srv
    srv.stop()


def send(server, method: str, path: str, body: str, content_type: str) -> tuple[int, dict, float]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    start = time.monotonic()
    conn.request(method, path, body.encode(), {"Content-Type": content_type})
    resp = conn.getresponse()
    status = json.load(resp)
    conn.close()
    return resp.status, status, time.monotonic() - start


@pytest.mark.parametrize(("body", "words"), [(BOMB, "line 9: alias *e expands"),
                                             (DEEP, "line 4: nested deeper than 64 levels")])
def test_hostile_yaml_bodies_are_a_quick_400(server, body, words):
    code, status, seconds = send(server, "POST", "/api/v1/namespaces", body, "application/yaml")
    assert code == 400 and status["kind"] == "Status" and words in status["message"]
    assert seconds < 2


def test_hostile_apply_patches_are_a_quick_400(server):
    path = "/api/v1/namespaces/bomb?fieldManager=t"
    code, status, seconds = send(server, "PATCH", path, BOMB, "application/apply-patch+yaml")
    assert code == 400 and "error encoding patch: yaml: line 9: alias *e expands" in status["message"]
    assert seconds < 2


def test_yaml_bodies_keep_timestamps_as_strings(server):
    body = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dated\n"
            "  annotations: {when: 2024-01-01}\n")
    code, status, _ = send(server, "POST", "/api/v1/namespaces", body, "application/yaml")
    assert code == 201 and status["metadata"]["annotations"] == {"when": "2024-01-01"}
