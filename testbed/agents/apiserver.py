"""Acts: the API server process: Kubernetes REST over HTTP/1.1 + JSON, on TCP and a Unix socket.

    python -m testbed.agents.apiserver --listen 172.16.0.2:6443 --unix RUN/apiserver.sock \\
        --state RUN/apiserver.jsonl --service-cidr 10.96.0.0/12

The cluster starts it inside the master's network namespace: kubelets and kube-proxies reach it
over the emulated node network at --listen, the host (`testbed get ...`) through --unix, so the
emulated network stays sealed. Paths, verbs, watch streams and Status errors follow the real API
(testbed.api.resources has the path table). Every write passes admission first
(`Api._admit`): check_object (validation and defaults, 422 with field paths worded as Kubernetes
words them), the namespace must exist, Services get their ClusterIP and NodePorts from
ServiceAllocator. POST /testbed/v1/apply applies a batch all-or-nothing (`testbed apply -f`).

The request logic is testbed/api/admission.py (pure); the store survives a restart through
testbed/agents/journal.py. The Deployment controller, scheduler
and EndpointSlice controller run in this process as threads (testbed.agents.controllers).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from testbed.agents.journal import JournaledStore
from testbed.agents.podlogs import PodLogs
from testbed.api import discovery, managedfields, openapi, options, protobuf
from testbed.api.admission import Api, ApiFailure, from_store
from testbed.api.allocators import ServiceAllocator
from testbed.api.fieldvalidation import FieldValidation
from testbed.api.patch import PatchError, force_option
from testbed.api.query import BOOKMARK_PERIOD, ListOptions, bookmark, list_options, next_bookmark
from testbed.api.reads import watch_next, watch_start
from testbed.api.resources import Resource, Route, parse_path
from testbed.api.store import Event, Expired, StoreError
from testbed.api.tables import Form, WatchRenderer, include_object, negotiate, render
from testbed.spec.yamlload import LoadError, load_value

log = logging.getLogger("testbed.apiserver")

WATCH_POLL = 1.0  # seconds between checks for a stopping server while a watch is idle
MAX_BODY = 3 * 1024 * 1024   # upstream's limit on a request body (3 MiB)
BODY_TYPES = ("application/json", "application/yaml", protobuf.CONTENT_TYPE)
LISTEN_BACKLOG = 1024   # pending connections; 200 clients at once must not be reset


def _too_large() -> ApiFailure:
    return ApiFailure(413, "RequestEntityTooLarge",
                      f"Request entity too large: limit is {MAX_BODY}")


# -- HTTP ------------------------------------------------------------------------------------------

def _now() -> datetime:
    """The time Tables' AGE columns count from."""
    return datetime.now(UTC)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testbed-apiserver/1"

    def address_string(self) -> str:
        return str(self.client_address[0]) if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (a malformed request line or header, an unknown
        method) are answered with a Kubernetes Status too, never an HTML page."""
        reasons = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed",
                   408: "Timeout", 414: "RequestURITooLong", 431: "RequestHeaderFieldsTooLarge",
                   501: "MethodNotAllowed"}
        text = message or self.responses.get(code, ("error",))[0]
        self.close_connection = True
        try:
            self._send(code, ApiFailure(code, reasons.get(code, "BadRequest"), text).status())
        except OSError:
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _raw_body(self) -> bytes:
        """The request body, at most MAX_BODY bytes (Content-Length or chunked); 413 beyond it
        and 400 for a malformed length, as upstream answers (the connection is closed then,
        since the rest of the body was not read)."""
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked:
            return self._read_chunked()
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdigit():
            self.close_connection = True
            raise ApiFailure(400, "BadRequest", f"invalid Content-Length: {text!r}")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True
            raise _too_large()
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self.close_connection = True
            raise ApiFailure(400, "BadRequest", "the request body ended before its "
                             f"Content-Length ({len(raw)} of {length} bytes)")
        return raw

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                raise ApiFailure(400, "BadRequest", "malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return data
            if len(data) + size > MAX_BODY:
                self.close_connection = True
                raise _too_large()
            data += self.rfile.read(size)
            self.rfile.readline(1024)

    def _decode(self, raw: bytes) -> Any:
        """A JSON, YAML or protobuf request body as data; None when empty. 415 for other media
        types, 400 for bytes that are not UTF-8 or do not parse, as upstream's decoder refuses
        them."""
        if not raw:
            return None
        media = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if media not in BODY_TYPES:
            raise ApiFailure(415, "UnsupportedMediaType", "the body of the request was in an "
                             "unknown format - accepted media types include: "
                             + ", ".join(BODY_TYPES))
        if media == protobuf.CONTENT_TYPE:
            # kubectl's and client-go's typed clients: Kubernetes' protobuf (api/protobuf.py)
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as err:
                if parse_path(urlsplit(self.path).path) is None:
                    return None  # no such resource: routing answers 404 first, as upstream's
                raise ApiFailure(400, "BadRequest", protobuf.failure_message(raw, err)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ApiFailure(400, "BadRequest", f"the request body is not valid UTF-8: "
                             f"{err.reason} at byte {err.start}") from None
        try:
            if media == "application/yaml":
                # the testbed's one YAML reader: plain data, no alias bombs, bounded depth
                return load_value(text)
            return json.loads(text)
        except LoadError as err:
            raise ApiFailure(400, "BadRequest", "couldn't get version/kind; yaml parse error: "
                             f"line {err.line}: {err.message}") from None
        except (json.JSONDecodeError, RecursionError) as err:
            raise ApiFailure(400, "BadRequest", "couldn't get version/kind; json parse error: "
                             f"{err}") from None

    def _send(self, code: int, body: dict | str, content_type: str | None = None,
              headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type or (
            "text/plain" if isinstance(body, str) else "application/json"))
        for key, value in headers:  # e.g. fieldValidation=Warn's Warning headers
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        api: Api = self.server.api  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            # A PATCH body is decoded by its patch type (JSON patch, merge, apply YAML, ...).
            self.raw_body = self._raw_body() if method in ("POST", "PUT", "DELETE", "PATCH") \
                else b""
            body = self._decode(self.raw_body) if method != "PATCH" else None
            if url.path in ("/healthz", "/readyz", "/livez"):
                return self._send(200, "ok")
            if method == "GET" and self._discovery(url.path):
                return
            if method == "GET" and url.path.startswith("/openapi/"):
                # OpenAPI v2 (JSON or protobuf) and v3, generated from the schema (api/openapi.py)
                answer = openapi.openapi_response(url.path, query, self.headers.get("Accept", ""),
                                                  self.headers.get("If-None-Match", ""))
                if answer is not None:
                    code, data, content_type, headers = answer
                    self.send_response(code)
                    for key, value in {"Content-Type": content_type, **headers,
                                       "Content-Length": str(len(data))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                    return
            if url.path == "/testbed/v1/apply" and method == "POST":
                if not isinstance(body, dict):
                    raise ApiFailure(400, "BadRequest", "the body must be an object with "
                                     '"items", a list of objects')
                results = api.apply_batch(body.get("items"))
                return self._send(200, {"apiVersion": "testbed/v1", "kind": "ApplyResult",
                                        "items": results})
            route = parse_path(url.path)
            if route is None:
                raise ApiFailure(404, "NotFound", "the server could not find the requested "
                                 "resource")
            self._route(api, method, route, query, body)
        except ApiFailure as err:
            self._send(err.code, err.status())
        except StoreError as err:
            self._send(err.code, from_store(err).status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # every request gets an answer, even a bug's
            log.exception("%s %s", method, self.path)
            self.close_connection = True
            try:
                self._send(500, ApiFailure(500, "InternalError",
                                           f"an error on the server ({type(err).__name__}: "
                                           f"{err}) has prevented the request from "
                                           "succeeding").status())
            except OSError:
                pass

    def _discovery(self, path: str) -> bool:
        """Answer a discovery request (/api, /apis, /api/v1, /apis/G[/V], /version): True if
        `path` was one."""
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            self._send(200, discovery.VERSION_INFO)
            return True
        if not parts or parts[0] not in ("api", "apis") or len(parts) > 3 \
                or (parts[0] == "api" and len(parts) > 2):
            return False
        if len(parts) == 1:
            aggregated = discovery.wants_aggregated(self.headers.get("Accept", ""))
            if aggregated:
                self._send(200, discovery.aggregated(parts[0] == "api", aggregated),
                           discovery.aggregated_content_type(aggregated))
            elif parts[0] == "api":
                self._send(200, discovery.api_versions(self.server.address_text))  # type: ignore[attr-defined]
            else:
                self._send(200, discovery.api_group_list())
            return True
        if parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(parts[1])
        else:
            doc = discovery.resource_list("/".join(parts[1:]))
        if doc is None:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        self._send(200, doc)
        return True

    def _route(self, api: Api, method: str, rt: Route, query: dict, body: Any) -> None:
        r, ns, name, sub = rt.resource, rt.namespace, rt.name, rt.subresource
        if r.namespaced and name is not None and ns is None:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        if sub in ("exec", "attach", "portforward") and method in ("GET", "POST"):
            # an upgraded connection (WebSocket or SPDY) for the session, to its end
            from testbed.agents.streaming.server import serve
            return serve(self, self.server.pod_runtime, api.get(r, ns, name), sub, query)  # type: ignore[arg-type,attr-defined]
        if rt.watch:
            if method != "GET":
                raise ApiFailure(405, "MethodNotAllowed", f"{method} is not supported on "
                                 f"{self.path}")
            # the deprecated /watch/ paths: a watch of the collection, or of one object
            query = {**query, "watch": ["true"]}
            if name is not None:
                query["fieldSelector"] = [",".join(filter(None, [
                    f"metadata.name={name}", *(query.get("fieldSelector") or [])]))]
                name = None
        if method == "GET" and name is None:
            # list and watch: every option honoured or refused (api/query.py, api/reads.py),
            # the answer in the form the Accept header asks for (api/tables.py)
            form = negotiate(self.headers.get("Accept"))
            include = include_object(query) if form.kind == "Table" else ""
            opts = list_options(query, r.kind)
            if opts.watch:
                return self._watch(api, r, ns, opts, form, include)
            listed = api.list(r, ns, options=opts)
            return self._answer(render(form, listed, r.kind, _now(), include, is_list=True),
                                form, query)
        if method == "GET":
            if sub == "log":
                return self._pod_log(api.get(r, ns, name), query)  # type: ignore[arg-type]
            if sub == "scale":
                return self._send(200, api.scale(ns or "", name))  # type: ignore[arg-type]
            form = negotiate(self.headers.get("Accept"))
            include = include_object(query) if form.kind == "Table" else ""
            got = api.get(r, ns, name, (query.get("resourceVersion") or [""])[0])  # type: ignore[arg-type]
            return self._answer(render(form, got, r.kind, _now(), include), form, query)
        if method == "POST" and name is None:
            fields = FieldValidation.from_query(query, self.raw_body)
            return self._send(201, api.create(r, ns, body, dry_run=options.dry_run(query),
                                              manager=self._manager(query), fields=fields),
                              headers=fields.headers())
        if method == "PUT" and name is not None:
            if sub == "status":
                return self._send(200, api.replace_status(r, ns, name, body,
                                                          dry_run=options.dry_run(query),
                                                          manager=self._manager(query)))
            if sub == "scale":
                return self._send(200, api.scale(ns or "", name, body, self._manager(query),
                                                 options.dry_run(query)))
            fields = FieldValidation.from_query(query, self.raw_body)
            return self._send(200, api.replace(r, ns, name, body,
                                               dry_run=options.dry_run(query),
                                               manager=self._manager(query), fields=fields),
                              headers=fields.headers())
        if method == "PATCH" and name is not None and sub in (None, "status", "scale"):
            # the body is decoded by its patch type (api/patch.py); apply may create (201)
            try:
                force = force_option(query.get("force"))
            except PatchError as err:
                raise ApiFailure(err.code, err.reason, err.message) from err
            fields = FieldValidation.from_query(query, self.raw_body, verb="patch")
            obj, created = api.patch(
                r, ns, name, self.raw_body, self.headers.get("Content-Type") or "",
                subresource=sub, field_manager=(query.get("fieldManager") or [""])[-1],
                user_agent=self.headers.get("User-Agent") or "", force=force,
                dry_run=options.dry_run(query), fields=fields)
            return self._send(201 if created else 200, obj, headers=fields.headers())
        if method == "DELETE" and name is not None and sub is None:
            return self._send(200, api.delete(r, ns, name,  # type: ignore[arg-type]
                                              options=options.delete_options(query, body)))
        if method == "DELETE" and name is None and "deletecollection" in r.verbs:
            return self._send(200, api.delete_collection(
                r, ns, list_options(query, r.kind), options.delete_options(query, body)))
        raise ApiFailure(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _manager(self, query: dict) -> str:
        """The writer's field manager: ?fieldManager=, else its User-Agent's first word."""
        return managedfields.manager_for((query.get("fieldManager") or [""])[-1],
                                         self.headers.get("User-Agent") or "")

    def _pod_log(self, pod: dict, query: dict) -> None:
        """pods/log: the container's output as text/plain, streamed (chunked) while following."""
        logs: PodLogs = self.server.logs  # type: ignore[attr-defined]
        stopping: threading.Event = self.server.stopping  # type: ignore[attr-defined]
        # refusals (400) are raised before anything is sent
        chunks = logs.open(pod, query, lambda: not stopping.is_set() and self._client_open())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in chunks:
                self._chunk(data)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _client_open(self) -> bool:
        """False once the client has closed its side (a reader of a stream that gave up)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return True
        try:
            return self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _answer(self, body: dict, form: Form, query: dict) -> None:
        """A read's answer as JSON, indented when asked to (?pretty=true, or pretty=1)."""
        pretty = form.pretty or (query.get("pretty") or ["false"])[0].lower() in ("1", "true")
        if pretty:
            return self._send(200, json.dumps(body, indent=2) + "\n", "application/json")
        return self._send(200, body)

    def _watch(self, api: Api, r: Resource, ns: str | None, opts: ListOptions, form: Form,
               include: str) -> None:
        """Newline-delimited JSON events, chunked, until timeoutSeconds (or the server stops):
        where it starts (initial events, a resourceVersion) is api/reads.py's; bookmarks when
        allowed (every bookmark_period and 2 s before the end, as upstream's cacher); each
        object in the negotiated form (a one-row Table for `kubectl get -w`)."""
        start = watch_start(api.store, r, ns, opts)  # 400, 410, 504 before the stream
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        renderer = WatchRenderer(form, r.kind, include)
        period: float = self.server.bookmark_period  # type: ignore[attr-defined]
        now = time.monotonic()
        deadline = now + (opts.timeout_seconds or 1800)
        mark = next_bookmark(now, deadline, period) if opts.allow_bookmarks else None
        batch = start.first
        stopping: threading.Event = self.server.stopping  # type: ignore[attr-defined]
        try:
            self._events(renderer, batch.events)
            if start.initial_events_end:
                self._events(renderer, [Event("BOOKMARK", bookmark(
                    r.kind, r.group_version, batch.resource_version, True), 0)])
            while True:
                now = time.monotonic()
                if mark is not None and now >= mark:
                    self._events(renderer, [Event("BOOKMARK", bookmark(
                        r.kind, r.group_version, batch.resource_version), 0)])
                    mark = next_bookmark(now, deadline, period)
                remaining = deadline - now
                if remaining <= 0 or stopping.is_set():
                    break
                wait = min(remaining, WATCH_POLL, mark - now if mark is not None else remaining)
                try:
                    batch = watch_next(api.store, r, ns, opts, batch.resource_version,
                                       max(wait, 0.0))
                except Expired as err:
                    status = from_store(err).status()
                    self._chunk(EncodedEvents.encode(Event("ERROR", status, 0)))
                    break
                self._events(renderer, batch.events)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _events(self, renderer: WatchRenderer, events: list[Event]) -> None:
        now = _now()
        if renderer.form.kind is None:   # plain JSON: each event encoded once for every watcher
            encoded: EncodedEvents = self.server.encoded  # type: ignore[attr-defined]
            lines = b"".join(encoded.line(e) for e in events)
        else:
            lines = "".join(json.dumps(renderer.event(e.type, e.object, now)) + "\n"
                            for e in events).encode()
        if lines:
            self._chunk(lines)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class EncodedEvents:
    """Watch events' JSON lines, each made once and sent to every watcher that gets it, as
    upstream's cacher serializes an event once for all its watchers. Each server keeps its own
    (servers in one process, as tests run them, hold different stores). A stored object never
    changes (api/reads.py), so an event is known by its type and its object's apiVersion,
    kind, namespace, name and resourceVersion; bookmarks and errors (made per watch) are
    encoded each time. The newest `size` lines are kept."""

    CACHED = ("ADDED", "MODIFIED", "DELETED")

    def __init__(self, size: int = 4096):
        self.size = size
        self._lines: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.made = 0   # lines encoded (the rest came from the cache)

    @staticmethod
    def encode(event: Event) -> bytes:
        return (json.dumps({"type": event.type, "object": event.object}) + "\n").encode()

    def line(self, event: Event) -> bytes:
        obj = event.object
        meta = obj.get("metadata") or {}
        if event.type not in self.CACHED or "resourceVersion" not in meta:
            return self.encode(event)
        key = (event.type, obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"),
               meta.get("name"), meta["resourceVersion"])
        with self._lock:
            line = self._lines.get(key)
            if line is not None:
                self._lines.move_to_end(key)
                return line
        line = self.encode(event)
        with self._lock:
            self.made += 1
            self._lines[key] = line
            if len(self._lines) > self.size:
                self._lines.popitem(last=False)
        return line


