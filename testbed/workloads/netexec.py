"""Acts: agnhost's `netexec` (test/images/agnhost/netexec), as pods run it here.

    netexec [--http-port=8080] [--udp-port=8081] [--sctp-port=-1] [--udp-listen-addresses=IP,IP]
            [--delay-shutdown=SECONDS] [--http-override=PATH?QUERY]
            [--tls-cert-file=F --tls-private-key-file=F]

HTTP (any method, as Go's ServeMux): / ("NOW: <time>", also every unknown path), /clientip,
/header[?key=K], /dial?host=&port=&request=&protocol=http|udp|sctp&tries=N (JSON
{"errors":[..],"responses":[..]}), /echo?msg=[&code=], /exit?code=[&timeout=][&wait=],
/healthz (200 once the UDP or SCTP server listens, else 412), /readyz (503 "shutting down"
after SIGTERM), /hostname, /hostName, /redirect?location=[&code=], /shell?cmd= (or
shellCommand; JSON {"error","output"}), /shutdown, /upload. UDP (and SCTP when the kernel has
it): "hostname", "echo TEXT", "clientip", lowercased as upstream reads them; anything else gets
no answer. SIGTERM: /readyz turns 503 and the process exits 0 after --delay-shutdown seconds.

Where this differs: /upload has no image filesystem (no /uploads directory) and answers
upstream's "Unable to open file for write"; an SCTP port on a kernel without SCTP ends the
program as upstream's log.Fatal would, naming the kernel.
"""

from __future__ import annotations

import email.parser
import os
import posixpath
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlsplit

from testbed.workloads.dial import DialError, dial_http, dial_sctp, dial_udp, resolve
from testbed.workloads.golang import (
    canonical_header_key,
    content_type,
    errno_text,
    format_duration,
    go_duration,
    go_json,
    go_quote,
    join_host_port,
    log_line,
    time_string,
)

HOSTNAME = socket.gethostname()
STARTED = time.monotonic()
READY = threading.Event()          # serverReady: the UDP (or SCTP) server listens
TERMINATING = threading.Event()    # SIGTERM seen: /readyz answers 503


def log(message: str) -> None:
    sys.stderr.write(log_line(message, datetime.now()))
    sys.stderr.flush()


def fatal(message: str) -> None:
    """log.Fatal: the line, then exit status 1 at once (whatever the other threads do)."""
    log(message)
    os._exit(1)


def family_socket(kind: int, proto: int = 0) -> socket.socket:
    """A socket for Go's ":PORT": dual-stack [::] where the kernel has IPv6, else IPv4."""
    try:
        sock = socket.socket(socket.AF_INET6, kind, proto)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        return sock
    except OSError:
        return socket.socket(socket.AF_INET, kind, proto)


def _wildcard(sock: socket.socket) -> str:
    return "::" if sock.family == socket.AF_INET6 else "0.0.0.0"


def listener_socket(kind: int, port: int) -> socket.socket:
    """A family_socket bound to ":PORT" with SO_REUSEADDR, as Go's net.Listen binds one; not
    listening yet."""
    sock = family_socket(kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_wildcard(sock), port))
    except OSError:
        sock.close()
        raise
    return sock


# -- UDP and SCTP ------------------------------------------------------------------------------

def answer(text: bytes, peer: str) -> bytes | None:
    """The UDP/SCTP servers' reply to `text` from `peer` ("IP:PORT"), None for no reply."""
    received = text.decode(errors="replace").strip().lower()
    if received == "hostname":
        return HOSTNAME.encode()
    if received.startswith("echo "):
        return received.split(" ", 1)[1].encode()
    if received == "clientip":
        return peer.encode()
    if received:
        log(f"Unknown UDP command received from {peer}: {received}")
    return None


def udp_socket(address: str, port: int) -> socket.socket:
    if address:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
    else:
        sock = family_socket(socket.SOCK_DGRAM)
    try:
        sock.bind((address or _wildcard(sock), port))
    except OSError as err:
        fatal(f"Error occurred: failed to create listener for UDP address "
              f"{join_host_port(address, port)}:listen udp {join_host_port(address, port)}: "
              f"bind: {errno_text(err)}")
    return sock


