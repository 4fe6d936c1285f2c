"""agnhost's serve-hostname modes, as upstream's netpol pods run them: raw TCP (hostname,
then close), UDP, HTTP, and the refusal to serve HTTP with TCP or UDP. Each case runs in a
private network namespace of its own (`unshare -rn`, no root needed) on its loopback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")

CLIENT = textwrap.dedent("""
    import socket, subprocess, sys, time
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = subprocess.Popen([sys.executable, "-m", "testbed.workloads.agnhost", *sys.argv[2:]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mode = sys.argv[1]
    try:
        for _ in range(100):
            try:
                if mode == "udp":
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.settimeout(0.1)
                    s.sendto(b"hostname", ("127.0.0.1", 8123))
                    print(s.recv(100).decode())
                elif mode == "tcp":
                    s = socket.create_connection(("127.0.0.1", 8123), timeout=1)
                    data = s.recv(100)
                    print(data.decode(), "closed" if s.recv(100) == b"" else "open")
                else:
                    s = socket.create_connection(("127.0.0.1", 8123), timeout=1)
                    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                    print(s.recv(1000).decode().replace("\\r", ""))
                break
            except OSError:
                if server.poll() is not None:
                    print("EXIT", server.returncode, server.stderr.read())
                    break
                time.sleep(0.05)
    finally:
        server.kill()
""")


def run(mode: str, *args: str) -> str:
    result = subprocess.run(["unshare", "-rn", sys.executable, "-c", CLIENT, mode, *args],
                            capture_output=True, text=True, timeout=30)
    if "Operation not permitted" in result.stderr:
        pytest.skip("user namespaces are not available here")
    return result.stdout


def test_raw_tcp_writes_the_hostname_and_closes():
    out = run("tcp", "serve-hostname", "--tcp", "--http=false", "--port=8123")
    assert out.split()[-1] == "closed" and len(out.split()) == 2


def test_udp_answers_with_the_hostname():
    out = run("udp", "serve-hostname", "--udp", "--http=false", "--port=8123")
    assert out.strip() and "EXIT" not in out


def test_http_with_close_says_so():
    out = run("http", "serve-hostname", "--close", "--port=8123")
    assert out.startswith("HTTP/1.") and "Connection: close" in out


def test_http_and_tcp_together_are_refused_as_upstream_refuses_them():
    out = run("tcp", "serve-hostname", "--tcp", "--port=8123")
    assert "EXIT 1" in out and "Can't server TCP/UDP mode and HTTP mode at the same time" in out
