"""The testbed's agnhost, run as a program on 127.0.0.1 with free ports (no root; every process
started here is ended by its pid): serve-hostname over TCP, UDP and HTTP, netexec's endpoints,
flags and SIGTERM handling, connect's words and exit codes, pause, and cobra's errors.

connect's TIMEOUT needs packets that vanish: those cases run in a private user and network
namespace (`unshare -rn`, no root) with an iptables DROP on its loopback."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

AGNHOST = [sys.executable, "-m", "testbed.workloads.agnhost"]
HOSTNAME = socket.gethostname()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agnhost(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([*AGNHOST, *args], capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def server(*args: str, port: int | None = None, udp: int | None = None):
    """Start agnhost with `args`; wait for its TCP `port` (or UDP `udp` answering "hostname")."""
    proc = subprocess.Popen([*AGNHOST, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if port is not None:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                elif udp is not None:
                    datagram("hostname", udp, wait=0.2)
                break
            except OSError:
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def get(port: int, path: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def datagram(text: str, port: int, wait: float = 2.0) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(text.encode(), ("127.0.0.1", port))
        return s.recv(2048).decode()


# -- serve-hostname ----------------------------------------------------------------------------

def test_serve_hostname_tcp_writes_the_hostname_then_closes():
    port = free_port()
    with server("serve-hostname", "--tcp", "--http=false", "--port", str(port), port=port) as proc:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert s.recv(100).decode() == HOSTNAME
            assert s.recv(100) == b""                       # closed by the server
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None       # upstream keeps serving 60 s after SIGTERM ("Awaiting pod deletion")
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert s.recv(100).decode() == HOSTNAME
        proc.kill()
        assert "Awaiting pod deletion." in proc.stderr.read()


def test_serve_hostname_udp_answers_every_datagram_and_tcp_with_it():
    port = free_port()
    with server("serve-hostname", "--udp", "--tcp", "--http=false", f"--port={port}", port=port):
        assert datagram("anything at all, longer than sixteen bytes", port) == HOSTNAME
        assert datagram("", port) == HOSTNAME
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert s.recv(100).decode() == HOSTNAME


def test_serve_hostname_http_answers_every_path_and_close_says_so():
    port = free_port()
    with server("serve-hostname", f"--port={port}", port=port):
        assert get(port, "/")[::2] == (200, HOSTNAME)
        assert get(port, "/any/path", method="POST", data=b"x")[::2] == (200, HOSTNAME)
        assert get(port, "/")[1].get("Connection") != "close"
    port = free_port()
    with server("serve-hostname", "--close", "--http", "--port", str(port), port=port):
        status, headers, body = get(port, "/")
        assert (status, body, headers.get("Connection")) == (200, HOSTNAME, "close")


def test_serve_hostname_refuses_http_with_tcp_as_upstream():
    done = agnhost("serve-hostname", "--tcp", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith("Can't serve TCP/UDP mode and HTTP mode at the same time")


# -- netexec -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def netexec():
    http, udp = free_port(), free_port(socket.SOCK_DGRAM)
    with server("netexec", f"--http-port={http}", "--udp-port", str(udp), port=http) as proc:
        yield http, udp, proc


def test_netexec_http_endpoints(netexec):
    http, udp, _ = netexec
    assert get(http, "/hostname")[::2] == (200, HOSTNAME)
    assert get(http, "/hostName")[::2] == (200, HOSTNAME)
    status, headers, body = get(http, "/clientip")
    assert status == 200 and body.startswith("127.0.0.1:") and int(body.rsplit(":", 1)[1]) > 0
    assert get(http, "/echo?msg=hello%20world")[::2] == (200, "hello world")
    assert get(http, "/echo?msg=gone&code=503")[::2] == (503, "gone")
    assert get(http, "/echo?msg=x&code=abc")[2] == "argument 'code' must be an integer or empty, got \"abc\"\n"
    assert get(http, "/echo", method="POST", data=b"msg=posted")[2] == "posted"
    assert get(http, "/healthz")[::2] == (200, "")
    assert get(http, "/readyz")[::2] == (200, "ok")
    assert get(http, "/header?key=user-agent")[2].startswith("Python-urllib")
    assert "User-Agent" in json.loads(get(http, "/header")[2])
    for path in ("/", "/no/such/path"):          # Go's ServeMux: "/" takes every other path
        status, headers, body = get(http, path)
        assert status == 200 and body.startswith("NOW: ") and " m=+" in body
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_netexec_dial_as_the_e2e_framework_calls_it(netexec):
    http, udp, _ = netexec
    status, _, body = get(http, f"/dial?request=hostname&protocol=http&host=127.0.0.1&port={http}&tries=2")
    assert (status, json.loads(body)) == (200, {"responses": [HOSTNAME, HOSTNAME]})
    status, _, body = get(http, f"/dial?request=echo%20Hello&protocol=udp&host=127.0.0.1&port={udp}&tries=1")
    assert json.loads(body) == {"responses": ["hello"]}          # the UDP server lowercases
    closed = free_port()
    body = json.loads(get(http, f"/dial?request=hostname&protocol=http&host=127.0.0.1&port={closed}")[2])
    assert list(body) == ["errors"] and body["errors"][0].endswith("connect: connection refused")
    body = json.loads(get(http, f"/dial?request=hostname&protocol=udp&host=127.0.0.1&port={closed}")[2])
    assert body["errors"][0].startswith("reading from udp connection failed.")
    assert get(http, "/dial?protocol=udp&host=127.0.0.1&port=1")[::2] == \
        (400, "request parameter not specified. <nil>\n")
    assert get(http, "/dial?request=x&tries=z")[::2] == \
        (400, 'tries parameter is invalid. strconv.Atoi: parsing "z": invalid syntax\n')
    assert get(http, "/dial?request=x&protocol=icmp&host=a&port=1")[::2] == (400, "unsupported protocol. icmp\n")


def test_netexec_udp_commands(netexec):
    _, udp, _ = netexec
    assert datagram("hostname", udp) == HOSTNAME
    assert datagram("HostName\n", udp) == HOSTNAME
    assert datagram("echo Some Text", udp) == "some text"
    assert datagram("clientip", udp).startswith("127.0.0.1:")
    with pytest.raises(TimeoutError):
        datagram("what", udp, wait=0.3)                 # unknown commands get no answer


def test_netexec_shell_and_redirect(netexec):
    http, _, _ = netexec
    assert json.loads(get(http, "/shell?cmd=echo%20%27a%26b%27")[2]) == {"output": "a&b\n"}
    assert json.loads(get(http, "/shell?shellCommand=exit%203")[2]) == {"error": "exit status 3"}
    request = urllib.request.Request(f"http://127.0.0.1:{http}/redirect?location=/echo%3Fmsg%3Dfoobar&code=307")
    opener = urllib.request.build_opener(urllib.request.HTTPRedirectHandler())
    with opener.open(request, timeout=5) as resp:       # followed to /echo
        assert resp.read().decode() == "foobar"


def test_netexec_without_udp_is_never_healthy_as_upstream():
    http = free_port()
    with server("netexec", f"--http-port={http}", "--udp-port=-1", port=http):
        assert get(http, "/healthz")[0] == 412
        assert get(http, "/readyz")[0] == 412
        assert get(http, "/hostname")[::2] == (200, HOSTNAME)


def test_netexec_sigterm_readyz_then_exit_after_the_delay():
    http = free_port()
    with server("netexec", f"--http-port={http}", f"--udp-port={free_port(socket.SOCK_DGRAM)}",
                "--delay-shutdown", "1", port=http) as proc:
        assert get(http, "/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert get(http, "/readyz")[::2] == (503, "shutting down")
        assert get(http, "/healthz")[0] == 200         # healthy, not ready: removed from endpoints
        assert proc.wait(5) == 0
    http = free_port()
    with server("netexec", f"--http-port={http}", "--udp-port=-1", port=http) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(2) == 0


def test_netexec_exit_endpoint():
    http = free_port()
    with server("netexec", f"--http-port={http}", "--udp-port=-1", port=http) as proc:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            get(http, "/exit?code=3")                  # os.Exit before any answer
        assert proc.wait(5) == 3
    http = free_port()
    with server("netexec", f"--http-port={http}", "--udp-port=-1", port=http) as proc:
        assert get(http, "/exit?code=x")[2] == "argument 'code' must be an integer [0-127] or empty, got \"x\"\n"
        assert get(http, "/exit?timeout=soon&wait=x")[2] == \
            "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n"
        assert get(http, "/exit?timeout=1s&wait=later")[2] == \
            "argument 'wait' must be a valid golang duration or empty, got \"later\"\n"
        assert get(http, "/exit?code=4&timeout=1s")[0] == 200        # graceful: answered, then exit
        assert proc.wait(5) == 4


def test_netexec_http_override_and_udp_listen_addresses():
    http, udp = free_port(), free_port(socket.SOCK_DGRAM)
    with server("netexec", f"--http-port={http}", f"--udp-port={udp}", "--http-override=/echo?msg=fixed",
                "--udp-listen-addresses=127.0.0.1,127.0.0.1", port=http):
        assert get(http, "/hostname")[2] == "fixed"
        assert datagram("hostname", udp) == HOSTNAME
    done = agnhost("netexec", f"--http-port={free_port()}", "--udp-listen-addresses=nonsense")
    assert done.returncode == 1 and "parseAddress: invalid address nonsense" in done.stderr


def test_netexec_sctp_port_on_a_kernel_without_sctp():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        pytest.skip("this kernel has SCTP")
    except OSError:
        pass
    done = agnhost("netexec", f"--http-port={free_port()}", "--udp-port=-1", f"--sctp-port={free_port()}")
    assert done.returncode == 1 and "no SCTP support" in done.stderr


# -- connect, pause, the command line ----------------------------------------------------------

def test_connect_succeeds_in_silence_and_refused_says_so():
    port = free_port()
    with server("serve-hostname", "--tcp", "--udp", "--http=false", f"--port={port}", port=port):
        ok = agnhost("connect", f"127.0.0.1:{port}", "--timeout=3s")
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
        ok = agnhost("connect", "--timeout", "3s", f"localhost:{port}", "--protocol=udp")
        assert (ok.returncode, ok.stderr) == (0, "")
    closed = free_port()
    refused = agnhost("connect", f"127.0.0.1:{closed}", "--timeout=3s", "--protocol=tcp")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", "REFUSED\n")
    refused = agnhost("connect", f"127.0.0.1:{closed}", "--timeout=3s", "--protocol=udp")
    assert refused.returncode == 1 and refused.stderr.startswith("REFUSED: read udp 127.0.0.1:")
    assert refused.stderr.endswith(f"->127.0.0.1:{closed}: read: connection refused\n")


@pytest.mark.parametrize(("args", "stderr"), [
    (["127.0.0.1", "--timeout=1s"], "UNKNOWN: address 127.0.0.1: missing port in address\n"),
    (["127.0.0.1:x-no-such-port"], "DNS: lookup tcp/x-no-such-port: unknown port\n"),
    (["127.0.0.1:1", "--protocol=icmp"], "Unsupported protocol\nicmp"),
    (["127.0.0.1:1", "--timeout=soon"],
     'Error: invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"\n'),
    (["127.0.0.1:1", "--sctp-data=x"], "Error: unknown flag: --sctp-data\n"),
    ([], "Error: accepts 1 arg(s), received 0\n"),
])
def test_connect_usage_and_lookup_errors(args, stderr):
    done = agnhost("connect", *args)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", stderr)


def test_connect_dns_error():
    done = agnhost("connect", "no-such-name.invalid:80", "--timeout=2s")
    assert done.returncode == 1 and done.stderr.startswith("DNS: lookup no-such-name.invalid")


CONNECT_IN_NETNS = textwrap.dedent("""
    import subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for proto in ("tcp", "udp"):     # a port whose packets vanish, as a policy drops them
        subprocess.run(["iptables", "-A", "INPUT", "-p", proto, "--dport", "8125", "-j", "DROP"], check=True)
    for line in sys.argv[1:]:
        done = subprocess.run([sys.executable, "-m", "testbed.workloads.agnhost", "connect", *line.split()],
                              capture_output=True, text=True)
        print(done.returncode, done.stderr.strip().replace(chr(10), " | "))
