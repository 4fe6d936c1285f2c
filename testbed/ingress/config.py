"""Pure: Ingresses + Services + EndpointSlices -> one nginx.conf, as ingress-nginx renders it.

`build(ingresses, services, slices)` decides (which Ingresses this controller serves, which
host gets which locations, which pod addresses each backend has) and `render(model, paths)`
writes the text. Ingresses arrive as networking.k8s.io/v1 (the API server converts the
extensions/v1beta1 and networking.k8s.io/v1beta1 forms on the way in, testbed/api/ingress.py).

* Class: Ingresses whose spec.ingressClassName (or the older `kubernetes.io/ingress.class`
  annotation) is this controller's class, and, as the cluster's default class, those with none.
* Hosts: one `server` per host; rules without a host and unknown hosts land in the catch-all
  `default_server`, which answers 404 ("default backend - 404", ingress-nginx's built-in default
  backend) unless an Ingress has spec.defaultBackend (the oldest such Ingress wins). A host's
  unmatched paths go to its Ingress's defaultBackend, else the same 404.
* Paths: Exact -> `location = /p`; Prefix /p -> `location = /p` and `location /p/` (element-wise
  prefix, so /p matches /p and /p/x but not /px; Prefix / is `location /`); ImplementationSpecific
  -> nginx's own prefix match `location /p`, as ingress-nginx does. Exact wins over Prefix for
  the same path, and for the same location the oldest Ingress wins. Paths with characters
  outside `[A-Za-z0-9-._~/]` are left out and reported (ingress-nginx's strict path check).
* Backends: like ingress-nginx, nginx proxies to the pods directly: one `upstream` per
  Service port with the ready endpoint addresses of its EndpointSlices (round robin); a
  backend with no ready endpoint (or no such Service or port) answers 503.
* Snippets: the `nginx.ingress.kubernetes.io/configuration-snippet` (per location) and
  `server-snippet` (per host) annotations are copied in as they are; this is how a user writes
  a configuration nginx rejects, and why each Ingress's text is marked with a `# ingress NS/NAME`
  comment: the controller maps `nginx -t`'s failing line back to the Ingress (`culprit`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from testbed.api.endpointslices import SERVICE_NAME_LABEL
from testbed.api.meta import namespace_of, object_key

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CONFIG_SNIPPET = "nginx.ingress.kubernetes.io/configuration-snippet"
SERVER_SNIPPET = "nginx.ingress.kubernetes.io/server-snippet"
DEFAULT_404 = "default backend - 404"
SAFE_PATH = re.compile(r"^/[A-Za-z0-9\-._~/]*$")
MARK = "# ingress "


@dataclass(frozen=True)
class Backend:
    """A Service port as an nginx upstream: its name and the pod addresses behind it."""

    upstream: str
    service: str              # ns/name:port, for people
    servers: tuple[str, ...]  # "10.244.0.5:8080", empty: 503


@dataclass(frozen=True)
class Location:
    match: str                # "= /foo", "/foo/", "/"
    ingress: str              # ns/name
    backend: Backend | None   # None: the default 404
    snippet: str = ""


@dataclass
class Server:
    host: str                 # "_" for the catch-all
    locations: dict[str, Location] = field(default_factory=dict)
    fallback: Location | None = None   # `location /` when no rule claims it
    snippets: list[tuple[str, str]] = field(default_factory=list)   # (ingress, text)


@dataclass
class Model:
    servers: dict[str, Server]
    backends: dict[str, Backend]
    problems: list[str]
    ingresses: list[str]      # ns/name of every Ingress served


def ingress_key(obj: dict) -> str:
    return "/".join(object_key(obj))


def serves(ingress: dict, ingress_class: str = "nginx", default_class: bool = True) -> bool:
    spec = ingress.get("spec") or {}
    wanted = spec.get("ingressClassName") or (ingress["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    return wanted == ingress_class if wanted else default_class


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


class _Backends:
    def __init__(self, services: Iterable[dict], slices: Iterable[dict]):
        self.services = {ingress_key(s): s for s in services}
        self.slices: dict[str, list[dict]] = {}
        for s in slices:
            meta = s.get("metadata") or {}
            name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if name:
                self.slices.setdefault(f"{namespace_of(s)}/{name}", []).append(s)
        self.made: dict[str, Backend] = {}

    def get(self, namespace: str, backend: dict | None, problems: list[str], where: str) -> Backend | None:
        svc_ref = (backend or {}).get("service")
        if not svc_ref:
            problems.append(f"{where}: only Service backends are supported")
            return None
        port_ref = svc_ref.get("port") or {}
        shown = f"{namespace}/{svc_ref['name']}:{port_ref.get('number', port_ref.get('name'))}"
        upstream = _sanitize(f"{namespace}-{svc_ref['name']}-{port_ref.get('number', port_ref.get('name'))}")
        if upstream in self.made:
            return self.made[upstream]
        service = self.services.get(f"{namespace}/{svc_ref['name']}")
        servers: tuple[str, ...] = ()
        if service is None:
            problems.append(f"{where}: Service {namespace}/{svc_ref['name']} not found")
        else:
            port = next((p for p in (service.get("spec") or {}).get("ports") or []
                         if ("number" in port_ref and p.get("port") == port_ref["number"])
                         or ("name" in port_ref and p.get("name") == port_ref["name"])), None)
            if port is None:
                problems.append(f"{where}: Service {namespace}/{svc_ref['name']} has no port "
                                f"{port_ref.get('number', port_ref.get('name'))}")
            else:
                servers = self._endpoints(f"{namespace}/{svc_ref['name']}", port)
        made = self.made[upstream] = Backend(upstream, shown, servers)
        return made

    def _endpoints(self, service: str, port: dict) -> tuple[str, ...]:
        out = []
        for s in self.slices.get(service, []):
            number = next((p.get("port") for p in s.get("ports") or []
                           if p.get("name", "") == port.get("name", "")
                           and p.get("protocol", "TCP") == "TCP"), None)
            if number is None:
                continue
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True) is False:
                    continue
                out += [f"{a}:{number}" for a in ep.get("addresses") or []]
        return tuple(sorted(set(out)))


def _matches(path: str, kind: str) -> list[str]:
    if kind == "Exact":
        return [f"= {path}"]
    if kind == "Prefix":
        trimmed = path.rstrip("/")
        return ["/"] if not trimmed else [f"= {trimmed}", f"{trimmed}/"]
    return [path]


def build(ingresses: Iterable[dict], services: Iterable[dict], slices: Iterable[dict],
          ingress_class: str = "nginx", default_class: bool = True,
          exclude: Iterable[str] = ()) -> Model:
    excluded = set(exclude)
    chosen = sorted((i for i in ingresses if serves(i, ingress_class, default_class)
                     and ingress_key(i) not in excluded),
                    key=lambda i: (i["metadata"].get("creationTimestamp", ""), ingress_key(i)))
    backends = _Backends(services, slices)
    problems: list[str] = []
    servers: dict[str, Server] = {"_": Server("_")}
    for ing in chosen:
        key, ns = ingress_key(ing), namespace_of(ing)
        spec = ing.get("spec") or {}
        notes = ing["metadata"].get("annotations") or {}
        snippet = notes.get(CONFIG_SNIPPET, "")
        default = None
        if spec.get("defaultBackend"):
            default = Location("/", key, backends.get(ns, spec["defaultBackend"], problems,
                                                       f"{key} defaultBackend"), snippet)
            if servers["_"].fallback is None:
                servers["_"].fallback = default
        for rule in spec.get("rules") or []:
            host = rule.get("host") or "_"
            server = servers.setdefault(host, Server(host))
            if notes.get(SERVER_SNIPPET) and host != "_" and all(i != key for i, _ in server.snippets):
                server.snippets.append((key, notes[SERVER_SNIPPET]))
            if default is not None and server.fallback is None:
                server.fallback = default
            paths = ((rule.get("http") or {}).get("paths") or [])
            # Exact first, so it wins over a Prefix of the same path.
            for entry in sorted(paths, key=lambda p: p.get("pathType") != "Exact"):
                path, kind = entry.get("path") or "/", entry.get("pathType", "ImplementationSpecific")
                if not SAFE_PATH.match(path):
                    problems.append(f"{key}: path {path!r} left out: only [A-Za-z0-9-._~/] are allowed")
                    continue
                backend = backends.get(ns, entry.get("backend"), problems, f"{key} {host} {path}")
                for match in _matches(path, kind):
                    server.locations.setdefault(match, Location(match, key, backend, snippet))
    for b in backends.made.values():
        if not b.servers:
            problems.append(f"backend {b.service} has no ready endpoints: 503")
    return Model(servers, dict(sorted(backends.made.items())), problems, [ingress_key(i) for i in chosen])


@dataclass(frozen=True)
class NginxPaths:
    """Where one controller pod's nginx keeps its files (all under the pod's own directory)."""

    prefix: str

    @property
    def conf(self) -> str:
        return f"{self.prefix}/nginx.conf"

    @property
    def error_log(self) -> str:
        return f"{self.prefix}/error.log"


def _location(loc: Location) -> list[str]:
    lines = [f"        {MARK}{loc.ingress}", f"        location {loc.match} {{"]
    if loc.backend is None:
        lines.append(f'            return 404 "{DEFAULT_404}\\n";')
    elif not loc.backend.servers:
        lines.append(f'            return 503 "no endpoints for {loc.backend.service}\\n";')
    else:
        lines += ["            proxy_set_header Host $host;",
                  "            proxy_set_header X-Real-IP $remote_addr;",
                  "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                  "            proxy_set_header X-Forwarded-Proto $scheme;",
                  f"            proxy_pass http://{loc.backend.upstream};"]
    lines += [f"            {line}" for line in loc.snippet.splitlines() if line.strip()]
    lines.append("        }")
    return lines


def render(model: Model, paths: NginxPaths, port: int = 80, user: str | None = None) -> str:
    p = paths.prefix
    out = ["# rendered by testbed.ingress from Ingresses, Services and EndpointSlices",
           *(f"# problem: {line}" for line in model.problems)]
    if user:
        out.append(f"user {user};")
    out += ["worker_processes 1;", f"pid {p}/nginx.pid;", f"error_log {paths.error_log} notice;",
            "events { worker_connections 1024; }", "http {",
            "    default_type text/plain;",
            "    log_format upstreaminfo '$remote_addr $host \"$request\" $status $upstream_addr';",
            f"    access_log {p}/access.log upstreaminfo;",
            f"    client_body_temp_path {p}/tmp/client_body;", f"    proxy_temp_path {p}/tmp/proxy;",
            f"    fastcgi_temp_path {p}/tmp/fastcgi;", f"    uwsgi_temp_path {p}/tmp/uwsgi;",
            f"    scgi_temp_path {p}/tmp/scgi;",
            "    proxy_connect_timeout 5s;", "    server_names_hash_bucket_size 128;", ""]
    for b in model.backends.values():
        if b.servers:
            out.append(f"    upstream {b.upstream} {{  # {b.service}")
            out += [f"        server {s};" for s in b.servers]
            out.append("    }")
    for server in sorted(model.servers.values(), key=lambda s: (s.host != "_", s.host)):
        catch_all = server.host == "_"
        out += ["", "    server {",
                f"        listen {port}{' default_server' if catch_all else ''};",
                f"        server_name {server.host};"]
        for ingress, text in server.snippets:
            out.append(f"        {MARK}{ingress}")
            out += [f"        {line}" for line in text.splitlines() if line.strip()]
        locations = dict(server.locations)
        if "/" not in locations:
            locations["/"] = server.fallback or Location("/", "(default backend)", None)
        for match in sorted(locations, key=lambda m: (not m.startswith("= "), m)):
            out += _location(locations[match])
        if catch_all:
            out += ["        location = /healthz {", "            access_log off;",
                    '            return 200 "ok\\n";', "        }"]
        out.append("    }")
    out.append("}")
    return "\n".join(out) + "\n"


def culprit(text: str, line: int) -> str | None:
    """The Ingress whose text holds line `line` (1-based) of a rendered config, if any."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    for number in range(line - 1, -1, -1):
        stripped = lines[number].strip()
        if stripped.startswith(MARK):
            name = stripped[len(MARK):]
            return None if name.startswith("(") else name
        if stripped.startswith(("server {", "upstream ", "http {")):
            return None
    return None
