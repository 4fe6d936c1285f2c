"""Acts: `testbed trace`: sends one real connection and follows it in the kernel of every
namespace it crosses.

How: every Mininet host of the cluster (nodes, gateway, clients) gets a table of the tracer's
own, `ip testbed-trace-PID` (PID: the tracing process), whose base chains run right after
conntrack (priority -190) in prerouting and output. The connection leaves its source with a
DSCP no one else uses (43), so the tracer's rule knows its first packet in every namespace,
however NAT rewrote its addresses; there it sets a conntrack mark of its own, which then names
the connection's replies and the ICMP errors about it in that namespace. All of them get
`meta nftrace set 1`, and an `nft -a monitor trace` per namespace reports each chain and rule
they pass, iptables-nft's tables included (testbed.trace.events reads that). The monitors are
known to listen before anything is sent, and to have reported everything before they are
stopped, by canary packets their own rule traces (sent to 127.0.0.99:9 in each namespace).

Then, per namespace: conntrack's entry with the mark (`conntrack -L --mark`) says what NAT did
there, `ip route get` with the packet's addresses at that point says which way it went, and
`iptables -t TABLE -S` beside `nft -a list table ip TABLE` turns the rule handles into the
lines `iptables -S` prints. The hops are put in order by following the routes from the source:
the next host is the one holding the route's next hop (or the destination, on its link), and a
pod's hop is its eth0 behind its bridge port.

Proxies on the way are followed: userspace kube-proxy (a hop of its own, `kube-proxy@NODE`)
and the ingress controller's pod take the connection and open one of their own; those onward
connections (from the node, or from the controller's pods, to the Service's or the Ingress
host's backends' endpoints) are given the traced DSCP by a rule armed beforehand, and the walk
goes on with them (`Onward`).

The tracer's tables are deleted when the trace ends, also on Ctrl-C and SIGTERM; the monitors
end with the tracer (a parent-death signal); a table left by a tracer that was killed outright
(its PID gone) is deleted by the next trace in that cluster. Traces of one cluster take turns
(a lock in its run directory): they share the DSCP.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from testbed.apiclient.client import ApiError
from testbed.emu.probes import failure_of
from testbed.net.netns import socket_in
from testbed.net.run import CommandError, run, spawn
from testbed.trace import events
from testbed.trace.ruleset import IPTABLES_TABLES, iptables_texts

DSCP = 43                       # no standard codepoint: the traced connection's own
CANARY = ("127.0.0.99", 9)
TABLE_PREFIX = "testbed-trace-"
PROTOCOLS = ("tcp", "udp", "icmp")


class TraceError(RuntimeError):
    """The trace could not be taken (bad FROM or TO, a namespace that would not listen)."""


@dataclass
class Resolved:
    """What a trace sends to: an address and port, and what the user called it."""

    address: IPv4Address
    port: int | None
    label: str
    service: str | None = None        # namespace/name of the Service it reaches, if one
    ingress_host: str | None = None   # TO was an Ingress host


@dataclass
class _Host:
    name: str
    role: str
    pid: int
    addresses: set[str] = field(default_factory=set)
    monitor: object = None
    lines: list[str] = field(default_factory=list)
    canaries: int = 0                      # canary packets its monitor has reported
    reader: threading.Thread | None = None
    passes: list[events.Pass] = field(default_factory=list)
    conntrack: list[dict] = field(default_factory=list)
    texts: dict[tuple[str, str, int], str] = field(default_factory=dict)


# -- what FROM and TO name -----------------------------------------------------------------------

def resolve_target(cluster, to: str, port: int | None, protocol: str, source_kind: str) -> Resolved:
    """TO as a probe takes it: a Service (NAME or NAMESPACE/NAME; before a pod of the same
    name), a pod, an IP, a node, any of them with :PORT, or an Ingress host. TraceError names
    what exists when nothing matches."""
    name, port_text = to, ""
    if ":" in to:
        name, _, port_text = to.rpartition(":")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise TraceError(f"{to!r}: the port after ':' must be between 1 and 65535, "
                             "inclusive")
        if port is not None and int(port_text) != port:
            raise TraceError(f"{to!r} and --port {port} name different ports")
        port = int(port_text)
    service = _service(cluster, name)
    if service is not None:
        ns, svc_name = service["metadata"]["namespace"], service["metadata"]["name"]
        ip = service["spec"].get("clusterIP")
        if not ip or ip == "None":
            raise TraceError(f"Service {ns}/{svc_name} has no ClusterIP (headless): trace one of "
                             "its pods")
        if port is None and protocol != "icmp":
            ports = [p for p in service["spec"].get("ports", [])
                     if p.get("protocol", "TCP").lower() == protocol]
            if not ports:
                raise TraceError(f"Service {ns}/{svc_name} has no {protocol.upper()} port")
            port = int(ports[0]["port"])
        return Resolved(IPv4Address(ip), port, to, f"{ns}/{svc_name}")
    ingress = _ingress_address(cluster, name, source_kind)
    if ingress is not None:
        address, ingress_port = ingress
        return Resolved(address, port or ingress_port, to, None, name)
    try:
        address = cluster.address_of(name)
    except KeyError as err:
        raise TraceError(f"TO {name!r}: {err.args[0]}; or a Service, an IP or an Ingress "
                         "host") from None
    if port is None and protocol != "icmp":
        raise TraceError(f"TO {to!r} needs a port for {protocol} (NAME:PORT or --port)")
    return Resolved(address, port, to, _service_at(cluster, str(address), port))


def _service_at(cluster, address: str, port: int | None) -> str | None:
    """The Service a node port, load-balancer address or ClusterIP with `port` reaches."""
    if cluster.cp is None or port is None:
        return None
    nodes = {str(n.address) for n in cluster.topo.nodes}
    try:
        services, _ = cluster.client.list("Service")
    except Exception:   # noqa: BLE001 - no API server: nothing to name
        return None
    for svc in services:
        spec, status = svc.get("spec") or {}, svc.get("status") or {}
        lbs = {i.get("ip") for i in (status.get("loadBalancer") or {}).get("ingress") or []}
        for sp in spec.get("ports", []):
            if (address in nodes and sp.get("nodePort") == port) or (
                    sp.get("port") == port and (address in lbs or address == spec.get("clusterIP"))):
                return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
    return None


def _service(cluster, name: str) -> dict | None:
    if cluster.cp is None or not re.fullmatch(r"([a-z0-9-]+/)?[a-z0-9-]+", name):
        return None
    namespace, _, svc = name.rpartition("/")
    try:
        return cluster.client.get("Service", namespace or "default", svc)
    except Exception:   # noqa: BLE001 - no such Service, or no API server: not a Service name
        return None


def _ingress_address(cluster, host: str, source_kind: str) -> tuple[IPv4Address, int] | None:
    """Where an Ingress host is reached: the ingress controller's Service (its load balancer's
    address or a node port from outside the cluster, its ClusterIP from inside)."""
    if cluster.cp is None or "." not in host:
        return None
    try:
        ingresses, _ = cluster.client.list("Ingress")
    except Exception:   # noqa: BLE001 - no Ingress kind served: not an Ingress host
        return None
    if not any(rule.get("host") == host for ing in ingresses
               for rule in (ing.get("spec") or {}).get("rules") or []):
        return None
    services, _ = cluster.client.list("Service")
    for svc in services:
        labels = (svc.get("metadata") or {}).get("labels") or {}
        if labels.get("app") != "nginx-ingress" and svc["metadata"]["name"] != "nginx-ingress":
            continue
        spec = svc.get("spec") or {}
        http = next((p for p in spec.get("ports", []) if p.get("name") == "http"
                     or p.get("port") == 80), None)
        if http is None:
            continue
        if source_kind == "pod" or source_kind in ("worker", "master"):
            if spec.get("clusterIP") in (None, "", "None"):
                continue        # headless: no address to reach it by
            return IPv4Address(spec["clusterIP"]), int(http["port"])
        lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if lb and lb[0].get("ip"):
            return IPv4Address(lb[0]["ip"]), int(http["port"])
        if http.get("nodePort"):
            return cluster.topo.workers[0].address, int(http["nodePort"])
    return None


# -- arming and disarming ------------------------------------------------------------------------

def _table_name() -> str:
    return f"{TABLE_PREFIX}{os.getpid()}"


@dataclass
class Onward:
    """A proxy's own connection onward, to be traced as the same connection's next leg: new
    connections to `destinations` ("IP . PORT") leaving a host (hook "out": a proxy in the
    host, userspace kube-proxy) or coming from `sources` into it (hook "pre": a proxy in a
    pod, the ingress controller) get the traced connection's DSCP."""

    hook: str
    destinations: tuple[str, ...]
    sources: tuple[str, ...] = ()

    def rule(self, protocol: str) -> str:
        if not self.destinations:
            return ""
        proto = "udp" if protocol == "udp" else "tcp"
        saddr = f"ip saddr {{ {', '.join(self.sources)} }} " if self.sources else ""
        return (f"ct state new meta l4proto {proto} {saddr}ip daddr . th dport "
                f"{{ {', '.join(self.destinations)} }} ip dscp set {DSCP:#x}\n")


