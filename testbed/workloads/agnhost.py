"""The `agnhost` test image's netexec and serve-hostname servers, as pods run them here.

Kubernetes' own network tests use agnhost; pods that name the image (any registry or tag) run
this instead, with the same arguments:

    agnhost netexec [--http-port=8080] [--udp-port=8081]
        HTTP: /hostname, /clientip ("IP:PORT" as the server saw it), /echo?msg=, /healthz,
        /exit?code=N; UDP: "hostname", "clientip", "echo TEXT".
    agnhost serve-hostname [--port=9376] [--tcp] [--udp] [--http=false] [--close]
        Answers every HTTP request, TCP connection (written, then closed) or datagram with the
        pod's hostname. As upstream, HTTP (on by default) cannot be served with --tcp or --udp:
        `serve-hostname --tcp --http=false --port=80` is what the netpol e2e pods run.
"""

from __future__ import annotations

import argparse
import os
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
    args = parser.parse_args(argv)
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