""")


def test_connect_timeout_and_other_in_a_private_network_namespace():
    if shutil.which("unshare") is None or shutil.which("iptables") is None:
        pytest.skip("needs unshare(1) and iptables")
    cases = ["127.0.0.1:8125 --timeout=300ms", "127.0.0.1:8125 --protocol=udp --timeout=300ms",
             "10.9.9.9:80 --timeout=1s", "127.0.0.1:8125 --protocol=sctp --timeout=300ms"]
    result = subprocess.run(["unshare", "-rn", sys.executable, "-c", CONNECT_IN_NETNS, *cases],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.skip(f"no private user and network namespace here: {result.stderr.strip()[-200:]}")
    lines = result.stdout.splitlines()
    assert lines[0] == "1 TIMEOUT"                             # tcp: bare, as upstream's
    assert lines[1].startswith("1 TIMEOUT: read udp 127.0.0.1:") and lines[1].endswith(": i/o timeout")
    assert lines[2] == "1 OTHER: dial tcp 10.9.9.9:80: connect: network is unreachable"
    assert lines[3].startswith("1 OTHER: ") or lines[3] == "1 TIMEOUT"   # no SCTP here, or a dropped INIT


def test_pause_prints_paused_and_sigterm_exits_2():
    proc = subprocess.Popen([*AGNHOST, "pause"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "Paused\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()


@pytest.mark.parametrize(("args", "stderr"), [
    (["foo"], 'Error: unknown command "foo" for "app"\n'),
    (["netexec", "extra"], "Error: accepts at most 0 arg(s), received 1\n"),
    (["serve-hostname", "--tcp=maybe"],
     'Error: invalid argument "maybe" for "--tcp" flag: strconv.ParseBool: parsing "maybe": invalid syntax\n'),
    (["netexec", "--http-port=http"],
     'Error: invalid argument "http" for "--http-port" flag: strconv.ParseInt: parsing "http": invalid syntax\n'),
    (["porter"], "Error: agnhost porter is not provided by the testbed (its agnhost runs netexec, "
                 "serve-hostname, connect, pause)\n"),
])
def test_command_line_errors_exit_1_as_cli_run(args, stderr):
    done = agnhost(*args)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", stderr)


def test_no_subcommand_prints_help_and_exits_0():
    done = agnhost()
    assert done.returncode == 0 and "Available Commands:" in done.stdout and "netexec" in done.stdout


def test_the_image_program_by_its_path_in_the_image():
    from testbed.node.images import ENTRYPOINTS, image_argv
    image = "registry.k8s.io/e2e-test-images/agnhost:2.52"
    assert image_argv(image, ["/agnhost", "connect", "x:80"]) == ENTRYPOINTS["agnhost"] + ["connect", "x:80"]
    assert image_argv(image, ["/agnhost-2", "netexec"]) == ENTRYPOINTS["agnhost"] + ["netexec"]
    assert image_argv(image, ["agnhost", "netexec"]) == ["agnhost", "netexec"]     # not on its PATH
    assert image_argv("busybox", ["/agnhost"]) == ["/agnhost"]     # only in agnhost's image
    assert image_argv(image, ["sh", "-c", "true"]) == ["sh", "-c", "true"]