def _ruleset(table: str, mark: int, protocol: str, onward: list[Onward] = ()) -> str:
    request = {"tcp": "tcp flags & (syn | ack) == syn ", "udp": "meta l4proto udp ",
               "icmp": "meta l4proto icmp "}[protocol]
    reply = {"tcp": "tcp flags & (syn | rst) != 0 ", "udp": "meta l4proto udp ",
             "icmp": "meta l4proto icmp "}[protocol]
    rules = (f'ip dscp {DSCP:#x} {request}ct direction original ct mark set {mark:#x} '
             f'meta nftrace set 1 comment "request"\n'
             f'ct mark {mark:#x} ct direction reply {reply}meta nftrace set 1 comment "reply"\n'
             f'ct mark {mark:#x} ct state related meta nftrace set 1 comment "related"\n')
    canary = (f'ip daddr {CANARY[0]} udp dport {CANARY[1]} meta nftrace set 1 '
              f'comment "canary"\n')
    pre_onward = "".join(o.rule(protocol) for o in onward if o.hook == "pre")
    out_onward = "".join(o.rule(protocol) for o in onward if o.hook == "out")
    return (f"table ip {table} {{\n"
            f"chain pre {{\ntype filter hook prerouting priority -190; policy accept;\n"
            f"{pre_onward}{rules}}}\n"
            f"chain out {{\ntype filter hook output priority -190; policy accept;\n"
            f"{canary}{out_onward}{rules}}}\n"
            # Empty chains on the other hooks: the kernel reports the packet at each, with
            # its interfaces, even where no other table has a chain there (the gateway).
            f"chain fwdc {{\ntype filter hook forward priority -190; policy accept;\n}}\n"
            f"chain {events.INPUT_CHAIN} {{\ntype filter hook input priority -190; policy accept;\n}}\n"
            f"chain post {{\ntype filter hook postrouting priority -190; policy accept;\n}}\n"
            f"}}\n")


