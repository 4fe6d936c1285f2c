"""Acts: port-forward sessions, between the client and TCP connections the runtime opens to
ports inside the pod.

Over SPDY (kubectl: upgraded HTTP, or since 1.30 SPDY inside a WebSocket) every local
connection is a pair of streams, error and data, with the same `requestID` and `port` headers;
the pair complete, the pod's port is dialled and bytes flow until both sides are done. A
failure is written as text on the error stream, which kubectl prints. Over WebSocket channels
(the kubelet's older protocol, which the Python client speaks) the ports are in the query: two
channels per port (data 2i, error 2i+1), each starting with the port number (uint16, little
endian), one connection per port for the whole session.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from testbed.agents.streaming.channels import WsChannel, WsChannels
from testbed.agents.streaming.runtime import PodRuntime, StreamingError
from testbed.net import spdy
from testbed.net.websocket import WebSocket

log = logging.getLogger("testbed.streaming")

READ_SIZE = 32 << 10


def _refusal(stream: spdy.Stream) -> str | None:
    """Why a stream cannot be part of a port-forward (the kubelet's httpStreamReceived)."""
    port, kind = stream.header("port"), stream.header("streamtype")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"unable to parse {port!r} as a port"
    if not kind:
        return '"streamType" header is required'
    if kind not in ("error", "data"):
        return f"invalid stream type {kind!r}"
    return None


class SpdyPortForward:
    """The on_stream of a port-forward SPDY session: pairs streams by request id and starts a
    forward for each complete pair."""

    def __init__(self, runtime: PodRuntime, pod: dict):
        self.runtime, self.pod = runtime, pod
        self.pairs: dict[str, dict[str, spdy.Stream]] = {}
        self.lock = threading.Lock()
        self.session: spdy.Session | None = None

    def serve(self, conn: spdy.ByteStream) -> None:
        """The session's frame loop, in the calling thread, until the client goes away."""
        self.session = spdy.Session(conn, self._on_stream)
        self.session.serve()
        self.session.close()

    def _on_stream(self, stream: spdy.Stream) -> bool:
        problem = _refusal(stream)
        if problem:
            log.info("port-forward stream %s refused: %s", stream.id, problem)
            return False
        kind = stream.header("streamtype")
        # clients older than request ids pair consecutive streams: error n, data n+2
        request = stream.header("requestid") or str(stream.id - (2 if kind == "data" else 0))
        with self.lock:
            pair = self.pairs.setdefault(request, {})
            duplicate = kind in pair
            if not duplicate:
                pair[kind] = stream
            complete = len(pair) == 2
            if complete:
                del self.pairs[request]
        if duplicate:
            error = pair.get("error")
            if error is not None:
                _write_quietly(error, f"error processing stream for request {request}: "
                                      f"{kind} stream already assigned".encode())
            return True
        if complete:
            threading.Thread(target=self._forward, args=(pair["data"], pair["error"]),
                             name="portforward", daemon=True).start()
        return True

    def _forward(self, data: spdy.Stream, error: spdy.Stream) -> None:
        port = int(data.header("port"))
        assert self.session is not None
        try:
            sock = self.runtime.connect(self.pod, port)
        except (StreamingError, OSError) as err:
            meta = self.pod["metadata"]
            _write_quietly(error, f"error forwarding port {port} to pod {meta['name']}, uid "
                                  f"{meta.get('uid', '')}: {err}".encode())
        else:
            relay(sock, data.read, data.write, data.stop_reading, self.session.ended)
        data.close()
        error.close()


def relay(sock: socket.socket, read: Callable[[], bytes], write: Callable[[bytes], None],
          stop_reading: Callable[[], None], ended: threading.Event) -> None:
    """Bytes both ways between `sock` and a client stream until the pod's side is done.

    The client's end of input half-closes the pod connection (so request-then-response
    protocols still get their answer); the pod's end stops everything, as upstream's forwarder
    does; the session's end cuts the connection."""

    def upstream() -> None:
        try:
            while chunk := read():
                sock.sendall(chunk)
        except OSError:
            stop_reading()
        try:
            sock.shutdown(socket.SHUT_RDWR if ended.is_set() else socket.SHUT_WR)
        except OSError:
            pass

    up = threading.Thread(target=upstream, name="portforward-up", daemon=True)
    up.start()
    try:
        while chunk := sock.recv(READ_SIZE):
            write(chunk)
    except OSError:
        pass
    stop_reading()
    up.join()
    sock.close()


def _write_quietly(stream: spdy.Stream, data: bytes) -> None:
    try:
        stream.write(data)
    except OSError:
        pass


# -- WebSocket channels (the Python client) ------------------------------------------------------

def serve_websocket(ws: WebSocket, protocol: str, runtime: PodRuntime, pod: dict,
                    ports: list[int]) -> None:
    conn = WsChannels(ws, protocol, [2 * i for i in range(len(ports))])
    conn.start()
    threads = []
    for index, port in enumerate(ports):
        data, error = conn.channel(2 * index), conn.channel(2 * index + 1)
        prefix = port.to_bytes(2, "little")
        data.write(prefix)
        error.write(prefix)
        threads.append(threading.Thread(target=_forward_channel,
                                         args=(runtime, pod, port, data, error, conn.ended),
                                         name="portforward-ws", daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join()
    conn.finish()


def _forward_channel(runtime: PodRuntime, pod: dict, port: int, data: WsChannel,
                     error: WsChannel, ended: threading.Event) -> None:
    try:
        sock = runtime.connect(pod, port)
    except (StreamingError, OSError) as err:
        meta = pod["metadata"]
        try:
            error.write(f"error forwarding port {port} to pod {meta['name']}, uid "
                        f"{meta.get('uid', '')}: {err}".encode())
        except OSError:
            pass
        return
    relay(sock, data.read, data.write, data.stop_reading, ended)
