"""Acts (sockets, threads): a TCP listener on the machine's loopback that forwards every
connection to a Unix socket, so that kubectl and other clients on the host reach a cluster's
API server.

The API server lives in the master's network namespace, sealed from the machine; the host
reaches it only through its Unix socket in the run directory. kubectl speaks TCP, so this
listener (127.0.0.1, a free port) copies bytes both ways, upgraded connections (exec,
port-forward, watch streams) included. Listening on loopback changes nothing in the machine's
addresses, routes or rules. A connection made while the API server is down (killed by a
scenario, say) is closed at once; the next one reaches the restarted server, whose socket
is recreated at the same path.

The API server can exec into pods, which run as root on this machine, so the listener is as
closed as the Unix socket it stands for: it serves only root and the user who started the
cluster with sudo (SUDO_UID), identified by the kernel's socket table (the connecting
socket's owner in /proc/net/tcp), and answers anyone else with a 403 Status.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import threading

log = logging.getLogger("testbed.forward")

BACKLOG = 1024
BUFFER = 256 * 1024


def allowed_uids() -> frozenset[int]:
    """root, and the user who ran `sudo testbed ...` (whose kubectl will connect)."""
    uids = {0, os.geteuid()}
    if os.environ.get("SUDO_UID", "").isdigit():
        uids.add(int(os.environ["SUDO_UID"]))
    return frozenset(uids)


def peer_uid(peer: tuple[str, int], tcp_table: str = "/proc/net/tcp") -> int | None:
    """The owner of the loopback TCP socket at `peer` (the connecting client's), from the
    kernel's socket table; None when it is not there."""
    ip, port = peer[:2]
    want = f"{int.from_bytes(socket.inet_aton(ip), 'little'):08X}:{port:04X}"
    try:
        with open(tcp_table) as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[1] == want:
                    return int(fields[7])
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return None


FORBIDDEN = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
             b"Content-Length: %d\r\n\r\n%s")


def _forbidden(uid: int | None) -> bytes:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "reason": "Forbidden", "code": 403,
                       "message": f"this cluster's API is open to root and to the user who "
                                  f"started it, not to uid {uid}"}).encode()
    return FORBIDDEN % (len(body), body)


class UnixForwarder:
    def __init__(self, target: str, host: str = "127.0.0.1", port: int = 0,
                 uids: frozenset[int] | None = None):
        self.target = target
        self.uids = allowed_uids() if uids is None else uids
        self.listener = socket.create_server((host, port), backlog=BACKLOG)
        self.host, self.port = self.listener.getsockname()[:2]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> UnixForwarder:
        self._thread = threading.Thread(target=self._accept, name="api-forward", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return  # closed by stop()
            uid = peer_uid(peer)
            if uid not in self.uids:
                log.warning("refused a connection from uid %s (%s:%s)", uid, *peer[:2])
                try:
                    client.sendall(_forbidden(uid))
                except OSError:
                    pass
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client,), name="api-forward-conn",
                             daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError as err:
            log.info("API server socket %s: %s", self.target, err)
            client.close()
            upstream.close()
            return
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            for sock in peers:
                sel.register(sock, selectors.EVENT_READ)
            open_reads = 2
            while open_reads and not self._stop.is_set():
                for key, _ in sel.select(timeout=1.0):
                    src = key.fileobj
                    try:
                        data = src.recv(BUFFER)  # type: ignore[union-attr]
                    except OSError:
                        data = b""
                    dst = peers[src]  # type: ignore[index]
                    if data:
                        try:
                            dst.sendall(data)
                            continue
                        except OSError:
                            open_reads = 0
                            break
                    # One side finished sending: pass the half-close on, keep reading the other.
                    sel.unregister(src)
                    open_reads -= 1
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        open_reads = 0
                        break
        for sock in peers:
            sock.close()