def stale_tables(pid: int) -> list[str]:
    """The tracer tables in namespace `pid` whose tracing process is gone."""
    out = []
    for table in tracer_tables(pid):
        owner = table.removeprefix(TABLE_PREFIX)
        if int(owner) != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            out.append(table)
    return out


def tracer_tables(pid: int) -> list[str]:
    """Every tracer table in namespace `pid` (tests check none is left)."""
    listing = run(["nft", "list", "tables", "ip"], netns=pid, check=False, timeout=10).stdout
    return re.findall(rf"table ip ({TABLE_PREFIX}\d+)", listing)


def _delete_table(pid: int, table: str) -> None:
    run(["nft", "delete", "table", "ip", table], netns=pid, check=False, timeout=10)


# -- the trace -----------------------------------------------------------------------------------

_LOCK = threading.Lock()     # one trace at a time in this process: they share DSCP 43


def trace(cluster, source: str, to: str, port: int | None = None, protocol: str = "tcp",
          timeout: float = 2.0) -> dict:
    """Send one connection from `source` to `to` and report its path (testbed.trace's JSON)."""
    src = _source(cluster, source, port, protocol)
    if src.pid is None or src.address is None:
        raise TraceError(f"FROM {source!r} has no running sandbox or no address")
    try:
        target = resolve_target(cluster, to, port, protocol, src.kind)
        with _LOCK, _cluster_lock(cluster):
            return _trace(cluster, src, target, protocol, timeout)
    except (CommandError, OSError, ApiError, KeyError, ValueError) as err:
        raise TraceError(f"the trace failed: {err}") from None


def _source(cluster, source: str, port: int | None, protocol: str):
    """FROM as an Endpoint, after the protocol and port are checked (trace and static)."""
    if protocol not in PROTOCOLS:
        raise TraceError(f"--protocol {protocol!r}: must be one of {', '.join(PROTOCOLS)}")
    if port is not None and not 1 <= port <= 65535:
        raise TraceError(f"port {port}: must be between 1 and 65535, inclusive")
    try:
        return cluster.endpoint(source)
    except KeyError as err:
        raise TraceError(f"FROM {source!r}: {err.args[0]}") from None


