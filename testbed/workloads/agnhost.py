"""The `agnhost` test image's netexec and serve-hostname servers, as pods run them here.

Kubernetes' own network tests use agnhost; pods that name the image (any registry or tag) run
this instead, with the same arguments:

    agnhost netexec [--http-port=8080] [--udp-port=8081]
        HTTP: /hostname, /clientip ("IP:PORT" as the server saw it), /echo?msg=, /healthz,
        /exit?code=N; UDP: "hostname", "clientip", "echo TEXT".
    agnhost connect HOST:PORT [--timeout=1s] [--protocol=tcp|udp|sctp] [--udp-data=hostname]
        One connection attempt, as upstream's netpol e2e prober runs it (`kubectl exec POD --
        /agnhost connect s-x-a.x.svc.cluster.local:80 --timeout=1s --protocol=tcp`): exit 0
        when it connected (UDP: when a reply came), else exit 1 with TIMEOUT, REFUSED, DNS,
        OTHER or UNKNOWN first on stderr, upstream's words for the failure.
    agnhost serve-hostname [--port=9376] [--tcp] [--udp] [--http=false] [--close]
        Answers every HTTP request, TCP connection (written, then closed) or datagram with the
        pod's hostname. As upstream, HTTP (on by default) cannot be served with --tcp or --udp:
        `serve-hostname --tcp --http=false --port=80` is what the netpol e2e pods run.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOSTNAME = socket.gethostname()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agnhost-testbed"

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/hostname"):
            self._send(200, HOSTNAME if url.path == "/hostname" else f"NOW: {HOSTNAME}")
        elif url.path == "/clientip":
            self._send(200, f"{self.client_address[0]}:{self.client_address[1]}")
        elif url.path == "/echo":
            self._send(200, query.get("msg", [""])[0])
        elif url.path == "/healthz":
            self._send(200, "ok")
        elif url.path == "/exit":
            self._send(200, "")
            os._exit(int(query.get("code", ["0"])[0]))
        else:
            self._send(404, "404 page not found\n")

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")


class _HostnameHandler(_Handler):
    close = False

    def do_GET(self) -> None:  # noqa: N802
        data = HOSTNAME.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        if self.close:      # --close: "Connection: close" on every answer
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _tcp_hostname(port: int) -> None:
    """Upstream's raw TCP mode: write the hostname to each connection and close it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("", port))
    listener.listen(4096)
    while True:
        conn, peer = listener.accept()
        sys.stderr.write(f"TCP request from {peer[0]}:{peer[1]}\n")
        try:
            conn.sendall(HOSTNAME.encode())
        except OSError:
            pass
        finally:
            conn.close()


def _udp(port: int, answer) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("", port))
    while True:
        data, peer = sock.recvfrom(65535)
        reply = answer(data.decode(errors="replace").strip(), peer)
        if reply is not None:
            sock.sendto(reply.encode(), peer)


def _netexec_udp(text: str, peer) -> str:
    if text == "hostname":
        return HOSTNAME
    if text == "clientip":
        return f"{peer[0]}:{peer[1]}"
    if text.startswith("echo "):
        return text[5:]
    return ""


class _Server(ThreadingHTTPServer):
    # Go's net.Listen takes the kernel's somaxconn; Python's default backlog of 5 overflows
    # when a reachability step connects to one server from ten pods at once.
    request_queue_size = 4096


