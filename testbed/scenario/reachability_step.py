"""Acts: carrying out a reachability step (testbed.scenario.reachability) on a running cluster.

Every cell (source x destination x port) is probed at once, each from a thread with a socket
made in the source's network namespace (testbed.emu.probes: a TCP or SCTP connect, a UDP
datagram that must be answered, as agnhost serve-hostname --udp answers, or an ICMP echo), so
that a 10x10 matrix on two ports with 1 s timeouts takes about a second. The observed table of
each port is judged against the step's one expected table (testbed.scenario.truthtable); with
`retryFor`, the cells that disagree are probed again until they agree or the time is up.

What upstream's PrintSummary logs (summary, expected, observed, comparison) goes to the
progress output, and into the step's details for the JSON report (`tables`, with the
matrices and the mismatches as data) and the JUnit report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address

from testbed.api.meta import selector_matches
from testbed.emu.probes import ERROR, Observation, connects, probe_icmp, probe_sctp, probe_udp
from testbed.scenario.reachability import PortSpec, Reachability
from testbed.scenario.truthtable import (
    Judgement,
    Member,
    Table,
    compare,
    expected_table,
    judge,
    loopback_cells,
    pretty,
    report,
)

MAX_THREADS = 256       # cells probed at once; more wait for a free thread
RETRY_PAUSE = 0.25      # seconds between rounds of re-probing the cells that disagree
UDP_PAYLOAD = "hostname"


@dataclass(frozen=True)
class Located:
    """A source or destination found on the running cluster: who, where to act from, its IP."""

    member: Member
    pid: int | None
    address: IPv4Address | None
    problem: str = ""       # why it cannot take part (not found, no sandbox, no IP)


def locate(cluster, names: tuple[str, ...], views: dict) -> list[Located]:
    """The step's names on the cluster, pods from one listing (`views`)."""
    out = []
    for text in names:
        try:
            pod = cluster.find_pod(text, views)
        except KeyError as err:
            out.append(Located(Member(text, text), None, None, str(err.args[0])))
            continue
        if pod is not None:
            member = Member(text, pod.name, pod.namespace)
            problem = "" if pod.pid else f"{pod.key} has no running sandbox"
            out.append(Located(member, pod.pid, pod.ip, problem))
            continue
        host = cluster.network.hosts.get(text) if cluster.network is not None else None
        if host is not None:
            out.append(Located(Member(text, text), host.pid, host.address))
            continue
        namespace, _, name = text.rpartition("/")
        out.append(Located(Member(text, name, namespace or None), None, None, f"no pod {text}"))
    return out


Targets = dict[tuple[int, PortSpec], tuple[IPv4Address, int] | str]


def service_targets(cluster, destinations: list[Located], ports: tuple[PortSpec, ...],
                    views: dict) -> Targets:
    """via: service: for each destination and port, the ClusterIP and port of a Service of the
    destination's namespace that selects it alone and serves that protocol and port (upstream's
    netpol prober connects to the pod's own Service, s-NS-POD: through a Service of several
    pods, the cell would be judged for whichever one answered), or why there is none.
    `views`: the pods of the step's one listing, with their labels."""
    out: Targets = {}
    by_namespace: dict[str, list[dict]] = {}
    for j, d in enumerate(destinations):
        namespace = d.member.namespace
        if d.problem or namespace is None:
            continue
        if namespace not in by_namespace:
            by_namespace[namespace] = cluster.client.list("Service", namespace)[0]
        chosen: dict[PortSpec, tuple[IPv4Address, int]] = {}
        for svc in by_namespace[namespace]:
            spec = svc.get("spec") or {}
            selector, ip = spec.get("selector") or {}, spec.get("clusterIP")
            if not selector or not ip or ip == "None":
                continue
            selected = {v.name for v in views.values()
                        if v.namespace == namespace and selector_matches(selector, v.labels)}
            if selected != {d.member.name}:
                continue          # upstream's s-NS-POD selects its pod alone
            for port in ports:
                if port not in chosen and any(
                        int(sp.get("port", 0)) == port.port
                        and str(sp.get("protocol") or "TCP").lower() == port.protocol
                        for sp in spec.get("ports") or []):
                    chosen[port] = (IPv4Address(ip), int(port.port))
        for port in ports:
            out[(j, port)] = chosen.get(port) or (
                f"no Service of namespace {namespace} selects {d.member.label} alone with a "
                f"{port.protocol.upper()} port {port.port}")
    return out


