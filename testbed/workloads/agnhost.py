"""Acts: the `agnhost` test image's program, as pods run it here (node/images.py maps the image's
`/agnhost` to `python -m testbed.workloads.agnhost`).

Kubernetes' network e2e tests run agnhost; pods that name the image (any registry or tag) run
this with the same arguments, read as agnhost's cobra and pflag read them (golang.py):

    agnhost netexec [--http-port=8080] [--udp-port=8081] [--sctp-port=-1] [--delay-shutdown=0] ...
        The HTTP/UDP/SCTP test server (netexec.py): /hostname, /clientip, /echo, /dial, /shell, ...
    agnhost serve-hostname [--port=9376] [--tcp] [--udp] [--http=true] [--close]
        The pod's hostname to every HTTP request, TCP connection (written, then closed) or UDP
        datagram. HTTP (on by default) cannot be served with --tcp or --udp, so upstream's pods
        say `serve-hostname --tcp --http=false --port 9376`. SIGTERM: it keeps serving for 60 s
        ("Awaiting pod deletion"), so the pod's grace period ends it, as upstream's.
    agnhost connect HOST:PORT [--timeout=0] [--protocol=tcp|udp|sctp] [--udp-data=hostname]
        One connection attempt (`kubectl exec POD -- /agnhost connect s-x-a.x.svc:80
        --timeout=1s`): nothing printed and exit 0 when it connected (UDP: when an answer came),
        else exit 1 with upstream's word first on stderr: TIMEOUT, REFUSED, DNS, OTHER, UNKNOWN.
    agnhost pause
        Prints "Paused" and waits; SIGINT exits 1, SIGTERM exits 2. The image's default command.

Errors as cobra words them under component-base's cli.Run: `Error: unknown command "x" for
"app"`, `Error: unknown flag: --x`, `Error: accepts at most 0 arg(s), received 1`; exit 1.
agnhost's other subcommands (dns-suffix, porter, liveness, ...) are not provided and say so.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

from testbed.workloads import netexec
from testbed.workloads.golang import (
    Command,
    Flag,
    HelpRequested,
    UsageError,
    errno_text,
    join_host_port,
    parse_command,
    split_host_port,
)
from testbed.workloads.netexec import HOSTNAME, fatal, listener_socket, log

COMMANDS = (
    Command("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints", (
        Flag("http-port", "int", 8080, "HTTP Listen Port"),
        Flag("tls-cert-file", "string", "", "File containing an x509 certificate for HTTPS. (CA cert, "
                                            "if any, concatenated after server cert)"),
        Flag("tls-private-key-file", "string", "", "File containing an x509 private key matching "
                                                   "--tls-cert-file"),
        Flag("udp-port", "int", 8081, "UDP Listen Port"),
        Flag("sctp-port", "int", -1, "SCTP Listen Port"),
        Flag("http-override", "string", "", "Override the HTTP handler to always respond as if it "
                                            "were a GET with this path & params"),
        Flag("udp-listen-addresses", "string", "", "A comma separated list of ip addresses the udp "
                                                   "servers listen from"),
        Flag("delay-shutdown", "int", 0, "Number of seconds to delay shutdown when receiving SIGTERM."))),
    Command("serve-hostname", "Serves the hostname", (
        Flag("tcp", "bool", False, "Serve raw over TCP."),
        Flag("udp", "bool", False, "Serve raw over UDP."),
        Flag("http", "bool", True, "Serve HTTP."),
        Flag("close", "bool", False, "Close connection per each HTTP request."),
        Flag("port", "int", 9376, "Port number."))),
    Command("connect", "Attempts a TCP, UDP or SCTP connection and returns useful errors", (
        Flag("timeout", "duration", 0.0, "Maximum time before returning an error"),
        Flag("protocol", "string", "tcp", "The protocol to use to perform the connection, can be "
                                          "tcp, udp or sctp"),
        Flag("udp-data", "string", "hostname", "The UDP payload send to the server")),
        max_args=None, exact_args=1, use="connect [host:port]"),
    Command("pause", "Pauses the execution"),
)

# agnhost's subcommands that the testbed does not provide (told apart from typing mistakes).
NOT_PROVIDED = ("audit-proxy", "crd-conversion-webhook", "dns-server-list", "dns-suffix",
                "entrypoint-tester", "etc-hosts", "fake-gitserver", "grpc-health-checking",
                "guestbook", "inclusterclient", "liveness", "logs-generator", "mounttest", "net",
                "nettest", "no-snat-test", "no-snat-test-proxy", "port-forward-tester", "porter",
                "resource-consumer-controller", "tcp-reset", "test-webserver", "webhook")


# -- connect -----------------------------------------------------------------------------------

def _say(text: str) -> int:
    sys.stderr.write(text + "\n")
    return 1


def _resolve(dest: str, kind: int) -> tuple[int, tuple]:
    """net.Resolve{TCP,UDP}Addr: (family, address); ValueError with Go's words."""
    host, port = split_host_port(dest)
    if port.isdigit() or not port:
        number = int(port or 0)
        if number > 65535:
            raise ValueError(f"address {port}: invalid port")
    else:
        try:
            number = socket.getservbyname(port, kind_name(kind))
        except OSError:
            raise ValueError(f"lookup {kind_name(kind)}/{port}: unknown port") from None
    try:
        family, _, _, _, address = socket.getaddrinfo(host or None, number, type=kind)[0]
    except socket.gaierror as err:
        # Go's own resolver also names the server it asked ("on 10.96.0.10:53"); not here.
        why = "no such host" if err.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)) \
            else errno_text(err)
        raise ValueError(f"lookup {host}: {why}") from None
    except (OSError, UnicodeError) as err:
        raise ValueError(f"lookup {host}: {err}") from None
    return family, address