@contextmanager
def _cluster_lock(cluster):
    """One trace at a time per cluster, across processes: traces share DSCP 43."""
    record = getattr(cluster, "record", None)
    if record is None:
        yield
        return
    with open(record.directory / "trace.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _trace(cluster, src, target: Resolved, protocol: str, timeout: float) -> dict:
    hosts = {h.name: _Host(h.name, h.role, h.pid) for h in cluster.network.hosts.values()}
    table = _table_name()
    mark = 0x7E570000 | (int.from_bytes(os.urandom(2), "big"))
    for host in hosts.values():
        for old in stale_tables(host.pid):
            _delete_table(host.pid, old)
    onward = _onward(cluster, target, protocol)
    started = time.monotonic()
    armed: list[_Host] = []
    try:
        for host in hosts.values():
            armed.append(host)      # before: a load that timed out may still have happened
            run(["nft", "-f", "-"], netns=host.pid, input=_ruleset(table, mark, protocol, onward),
                timeout=10)
            # Ended with the tracer even when it is killed outright (the parent-death signal).
            host.monitor = spawn(["setpriv", "--pdeathsig", "TERM", "--", "stdbuf", "-oL", "nft",
                                  "-a", "monitor", "trace"], netns=host.pid)
            host.reader = threading.Thread(target=_read, args=(host,), daemon=True)
            host.reader.start()
        _barrier(hosts.values(), 1)
        outcome = _send(src, target, protocol, timeout)
        time.sleep(0.05)
        _barrier(hosts.values(), 2)
        for host in hosts.values():
            host.conntrack = _conntrack(host.pid, mark)
    finally:
        for host in hosts.values():
            if host.monitor is not None:
                host.monitor.terminate()
        for host in armed:
            _delete_table(host.pid, table)
        for host in hosts.values():
            if host.monitor is not None:
                try:
                    host.monitor.wait(timeout=5)
                except Exception:   # noqa: BLE001 - it was asked to end; kill it then
                    host.monitor.kill()
                    host.monitor.wait()
    if os.environ.get("TESTBED_TRACE_RAW"):
        for host in hosts.values():
            print(f"## {host.name}\n" + "\n".join(host.lines))
    for host in hosts.values():
        host.passes = events.passes(host.lines, table)
        host.addresses = _addresses(host.pid)
        _rule_texts(host)
    result = _assemble(cluster, src, target, protocol, hosts, table, outcome, onward)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _endpoints(cluster, service: str, protocol: str) -> list[str]:
    """The Service's endpoints as nft's "IP . PORT" (IPv4 slices, ports of `protocol`)."""
    namespace, _, name = service.partition("/")
    slices, _ = cluster.client.list("EndpointSlice", namespace,
                                    f"kubernetes.io/service-name={name}")
    return sorted({f"{a} . {p['port']}" for s in slices if s.get("addressType", "IPv4") == "IPv4"
                   for e in s.get("endpoints") or [] for a in e.get("addresses") or []
                   for p in s.get("ports") or [] if isinstance(p.get("port"), int)
                   and str(p.get("protocol") or "TCP").lower() == protocol})


def _onward(cluster, target: Resolved, protocol: str) -> list[Onward]:
    """The proxies the connection may meet, whose own connections onward are its next leg:
    userspace kube-proxy on a node (to the Service's endpoints), the ingress controller (to
    the endpoints of the Services the host's Ingress rules name)."""
    if cluster.cp is None or protocol == "icmp":
        return []
    out = []
    try:
        if target.service and _userspace(cluster):
            out.append(Onward("out", tuple(_endpoints(cluster, target.service, protocol))))
        if target.ingress_host:
            controllers, _ = cluster.client.list("Pod", None, "app=nginx-ingress")
            sources = tuple(sorted(p["status"]["podIP"] for p in controllers
                                   if (p.get("status") or {}).get("podIP")))
            destinations = _ingress_backends(cluster, target.ingress_host)
            if sources and destinations:
                out.append(Onward("pre", destinations, sources))
    except Exception:   # noqa: BLE001 - without them the trace ends at the proxy, as before
        return out
    return out


def _ingress_backends(cluster, host: str) -> tuple[str, ...]:
    """The pod addresses nginx proxies `host` to, as "IP . PORT": the ingress controller's own
    model of the Ingresses (testbed.ingress.config.build: its rules, default backend, class)."""
    from testbed.ingress.config import build

    ingresses, _ = cluster.client.list("Ingress")
    services, _ = cluster.client.list("Service")
    slices, _ = cluster.client.list("EndpointSlice")
    server = build(ingresses, services, slices).servers.get(host)
    if server is None:
        return ()
    locations = [*server.locations.values(), server.fallback]
    return tuple(sorted({address.replace(":", " . ") for loc in locations
                         if loc is not None and loc.backend is not None
                         for address in loc.backend.servers}))


def _userspace(cluster) -> bool:
    from testbed.emu.inspect import proxy_mode

    run_dir = cluster.record.directory if cluster.record else None
    return any(proxy_mode(run_dir, w.name, cluster.network.hosts[w.name].pid) == "userspace"
               for w in cluster.topo.workers if w.name in cluster.network.hosts)


def _read(host: _Host) -> None:
    table = _table_name()
    for line in host.monitor.stdout:
        line = line.rstrip("\n")
        host.lines.append(line)
        host.canaries += events.canaries([line], table)   # counted as they come, once


def _barrier(hosts, count: int, limit: float = 5.0) -> None:
    """Wait until every monitor has reported `count` canaries (sending them meanwhile)."""
    deadline = time.monotonic() + limit
    waiting = list(hosts)
    while waiting:
        for host in waiting:
            _canary(host.pid)
        time.sleep(0.03)
        waiting = [h for h in waiting if h.canaries < count]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(h.name for h in waiting)
            raise TraceError(f"the trace monitor in {names} did not report within {limit:g}s")


def _canary(pid: int) -> None:
    sock = socket_in(pid, kind=socket.SOCK_DGRAM)
    try:
        sock.sendto(b"canary", CANARY)
    except OSError:
        pass
    finally:
        sock.close()


@dataclass
class Outcome:
    result: str          # connected, replied, refused, timeout, unreachable, error
    text: str
    local: str = ""      # the source address:port it left from


def _send(src, target: Resolved, protocol: str, timeout: float) -> Outcome:
    if protocol == "icmp":
        return _ping(src.pid, target.address, timeout)
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket_in(src.pid, kind=kind)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP << 2)
        sock.settimeout(timeout)
        sock.bind(("0.0.0.0", 0))
        try:
            try:
                sock.connect((str(target.address), target.port))
            finally:
                local = "{}:{}".format(*sock.getsockname())
            if protocol == "tcp" and target.ingress_host:
                # The ingress controller connects on only once it has a request to pass.
                try:
                    sock.sendall(f"GET / HTTP/1.1\r\nHost: {target.ingress_host}\r\n"
                                 "User-Agent: testbed-trace\r\nConnection: close\r\n\r\n"
                                 .encode())
                    status = sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
                except OSError as err:
                    status = f"no HTTP answer ({err.strerror or err})"
                return Outcome("connected", f"connected; {status or 'no HTTP answer'}", local)
            if protocol == "tcp":
                return Outcome("connected", "connected", local)
            sock.send(b"hostname")
            reply = sock.recv(65535).decode(errors="replace")
            return Outcome("replied", f"reply {reply.strip()[:60]!r}", local)
        except OSError as err:
            failure = failure_of(err)
            text = {"refused": "refused", "timeout": f"no answer within {timeout:g}s"}.get(
                failure, err.strerror or str(err))
            return Outcome(failure, text, local)
    finally:
        sock.close()


