"""Acts: a remotecommand session's streams, the same whether they travel as SPDY streams or as
numbered WebSocket channels, so that exec and attach (remotecommand.py) are written once.

Over SPDY the client opens one stream per standard stream, each named by its `streamType`
header; `spdy_streams` waits for the ones the options call for (upstream's waitForStreams).
Over WebSocket every message starts with its channel number (a digit and base64 in the base64
protocols); v5 adds [255, channel] to half-close a channel, which is how stdin ends.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from testbed.agents.streaming.protocol import (
    CLOSE_SIGNAL,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    Stdio,
    is_base64,
    version_of,
)
from testbed.net import spdy
from testbed.net.inbox import Inbox
from testbed.net.websocket import OP_TEXT, WebSocket

STREAM_CREATION_TIMEOUT = 30.0   # seconds for the client to open its streams (the kubelet's)
FINISH_TIMEOUT = 5.0             # seconds for the client to close after we said goodbye


class Channel(Protocol):
    def read(self) -> bytes: ...          # the next chunk from the client; b"" at the end
    def stop_reading(self) -> None: ...   # nobody will read again: drop what comes
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...          # our half (where the protocol has one)


@dataclass
class RemoteStreams:
    """The streams of one exec or attach session (None: the client did not open it), the
    protocol version (the error stream's format depends on it), `ended` (set once the client is
    gone) and `finish`, which ends the session politely after the last write."""

    version: int
    error: Channel
    ended: threading.Event
    finish: Callable[[], None]
    stdin: Channel | None = None
    stdout: Channel | None = None
    stderr: Channel | None = None
    resize: Channel | None = None
    extra: list[Channel] = field(default_factory=list)   # opened, but of no use to us

    def all(self) -> list[Channel]:
        return [c for c in (self.stdin, self.stdout, self.stderr, self.error, self.resize)
                if c is not None] + self.extra


# -- SPDY ---------------------------------------------------------------------------------------

class SpdyRemoteCommand:
    """A remotecommand session over SPDY: the frame loop serves in a thread of its own from the
    start; `streams` waits until the client has opened every stream the options call for
    (upstream's waitForStreams). Every stream is accepted, even of a type nobody uses, as the
    kubelet does."""

    def __init__(self, conn: spdy.ByteStream):
        self.cond = threading.Condition()
        self.known: dict[str, spdy.Stream] = {}
        self.others: list[spdy.Stream] = []
        self.session = spdy.Session(conn, self._on_stream)
        self.thread = threading.Thread(target=self._serve, name="spdy-remotecommand", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.session.serve()
        with self.cond:
            self.cond.notify_all()   # a client gone before opening its streams ends the wait

    def _on_stream(self, stream: spdy.Stream) -> bool:
        kind = stream.header("streamtype")
        with self.cond:
            if kind in ("error", "stdin", "stdout", "stderr", "resize") and kind not in self.known:
                self.known[kind] = stream
            else:
                self.others.append(stream)
            self.cond.notify_all()
        return True

    def streams(self, version: int, stdio: Stdio, timeout: float = STREAM_CREATION_TIMEOUT
                ) -> RemoteStreams | None:
        """The session's streams; None (and the session closed) if the client did not open
        them all in time or went away."""
        expected = 1 + stdio.stdin + stdio.stdout + stdio.stderr + (stdio.tty and version >= 3)
        with self.cond:
            self.cond.wait_for(lambda: len(self.known) >= expected or self.session.ended.is_set(),
                               timeout)
            known = dict(self.known)
        if "error" not in known or len(known) < expected:
            self.finish()
            return None
        return RemoteStreams(version, known["error"], self.session.ended, self.finish,
                             known.get("stdin"), known.get("stdout"), known.get("stderr"),
                             known.get("resize"), list(self.others))

    def finish(self) -> None:
        """GOAWAY, then wait (a while) for the client to close the connection."""
        self.session.close()
        self.thread.join(FINISH_TIMEOUT)


# -- WebSocket ----------------------------------------------------------------------------------

class WsChannels:
    """Numbered channels over one WebSocket. `run` is the reader loop (a thread of its own):
    it hands what arrives on a `readable` channel to that channel's inbox, and drops the rest,
    as the kubelet's wsstream does for channels it does not read."""

    def __init__(self, ws: WebSocket, protocol: str, readable: Iterable[int]):
        self.ws = ws
        self.base64 = is_base64(protocol)
        self.closable = version_of(protocol) >= 5
        self.inboxes = {n: Inbox() for n in readable}
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            while (message := self.ws.receive()) is not None:
                self._dispatch(message[1])
        finally:
            self.ended.set()   # first: whoever wakes at the end of input may ask why
            for inbox in self.inboxes.values():
                inbox.end()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="ws-channels", daemon=True)
        thread.start()
        return thread

    def _dispatch(self, data: bytes) -> None:
        if not data:
            return
        if self.closable and data[0] == CLOSE_SIGNAL:
            if len(data) == 2 and data[1] in self.inboxes:
                self.inboxes[data[1]].end()
            return
        number, payload = data[0], data[1:]
        if self.base64:
            number -= ord("0")
            try:
                payload = base64.b64decode(payload)
            except binascii.Error:
                return
        inbox = self.inboxes.get(number)
        if inbox is not None:
            inbox.put(payload)

    def send(self, number: int, data: bytes) -> None:
        if self.base64:
            self.ws.send(bytes([ord("0") + number]) + base64.b64encode(data), OP_TEXT)
        else:
            self.ws.send(bytes([number]) + data)

    def channel(self, number: int) -> WsChannel:
        return WsChannel(self, number)

    def finish(self) -> None:
        """Close the WebSocket and wait (a while) for the client's close frame."""
        self.ws.close()
        self.ended.wait(FINISH_TIMEOUT)


@dataclass
class WsChannel:
    conn: WsChannels
    number: int

    def read(self) -> bytes:
        inbox = self.conn.inboxes.get(self.number)
        return (inbox.get() or b"") if inbox is not None else b""

    def stop_reading(self) -> None:
        inbox = self.conn.inboxes.get(self.number)
        if inbox is not None:
            inbox.ignore()

    def write(self, data: bytes) -> None:
        self.conn.send(self.number, data)

    def close(self) -> None:
        pass   # a channel has no half-close from the server's side; the session's close ends all


def ws_streams(ws: WebSocket, protocol: str, stdio: Stdio) -> RemoteStreams:
    """The remotecommand streams over a WebSocket whose handshake has been answered."""
    conn = WsChannels(ws, protocol, [n for n, on in ((STDIN, stdio.stdin), (RESIZE, stdio.tty))
                                     if on])
    conn.start()
    streams = RemoteStreams(version_of(protocol), conn.channel(ERROR), conn.ended, conn.finish,
                            conn.channel(STDIN) if stdio.stdin else None,
                            conn.channel(STDOUT) if stdio.stdout else None,
                            conn.channel(STDERR) if stdio.stderr else None,
                            conn.channel(RESIZE) if stdio.tty else None)
    # the kubelet's first message, an empty one on the lowest channel it writes, tells the
    # client that the streams are set up
    first = streams.stdout or streams.stderr or streams.error
    first.write(b"")
    return streams