def kind_name(kind: int) -> str:
    return "udp" if kind == socket.SOCK_DGRAM else "tcp"


def connect(dest: str, timeout: float, protocol: str, data: str = "hostname") -> int:
    """Upstream's connect (test/images/agnhost/connect): 0 in silence, or 1 with its word for
    the failure first on stderr, per protocol as upstream words it."""
    if protocol in ("", "tcp"):
        return _connect_tcp(dest, timeout)
    if protocol == "udp":
        return _connect_udp(dest, timeout, data)
    if protocol == "sctp":
        return _connect_sctp(dest, timeout)
    sys.stderr.write(f"Unsupported protocol\n{protocol}")      # Go's Fprint of the two strings
    return 1


def _connect_tcp(dest: str, timeout: float) -> int:
    try:
        split_host_port(dest)
    except ValueError as err:
        return _say(f"UNKNOWN: {err}")
    try:
        family, address = _resolve(dest, socket.SOCK_STREAM)
    except ValueError as err:
        return _say(f"DNS: {err}")
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout if timeout > 0 else None)   # Go: 0 is no timeout of its own
        try:
            sock.connect(address)
            return 0
        except TimeoutError:
            return _say("TIMEOUT")
        except ConnectionRefusedError:
            return _say("REFUSED")
        except OSError as err:
            return _say(f"OTHER: dial tcp {dest}: connect: {errno_text(err)}")


def _connect_udp(dest: str, timeout: float, data: str) -> int:
    try:
        family, address = _resolve(dest, socket.SOCK_DGRAM)
    except ValueError as err:
        return _say(f"DNS: {err}")
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
        except OSError as err:
            return _say(f"OTHER: dial udp {join_host_port(*address[:2])}: connect: {errno_text(err)}")
        where = f"{join_host_port(*sock.getsockname()[:2])}->{join_host_port(*address[:2])}"
        if timeout > 0:
            sock.settimeout(timeout)
        try:
            sock.send(f"{data}\n".encode())
        except OSError as err:
            return _udp_error(err, f"write udp {where}: write")
        try:
            if not sock.recv(1024):
                return _say("OTHER: No data received from the server. Cannot guarantee the server "
                            "received the request.")
        except OSError as err:
            return _udp_error(err, f"read udp {where}: read")
        return 0


def _udp_error(err: OSError, op: str) -> int:
    """parseUDPErrorAndExit."""
    if isinstance(err, TimeoutError):
        return _say(f"TIMEOUT: {op.rsplit(':', 1)[0]}: i/o timeout")
    if isinstance(err, ConnectionRefusedError):
        return _say(f"REFUSED: {op}: connection refused")
    return _say(f"UNKNOWN: {op}: {errno_text(err)}")