def _ping(pid: int, address: IPv4Address, timeout: float) -> Outcome:
    result = run(["ping", "-n", "-c", "1", "-W", str(max(1, round(timeout))), "-Q", str(DSCP << 2),
                  str(address)], netns=pid, check=False, timeout=timeout + 5)
    if result.returncode == 0:
        return Outcome("replied", "echo reply")
    text = result.stdout + result.stderr
    if "Unreachable" in text or "unreachable" in text:
        why = re.search(r"(Destination [A-Za-z ]+Unreachable|Packet filtered)", text)
        if why and "Port" in why.group(1):
            return Outcome("refused", why.group(1))
        return Outcome("unreachable", why.group(1) if why else "unreachable")
    return Outcome("timeout", f"no echo reply within {max(1, round(timeout))}s")


def _conntrack(pid: int, mark: int) -> list[dict]:
    """The connection's entries in this namespace: orig and reply tuples, and the raw line."""
    result = run(["conntrack", "-L", "--mark", str(mark)], netns=pid, check=False, timeout=10)
    out = []
    for line in result.stdout.splitlines():
        tuples = events.conntrack_tuples(line)
        if tuples is None:
            continue
        ends = [(f"{src}:{sport}", f"{dst}:{dport}") if sport is not None else (src, dst)
                for src, dst, sport, dport in tuples]
        out.append({"line": line.strip(), "orig": ends[0], "reply": ends[1]})
    return out


def _addresses(pid: int) -> set[str]:
    result = run(["ip", "-j", "-4", "addr"], netns=pid, check=False, timeout=10)
    try:
        return {a["local"] for link in json.loads(result.stdout or "[]")
                for a in link.get("addr_info", []) if a.get("local")}
    except (ValueError, KeyError, TypeError):
        return set()


def _rule_texts(host: _Host) -> None:
    """The iptables tables' rules this host's passes hit, as `iptables -S` shows them."""
    tables = {hit.table for p in host.passes for hit in p.hits
              if hit.family == "ip" and hit.table in IPTABLES_TABLES}
    for table in sorted(tables):
        listing = run(["nft", "-a", "list", "table", "ip", table], netns=host.pid, check=False,
                      timeout=10).stdout
        save = run(["iptables", "-t", table, "-S"], netns=host.pid, check=False, timeout=10).stdout
        for (chain, handle), text in iptables_texts(listing, save).items():
            host.texts[(table, chain, handle)] = text


def _route(pid: int, dst: str, src: str | None, iif: str | None) -> dict:
    argv = ["ip", "-j", "route", "get", dst]
    if src:
        argv += ["from", src]
    if iif:
        argv += ["iif", iif]
    result = run(argv, netns=pid, check=False, timeout=10)
    try:
        found = json.loads(result.stdout or "[]")
    except ValueError:
        found = []
    if not found:
        return {"text": (result.stderr or "no route").strip()}
    r = found[0]
    return {"text": _route_text(r), "gateway": r.get("gateway"),
            "dev": r.get("dev"), "type": r.get("type", "unicast")}


def _route_text(r: dict) -> str:
    """An `ip -j route get` answer as `ip route get` prints its first line (uid left out)."""
    words = [] if r.get("type", "unicast") == "unicast" else [r["type"]]
    words.append(r.get("dst", ""))
    for key, word in (("from", "from"), ("gateway", "via"), ("dev", "dev"), ("prefsrc", "src")):
        if r.get(key):
            words += [word, r[key]]
    return " ".join(words)


def _ip(addr: str) -> str:
    return addr.rsplit(":", 1)[0] if addr.count(".") == 3 and ":" in addr else addr


# -- putting it together ---------------------------------------------------------------------------

