"""The legacy userspace proxier (`--proxy-mode=userspace`, removed upstream in v1.26).

Owns, after pkg/proxy/userspace (userspace_proxy.md):
  * pure: `LoadBalancerRR` (round-robin over shuffled endpoints, ClientIP affinity with its
    timeout, clock and shuffle injected), `portal_rules` / `render_portals` (the
    KUBE-PORTALS-CONTAINER / -HOST and KUBE-NODEPORT-* rules in upstream's argument order),
    `INIT_JUMPS` (iptablesInit);
  * acting: `TcpRelay` / `UdpRelay`, one listening socket per service port on a proxy port of
    its own, relaying to endpoints from threads, and `UserspaceProxier`, which keeps them in
    step with the change trackers and applies the portal rules in one restore per sync.
It acts (sockets and threads, never subprocesses), so it lives with the agents, beside
kube_proxy.py, on top of pure testbed/proxy (trackers, rule text); the sockets come from an
injected factory (`testbed.net.netns.socket_in` in tests), the rules
go through the same backend as iptables mode.

Upstream appended portal rules one by one with EnsureRule; here the five chains are declared
(flushed) and rewritten in one `iptables-restore --noflush`, with the same rules in the same
order. The backend sees the node as the client (no client IP), services without endpoints
accept and close (TCP) or drop (UDP), and NodePorts are not "claimed" by binding them.
When the process dies the rules stay and point at closed proxy ports: connections to every
Service on the node then fail. That is upstream's behaviour and the article's single point of
failure; `UserspaceProxier.stop()` deliberately leaves the rules in place.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from testbed.proxy import names
from testbed.proxy.iptables import JumpRule
from testbed.proxy.model import ProxierSettings, ServicePort, ServicePortName
from testbed.proxy.proxier import Backend, SyncResult
from testbed.proxy.tracker import Key, ProxyTracker

PORTALS_CONTAINER = "KUBE-PORTALS-CONTAINER"
PORTALS_HOST = "KUBE-PORTALS-HOST"
NODEPORT_CONTAINER = "KUBE-NODEPORT-CONTAINER"
NODEPORT_HOST = "KUBE-NODEPORT-HOST"
NODEPORT_NON_LOCAL = "KUBE-NODEPORT-NON-LOCAL"
NAT_CHAINS = (PORTALS_CONTAINER, PORTALS_HOST, NODEPORT_CONTAINER, NODEPORT_HOST)
FILTER_CHAINS = (NODEPORT_NON_LOCAL,)
UDP_IDLE_TIMEOUT = 0.25  # seconds; upstream --udp-timeout default
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # upstream endpointDialTimeouts: one try per timeout

_CLUSTER = "handle ClusterIPs; NOTE: this must be before the NodePort rules"
_NODEPORTS = "handle service NodePorts; NOTE: this must be the last rule in the chain"
_LOCAL = ("-m", "addrtype", "--dst-type", "LOCAL")
# iptablesInit: (rule, append). Prepended ones first, then the appended ones.
INIT_JUMPS: tuple[tuple[JumpRule, bool], ...] = (
    (JumpRule("nat", "PREROUTING", ("-m", "comment", "--comment", _CLUSTER, "-j",
                                    PORTALS_CONTAINER)), False),
    (JumpRule("nat", "OUTPUT", ("-m", "comment", "--comment", _CLUSTER, "-j", PORTALS_HOST)),
     False),
    (JumpRule("nat", "PREROUTING", _LOCAL + ("-m", "comment", "--comment", _NODEPORTS, "-j",
                                             NODEPORT_CONTAINER)), True),
    (JumpRule("nat", "OUTPUT", _LOCAL + ("-m", "comment", "--comment", _NODEPORTS, "-j",
                                         NODEPORT_HOST)), True),
    (JumpRule("filter", "INPUT", ("-m", "comment", "--comment",
                                  "Ensure that non-local NodePort traffic can flow", "-j",
                                  NODEPORT_NON_LOCAL)), False),
)


# ---------------------------------------------------------------- pure: load balancing


@dataclass
class _Affinity:
    endpoint: str
    last_used: float


@dataclass
class _Balancer:
    endpoints: list[str] = field(default_factory=list)
    index: int = 0
    ttl: int | None = None  # ClientIP affinity timeout in seconds; None = no affinity
    affinity: dict[str, _Affinity] = field(default_factory=dict)


class LoadBalancerRR:
    """Upstream's LoadBalancerRR: per service port, round-robin with optional ClientIP affinity."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 shuffle: Callable[[list[str]], None] = random.shuffle) -> None:
        self.clock = clock
        self.shuffle = shuffle
        self._lock = threading.Lock()
        self._services: dict[ServicePortName, _Balancer] = {}

    def update(self, spn: ServicePortName, endpoints: Sequence[str],
               affinity_timeout: int | None) -> None:
        """New endpoints ("ip:port") and affinity; unchanged endpoints keep index and affinity."""
        with self._lock:
            state = self._services.setdefault(spn, _Balancer())
            if (state.ttl is None) != (affinity_timeout is None):
                state.affinity.clear()
            state.ttl = affinity_timeout
            if sorted(endpoints) != sorted(state.endpoints):
                alive = set(endpoints)
                state.affinity = {ip: a for ip, a in state.affinity.items() if a.endpoint in alive}
                state.endpoints = list(endpoints)
                self.shuffle(state.endpoints)
                state.index = 0

    def remove(self, spn: ServicePortName) -> None:
        with self._lock:
            self._services.pop(spn, None)

    def next_endpoint(self, spn: ServicePortName, client_ip: str,
                      reset_affinity: bool = False) -> str | None:
        """The endpoint for a new connection from `client_ip`; None when there is none."""
        with self._lock:
            state = self._services.get(spn)
            if state is None or not state.endpoints:
                return None
            now = self.clock()
            if state.ttl is not None and not reset_affinity:
                known = state.affinity.get(client_ip)
                if known is not None and int(now - known.last_used) < state.ttl:
                    known.last_used = now
                    return known.endpoint
            endpoint = state.endpoints[state.index]
            state.index = (state.index + 1) % len(state.endpoints)
            if state.ttl is not None:
                state.affinity[client_ip] = _Affinity(endpoint, now)
            return endpoint


