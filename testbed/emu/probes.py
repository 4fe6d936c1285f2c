"""Acts: runs one probe (ICMP, TCP connect, UDP, SCTP, HTTP GET, DNS) from inside a cluster namespace.

The probe primitives of scenarios (testbed.scenario.steps turns a scenario's probe into one of
these calls, testbed.scenario.reachability_step a reachability step's cells), of the CLI and
of scripts. Each returns an Observation; an unreachable one says why in `failure`: REFUSED
(something answered no: a TCP reset, an ICMP port unreachable), TIMEOUT (nothing came back,
as when a NetworkPolicy drops the packets), UNREACHABLE (an ICMP host, network or
administratively-prohibited error, or no route) or ERROR (anything else).

ICMP, TCP, UDP, SCTP and HTTP probes use a socket created in the source's network namespace
(see net/netns.py), so they cost no subprocess and many run at once from threads: an echo
request goes out on a raw ICMP socket, and the reply (or the ICMP error quoting it) is told
from others' by its identifier and payload. The source IP a TCP or HTTP server saw is read off
the kernel, not off the server's goodwill: while the connection is open, the server's own
socket appears in its namespace's /proc/PID/net/tcp, and its remote address is what the server
saw. The same entry tells which namespace served the connection (which backend answered).
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from testbed.emu import rundir
from testbed.emu.pausebin import enter_argv, pause_binary
from testbed.net.netns import entered, socket_in
from testbed.net.run import run
from testbed.trace.events import conntrack_tuples

LISTEN = "0A"
REFUSED, TIMEOUT, UNREACHABLE, ERROR = "refused", "timeout", "unreachable", "error"


@dataclass
class Observation:
    reachable: bool
    text: str                       # what a person reads in the report
    source_ip: str | None = None    # what the server saw as the client
    served_by: str | None = None    # the namespace whose socket took the connection
    status: int | None = None
    body: str | None = None
    reply: str | None = None
    failure: str | None = None      # unreachable: REFUSED, TIMEOUT, UNREACHABLE or ERROR


def failure_of(err: OSError) -> str:
    """What an error of connect, send or recv says about the path: REFUSED for a reset or an
    ICMP port unreachable, TIMEOUT for silence, UNREACHABLE for an ICMP host or network error
    (or an administrative prohibition) and a missing route."""
    if isinstance(err, ConnectionRefusedError) or err.errno == errno.ECONNREFUSED:
        return REFUSED
    if isinstance(err, TimeoutError) or err.errno == errno.ETIMEDOUT:
        return TIMEOUT
    if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        return UNREACHABLE
    return ERROR


def _hex_addr(text: str) -> tuple[str, int]:
    """An address of /proc/net/tcp or tcp6 (words in host order); an IPv4-mapped IPv6 address,
    as a dual-stack server's accepted socket holds (agnhost's, like any Go server's), is
    given as its IPv4 address."""
    ip_hex, port_hex = text.split(":")
    raw = b"".join(int(ip_hex[i:i + 8], 16).to_bytes(4, "little") for i in range(0, len(ip_hex), 8))
    if len(raw) == 4:
        return socket.inet_ntoa(raw), int(port_hex, 16)
    ip = IPv6Address(raw)
    return str(ip.ipv4_mapped or ip), int(port_hex, 16)


def _tcp_rows(pid: int, tables: tuple[str, ...]) -> list[list[str]]:
    """The rows of `pid`'s /proc/PID/net/TABLE files (tcp, tcp6), split into fields (local
    address, remote address, state at 1, 2, 3), header aside; none for a process gone."""
    rows = []
    for table_name in tables:
        try:
            with open(f"/proc/{pid}/net/{table_name}") as table:
                rows += [line.split() for line in table.readlines()[1:]]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return rows


def tcp_sockets(pid: int) -> set[tuple[tuple[str, int], tuple[str, int]]]:
    """The non-listening TCP sockets (local, remote) of `pid`'s network namespace."""
    return {(_hex_addr(fields[1]), _hex_addr(fields[2]))
            for fields in _tcp_rows(pid, ("tcp", "tcp6")) if fields[3] != LISTEN}


def listening_ports(pid: int) -> set[int]:
    """The TCP ports `pid`'s network namespace listens on (IPv4 and IPv6 tables)."""
    return {int(fields[1].rsplit(":", 1)[1], 16)
            for fields in _tcp_rows(pid, ("tcp", "tcp6")) if fields[3] == LISTEN}


