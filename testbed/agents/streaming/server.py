"""Acts: an exec, attach or port-forward request, from its HTTP request to the session's end.

The API server's handler passes a request for pods/NAME/{exec,attach,portforward} (GET or
POST, as upstream accepts both) here with the Pod it found. The checks come first and fail as
ordinary answers with a Status (as the API server's streamLocation does); then the upgrade:
WebSocket when the client asks for one (kubectl 1.30+, the Python client), else SPDY/3.1
(kubectl before 1.30, and kubectl's fallback), each answered the way upstream answers when no
protocol fits - a refused WebSocket upgrade is what makes kubectl 1.30+ fall back to SPDY.
The session then runs on the handler's thread; the connection is closed when it ends.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler

from testbed.agents.streaming import protocol as proto
from testbed.agents.streaming.channels import SpdyRemoteCommand, ws_streams
from testbed.agents.streaming.portforward import SpdyPortForward, serve_websocket
from testbed.agents.streaming.remotecommand import run_session
from testbed.agents.streaming.runtime import PodRuntime
from testbed.api.failures import ApiFailure
from testbed.net import spdy, websocket

log = logging.getLogger("testbed.streaming")

HEADER_PROTOCOL = "X-Stream-Protocol-Version"
HEADER_ACCEPTED = "X-Accepted-Stream-Protocol-Versions"


def serve(handler: BaseHTTPRequestHandler, runtime: PodRuntime, pod: dict, subresource: str,
          query: dict[str, list[str]]) -> None:
    """Answer one streaming request on `handler`'s connection (ApiFailure before the upgrade)."""
    request = None
    if subresource == "portforward":
        proto.check_pod(pod, subresource, None)
    else:
        request = proto.stream_request(subresource, query)
        container = proto.choose_container(pod, request.container)
        proto.check_pod(pod, subresource, container)
        request = proto.StreamRequest(container, request.command, request.stdio)
    headers = handler.headers
    upgrade = _websocket if websocket.is_upgrade(headers) else _spdy
    if upgrade is _spdy and "upgrade" not in ",".join(headers.get_all("Connection") or []).lower():
        raise ApiFailure(400, "BadRequest", "Upgrade request required")
    try:
        if not upgrade(handler, runtime, pod, subresource, request, query):
            return
    except ApiFailure:
        raise   # refused before the upgrade: the handler answers with the Status
    except OSError:
        pass    # the client went away
    except Exception:   # after the upgrade no HTTP answer can be given: log, and hang up
        log.exception("%s of %s", subresource, _key(pod))
    # an upgraded connection is never reused for HTTP
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)   # wakes a reader still waiting
    except OSError:
        pass


def _text(handler: BaseHTTPRequestHandler, code: int, text: str,
          extra: Sequence[tuple[str, str]] = ()) -> None:
    """Go's http.Error, as the kubelet's handshakes answer: text/plain, a trailing newline."""
    body = (text + "\n").encode()
    handler.send_response(code)
    for name, value in extra:
        handler.send_header(name, value)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


# -- SPDY -----------------------------------------------------------------------------------------

def _spdy(handler: BaseHTTPRequestHandler, runtime: PodRuntime, pod: dict, subresource: str,
          request: proto.StreamRequest | None, query: dict[str, list[str]]) -> bool:
    """The kubelet's httpstream.Handshake, then the SPDY upgrade; False if refused."""
    headers = handler.headers
    server = proto.SPDY_PORTFORWARD if request is None else proto.SPDY_REMOTECOMMAND
    values = headers.get_all(HEADER_PROTOCOL) or []
    if not values:
        _text(handler, 400, f"unable to upgrade: header {HEADER_PROTOCOL} does not exist in "
                            f"request with {len(headers)} headers")
        return False
    offered = websocket.offered_subprotocols(values)
    chosen = websocket.choose_subprotocol(offered, server)
    if chosen is None:
        _text(handler, 403, f"unable to upgrade: unable to negotiate protocol: client supports "
                            f"[{' '.join(offered)}], server accepts [{' '.join(server)}]",
              [(HEADER_ACCEPTED, p) for p in server])
        return False
    if "spdy/3.1" not in (headers.get("Upgrade") or "").lower():
        _text(handler, 400, "unable to upgrade: missing upgrade headers in request")
        return False
    handler.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         f"Upgrade: SPDY/3.1\r\n{HEADER_PROTOCOL}: {chosen}\r\n\r\n").encode())
    conn = spdy.SocketStream(handler.rfile.read, handler.connection)
    log.debug("%s of %s over SPDY (%s)", subresource, _key(pod), chosen)
    if request is None:
        SpdyPortForward(runtime, pod).serve(conn)
        return True
    streams = SpdyRemoteCommand(conn).streams(proto.version_of(chosen), request.stdio)
    if streams is not None:
        _run(runtime, pod, subresource, request, streams)
    return True


# -- WebSocket ------------------------------------------------------------------------------------

def _websocket(handler: BaseHTTPRequestHandler, runtime: PodRuntime, pod: dict,
               subresource: str, request: proto.StreamRequest | None,
               query: dict[str, list[str]]) -> bool:
    headers = handler.headers
    problem = websocket.handshake_problem(headers)
    if problem:
        raise ApiFailure(400, "BadRequest", f"unable to upgrade websocket connection: {problem}")
    offered = websocket.offered_subprotocols(headers.get_all("Sec-WebSocket-Protocol") or [])
    server = (proto.WS_REMOTECOMMAND if request is not None
              else proto.WS_TUNNEL_PORTFORWARD + proto.WS_PORTFORWARD)
    # no subprotocol at all is the kubelet's "" entry: binary channels, v1 rules
    chosen = websocket.choose_subprotocol(offered, server) if offered else ""
    if chosen is None:
        # x/net/websocket refuses with 403; any refusal makes kubectl 1.30+ try SPDY instead
        raise ApiFailure(403, "Forbidden", f"unable to upgrade websocket connection: requested "
                                           f"protocol(s) are not supported: [{' '.join(offered)}]; "
                                           f"supports [{' '.join(server)}]")
    tunnel = chosen.startswith(proto.TUNNEL_PREFIX)
    ports = proto.forward_ports(query) if request is None and not tunnel else []
    key = (headers.get("Sec-WebSocket-Key") or "").strip()
    handler.wfile.write(websocket.handshake_response(key, chosen or None))
    ws = websocket.WebSocket(handler.rfile.read, handler.connection)
    log.debug("%s of %s over WebSocket (%s)", subresource, _key(pod), chosen or "no subprotocol")
    if request is not None:
        _run(runtime, pod, subresource, request, ws_streams(ws, chosen or proto.V1, request.stdio))
    elif tunnel:
        SpdyPortForward(runtime, pod).serve(websocket.MessageStream(ws))
        ws.close()
    else:
        serve_websocket(ws, chosen or proto.V1, runtime, pod, ports)
    return True


def _run(runtime: PodRuntime, pod: dict, subresource: str, request: proto.StreamRequest,
         streams) -> None:
    if subresource == "exec":
        run_session(lambda: runtime.exec(pod, request.container, request.command, request.stdio),
                    streams, request.command, request.stdio.tty)
    else:
        run_session(lambda: runtime.attach(pod, request.container, request.stdio),
                    streams, None, request.stdio.tty)


def _key(pod: dict) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