def serve_udp(sock: socket.socket, address: str, port: int) -> None:
    log(f"Started UDP server on port {address} {port}")
    READY.set()
    while True:
        data, peer = sock.recvfrom(2048)
        reply = answer(data, join_host_port(peer[0], peer[1]))
        if reply is not None:
            sock.sendto(reply, peer)


def serve_sctp(port: int) -> None:
    try:
        listener = family_socket(socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        listener.bind((_wildcard(listener), port))
        listener.listen(128)
    except OSError as err:
        fatal(f"Error occurred: failed to create listener for SCTP address :{port}:{err} "
              "(this kernel has no SCTP support)")
    log("Started SCTP server")
    READY.set()
    while True:
        conn, peer = listener.accept()
        with conn:
            reply = answer(conn.recv(1024), join_host_port(peer[0], peer[1]))
            if reply is not None:
                conn.sendall(reply)


# -- HTTP --------------------------------------------------------------------------------------

class Server(ThreadingHTTPServer):
    # Go's net.Listen takes the kernel's somaxconn; Python's default backlog of 5 overflows
    # when a reachability step connects to one server from ten pods at once.
    request_queue_size = 4096
    daemon_threads = True
    override = ""
    active = 0

    def server_bind(self) -> None:
        self.socket.close()
        self.socket = listener_socket(socket.SOCK_STREAM, self.server_address[1])
        self.address_family = self.socket.family
        self.server_address = self.socket.getsockname()[:2]


def _clean(path: str) -> str:
    """Go's ServeMux cleanPath: path.Clean, keeping a trailing slash."""
    cleaned = posixpath.normpath("/" + path.lstrip("/")) if path else "/"
    cleaned = "/" + cleaned.lstrip("/")
    return cleaned + "/" if path.endswith("/") and cleaned != "/" else cleaned


class GoHandler(BaseHTTPRequestHandler):
    """What agnhost's Go HTTP servers share: HTTP/1.1, every method to the subclass's `serve`
    (Go's handlers take them all), no access log (its handlers log what they saw themselves)."""

    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def log_message(self, format: str, *args) -> None:
        pass


class Handler(GoHandler):
    server: Server

    def reply(self, code: int, body: str | bytes = b"", headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        headers = dict(headers or {})
        if data and "Content-Type" not in headers:
            headers["Content-Type"] = content_type(data)
        self.send_response_only(code)
        self.send_header("Date", self.date_time_string())
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, code: int, message: str) -> None:
        """http.Error."""
        self.reply(code, message + "\n", {"Content-Type": "text/plain; charset=utf-8",
                                          "X-Content-Type-Options": "nosniff"})

    def serve(self) -> None:
        self.server.active += 1
        try:
            self._serve()
        finally:
            self.server.active -= 1

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.override:          # --http-override: a new GET, without the client's
            self.target = self.server.override     # address or headers (upstream's NewRequest)
            self.peer, self.header_map, form_body = "", {}, b""
        else:
            self.target = self.path
            self.peer = join_host_port(*self.client_address[:2])
            self.header_map = {}
            for key, value in self.headers.items():
                if key.lower() != "host":
                    self.header_map.setdefault(canonical_header_key(key), []).append(value)
            urlencoded = "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or "")
            form_body = body if self.command in ("POST", "PUT", "PATCH") and urlencoded else b""
        url = urlsplit(self.target)
        self.query = url.query
        self.form = parse_qs(url.query)
        for key, values in parse_qs(form_body.decode(errors="replace")).items():
            self.form[key] = values + self.form.get(key, [])     # body values first, as Go's
        self.body = body
        path = url.path or "/"
        if _clean(path) != path:
            location = _clean(path) + (f"?{url.query}" if url.query else "")
            self.reply(301, f'<a href="{location}">Moved Permanently</a>.\n\n',
                       {"Location": location, "Content-Type": "text/html; charset=utf-8"})
            return
        ROUTES.get(path, Handler.root)(self)

    def value(self, name: str) -> str:
        """Request.FormValue."""
        return self.form.get(name, [""])[0]

    # -- the endpoints, as upstream's handlers --------------------------------------------------

    def root(self) -> None:
        log("GET /")
        self.reply(200, f"NOW: {time_string(datetime.now().astimezone(), time.monotonic() - STARTED)}")

    def clientip(self) -> None:
        log("GET /clientip")
        self.reply(200, self.peer)

    def header(self) -> None:
        key = self.value("key")
        if key:
            log(f"GET /header?key={key}")
            self.reply(200, (self.header_map.get(canonical_header_key(key)) or [""])[0])
        else:
            log("GET /header")
            self.reply(200, go_json(self.header_map))

    def echo(self) -> None:
        msg, code = self.value("msg"), self.value("code")
        log(f"GET /echo?msg={msg}&code={code}")
        if code:
            try:
                status = int(code)
            except ValueError:
                self.reply(200, f"argument 'code' must be an integer or empty, got {go_quote(code)}\n")
                return
            if not 100 <= status <= 999:       # Go panics on it; the server drops the connection
                self.close_connection = True
                return
            self.reply(status, msg)
            return
        self.reply(200, msg)

    def exit(self) -> None:
        wait_text, timeout_text, code_text = self.value("wait"), self.value("timeout"), self.value("code")
        log(f"GET /exit?code={code_text}&timeout={timeout_text}&wait={wait_text}")
        durations = {}
        for name, text in (("timeout", timeout_text), ("wait", wait_text)):      # upstream's order
            try:
                durations[name] = go_duration(text) if text else 0.0
            except ValueError:
                self.reply(200, f"argument '{name}' must be a valid golang duration or empty, got "
                                f"{go_quote(text)}\n")
                return
        timeout, wait = durations["timeout"], durations["wait"]
        try:
            code = int(code_text) if code_text else 0
        except ValueError:
            self.reply(200, f"argument 'code' must be an integer [0-127] or empty, got {go_quote(code_text)}\n")
            return
        log(f"Will begin shutdown in {format_duration(wait)}, allowing {format_duration(timeout)} "
            f"for connections to close, then will exit with {code}")
        time.sleep(max(wait, 0.0))
        if timeout <= 0:
            os._exit(code)                    # before any answer, as upstream's os.Exit
        self.reply(200)
        threading.Thread(target=_shutdown, args=(self.server, code, timeout), daemon=True).start()

    def healthz(self) -> None:
        log("GET /healthz")
        self.reply(200 if READY.is_set() else 412)

    def readyz(self) -> None:
        log("GET /readyz")
        if TERMINATING.is_set():
            self.reply(503, "shutting down")
        else:
            self.reply(200, "ok") if READY.is_set() else self.reply(412)

    def hostname(self) -> None:
        log("GET /hostname")
        self.reply(200, HOSTNAME)

    def hostName(self) -> None:  # noqa: N802 (upstream's path)
        log("GET /hostName")
        self.reply(200, HOSTNAME)

    def redirect(self) -> None:
        location, code_text = self.value("location"), self.value("code")
        log(f"{self.command} /redirect?msg={location}&code={code_text}")
        code = 302
        if code_text:
            try:
                code = int(code_text)
            except ValueError:
                self.reply(200, f"argument 'code' must be an integer or empty, got {go_quote(code_text)}\n")
                return
        if not urlsplit(location).scheme:
            location = urljoin(urlsplit(self.target).path, location)
        headers = {"Location": location}
        body = ""
        if self.command in ("GET", "HEAD"):
            headers["Content-Type"] = "text/html; charset=utf-8"
            body = f'<a href="{_html_escape(location)}">{_STATUS.get(code, "")}</a>.\n'
        self.reply(code, body, headers)

    def shell(self) -> None:
        cmd = self.value("shellCommand") or self.value("cmd")
        log(f"GET /shell?cmd={cmd}")
        proc = subprocess.run(["/bin/sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output: dict[str, str] = {}
        if proc.stdout:
            output["output"] = proc.stdout.decode(errors="replace")
        if proc.returncode > 0:
            output["error"] = f"exit status {proc.returncode}"
        elif proc.returncode < 0:
            output["error"] = f"signal: {signal.Signals(-proc.returncode).name[3:].lower()}"
        log(f"Output: map{output}")
        self.reply(200, go_json(output))

    def upload(self) -> None:
        log("GET /upload")
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode() + self.body)
        has_file = message.is_multipart() and any(
            part.get_param("name", header="content-disposition") == "file" for part in message.get_payload())
        error = "Unable to open file for write" if has_file else "Unable to upload file."
        log(f"{error}: no image filesystem here (no /uploads)")
        self.reply(200, go_json({"error": error}))

    def shutdown(self) -> None:
        log("GET /shutdown")
        os._exit(0)

    def dial(self) -> None:
        q = parse_qs(self.query)
        get = lambda name: q.get(name, [""])[0]  # noqa: E731
        host, port, request, protocol, tries_text = (get("host"), get("port"), get("request"),
                                                     get("protocol"), get("tries"))
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_text}")
        tries = 1
        if tries_text:
            try:
                tries = int(tries_text)
            except ValueError:
                self.error(400, f"tries parameter is invalid. strconv.Atoi: parsing {go_quote(tries_text)}: "
                                "invalid syntax")
                return
        if not request:
            self.error(400, "request parameter not specified. <nil>")
            return
        dialer = {"": dial_http, "http": dial_http, "udp": dial_udp, "sctp": dial_sctp}.get(protocol.lower())
        if dialer is None:
            self.error(400, f"unsupported protocol. {protocol}")
            return
        try:
            address = resolve(host, port, "tcp" if dialer is not dial_udp else "udp")
        except ValueError as err:
            self.error(400, f"host and/or port param are invalid. {err}")
            return
        responses, errors, last = [], [], ""
        for _ in range(tries):
            try:
                last = dialer(request, address)
                responses.append(last)
            except DialError as err:
                last = ""
                errors.append(str(err))
        output = {}
        if last:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        self.reply(200, go_json(output))


ROUTES = {"/": Handler.root, "/clientip": Handler.clientip, "/header": Handler.header,
          "/dial": Handler.dial, "/echo": Handler.echo, "/exit": Handler.exit,
          "/healthz": Handler.healthz, "/readyz": Handler.readyz, "/hostname": Handler.hostname,
          "/redirect": Handler.redirect, "/shell": Handler.shell, "/upload": Handler.upload,
          "/hostName": Handler.hostName, "/shutdown": Handler.shutdown}

_STATUS = {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
           308: "Permanent Redirect"}


def _html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))


