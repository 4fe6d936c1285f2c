"""Acts: runs one probe (ICMP, TCP connect, UDP, HTTP GET, DNS) from inside a cluster namespace.

The probe primitives of scenarios (testbed.scenario.steps turns a scenario's probe into one of
these calls), of the CLI and of scripts.

TCP, UDP and HTTP probes use a socket created in the source's network namespace (see
net/netns.py), so they cost no subprocess. The source IP a TCP or HTTP server saw is read off
the kernel, not off the server's goodwill: while the connection is open, the server's own
socket appears in its namespace's /proc/PID/net/tcp, and its remote address is what the server
saw. The same entry tells which namespace served the connection (which backend answered).
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from testbed.emu import rundir
from testbed.emu.pausebin import enter_argv, pause_binary
from testbed.net.netns import socket_in
from testbed.net.run import run

LISTEN = "0A"


@dataclass
class Observation:
    reachable: bool
    text: str                       # what a person reads in the report
    source_ip: str | None = None    # what the server saw as the client
    served_by: str | None = None    # the namespace whose socket took the connection
    status: int | None = None
    body: str | None = None
    reply: str | None = None


def _hex_addr(text: str) -> tuple[str, int]:
    ip_hex, port_hex = text.split(":")
    ip = socket.inet_ntoa(int(ip_hex, 16).to_bytes(4, "little"))
    return ip, int(port_hex, 16)


def tcp_sockets(pid: int) -> set[tuple[tuple[str, int], tuple[str, int]]]:
    """The non-listening TCP sockets (local, remote) of `pid`'s network namespace."""
    out = set()
    try:
        with open(f"/proc/{pid}/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] != LISTEN:
                    out.add((_hex_addr(fields[1]), _hex_addr(fields[2])))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


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
                values = [f.split("=", 1) for f in line.split() if "=" in f]
                srcs = [v for k, v in values if k == "src"]
                dsts = [v for k, v in values if k == "dst"]
                sports = [v for k, v in values if k == "sport"]
                dports = [v for k, v in values if k == "dport"]
                if len(srcs) < 2 or len(sports) < 2:
                    continue
                if (srcs[1], sports[1]) == (dsts[0], dports[0]):
                    continue  # passed through here untranslated (the gateway routing it)
                return (srcs[1], int(sports[1])), (dsts[1], int(dports[1]))
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


def probe_icmp(source_pid: int, address: IPv4Address, timeout: float) -> Observation:
    result = run(["ping", "-n", "-c", "1", "-W", str(max(1, round(timeout))), str(address)],
                 netns=source_pid, check=False, timeout=timeout + 5)
    for line in result.stdout.splitlines():
        if "bytes from" in line and "time=" in line:
            return Observation(True, f"reply in {line.rsplit('time=', 1)[1]}")
    detail = next((ln for ln in result.stdout.splitlines() if "Unreachable" in ln or "Prohibited" in ln), "")
    return Observation(False, f"no reply{': ' + detail.split(' ', 3)[-1] if detail else ''}")


def _connect(source_pid: int, address: IPv4Address, port: int, timeout: float) -> tuple[socket.socket | None, str]:
    sock = socket_in(source_pid)
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        sock.connect((str(address), port))
        return sock, f"connected in {(time.monotonic() - started) * 1000:.1f} ms"
    except ConnectionRefusedError:
        sock.close()
        return None, "connection refused"
    except TimeoutError:
        sock.close()
        return None, f"timed out after {timeout:g}s"
    except OSError as err:
        sock.close()
        return None, err.strerror or str(err)


def probe_tcp(source_pid: int, address: IPv4Address, port: int, timeout: float, watch: SocketWatch) -> Observation:
    sock, text = _connect(source_pid, address, port, timeout)
    if sock is None:
        return Observation(False, text)
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


def probe_udp(source_pid: int, address: IPv4Address, port: int, payload: str, timeout: float) -> Observation:
    sock = socket_in(source_pid, kind=socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.connect((str(address), port))
        sock.send(payload.encode())
        reply = sock.recv(65535).decode(errors="replace")
        return Observation(True, f"reply {reply.strip()[:80]!r}", reply=reply)
    except ConnectionRefusedError:
        return Observation(False, "port unreachable (refused)")
    except TimeoutError:
        return Observation(False, f"no reply within {timeout:g}s")
    except OSError as err:
        return Observation(False, err.strerror or str(err))
    finally:
        sock.close()


def probe_http(source_pid: int, address: IPv4Address, port: int, path: str, host_header: str,
               headers: dict[str, str], timeout: float, watch: SocketWatch) -> Observation:
    sock, text = _connect(source_pid, address, port, timeout)
    if sock is None:
        return Observation(False, text)
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
    except (OSError, http.client.HTTPException) as err:
        return Observation(False, f"HTTP failed: {err}")
    finally:
        conn.close()


def probe_dns(source_pid: int, name: str, record: str, timeout: float, pod_files: Path | None) -> Observation:
    """Resolve `name` from inside the source the way its programs would: dig with the pod's own
    resolv.conf (nameserver and search list) bind-mounted, inside the pod's namespaces."""
    query = [name, record]
    if record == "PTR":
        try:
            query = ["-x", str(IPv4Address(name))]   # an address: ask for its in-addr.arpa name
        except ValueError:
            pass
    argv = ["dig", "+search", "+short", f"+time={max(1, round(timeout))}", "+tries=1", *query]
    if pod_files is not None:
        argv = enter_argv(pause_binary(), source_pid, pod_files, (rundir.POD_RESOLV_CONF,)) + argv
        result = run(argv, check=False, timeout=timeout + 5)
    else:
        result = run(argv, netns=source_pid, check=False, timeout=timeout + 5)
    answers = [line for line in result.stdout.splitlines() if line and not line.startswith(";")]
    if result.returncode != 0 or not answers:
        why = next((line for line in result.stdout.splitlines() if line.startswith(";;")), "no answer")
        return Observation(False, f"{record} {name}: {why.lstrip('; ')}")
    return Observation(True, f"{record} {name}: {', '.join(answers)}", reply="\n".join(answers))
