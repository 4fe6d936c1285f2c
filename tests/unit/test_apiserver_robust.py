"""The API server under bad and many requests: every request gets an HTTP answer carrying a
Kubernetes Status with upstream's code, and 200 clients at once are all served."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest


def raw(server, data: bytes) -> tuple[int, dict]:
    """Send `data` as is; the status code and the Status object of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    code = int(head.split()[1])
    return code, json.loads(body)


def post(path: str, body: bytes, content_type: str = "application/json",
         length: str | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length if length is not None else len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize("request_bytes, code, words", [
    (post(PODS, b'{"kind": "Pod", '), 400, "json parse error"),
    (post(PODS, b'{"metadata": {"name": "\xff\xfe"}}'), 400, "not valid UTF-8"),
    (post(PODS, b'[1, 2, 3]'), 400, "must be a JSON object"),
    (post("/testbed/v1/apply", b'[{"kind": "Pod"}]'), 400, "items"),
    (post(PODS, b'{}', length="twelve"), 400, "Content-Length"),
    (post(PODS, b'kind: Pod', content_type="text/plain"), 415, "unknown format"),
    (post(PODS, b'{"kind": "Pod"}', length=str(3 * 1024 * 1024 + 1)), 413,
     "limit is 3145728"),
    (b"BREW /api HTTP/1.1\r\nHost: x\r\n\r\n", 501, ""),
])
def test_bad_requests_get_a_status_with_upstreams_code(server, request_bytes, code, words):
    got, status = raw(server, request_bytes)
    assert got == code and status["kind"] == "Status" and status["code"] == code
    assert words in status["message"]


def test_yaml_bodies_are_accepted_as_upstream_accepts_them(server):
    body = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-yaml\n"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/api/v1/namespaces", body, {"Content-Type": "application/yaml"})
    resp = conn.getresponse()
    assert resp.status == 201 and json.load(resp)["metadata"]["name"] == "from-yaml"


def test_two_hundred_concurrent_clients_are_all_answered(server):
    results: list[object] = []
    start = threading.Barrier(200)

    def client() -> None:
        start.wait()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/api/v1/namespaces")
            resp = conn.getresponse()
            results.append(resp.status if json.load(resp)["kind"] == "NamespaceList" else -1)
            conn.close()
        except OSError as err:
            results.append(err)

    threads = [threading.Thread(target=client) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 200