class SocketWatch:
    """Snapshots the TCP tables of many namespaces, to find the server side of a new connection."""

    def __init__(self, namespaces: dict[str, int], addresses: dict[str, set[str]] | None = None):
        self.namespaces = namespaces
        self.addresses = addresses or {}   # namespace name -> its IPs, to follow closed proxy hops
        self.before = {name: tcp_sockets(pid) for name, pid in namespaces.items()}

    def server_side(self, client: tuple[str, int], server_port: int) -> tuple[str, str] | None:
        """(namespace name, client IP as the server saw it) for the connection from `client`.

        The first hop is the socket that took our connection (matched by our source port, which
        NAT rarely changes, else by the server port). When that hop is a proxy (userspace
        kube-proxy, an ingress controller), it opened a connection of its own meanwhile: the
        chain is followed to the namespace whose socket is that connection's other end, so the
        backend that finally served is reported, with the address it saw.
        """
        new = {name: tcp_sockets(pid) - self.before[name] for name, pid in self.namespaces.items()}
        hop = self._first_hop(new, client, server_port)
        if hop is None:
            return None
        for _ in range(4):
            follow = self._next_hop(new, *hop)
            if follow is None:
                break
            hop = follow
        name, _, remote = hop
        return name, remote[0]

    def _first_hop(self, new, client, server_port):
        by_port = None
        for name, sockets in new.items():
            for local, remote in sockets:
                if local == client:
                    continue  # our own end
                if remote[1] == client[1]:
                    return name, local, remote
                if local[1] == server_port and by_port is None:
                    by_port = (name, local, remote)
        if by_port is not None:
            return by_port
        # NAT changed both the destination (a NodePort, a ClusterIP) and the source port
        # (MASQUERADE --random-fully): the nodes' conntrack tables know what became of it.
        reply = self._translated(client)
        if reply is not None:
            server, seen = reply
            for name, sockets in new.items():
                if (server, seen) in sockets:
                    return name, server, seen
        return None

    def _translated(self, client: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """(server's local, what the server sees as its peer) of the connection from `client`."""
        for name, pid in self.namespaces.items():
            if "/" in name:
                continue  # pods do no NAT; the nodes and the gateway may
            result = run(["conntrack", "-L", "-p", "tcp", "--orig-src", client[0], "--sport", str(client[1])],
                         netns=pid, check=False, timeout=5)
            for line in result.stdout.splitlines():
                tuples = conntrack_tuples(line)
                if tuples is None or tuples[1][2] is None:
                    continue
                (_, orig_dst, _, orig_dport), (reply_src, reply_dst, reply_sport, reply_dport) = tuples
                if (reply_src, reply_sport) == (orig_dst, orig_dport):
                    continue  # passed through here untranslated (the gateway routing it)
                return (reply_src, int(reply_sport)), (reply_dst, int(reply_dport))
        return None

    def _next_hop(self, new, name, local, remote):
        for out_local, out_remote in new[name]:
            if (out_local, out_remote) == (local, remote) or out_local == local:
                continue
            for other, sockets in new.items():
                if other != name and (out_remote, out_local) in sockets:
                    return other, out_remote, out_local
        # The proxy's own end may already be gone (the backend closed first, and the passive
        # closer's socket leaves the table): the backend's end, in TIME_WAIT, still names the
        # proxy's address as its peer.
        mine = self.addresses.get(name, set())
        for other, sockets in new.items():
            if other == name:
                continue
            for other_local, other_remote in sockets:
                if other_remote[0] in mine and other_remote != remote and other_local != remote:
                    return other, other_local, other_remote
        return None


ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP_PORT_UNREACH = 3
_UNREACH_WHY = {0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
                2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
                9: "Destination Net Prohibited", 10: "Destination Host Prohibited",
                13: "Packet filtered"}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), ident, seq) + payload