# ---------------------------------------------------------------- pure: portal rules


def _to_cidr(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _common(svc: ServicePort, dport: int, dest: str | None, physdev: bool = False,
            dst_local: bool = False) -> list[str]:
    """iptablesCommonPortalArgs, in upstream's order."""
    args = ["-m", "comment", "--comment", str(svc.name), "-p", svc.protocol, "-m", svc.protocol,
            "--dport", str(dport)]
    if dest is not None:
        args += ["-d", _to_cidr(dest)]
    if physdev:
        args += ["-m", "physdev", "!", "--physdev-is-in"]
    if dst_local:
        args += list(_LOCAL)
    return args


def portal_rules(svc: ServicePort, proxy_port: int, host_ip: str,
                 listen_ip: str = "0.0.0.0") -> list[tuple[str, str, list[str]]]:
    """(table, chain, args) for one service port, in openPortal/openNodePort order."""
    zero = listen_ip in ("0.0.0.0", "::")
    to_proxy = ["-j", "REDIRECT", "--to-ports", str(proxy_port)] if zero else \
        ["-j", "DNAT", "--to-destination", names.join_host_port(listen_ip, proxy_port)]
    to_host = ["-j", "DNAT", "--to-destination",
               names.join_host_port(host_ip if zero else listen_ip, proxy_port)]
    out: list[tuple[str, str, list[str]]] = []
    for ip, external in ((svc.cluster_ip, False), *((e, True) for e in svc.external_ips),
                         *((v, False) for v in svc.load_balancer_ips)):
        if external:
            out.append(("nat", PORTALS_CONTAINER, _common(svc, svc.port, ip, physdev=True)
                        + to_proxy))
            out.append(("nat", PORTALS_CONTAINER, _common(svc, svc.port, ip, dst_local=True)
                        + to_proxy))
            out.append(("nat", PORTALS_HOST, _common(svc, svc.port, ip, dst_local=True)
                        + to_host))
        else:
            out.append(("nat", PORTALS_CONTAINER, _common(svc, svc.port, ip) + to_proxy))
            out.append(("nat", PORTALS_HOST, _common(svc, svc.port, ip) + to_host))
    if svc.node_port:
        out.append(("nat", NODEPORT_CONTAINER, _common(svc, svc.node_port, None) + to_proxy))
        out.append(("nat", NODEPORT_HOST, _common(svc, svc.node_port, None) + to_host))
        out.append(("filter", NODEPORT_NON_LOCAL, _common(svc, proxy_port, None)
                    + ["-m", "state", "--state", "NEW", "-j", "ACCEPT"]))
    return out


def _quote(arg: str) -> str:
    return f'"{arg}"' if not arg or any(c in arg for c in " \t\"'") else arg


def render_portals(ports: Sequence[tuple[ServicePort, int]], host_ip: str,
                   listen_ip: str = "0.0.0.0") -> str:
    """The five userspace chains, declared (so flushed) and filled, as iptables-restore input."""
    rules = [r for svc, pp in sorted(ports, key=lambda x: (str(x[0].name), x[0].protocol))
             for r in portal_rules(svc, pp, host_ip, listen_ip)]
    lines = ["*filter", *(f":{c} - [0:0]" for c in FILTER_CHAINS)]
    lines += [f"-A {c} " + " ".join(map(_quote, a)) for t, c, a in rules if t == "filter"]
    lines += ["COMMIT", "*nat", *(f":{c} - [0:0]" for c in NAT_CHAINS)]
    lines += [f"-A {c} " + " ".join(map(_quote, a)) for t, c, a in rules if t == "nat"]
    return "\n".join([*lines, "COMMIT"]) + "\n"


# ---------------------------------------------------------------- acting: relays

SocketFactory = Callable[[int, int], socket.socket]


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _Relay:
    kind = socket.SOCK_STREAM

    def __init__(self, spn: ServicePortName, lb: LoadBalancerRR, factory: SocketFactory,
                 listen_ip: str = "0.0.0.0", port: int = 0) -> None:
        self.spn, self.lb, self.factory = spn, lb, factory
        family = socket.AF_INET6 if ":" in listen_ip else socket.AF_INET
        self.family = family
        self.sock = factory(family, self.kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_ip, port))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.5)  # a backstop: shutdown() below wakes the loop at once
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"proxy {spn} :{self.port}",
                                       daemon=True)

    def start(self) -> _Relay:
        self.thread.start()
        return self

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _loop(self) -> None:
        raise NotImplementedError