def _connect_sctp(dest: str, timeout: float) -> int:
    try:
        family, address = _resolve(dest, socket.SOCK_STREAM)
    except ValueError as err:
        return _say(f"DNS: {err}")
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    except OSError as err:
        return _say(f"OTHER: {errno_text(err)} (this kernel has no SCTP support)")
    with sock:
        # Upstream races the dial against time.After(timeout): 0 means TIMEOUT at once.
        sock.settimeout(timeout if timeout > 0 else 0.0)
        try:
            sock.connect(address)
            return 0
        except (TimeoutError, BlockingIOError):
            return _say("TIMEOUT")
        except OSError as err:
            return _say(f"OTHER: {errno_text(err)}")


# -- serve-hostname ----------------------------------------------------------------------------

def _hostname_tcp(listener: socket.socket) -> None:
    while True:
        conn, peer = listener.accept()
        log(f"TCP request from {join_host_port(*peer[:2])}")
        try:
            conn.sendall(HOSTNAME.encode())
        except OSError:
            pass
        conn.close()


def _hostname_udp(sock: socket.socket) -> None:
    while True:
        _, peer = sock.recvfrom(16)        # upstream reads into a [16]byte
        log(f"UDP request from {join_host_port(*peer[:2])}")
        sock.sendto(HOSTNAME.encode(), peer)


class _HostnameHandler(netexec.GoHandler):
    close = False

    def serve(self) -> None:
        log(f"HTTP request from {join_host_port(*self.client_address[:2])}")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        data = HOSTNAME.encode()
        self.send_response_only(200)
        self.send_header("Date", self.date_time_string())
        if self.close:      # --close: "Connection: close" on every answer
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _listen(kind: int, port: int, what: str) -> socket.socket:
    try:
        sock = listener_socket(kind, port)
        if kind == socket.SOCK_STREAM:
            sock.listen(4096)
    except OSError as err:
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        fatal(f"Error from {what}: listen {proto} :{port}: bind: {errno_text(err)}")
    return sock


def serve_hostname(values: dict) -> int:
    do_tcp, do_udp, do_http, port = values["tcp"], values["udp"], values["http"], values["port"]
    if do_http and (do_tcp or do_udp):
        fatal("Can't serve TCP/UDP mode and HTTP mode at the same time")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    if do_tcp:
        listener = _listen(socket.SOCK_STREAM, port, "net.Listen()")
        threading.Thread(target=_hostname_tcp, args=(listener,), daemon=True).start()
    if do_udp:
        sock = _listen(socket.SOCK_DGRAM, port, "ListenUDP()")
        threading.Thread(target=_hostname_udp, args=(sock,), daemon=True).start()
    if do_http:
        try:
            server = netexec.Server(("", port), type("Handler", (_HostnameHandler,), {"close": values["close"]}))
        except OSError as err:
            fatal(f"listen tcp :{port}: bind: {errno_text(err)}")
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"Serving on port {port}.")
    while not stop.wait(3600):
        pass
    log("Shutting down after receiving signal: terminated.")
    log("Awaiting pod deletion.")
    time.sleep(60)
    return 0


# -- the program -------------------------------------------------------------------------------

def pause() -> int:
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(1))
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(2))
    print("Paused", flush=True)
    while True:
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_DFL)      # Go's default: the signal ends it
    try:
        parsed = parse_command(COMMANDS, argv)
    except HelpRequested as help_text:
        sys.stdout.write(help_text.args[0] if help_text.args else "")
        return 0
    except UsageError as err:
        name = next((a for a in argv if not a.startswith("-")), "")
        if name in NOT_PROVIDED:
            return _say(f"Error: agnhost {name} is not provided by the testbed (its agnhost runs "
                        f"{', '.join(c.name for c in COMMANDS)})")
        return _say(f"Error: {err}")
    name, values = parsed.command.name, parsed.values
    if name == "connect":
        return connect(parsed.args[0], values["timeout"], values["protocol"], values["udp-data"])
    if name == "netexec":
        return netexec.run(values)
    if name == "serve-hostname":
        return serve_hostname(values)
    return pause()


if __name__ == "__main__":
    raise SystemExit(main())