def _serve_http(port: int, handler) -> None:
    server = _Server(("", port), handler)
    server.daemon_threads = True
    server.serve_forever()


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds: "1s", "500ms", "1m30s", "0"; ValueError if not."""
    sign, rest = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
    if rest == "0":
        return 0.0
    total, at = 0.0, 0
    for m in _DURATION.finditer(rest):
        if m.start() != at:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        at = m.end()
    if not rest or at != len(rest):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def _fail(word: str, detail: str = "") -> int:
    sys.stderr.write(f"{word}{': ' + detail if detail else ''}\n")
    return 1


def connect(dest: str, timeout: float, protocol: str, data: str) -> int:
    """Upstream's connect (test/images/agnhost/connect): 0, or 1 with its word for the failure
    first on stderr, per protocol as upstream words it."""
    if protocol not in ("", "tcp", "udp", "sctp"):
        sys.stderr.write(f"Unsupported protocol\n{protocol}")
        return 1
    host, sep, port = dest.rpartition(":")
    if not sep or not host or not port:
        return _fail("UNKNOWN" if protocol in ("", "tcp") else "DNS",
                     f"address {dest}: missing port in address")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=kind)[0]
    except (OSError, ValueError) as err:
        return _fail("DNS", f"lookup {host}: {err}")
    if protocol == "udp":
        return _connect_udp(family, address, timeout, data)
    try:
        sock = socket.socket(family, kind, socket.IPPROTO_SCTP if protocol == "sctp" else 0)
    except OSError as err:
        return _fail("OTHER", str(err))
    sock.settimeout(timeout or None)     # Go: 0 is no timeout of its own
    try:
        sock.connect(address)
        if protocol == "sctp":
            sock.send(f"{data}\n".encode())
            sock.recv(1024)
        return 0
    except TimeoutError:
        return _fail("TIMEOUT")
    except ConnectionRefusedError as err:
        return _fail("REFUSED") if protocol != "sctp" else _fail("OTHER", str(err))
    except OSError as err:
        return _fail("OTHER", str(err))
    finally:
        sock.close()


def _connect_udp(family: int, address: tuple, timeout: float, data: str) -> int:
    """connectUDP: a datagram that must be answered; its errors as parseUDPErrorAndExit."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:
            sock.connect(address)
        except OSError as err:
            return _fail("OTHER", str(err))
        sock.settimeout(timeout or None)
        try:
            sock.send(f"{data}\n".encode())
            if not sock.recv(1024):
                return _fail("OTHER", "No data received from the server. Cannot guarantee the "
                                      "server received the request.")
        except TimeoutError as err:
            return _fail("TIMEOUT", str(err) or "i/o timeout")
        except ConnectionRefusedError as err:
            return _fail("REFUSED", f"connection refused: {err}")
        except OSError as err:
            return _fail("UNKNOWN", str(err))
        return 0
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agnhost")
    sub = parser.add_subparsers(dest="command", required=True)
    netexec = sub.add_parser("netexec")
    netexec.add_argument("--http-port", type=int, default=8080)
    netexec.add_argument("--udp-port", type=int, default=8081)
    hostname = sub.add_parser("serve-hostname")
    hostname.add_argument("--port", type=int, default=9376)
    hostname.add_argument("--udp", nargs="?", const="true", default="false")
    hostname.add_argument("--tcp", nargs="?", const="true", default="false")
    hostname.add_argument("--http", nargs="?", const="true", default="true")
    hostname.add_argument("--close", nargs="?", const="true", default="false")
    sub.add_parser("pause")
    probe = sub.add_parser("connect")
    probe.add_argument("dest", metavar="HOST:PORT")
    probe.add_argument("--timeout", default="0")
    probe.add_argument("--protocol", default="tcp")
    probe.add_argument("--udp-data", default="hostname")
    probe.add_argument("--sctp-data", default="hostname")
    args = parser.parse_args(argv)
    if args.command == "connect":
        try:
            timeout = go_duration(args.timeout)
        except ValueError as err:
            return _fail("UNKNOWN", f'invalid argument "{args.timeout}" for "--timeout" flag: {err}')
        data = args.sctp_data if args.protocol == "sctp" else args.udp_data
        return connect(args.dest, timeout, args.protocol, data)
    threads = []
    if args.command == "netexec":
        if args.udp_port > 0:
            threads.append(threading.Thread(target=_udp, args=(args.udp_port, _netexec_udp), daemon=True))
        threads.append(threading.Thread(target=_serve_http, args=(args.http_port, _Handler), daemon=True))
    elif args.command == "serve-hostname":
        if args.http == "true" and "true" in (args.tcp, args.udp):
            print("Can't server TCP/UDP mode and HTTP mode at the same time", file=sys.stderr)
            return 1
        if args.tcp == "true":
            threads.append(threading.Thread(target=_tcp_hostname, args=(args.port,), daemon=True))
        if args.udp == "true":
            threads.append(threading.Thread(target=_udp, args=(args.port, lambda t, p: HOSTNAME), daemon=True))
        if args.http == "true":
            handler = type("Handler", (_HostnameHandler,), {"close": args.close == "true"})
            threads.append(threading.Thread(target=_serve_http, args=(args.port, handler), daemon=True))
    for t in threads:
        t.start()
    print(f"agnhost {args.command} serving as {HOSTNAME}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
