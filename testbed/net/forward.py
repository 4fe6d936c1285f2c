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
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading

log = logging.getLogger("testbed.forward")

BACKLOG = 1024
BUFFER = 256 * 1024


class UnixForwarder:
    def __init__(self, target: str, host: str = "127.0.0.1", port: int = 0):
        self.target = target
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
                client, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
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