def _hit_json(host: _Host, hit: events.Hit) -> dict:
    if hit.policy:
        rule = (f"-P {hit.chain} {hit.verdict.upper()}" if hit.table in IPTABLES_TABLES
                else f"policy {hit.verdict}")
        return {"chain": hit.where, "rule": rule, "verdict": hit.verdict}
    text = host.texts.get((hit.table, hit.chain, hit.handle or -1)) or hit.rule
    return {"chain": hit.where, "rule": text, "verdict": hit.verdict}


def _pass(host: _Host, direction: str, src: str, dst: str, used: set[int]) -> events.Pass | None:
    """The first pass of `direction` in `host` not taken yet whose packet came in as src ->
    dst (any such pass when none matches exactly: ports can be missing from ICMP)."""
    wanted = {"reply", "related"} if direction == "reply" else {direction}
    fitting = [x for x in host.passes if x.direction in wanted and id(x) not in used]
    exact = [x for x in fitting if x.packets and (x.first.address("s"), x.first.address("d"))
             == (src, dst)]
    chosen = (exact or [x for x in fitting if x.packets and _ip(x.first.address("d")) == _ip(dst)]
              or [None])[0]
    if chosen is not None:
        used.add(id(chosen))
    return chosen


def _onward_pass(host: _Host, source_ip: str | None, used: set[int],
                 after: events.Pass | None = None) -> events.Pass | None:
    """A proxy's onward connection seen in `host`: the first request pass not taken yet, after
    the pass that reached the proxy (`after`), that began in the host's own output (source_ip
    None: the proxy runs in the host) or came in from `source_ip` (a proxy in a pod)."""
    start = next((i + 1 for i, x in enumerate(host.passes) if x is after), 0)
    for x in host.passes[start:]:
        if x.direction != "request" or id(x) in used or not x.packets:
            continue
        if (x.first.chain == "out" if source_ip is None else
                x.first.chain == "pre" and _ip(x.first.address("s")) == source_ip):
            used.add(id(x))
            return x
    return None


def _entry(host: _Host, src: str, dst: str) -> dict | None:
    """Conntrack's entry in `host` for the packet src -> dst as it came in."""
    return next((e for e in host.conntrack if e["orig"] == (src, dst)), None)


def _nat(p: events.Pass, entry: dict | None, reply: bool) -> list[dict]:
    """The rewrites conntrack made in this namespace, as the request or the reply saw them."""
    out = []
    rules = " ".join(h.rule for h in p.hits)
    if entry is not None:
        (osrc, odst), (rsrc, rdst) = entry["orig"], entry["reply"]
        if rsrc != odst:
            kind = "redirect" if "redirect" in rules else "dnat"
            out.append({"type": "un-dnat", "from": rsrc, "to": odst} if reply
                       else {"type": kind, "from": odst, "to": rsrc})
        if rdst != osrc:
            kind = "masquerade" if "masquerade" in rules else "snat"
            out.append({"type": "un-snat", "from": rdst, "to": osrc} if reply
                       else {"type": kind, "from": osrc, "to": rdst})
    elif not reply and p.packets:
        # No entry: conntrack never confirmed the connection here (it was dropped after its
        # DNAT). The DNAT rule it hit says where it was sent.
        target = events.dnat_target(p)
        if target:
            out.append({"type": "dnat", "from": p.first.address("d"), "to": target})
    return out


def _hop(host: _Host, p: events.Pass | None, entry: dict | None, reply: bool, route: dict | None,
         table: str) -> dict:
    hop = {"host": host.name, "kind": host.role, "in": None, "out": None, "bridgePort": None,
           "route": route.get("text") if route else None, "packet": None, "chains": [],
           "rules": [], "nat": [], "verdict": None}
    if p is None:
        return hop
    hop.update({"in": p.iif, "out": p.oif, "chains": p.chains(table),
                "rules": [_hit_json(host, h) for h in p.hits if h.table != table],
                "nat": _nat(p, entry, reply)})
    if p.packets:
        hop["packet"] = {"src": p.first.address("s"), "dst": p.first.address("d")}
    final = p.final()
    if final is not None:
        hop["verdict"] = "reject" if "reject" in final.rule or "reject" in final.verdict else "drop"
    elif p.local_in:
        hop["verdict"] = "accept"
    return hop


def _host_veths(cluster) -> dict[str, str]:
    """Pod UID -> its host-side veth, as its kubelet recorded the sandbox."""
    if cluster.cp is None:
        return {}
    return {uid: box.attachment.host_veth for uid, box in cluster.cp.sandboxes().items()
            if box.attachment is not None}


def _pod_hop(pod, veth: str | None, inbound: bool, route: dict | None = None,
             packet: dict | None = None) -> dict:
    return {"host": pod.key, "kind": "pod", "in": "eth0" if inbound else None,
            "out": None if inbound else "eth0",
            "bridgePort": {"in": None, "out": veth} if inbound else {"in": veth, "out": None},
            "route": route.get("text") if route else None, "packet": packet, "chains": [],
            "rules": [], "nat": [], "verdict": "accept" if inbound else None}