def probe_cell(port: PortSpec, source: Located, destination: Located, timeout: float,
               target: tuple[IPv4Address, int] | str | None = None) -> Observation:
    """One cell: can `source` reach `destination`'s pod IP on `port` (or, via a Service,
    `target`: its address and port, or why there is none)?"""
    if source.problem or source.pid is None:
        return Observation(False, source.problem or "no namespace", failure=ERROR)
    if destination.problem or destination.address is None:
        return Observation(False, destination.problem or f"{destination.member.label} has no IP",
                           failure=ERROR)
    if isinstance(target, str):
        return Observation(False, target, failure=ERROR)
    pid, address = source.pid, destination.address
    if target is not None:
        address, service_port = target
        port = PortSpec(port.protocol, service_port)
    if port.protocol == "icmp":
        return probe_icmp(pid, address, timeout)
    if port.protocol == "udp":
        return probe_udp(pid, address, port.port, UDP_PAYLOAD, timeout)
    if port.protocol == "sctp":
        return probe_sctp(pid, address, port.port, timeout)
    return connects(pid, address, port.port, timeout)


Cell = tuple[PortSpec, int, int]   # port, source index, destination index


def probe_cells(cells: list[Cell], sources: list[Located], destinations: list[Located],
                timeout: float, targets: Targets | None = None) -> dict[Cell, Observation]:
    """Every cell at once, from threads (`targets`: the Services of a step via service)."""
    if not cells:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(cells), MAX_THREADS)) as pool:
        found = pool.map(lambda c: probe_cell(c[0], sources[c[1]], destinations[c[2]], timeout,
                                              None if targets is None else targets[(c[2], c[0])]),
                         cells)
        return dict(zip(cells, found, strict=True))


def run_reachability(cluster, step: Reachability,
                     progress: Callable[[str], None]) -> tuple[bool, str, str, dict]:
    """Probe, judge (re-probing what disagrees while retryFor lasts), print; (passed, what was
    expected, what was observed, details), an Outcome's fields."""
    started = time.monotonic()
    views = cluster.pod_views()
    sources = locate(cluster, step.sources, views)
    destinations = sources if step.shorthand else locate(cluster, step.destinations, views)
    froms = [s.member for s in sources]
    tos = [d.member for d in destinations]
    expected = expected_table(froms, tos, step.expect.default, step.expect.exceptions,
                              step.expect.matrix)
    ignored = frozenset() if step.check_loopback else loopback_cells(froms, tos)
    cells = [(port, i, j) for port in step.ports for i in range(len(sources))
             for j in range(len(destinations))]
    index_from = {m.label: i for i, m in enumerate(froms)}
    index_to = {m.label: j for j, m in enumerate(tos)}
    targets = service_targets(cluster, destinations, step.ports, views) \
        if step.via == "service" else None
    seen = probe_cells(cells, sources, destinations, step.timeout, targets)
    rounds = 1
    deadline = started + step.retry_for
    while True:
        observed = {port: _observed(port, seen, froms, tos) for port in step.ports}
        judged = {port: judge(expected, observed[port], ignored) for port in step.ports}
        wrong = [(port, index_from[f], index_to[t])
                 for port, j in judged.items() for f, t in j.mismatches]
        if not wrong or time.monotonic() + RETRY_PAUSE >= deadline:
            break
        time.sleep(RETRY_PAUSE)
        rounds += 1
        seen.update(probe_cells(wrong, sources, destinations, step.timeout, targets))
    tables = "\n\n".join(report(expected, observed[port], judged[port], str(port))
                         for port in step.ports)
    for line in tables.splitlines():
        progress("    " + line if line else "")
    details = _details(step, expected, observed, judged, seen, froms, tos, rounds, tables,
                       _addresses(destinations, step.ports, targets))
    passed = all(j.passed for j in judged.values())
    return passed, _expectation(step), _observed_text(judged, details, rounds), details