class _Tracking:
    """Mixin: remembers open connections so stop() can cut them (watches included)."""

    def _track_init(self, api: Api) -> None:
        self.api = api
        self.encoded = EncodedEvents()   # watch events' JSON lines, made once per event
        self.bookmark_period = BOOKMARK_PERIOD  # seconds between watch bookmarks
        self.address_text = ""  # IP:PORT where clients reach the API (discovery tells them)
        self.logs: PodLogs | None = None
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def cut_connections(self) -> None:
        self.stopping.set()
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TCPServer(_Tracking, ThreadingHTTPServer):  # daemon threads, as ThreadingHTTPServer's
    request_queue_size = LISTEN_BACKLOG
    def __init__(self, address: tuple[str, int], api: Api):
        self._track_init(api)
        super().__init__(address, Handler)


class UnixServer(_Tracking, ThreadingMixIn, UnixStreamServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, path: str, api: Api):
        self._track_init(api)
        if os.path.exists(path):
            os.unlink(path)  # a stale socket of a killed predecessor
        super().__init__(path, Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)  # BaseHTTPRequestHandler wants a (host, port) pair


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _emulated_runtime(run_dir: Path) -> Any:
    """exec, attach and port-forward into the kubelets' pods (agents/streaming/emulated.py);
    tests pass a streaming.runtime.LocalRuntime as ApiServer(runtime=...) instead."""
    from testbed.agents.streaming.emulated import EmulatedRuntime
    return EmulatedRuntime(run_dir)