def _assemble(cluster, src, target: Resolved, protocol: str, hosts: dict[str, _Host], table: str,
              outcome: Outcome, onward: list[Onward] = ()) -> dict:
    pods = {str(p.ip): p for p in cluster.all_pods() if p.ip and p.pid}
    veths = _host_veths(cluster)
    owners: dict[str, str] = {}
    for host in hosts.values():
        for a in host.addresses:
            if not a.startswith("127."):
                owners.setdefault(a, host.name)
    dst = f"{target.address}:{target.port}" if target.port else str(target.address)
    source = outcome.local or str(src.address)
    if src.kind == "pod" and (_ip(dst).startswith("127.") or _ip(dst) == str(src.address)):
        # Container to container: the connection never leaves the namespace (lo).
        hop = {"host": src.name, "kind": src.kind, "in": "lo", "out": "lo", "bridgePort": None,
               "route": _route(src.pid, _ip(dst), None, None).get("text"),
               "packet": {"src": source, "dst": dst}, "chains": [], "rules": [], "nat": [],
               "verdict": "accept" if outcome.result in ("connected", "replied") else None}
        verdict = "delivered" if outcome.result in ("connected", "replied", "refused") else "dropped"
        return {"mode": "live", "from": src.name, "to": target.label, "protocol": protocol,
                "source": source, "destination": dst, "verdict": verdict, "cause": None,
                "endpoint": src.name, "conntrack": [], "hops": [hop], "reply": [dict(hop)],
                "outcome": outcome.text,
                "note": "the connection stayed in its own network namespace (over lo)"}
    hops: list[dict] = []
    visited: list[tuple[_Host, events.Pass, dict | None]] = []
    endpoint: str | None = None
    note = ""
    cur_src, cur_dst = source, dst
    if src.kind == "pod":
        pod = pods.get(str(src.address))
        route = _route(src.pid, _ip(cur_dst), _ip(cur_src), None)
        veth = veths.get(pod.uid) if pod else None
        hops.append(_pod_hop(pod or src, veth, False, route, {"src": cur_src, "dst": cur_dst})
                    if pod else {"host": src.name, "kind": "pod"})
        current = hosts.get(pod.node) if pod else None
        bridge_in = veth if pod else None
    else:
        current, bridge_in = hosts.get(src.name), None
    used: set[int] = set()
    for steps in range(25):
        if steps == 24:
            note = "the walk stopped after 24 hops (a routing loop?)"
            break
        if current is None:
            break
        p = _pass(current, "request", cur_src, cur_dst, used)
        if p is None:
            hops.append(_hop(current, None, None, False, None, table))
            note = f"the packet never showed up in {current.name}"
            break
        entry = _entry(current, cur_src, cur_dst)
        if entry is not None:
            cur_src, cur_dst = entry["reply"][1], entry["reply"][0]   # after this host's NAT
        route = None if p.local_in or p.final() else _route(
            current.pid, _ip(cur_dst), _ip(cur_src) if _ip(cur_src) not in current.addresses
            else None, p.iif if _ip(cur_src) not in current.addresses else None)
        hop = _hop(current, p, entry, False, route, table)
        hop["_visit"] = (current, p, entry)
        if bridge_in:
            hop["bridgePort"] = {"in": bridge_in, "out": None}
        hops.append(hop)
        visited.append((current, p, entry))
        bridge_in = None
        if hop["verdict"] in ("drop", "reject"):
            break
        if p.local_in:
            endpoint = current.name
            leg = _onward_pass(current, None, used, p)
            if leg is None:
                break
            # A proxy in the host (userspace kube-proxy) took it and connected on itself.
            hops.append({"host": f"kube-proxy@{current.name}", "kind": "proxy", "in": None,
                         "out": None, "bridgePort": None, "route": None,
                         "packet": {"src": cur_src, "dst": cur_dst}, "chains": [], "rules": [],
                         "nat": [], "verdict": None})
            cur_src, cur_dst = leg.first.address("s"), leg.first.address("d")
            used.discard(id(leg))
            endpoint = None
            continue
        if route is None or not route.get("dev"):
            note = f"no route from {current.name} to {_ip(cur_dst)}"
            break
        nexthop = route.get("gateway") or _ip(cur_dst)
        if route.get("type") == "local" or nexthop.startswith("127.") or \
                nexthop in current.addresses:
            continue        # to itself (over lo): it comes in again here, to be delivered
        pod = pods.get(nexthop)
        if pod is not None and pod.node == current.name:
            veth = veths.get(pod.uid)
            hop["bridgePort"] = {"in": (hop["bridgePort"] or {}).get("in"), "out": veth}
            hops.append(_pod_hop(pod, veth, True, None, {"src": cur_src, "dst": cur_dst}))
            endpoint = pod.key
            proxies = {a for o in onward if o.hook == "pre" for a in o.sources}
            leg = _onward_pass(current, str(pod.ip), used, p) if str(pod.ip) in proxies else None
            if leg is None:
                break
            # A proxy in the pod (the ingress controller) connected on: its next leg.
            hops[-1]["proxy"] = True
            hops[-1]["out"] = "eth0"
            hops[-1]["bridgePort"] = {"in": veth, "out": veth}
            cur_src, cur_dst = leg.first.address("s"), leg.first.address("d")
            used.discard(id(leg))
            bridge_in, endpoint = veth, None
            continue
        owner = owners.get(nexthop)
        if owner is None:
            note = f"{current.name} sent it to {nexthop}, which no host of the cluster holds"
            break
        current = hosts[owner]
    for hop in hops:
        ports = hop.get("bridgePort") or {}
        if hop["kind"] != "pod" and ports.get("in") and ports.get("in") == ports.get("out"):
            hop["hairpin"] = True     # back out of the bridge port it came in by
    verdict, cause = _verdict(hops, visited, outcome, endpoint)
    reply = _reply(hops, table) if verdict != "dropped" else []
    for hop in hops:
        hop.pop("_visit", None)
    conntrack = [f"{h.name}: {e['line']}" for h in hosts.values() for e in h.conntrack]
    result = {"mode": "live", "from": src.name, "to": target.label, "protocol": protocol,
              "source": source, "destination": dst, "verdict": verdict, "cause": cause,
              "endpoint": endpoint, "conntrack": conntrack, "hops": hops, "reply": reply,
              "outcome": outcome.text}
    if target.service:
        result["service"] = target.service
    if note:
        result["note"] = note
    return result