def _observed(port: PortSpec, seen: dict[Cell, Observation], froms: list[Member],
              tos: list[Member]) -> Table:
    values = {(froms[i].label, tos[j].label): obs.reachable
              for (p, i, j), obs in seen.items() if p == port}
    return Table(tuple(m.label for m in froms), tuple(m.label for m in tos), values)


def _expectation(step: Reachability) -> str:
    via = " through Services" if step.via == "service" else ""
    return f"{step.expect.describe()} on {', '.join(map(str, step.ports))}{via}"


def _observed_text(judged: dict[PortSpec, Judgement], details: dict,
                   rounds: int) -> str:
    total = sum(j.correct + j.incorrect for j in judged.values())
    ignored = sum(j.ignored for j in judged.values())
    after = f" after {rounds} rounds" if rounds > 1 else ""
    skipped = f" ({ignored} loopback cells not judged)" if ignored else ""
    if not details["mismatches"]:
        return f"all {total} cells as expected{skipped}{after}"
    shown = [f"{m['from']} -> {m['to']} on {m['port']} "
             + ("allowed, expected denied" if m["observed"] else "denied, expected allowed")
             for m in details["mismatches"][:3]]
    more = len(details["mismatches"]) - len(shown)
    return (f"{len(details['mismatches'])} of {total} cells wrong{after}: {'; '.join(shown)}"
            + (f"; {more} more" if more > 0 else ""))


def _addresses(destinations: list[Located], ports: tuple[PortSpec, ...],
               targets: Targets | None) -> dict[tuple[str, PortSpec], str]:
    """(destination label, port) -> the address the cell probed: the pod's IP and port, or the
    ClusterIP and port of its Service (via: service); a trace of a wrong cell goes there."""
    out = {}
    for j, d in enumerate(destinations):
        for port in ports:
            target = None if targets is None else targets.get((j, port))
            if isinstance(target, tuple):
                out[(d.member.label, port)] = f"{target[0]}:{target[1]}"
            elif targets is None and d.address is not None:
                out[(d.member.label, port)] = (str(d.address) if port.port is None
                                               else f"{d.address}:{port.port}")
    return out


def _details(step: Reachability, expected: Table, observed: dict[PortSpec, Table],
             judged: dict[PortSpec, Judgement], seen: dict[Cell, Observation],
             froms: list[Member], tos: list[Member], rounds: int, tables: str,
             addresses: dict[tuple[str, PortSpec], str] | None = None) -> dict:
    """The JSON report's view: the matrices in upstream's layout, the mismatches as data."""
    index_from = {m.label: i for i, m in enumerate(froms)}
    index_to = {m.label: j for j, m in enumerate(tos)}
    mismatches = []
    for port, j in judged.items():
        for f, t in j.mismatches:
            obs = seen[(port, index_from[f], index_to[t])]
            want = expected.get(f, t)
            mismatches.append({
                "port": str(port), "from": f, "to": t, "expected": want, "observed": obs.reachable,
                "detail": obs.text, "failure": obs.failure,
                "address": (addresses or {}).get((t, port)),
                "why": ("Expected allowed pod connection was instead BLOCKED" if want else
                        "Expected blocked pod connection was instead ALLOWED")})
    return {
        "from": [m.label for m in froms], "to": [m.label for m in tos],
        "ports": [str(p) for p in step.ports], "via": step.via, "expected": pretty(expected),
        "observed": {str(p): pretty(t) for p, t in observed.items()},
        "comparison": {str(p): pretty(compare(expected, t)) for p, t in observed.items()},
        "correct": sum(j.correct for j in judged.values()),
        "incorrect": sum(j.incorrect for j in judged.values()),
        "ignored": sum(j.ignored for j in judged.values()),
        "mismatches": mismatches, "rounds": rounds, "tables": tables,
    }