class ApiServer:
    """The whole process in one object (tests run it in-process): store, API, servers, threads."""

    def __init__(self, state: Path, service_cidr: str, listen: tuple[str, int] = ("127.0.0.1", 0),
                 unix: Path | None = None, api_address: str | None = None,
                 node_ports: tuple[int, int] = (30000, 32767), controllers: bool = True,
                 resync: float = 5.0, history: int = 1000, runtime: Any = None):
        # many request threads share them: a real condition and a re-entrant lock
        self.store = JournaledStore(Path(state), history=history, condition=threading.Condition())
        self.api = Api(self.store, ServiceAllocator(service_cidr, node_ports), lock=threading.RLock())
        self.tcp = TCPServer(listen, self.api)
        self.port = self.tcp.server_address[1]
        self.unix = UnixServer(str(unix), self.api) if unix else None
        ip, port = split_hostport(api_address) if api_address else (listen[0], self.port)
        self.api.ensure_defaults(ip, port)
        for server in (self.tcp, self.unix):
            if server is not None:
                server.address_text = f"{ip}:{port}"
                server.logs = PodLogs(Path(state).parent)  # the run directory
                server.pod_runtime = runtime or _emulated_runtime(Path(state).parent)
        self.controllers = None
        if controllers:
            from testbed.agents.controllers import ControllerManager
            self.controllers = ControllerManager(self.store, resync=resync)

    @property
    def url(self) -> str:
        host = self.tcp.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        for server in (self.tcp, self.unix):
            if server is not None:
                thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True,
                                          name=f"serve-{type(server).__name__}")
                thread.start()
        if self.controllers is not None:
            self.controllers.start()
        return self

    def stop(self) -> None:
        if self.controllers is not None:
            self.controllers.stop()
        for server in (self.tcp, self.unix):
            if server is not None:
                server.shutdown()
                server.cut_connections()
                server.server_close()
        if self.unix is not None:
            try:
                os.unlink(self.unix.server_address)  # type: ignore[arg-type]
            except OSError:
                pass
        self.store.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.agents.apiserver",
                                description="The emulated cluster's API server.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument("--unix", metavar="PATH", help="also serve on this Unix socket")
    p.add_argument("--state", required=True, metavar="FILE", help="journal of every object")
    p.add_argument("--service-cidr", required=True, metavar="CIDR")
    p.add_argument("--node-port-range", default="30000-32767", metavar="FIRST-LAST")
    p.add_argument("--cluster-name", default="testbed")
    p.add_argument("--api-address", metavar="IP:PORT",
                   help="where pods reach the API (the kubernetes Service's endpoint)")
    p.add_argument("--no-controllers", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        ipaddress.ip_network(args.service_cidr, strict=False)
        first, _, last = args.node_port_range.partition("-")
        args.node_ports = (int(first), int(last))
        args.listen_at = split_hostport(args.listen)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"apiserver[{args.cluster_name}] %(message)s")
    server = ApiServer(Path(args.state), args.service_cidr, args.listen_at,
                       Path(args.unix) if args.unix else None, args.api_address,
                       args.node_ports, controllers=not args.no_controllers).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    log.info("serving on %s%s", server.url, f" and unix:{args.unix}" if args.unix else "")
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
