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

CONNECT = textwrap.dedent("""
    import subprocess, sys, time
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for proto in ("tcp", "udp"):     # a port whose packets vanish, as a policy drops them
        subprocess.run(["iptables", "-A", "INPUT", "-p", proto, "--dport", "8125", "-j", "DROP"],
                       check=True)
    servers = [subprocess.Popen([sys.executable, "-m", "testbed.workloads.agnhost", "serve-hostname",
                                 f"--{p}", "--http=false", "--port=8123"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ("tcp", "udp")]
    time.sleep(1.0)
    try:
        for dest, *flags in [line.split() for line in sys.argv[1:]]:
            done = subprocess.run([sys.executable, "-m", "testbed.workloads.agnhost", "connect", dest,
                                   *flags], capture_output=True, text=True)
            print(done.returncode, done.stderr.strip().replace(chr(10), " | "))
    finally:
        for s in servers:
            s.kill()
""")

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


def test_connect_says_what_upstream_says():
    cases = ["127.0.0.1:8123 --timeout=1s", "127.0.0.1:8124 --timeout=1s",
             "127.0.0.1:8123 --protocol=udp --timeout=500ms",
             "127.0.0.1:8124 --protocol=udp --timeout=1s", "10.9.9.9:80 --timeout=1s",
             "nosuchname.invalid:80 --timeout=1s", "127.0.0.1 --timeout=1s",
             "127.0.0.1:8123 --timeout=soon", "127.0.0.1:8123 --protocol=sctp --timeout=1s",
             "127.0.0.1:8123 --protocol=icmp", "127.0.0.1:8125 --timeout=300ms",
             "127.0.0.1:8125 --protocol=udp --timeout=300ms", "localhost:8123 --timeout=1s"]
    result = subprocess.run(["unshare", "-rn", sys.executable, "-c", CONNECT, *cases],
                            capture_output=True, text=True, timeout=60)
    if "Operation not permitted" in result.stderr:
        pytest.skip("user namespaces are not available here")
    lines = result.stdout.splitlines()
    assert lines[0] == "0 "                                   # tcp: connected
    assert lines[1] == "1 REFUSED"
    assert lines[2] == "0 "                                   # udp: answered
    assert lines[3].startswith("1 REFUSED: ")
    assert lines[4].startswith("1 OTHER: ")                   # no route in a bare namespace
    assert lines[5].startswith("1 DNS: ")
    assert lines[6].startswith("1 UNKNOWN: ") and "missing port" in lines[6]
    assert lines[7].startswith("1 UNKNOWN: ") and "invalid duration" in lines[7]
    assert lines[8].startswith("1 OTHER: ")                   # no SCTP in this kernel (or no server)
    assert lines[9].startswith("1 Unsupported protocol")
    assert lines[10] == "1 TIMEOUT"                             # tcp: bare, as upstream's
    assert lines[11].startswith("1 TIMEOUT: ")                  # udp: with the error
    assert lines[12] == "0 "                                    # a name resolved


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("0", 0.0), ("1.5s", 1.5), ("2h", 7200.0),
    ("100us", 1e-4)])
def test_go_durations(text, seconds):
    from testbed.workloads.agnhost import go_duration
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1s2", "soon"])
def test_bad_go_durations(text):
    from testbed.workloads.agnhost import go_duration
    with pytest.raises(ValueError):
        go_duration(text)


def test_the_image_program_by_its_path_in_the_image():
    from testbed.node.images import ENTRYPOINTS, container_argv, image_argv
    image = "registry.k8s.io/e2e-test-images/agnhost:2.52"
    assert image_argv(image, ["/agnhost", "connect", "x:80"]) == ENTRYPOINTS["agnhost"] + ["connect", "x:80"]
    assert image_argv(image, ["agnhost", "netexec"]) == ENTRYPOINTS["agnhost"] + ["netexec"]
    assert image_argv("busybox", ["/agnhost"]) == ["/agnhost"]     # only in agnhost's image
    assert image_argv(image, ["sh", "-c", "true"]) == ["sh", "-c", "true"]
    assert container_argv({"image": image, "command": ["/agnhost"], "args": ["pause"]}, {}) \
        == ENTRYPOINTS["agnhost"] + ["pause"]