class TcpRelay(_Relay):
    """A proxy port for one TCP service port: accept, pick an endpoint, copy both ways."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sock.listen(128)

    def _loop(self) -> None:
        while not self.closed.is_set():
            try:
                conn, addr = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn, addr[0]), daemon=True).start()

    def _dial(self, client_ip: str) -> socket.socket | None:
        reset = False
        for timeout in DIAL_TIMEOUTS:
            endpoint = self.lb.next_endpoint(self.spn, client_ip, reset)
            if endpoint is None:
                return None
            host, port = _split(endpoint)
            up = self.factory(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_STREAM)
            up.settimeout(timeout)
            try:
                up.connect((host, port))
            except OSError:
                up.close()
                reset = True  # try another endpoint, as upstream does after a dial failure
                continue
            up.settimeout(None)
            return up
        return None

    def _serve(self, conn: socket.socket, client_ip: str) -> None:
        with conn:
            up = self._dial(client_ip)
            if up is None:
                return  # no endpoints: accepted, then closed
            with up:
                back = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
                back.start()
                _pipe(conn, up)
                back.join()


class UdpRelay(_Relay):
    """A proxy port for one UDP service port: one upstream socket per client address."""

    kind = socket.SOCK_DGRAM

    def __init__(self, *args, idle_timeout: float = UDP_IDLE_TIMEOUT, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.idle_timeout = idle_timeout
        self._clients: dict[tuple, socket.socket] = {}
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while not self.closed.is_set():
            try:
                data, client = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                up = self._clients.get(client)
            if up is None:
                up = self._open(client)
                if up is None:
                    continue  # no endpoints: dropped
            try:
                up.send(data)
            except OSError:
                pass

    def _open(self, client: tuple) -> socket.socket | None:
        endpoint = self.lb.next_endpoint(self.spn, client[0])
        if endpoint is None:
            return None
        host, port = _split(endpoint)
        up = self.factory(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        up.connect((host, port))
        up.settimeout(self.idle_timeout)
        with self._lock:
            self._clients[client] = up
        threading.Thread(target=self._replies, args=(client, up), daemon=True).start()
        return up

    def _replies(self, client: tuple, up: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = up.recv(65535)
                self.sock.sendto(data, client)
        except OSError:  # idle timeout (TimeoutError), or the relay closed
            pass
        finally:
            with self._lock:
                self._clients.pop(client, None)
            up.close()


# ---------------------------------------------------------------- the proxier


@dataclass(frozen=True)
class _Open:
    svc: ServicePort
    relay: _Relay


class UserspaceProxier(ProxyTracker):
    """Proxy sockets and portal rules kept in step with the change trackers."""

    mode = "userspace"

    def __init__(self, backend: Backend, settings: ProxierSettings,
                 socket_factory: SocketFactory = socket.socket, listen_ip: str = "0.0.0.0",
                 lb: LoadBalancerRR | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings, threading.Lock)   # its sockets' threads share it
        self.backend = backend
        self.factory = socket_factory
        self.listen_ip = listen_ip
        self.host_ip = settings.node_ip
        self.lb = lb or LoadBalancerRR(clock)
        self.clock = clock
        self.open: dict[ServicePortName, _Open] = {}
        self._sync_lock = threading.Lock()
        self._needs_rules = True
        self._initialized = False
        self.last_text = ""

    def request_full_sync(self) -> None:
        self._needs_rules = True

    def sync(self) -> SyncResult:
        with self._sync_lock:
            start = self.clock()
            changes = self.checkout()
            for key in sorted(changes.services):
                self._reconcile(key)
            full = self._needs_rules or not self._initialized
            if not changes.services and not full:
                return SyncResult(True, False, skipped=True)
            text = render_portals([(o.svc, o.relay.port) for o in self.open.values()],
                                  self.host_ip, self.listen_ip)
            self.last_text = text
            try:
                if not self._initialized:
                    # old proxy ports are meaningless now: the restore below flushes the chains
                    self.backend.ensure_jump_rules([r for r, a in INIT_JUMPS if not a])
                    self.backend.ensure_jump_rules([r for r, a in INIT_JUMPS if a], append=True)
                self.backend.restore(text)
            except Exception as err:  # noqa: BLE001 - retried in full next time
                self._needs_rules = True
                return SyncResult(False, True, changed=frozenset(changes.services),
                                  error=str(err), seconds=self.clock() - start)
            self._initialized = True
            self._needs_rules = False
            return SyncResult(True, full, changed=frozenset(changes.services),
                              seconds=self.clock() - start)

    def _reconcile(self, key: Key) -> None:
        ports = {p.name: p for p in self.services.get(key, ())}
        for spn in [s for s in self.open if s.service == key]:
            current = ports.get(spn)
            if current is None:
                self.open.pop(spn).relay.close()
                self.lb.remove(spn)
            elif current != self.open[spn].svc:  # same socket, new portals
                self.open[spn] = _Open(current, self.open[spn].relay)
        for spn, svc in ports.items():
            if spn.protocol not in ("TCP", "UDP"):
                continue
            if spn not in self.open:
                cls = TcpRelay if spn.protocol == "TCP" else UdpRelay
                self.open[spn] = _Open(svc, cls(spn, self.lb, self.factory,
                                                self.listen_ip).start())
            eps = [str(ep) for ep in self.endpoints.get(spn, ()) if ep.ready]
            self.lb.update(spn, eps, svc.session_affinity_timeout)

    def stop(self) -> None:
        """Close every proxy socket. The portal rules stay (see the module docstring)."""
        with self._sync_lock:
            for entry in self.open.values():
                entry.relay.close()
            self.open.clear()
