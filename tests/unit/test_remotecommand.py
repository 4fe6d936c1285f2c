"""Real clients against an in-process API server with the fake runtime (no root): kubectl 1.37
(WebSocket, and its SPDY fallback when told not to use WebSocket), kubectl 1.20 (SPDY) and the
Python client (WebSocket) doing exec, attach and port-forward; and the answers a refused
request gets, read over raw HTTP."""

from __future__ import annotations

import base64
import fcntl
import http.client
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
import urllib.request

import pytest

from testbed.agents.streaming.runtime import LocalRuntime
from testbed.emu.access import kubeconfig_text
from testbed.net.websocket import OP_BINARY, OP_CLOSE, OP_TEXT, encode_frame
from tests.unit.conftest import KUBECTLS, kubectl_runner, start_api

# (kubectl version, environment): 1.37 speaks WebSocket first; told not to, it speaks SPDY
CLIENTS = {"1.37": ("1.37", {}),
           "1.37-spdy": ("1.37", {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
                                  "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}),
           "1.20": ("1.20", {})}
ATTACHED = ["sh", "-c", "sleep 0.3; echo attached; echo to-stderr >&2"]


class EchoServer:
    """A TCP server standing for a pod's port: answers each connection with "pong:" + what it
    read, once the client ends its input or ends a line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n") and (chunk := conn.recv(65536)):
                data += chunk
            conn.sendall(b"pong:" + data)


def api_call(url: str, method: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request).read())


def make_pod(url: str, name: str, containers=("c", "d"), phase="Running", node="w1") -> dict:
    """A Pod created through the API, then given a status as a kubelet would."""
    pod = api_call(url, "POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [
            {"name": n, "image": "busybox", "command": ["sleep", "1d"]} for n in containers]}})
    pod["status"] = {"phase": phase, "containerStatuses": [
        {"name": n, "ready": True, "restartCount": 0, "image": "busybox", "imageID": "",
         "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}} for n in containers]}
    return api_call(url, "PUT", f"/api/v1/namespaces/default/pods/{name}/status", pod)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(API server, fake runtime, echo server) with pod p (containers c and d) Running."""
    tmp = tmp_path_factory.mktemp("streaming")
    echo = EchoServer()
    runtime = LocalRuntime(attach_argv=ATTACHED, ports={80: echo.address})
    srv = start_api(tmp, runtime=runtime)
    make_pod(srv.url, "p")
    yield srv, runtime, echo
    srv.stop()
    echo.sock.close()


@pytest.fixture(params=list(CLIENTS))
def kubectl(request, cluster, tmp_path):
    """run(*args, input=None) for one kubectl flavour against the cluster's API server."""
    version, env = CLIENTS[request.param]
    run = kubectl_runner(version, cluster[0].url, tmp_path / "home")

    def call(*args: str, input: str | None = None):
        return run(*args, input=input, timeout=60, extra_env=env)

    call.flavour = request.param
    return call


# -- exec -------------------------------------------------------------------------------------------

def test_exec_stdout(kubectl, cluster):
    got = kubectl("exec", "p", "-c", "c", "--", "echo", "hi")
    assert (got.stdout, got.stderr, got.returncode) == ("hi\n", "", 0)
    assert ("exec", "c", ["echo", "hi"]) in cluster[1].started


def test_exec_stderr_and_exit_code(kubectl):
    got = kubectl("exec", "p", "-c", "c", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert got.returncode == 3 and got.stdout == "out\n"
    assert got.stderr == "err\ncommand terminated with exit code 3\n"


def test_exec_stdin_reaches_the_command_and_its_end_ends_it(kubectl):
    data = "".join(f"line {n}\n" for n in range(20000))   # ~200 KB: many frames each way
    got = kubectl("exec", "-i", "p", "-c", "c", "--", "cat", input=data)
    assert got.returncode == 0 and got.stdout == data


def test_exec_chooses_the_container(kubectl, cluster):
    got = kubectl("exec", "p", "-c", "d", "--", "echo", kubectl.flavour)
    assert got.returncode == 0
    assert ("exec", "d", ["echo", kubectl.flavour]) in cluster[1].started


def test_exec_without_a_container_takes_the_first_and_says_so(kubectl):
    got = kubectl("exec", "p", "--", "true")
    assert got.returncode == 0 and "c" in got.stderr   # kubectl names its default container


def test_a_missing_container_is_refused(kubectl):
    got = kubectl("exec", "p", "-c", "nope", "--", "true")
    assert got.returncode == 1
    if kubectl.flavour == "1.20":   # kubectl 1.20 asks the server, which refuses
        assert got.stderr == "Error from server (BadRequest): container nope is not valid " \
                             "for pod p\n"
    else:                           # newer kubectl refuses before asking
        assert "container nope is not valid for pod p" in got.stderr


def test_a_command_that_cannot_start_is_an_internal_error(kubectl):
    got = kubectl("exec", "p", "-c", "c", "--", "/no/such/program")
    assert got.returncode == 1
    assert got.stderr.startswith("error: Internal error occurred: error executing command in "
                                 "container: cannot run '/no/such/program'")


def read_until(fd: int, text: str, timeout: float = 20) -> str:
    out, deadline = b"", time.monotonic() + timeout
    while text.encode() not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:   # EIO: kubectl is gone
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def test_exec_with_a_tty_and_a_resize(kubectl, cluster, tmp_path):
    """kubectl -it on a terminal of its own: raw input is echoed by the remote terminal, `stty
    size` sees kubectl's terminal size, then the new size after a resize (SIGWINCH)."""
    version, env = CLIENTS[kubectl.flavour]
    (tmp_path / "kubeconfig").write_text(kubeconfig_text("unit", cluster[0].url))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    script = ('echo ready; read a; stty size; echo "got:$a"; '
              'while read b; do stty size; [ "$b" = q ] && exit 4; done')
    proc = subprocess.Popen([str(KUBECTLS[version]), "exec", "-it", "p", "-c", "c", "--", "sh",
                             "-c", script], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                 "KUBECONFIG": str(tmp_path / "kubeconfig"), **env})
    os.close(slave)
    try:
        out = read_until(master, "ready")
        os.write(master, b"hello\r")
        out += read_until(master, "got:hello")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        for _ in range(50):   # the resize travels apart from the keys: ask until it has landed
            os.write(master, b"x\r")
            out += read_until(master, "\r\n", 0.2) + read_until(master, "\r\n", 1)
            if "40 120" in out:
                break
        os.write(master, b"q\r")
        out += read_until(master, "exit code 4\r\n")
        assert proc.wait(20) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    # one stream in tty mode: the echo of what was typed, and \r\n from the terminal
    lines = out.split("\r\n")
    assert lines[:4] == ["ready", "hello", "30 100", "got:hello"]
    assert "40 120" in lines and lines[-2:] == ["command terminated with exit code 4", ""]


# -- attach and port-forward ------------------------------------------------------------------------

def test_attach_shows_the_containers_output(kubectl, cluster):
    got = kubectl("attach", "p", "-c", "d")
    assert got.returncode == 0 and got.stdout == "attached\n" and "to-stderr\n" in got.stderr
    assert ("attach", "d", ATTACHED) in cluster[1].started


def test_port_forward_relays_connections(kubectl, cluster, tmp_path):
    version, env = CLIENTS[kubectl.flavour]
    (tmp_path / "kubeconfig").write_text(kubeconfig_text("unit", cluster[0].url))
    proc = subprocess.Popen([str(KUBECTLS[version]), "port-forward", "pod/p", ":80"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                 "KUBECONFIG": str(tmp_path / "kubeconfig"), **env})
    try:
        first = proc.stdout.readline()   # Forwarding from 127.0.0.1:PORT -> 80
        assert first.startswith("Forwarding from 127.0.0.1:") and first.endswith(" -> 80\n")
        port = int(first.split(":")[1].split()[0])
        payload = os.urandom(100000).replace(b"\n", b"-")   # the echo server answers at "\n"
        for n in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                conn.sendall(b"%d:" % n + payload)
                conn.shutdown(socket.SHUT_WR)   # the echo server answers at end of input
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            if answer != b"pong:%d:" % n + payload:
                proc.terminate()
                _, said = proc.communicate(timeout=20)
                raise AssertionError(f"connection {n}: {len(answer)} bytes back, starting "
                                     f"{answer[:20]!r}; kubectl running: {proc.returncode is None}; "
                                     f"kubectl said: {said[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(20)


def test_port_forward_to_a_closed_port_reports_the_error(kubectl, cluster, tmp_path):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    version, env = CLIENTS[kubectl.flavour]
    (tmp_path / "kubeconfig").write_text(kubeconfig_text("unit", cluster[0].url))
    proc = subprocess.Popen([str(KUBECTLS[version]), "port-forward", "pod/p", f":{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                 "KUBECONFIG": str(tmp_path / "kubeconfig"), **env})
    try:
        local = int(proc.stdout.readline().split(b":")[1].split()[0])
        with socket.create_connection(("127.0.0.1", local), timeout=20) as conn:
            assert conn.recv(10) == b""   # the connection is closed without data
        err = read_until(proc.stderr.fileno(), "Connection refused")
    finally:
        proc.terminate()
        proc.wait(20)
    assert f"error forwarding port {port} to pod p, uid " in err


# -- the Python client -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def core_api(cluster):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = cluster[0].url
    return client.CoreV1Api(client.ApiClient(configuration))


def test_python_client_exec(core_api):
    from kubernetes.stream import stream

    assert stream(core_api.connect_get_namespaced_pod_exec, "p", "default", container="c",
                  command=["echo", "hi"], stderr=True, stdin=False, stdout=True,
                  tty=False) == "hi\n"
    resp = stream(core_api.connect_get_namespaced_pod_exec, "p", "default", container="c",
                  command=["sh", "-c", "cat; echo e >&2; exit 5"], stderr=True, stdin=True,
                  stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("fed\n")
    resp.close_channel(0)   # v5's stdin close
    resp.run_forever(timeout=10)
    assert (resp.read_stdout(), resp.read_stderr(), resp.returncode) == ("fed\n", "e\n", 5)


def test_python_client_port_forward(core_api):
    from kubernetes.stream import portforward

    forward = portforward(core_api.connect_get_namespaced_pod_portforward, "p", "default",
                          ports="80")
    conn = forward.socket(80)
    conn.sendall(b"ping\n")   # no half-close in this protocol: the echo server answers a line
    answer = b""
    while chunk := conn.recv(1024):
        answer += chunk
    assert answer == b"pong:ping\n" and forward.error(80) is None


# -- refusals, over raw HTTP -------------------------------------------------------------------------

def raw(url: str, path: str, headers: dict[str, str], method: str = "POST"):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.msg, resp.read().decode()


SPDY = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
        "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
WS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}
EXEC = "/api/v1/namespaces/default/pods/{}/exec?command=true&stdout=true&container=c"


@pytest.mark.parametrize("path,headers,code,text", [
    (EXEC.format("p"), {}, 400, "Upgrade request required"),
    (EXEC.format("gone"), SPDY, 404, 'pods "gone" not found'),
    ("/api/v1/namespaces/default/pods/p/exec?stdout=true&container=c", SPDY, 400,
     "you must specify at least one command for the container"),
    ("/api/v1/namespaces/default/pods/p/exec?command=true&stdout=true", SPDY, 400,
     "a container name must be specified for pod p, choose one of: [c d]"),
    (EXEC.format("pending"), SPDY, 400, "pod pending is not running (phase Pending)"),
    (EXEC.format("done"), SPDY, 400,
     "cannot exec into a container in a completed pod; current phase is Succeeded"),
    (EXEC.format("p"), {**WS, "Sec-WebSocket-Protocol": "v9.channel.k8s.io"}, 403,
     "requested protocol(s) are not supported: [v9.channel.k8s.io]"),
])
def test_refused_before_the_upgrade_with_a_status(cluster, path, headers, code, text):
    srv = cluster[0]
    for name, phase in (("pending", "Pending"), ("done", "Succeeded")):
        if name in path:
            try:
                make_pod(srv.url, name, ("c",), phase)
            except urllib.error.HTTPError:
                pass   # made by an earlier case
    status, _, body = raw(srv.url, path, headers)
    assert status == code
    doc = json.loads(body)
    assert doc["kind"] == "Status" and doc["code"] == code and text in doc["message"]


def test_spdy_handshake_answers_as_the_kubelets(cluster):
    url = cluster[0].url
    status, _, body = raw(url, EXEC.format("p"), {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert status == 400 and body.startswith("unable to upgrade: header X-Stream-Protocol-Version "
                                             "does not exist in request")
    status, headers, body = raw(url, EXEC.format("p"),
                                {**SPDY, "X-Stream-Protocol-Version": "v9.channel.k8s.io"})
    assert status == 403 and "unable to negotiate protocol" in body
    assert headers.get_all("X-Accepted-Stream-Protocol-Versions") == [
        "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]


class RawWebSocket:
    """A minimal WebSocket client for the protocols no real client here speaks."""

    def __init__(self, url: str, path: str, protocol: str):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in WS.items())
                   + f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n")
        self.sock.sendall(request.encode())
        self.reader = self.sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.reader.read(1)
        self.head = head.decode()

    def messages(self) -> list[tuple[int, bytes]]:
        """Every message until the server's close frame (answered)."""
        out = []
        while True:
            b0, b1 = self.reader.read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.reader.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.reader.read(8))[0]
            payload = self.reader.read(n)
            if b0 & 0x0F == OP_CLOSE:
                self.sock.sendall(encode_frame(OP_CLOSE, payload, mask=b"abcd"))
                return out
            out.append((b0 & 0x0F, payload))


def test_base64_channel_protocol(cluster):
    """base64.channel.k8s.io: text messages, channel as a digit; pre-v4 error text."""
    client = RawWebSocket(cluster[0].url, "/api/v1/namespaces/default/pods/p/exec?command=sh&"
                          "command=-c&command=echo%20out;exit%202&stdout=true&container=c",
                          "base64.channel.k8s.io")
    assert "Sec-WebSocket-Protocol: base64.channel.k8s.io" in client.head
    messages = client.messages()
    assert all(op == OP_TEXT for op, _ in messages)
    decoded = [(m[:1].decode(), base64.b64decode(m[1:])) for _, m in messages]
    assert decoded[0] == ("1", b"")   # the kubelet's "streams are ready" message
    assert ("1", b"out\n") in decoded
    assert decoded[-1][0] == "3" and decoded[-1][1].startswith(
        b"command terminated with non-zero exit code")


def test_v4_channel_protocol(cluster):
    client = RawWebSocket(cluster[0].url, EXEC.format("p") + "&stderr=true", "v4.channel.k8s.io")
    messages = client.messages()
    assert all(op == OP_BINARY for op, _ in messages)
    assert messages[0][1] == b"\x01" and messages[-1][1][:1] == b"\x03"
    assert json.loads(messages[-1][1][1:]) == {"metadata": {}, "status": "Success"}


def test_client_going_away_kills_the_command(cluster, tmp_path):
    pidfile = tmp_path / "pid"
    client = RawWebSocket(cluster[0].url, "/api/v1/namespaces/default/pods/p/exec?command=sh&"
                          f"command=-c&command=echo%20$$%20>{pidfile};exec%20sleep%2030&"
                          "stdout=true&container=c", "v5.channel.k8s.io")
    client.reader.read(3)   # the ready message: the command runs
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    client.sock.close()
    client.reader.close()
    while os.path.exists(f"/proc/{pid}") and not _zombie(pid):   # killed, not left to run 30 s
        assert time.monotonic() < deadline + 10, "the command outlived its client"
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