def _verdict(hops: list[dict], visited, outcome: Outcome, endpoint: str | None) -> tuple[str, dict | None]:
    for host, p, _ in visited:
        final = p.final()
        if final is not None:
            hop = next(h for h in reversed(hops) if h["host"] == host.name)
            rule = next((r for r in hop["rules"] if r["chain"] == final.where
                         and r["verdict"] == final.verdict), None)
            kind = hop["verdict"]
            cause = {"host": host.name, "chain": final.where,
                     "rule": rule["rule"] if rule else final.rule, "verdict": kind}
            return ("rejected" if kind == "reject" else "dropped"), cause
    if outcome.result in ("connected", "replied"):
        return "delivered", None
    if outcome.result == "refused" and endpoint:
        return "delivered", None     # the endpoint itself said no: nothing listens there
    if outcome.result in ("refused", "unreachable"):
        return "rejected", {"host": hops[-1]["host"] if hops else None, "chain": None,
                            "rule": outcome.text, "verdict": "reject"}
    return "dropped", None


def _reply(hops: list[dict], table: str) -> list[dict]:
    """The way back: the request's hops in reverse, each host with its reply pass, each pod
    and proxy as it was passed."""
    out: list[dict] = []
    used: set[int] = set()
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        if hop["kind"] == "proxy":
            out.append(dict(hop, packet=None))
            continue
        if hop["kind"] == "pod":
            ports = hop.get("bridgePort") or {}
            last, first = index == len(hops) - 1, index == 0
            out.append(dict(hop, route=None, packet=None, verdict="accept" if first else None,
                            bridgePort={"in": ports.get("out"), "out": ports.get("in")},
                            **{"in": None if last else "eth0", "out": None if first else "eth0"}))
            continue
        visit = hop.get("_visit")
        if visit is None:
            continue
        host, _, entry = visit
        if entry is not None:
            rsrc, rdst = entry["reply"]
            p = _pass(host, "reply", rsrc, rdst, used)
        else:
            p = _pass(host, "reply", "", "", used)
        if p is None:
            continue
        route = None
        if entry is not None and not p.local_in and _ip(entry["orig"][0]) not in host.addresses:
            to = _ip(entry["orig"][0])
            route = _route(host.pid, to, _ip(p.first.address("s")) if p.packets else None, p.iif)
        out.append(_hop(host, p, entry, True, route, table))
    return out


def static(cluster, source: str, to: str, port: int | None = None, protocol: str = "tcp",
           prefer_endpoint: str | None = None) -> dict:
    """What the rules the hosts hold now say would happen to that connection, sending nothing
    (testbed.trace.static over testbed.emu.trace_world's snapshot); FROM and TO as trace()."""
    from testbed.emu.trace_world import collect_world
    from testbed.trace import netfilter
    from testbed.trace.static import static_trace

    src = _source(cluster, source, port, protocol)
    try:
        target = resolve_target(cluster, to, port, protocol, src.kind)
        result = static_trace(collect_world(cluster), src.name, str(target.address), target.port,
                              protocol, prefer_endpoint)
    except netfilter.TraceError as err:
        raise TraceError(str(err)) from None
    except (CommandError, OSError, ApiError, KeyError, ValueError) as err:
        raise TraceError(f"the static trace failed: {err}") from None
    result.update({"from": src.name, "to": target.label})
    if target.service:
        result["service"] = target.service
    return result