def _icmp_answer(packet: bytes, address: str, peer: str, ident: int, payload: bytes) -> tuple[int, int] | None:
    """(type, code) when `packet` (an IPv4 packet with its ICMP message) answers our echo
    request: the reply from `address`, or an ICMP error quoting our request; None otherwise."""
    if len(packet) < 20:
        return None
    icmp = packet[(packet[0] & 0x0F) * 4:]
    if len(icmp) < 8:
        return None
    kind, code = icmp[0], icmp[1]
    if kind == ICMP_ECHO_REPLY:
        (got,) = struct.unpack("!H", icmp[4:6])
        return (kind, code) if got == ident and icmp[8:] == payload and peer == address else None
    if kind in (ICMP_UNREACH, ICMP_TIME_EXCEEDED):
        quoted = icmp[8:]
        if len(quoted) < 20:
            return None
        inner = quoted[(quoted[0] & 0x0F) * 4:]
        if len(inner) >= 6 and inner[0] == ICMP_ECHO and struct.unpack("!H", inner[4:6])[0] == ident:
            return kind, code
    return None


def probe_icmp(source_pid: int, address: IPv4Address, timeout: float) -> Observation:
    """One echo request from `source_pid`'s namespace, on a raw socket made there; the reply, or
    the ICMP error that answered it (port unreachable: REFUSED), or silence (TIMEOUT)."""
    with entered(source_pid):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, payload = struct.unpack("!H", os.urandom(2))[0], os.urandom(16)
    target = str(address)
    started = time.monotonic()
    deadline = started + timeout
    try:
        sock.sendto(_echo_request(ident, 1, payload), (target, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            packet, (peer, _) = sock.recvfrom(65535)
            answer = _icmp_answer(packet, target, peer, ident, payload)
            if answer is None:
                continue
            kind, code = answer
            if kind == ICMP_ECHO_REPLY:
                return Observation(True, f"reply in {(time.monotonic() - started) * 1000:.3f} ms")
            why = _UNREACH_WHY.get(code, f"ICMP type {kind} code {code}") \
                if kind == ICMP_UNREACH else "Time to live exceeded"
            failure = REFUSED if (kind, code) == (ICMP_UNREACH, ICMP_PORT_UNREACH) else UNREACHABLE
            return Observation(False, f"no reply: From {peer}: {why}", failure=failure)
    except TimeoutError:
        pass
    except OSError as err:
        return Observation(False, f"no reply: {err.strerror or err}", failure=failure_of(err))
    finally:
        sock.close()
    return Observation(False, f"no reply within {timeout:g}s", failure=TIMEOUT)


def _bind_source_port(sock: socket.socket, source_port: int | None) -> None:
    """Fix the client's port (upstream's conntrack tests send from one port, so that a stale
    conntrack entry of an earlier flow would catch them). A TCP socket on a fixed port ends
    with a reset (SO_LINGER 0), leaving no TIME_WAIT that would refuse the port to the next try."""
    if source_port is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.bind(("0.0.0.0", source_port))


def _connect(source_pid: int, address: IPv4Address, port: int, timeout: float,
             proto: int = 0, source_port: int | None = None) -> tuple[socket.socket | None, Observation]:
    """A connected stream socket (TCP; SCTP with proto IPPROTO_SCTP) from `source_pid`'s
    namespace (from `source_port` when given) and how it went; None and the failure when it
    did not connect."""
    if proto:
        with entered(source_pid):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    else:
        sock = socket_in(source_pid)
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        _bind_source_port(sock, source_port)
        sock.connect((str(address), port))
        return sock, Observation(True, f"connected in {(time.monotonic() - started) * 1000:.1f} ms")
    except OSError as err:
        sock.close()
        failure = failure_of(err)
        text = {REFUSED: "connection refused",
                TIMEOUT: f"timed out after {timeout:g}s"}.get(failure, err.strerror or str(err))
        return None, Observation(False, text, failure=failure)


def connects(source_pid: int, address: IPv4Address, port: int, timeout: float,
             proto: int = 0) -> Observation:
    """Does a TCP (or, with proto IPPROTO_SCTP, SCTP) connection open? Closed at once."""
    sock, obs = _connect(source_pid, address, port, timeout, proto)
    if sock is not None:
        sock.close()
    return obs


def probe_sctp(source_pid: int, address: IPv4Address, port: int, timeout: float) -> Observation:
    """Does an SCTP association open (INIT answered)? Needs the kernel's SCTP support."""
    return connects(source_pid, address, port, timeout, socket.IPPROTO_SCTP)


def sctp_supported() -> bool:
    """Does this machine's kernel open SCTP sockets (the sctp module)? A socket made and closed
    in our own namespace, nothing sent."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def probe_tcp(source_pid: int, address: IPv4Address, port: int, timeout: float, watch: SocketWatch,
              source_port: int | None = None) -> Observation:
    sock, obs = _connect(source_pid, address, port, timeout, source_port=source_port)
    if sock is None:
        return obs
    text = obs.text
    try:
        seen = _seen(watch, sock.getsockname(), port)
        obs = Observation(True, text)
        if seen:
            obs.served_by, obs.source_ip = seen
            obs.text += f"; server {obs.served_by} saw {obs.source_ip}"
        return obs
    finally:
        sock.close()


def _seen(watch: SocketWatch, client: tuple[str, int], port: int) -> tuple[str, str] | None:
    for _ in range(3):  # the server's socket is there as soon as the handshake completes
        seen = watch.server_side(client, port)
        if seen:
            return seen
        time.sleep(0.005)
    return None


def probe_udp(source_pid: int, address: IPv4Address, port: int, payload: str, timeout: float,
              source_port: int | None = None) -> Observation:
    """One datagram, connected, so that an ICMP port unreachable (a closed port, kube-proxy's
    REJECT of a Service without endpoints) comes back as ECONNREFUSED: REFUSED; silence
    (a DROP) is TIMEOUT."""
    sock = socket_in(source_pid, kind=socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        _bind_source_port(sock, source_port)
        sock.connect((str(address), port))
        sock.send(payload.encode())
        reply = sock.recv(65535).decode(errors="replace")
        return Observation(True, f"reply {reply.strip()[:80]!r}", reply=reply)
    except OSError as err:
        failure = failure_of(err)
        text = {REFUSED: "port unreachable (refused)",
                TIMEOUT: f"no reply within {timeout:g}s"}.get(failure, err.strerror or str(err))
        return Observation(False, text, failure=failure)
    finally:
        sock.close()


def probe_http(source_pid: int, address: IPv4Address, port: int, path: str, host_header: str,
               headers: dict[str, str], timeout: float, watch: SocketWatch) -> Observation:
    sock, obs = _connect(source_pid, address, port, timeout)
    if sock is None:
        return obs
    conn = http.client.HTTPConnection(str(address), port, timeout=timeout)
    conn.sock = sock
    try:
        client = sock.getsockname()
        conn.request("GET", path, headers={"Host": host_header, "User-Agent": "testbed-probe", **headers})
        response = conn.getresponse()
        body = response.read(65536).decode(errors="replace")
        obs = Observation(True, f"HTTP {response.status}, {len(body)} bytes", status=response.status, body=body)
        snippet = body.strip().replace("\n", " ")[:60]
        if snippet:
            obs.text += f": {snippet!r}"
        seen = _seen(watch, client, port)
        if seen:
            obs.served_by, obs.source_ip = seen
            obs.text += f"; server {obs.served_by} saw {obs.source_ip}"
        return obs
    except OSError as err:
        return Observation(False, f"HTTP failed: {err}", failure=failure_of(err))
    except http.client.HTTPException as err:
        return Observation(False, f"HTTP failed: {err}", failure=ERROR)
    finally:
        conn.close()


def probe_dns(source_pid: int, name: str, record: str, timeout: float, pod_files: Path | None,
              tcp: bool = False) -> Observation:
    """Resolve `name` from inside the source the way its programs would: dig with the pod's own
    resolv.conf (nameserver and search list) bind-mounted, inside the pod's namespaces; over
    TCP (dig +tcp) with `tcp`."""
    query = [name, record]
    if record == "PTR":
        try:
            query = ["-x", str(IPv4Address(name))]   # an address: ask for its in-addr.arpa name
        except ValueError:
            pass
    argv = ["dig", "+search", "+short", f"+time={max(1, round(timeout))}", "+tries=1",
            *(["+tcp"] if tcp else []), *query]
    if pod_files is not None:
        argv = enter_argv(pause_binary(), source_pid, pod_files, (rundir.POD_RESOLV_CONF,)) + argv
        result = run(argv, check=False, timeout=timeout + 5)
    else:
        result = run(argv, netns=source_pid, check=False, timeout=timeout + 5)
    answers = [line for line in result.stdout.splitlines() if line and not line.startswith(";")]
    if result.returncode != 0 or not answers:
        why = next((line for line in result.stdout.splitlines() if line.startswith(";;")), "no answer")
        return Observation(False, f"{record} {name}: {why.lstrip('; ')}")
    via = " over TCP" if tcp else ""
    return Observation(True, f"{record} {name}{via}: {', '.join(answers)}", reply="\n".join(answers))