def _shutdown(server: Server, code: int, timeout: float) -> None:
    """server.Shutdown with a deadline (stop listening, let requests finish), then exit."""
    server.socket.close()
    deadline = time.monotonic() + timeout
    while server.active > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    log(f"Graceful shutdown completed with: {'<nil>' if server.active == 0 else 'context deadline exceeded'}")
    os._exit(code)


# -- the program -------------------------------------------------------------------------------

def listen_addresses(text: str) -> list[str]:
    """--udp-listen-addresses: the listed IPs without duplicates, sorted ("" for every address)."""
    if not text:
        return [""]
    out = set()
    for address in text.split(","):
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        except OSError:
            raise ValueError(f"parseAddress: invalid address {address}") from None
        out.add(address)
    return sorted(out)


def run(values: dict) -> int:
    """netexec with its parsed flags; returns only by exiting."""
    http_port, udp_port, sctp_port = values["http-port"], values["udp-port"], values["sctp-port"]
    delay = values["delay-shutdown"]

    def on_term(signum, frame) -> None:
        TERMINATING.set()

        def leave() -> None:
            if delay > 0:
                log(f"Sleeping {delay} seconds before terminating...")
                time.sleep(delay)
            os._exit(0)
        threading.Thread(target=leave, daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)

    if udp_port != -1:
        try:
            addresses = listen_addresses(values["udp-listen-addresses"])
        except ValueError as err:
            fatal(str(err))
        for address in addresses:
            sock = udp_socket(address, udp_port)
            threading.Thread(target=serve_udp, args=(sock, address, udp_port), daemon=True).start()
    if sctp_port != -1:
        threading.Thread(target=serve_sctp, args=(sctp_port,), daemon=True).start()
    try:
        server = Server(("", http_port), Handler)
    except OSError as err:
        fatal(f"listen tcp :{http_port}: bind: {errno_text(err)}")
    server.override = values["http-override"]
    if values["tls-cert-file"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(values["tls-cert-file"], values["tls-private-key-file"] or None)
        except (OSError, ssl.SSLError) as err:
            fatal(str(err))
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    log(f"Started HTTP server on port {http_port}")
    server.serve_forever()
    return 0
