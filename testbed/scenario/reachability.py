"""Pure: the `reachability` step of a scenario, read and checked when the scenario is loaded.

    - name: x/a only from x/b
      reachability:
        pods: [x/a, x/b, x/c, y/a]     # from = to = these pods
        # or from: [x/a, client, w1]   (pods, nodes, the gateway, clients)
        #    to: [x/a, y/b]            (pods, probed at their pod IP)
        ports: [tcp/80, udp/81]        # PROTO/PORT (tcp, udp, sctp); a bare number is tcp; icmp
        timeout: 1                     # per probe, seconds (default 1)
        retryFor: 5                    # re-probe mismatching cells until they match (default 0)
        loopback: ignore               # pod -> itself: probed and shown, not judged; or check
        via: pod                       # or service: each destination through a Service that
                                       # selects it (its ClusterIP and the probed port), as
                                       # upstream's netpol prober connects to s-NS-POD
      expect:
        allow: all                     # or deny: all
        except: ["x/b -> x/a", "y/* -> x/a", "* -> z/c"]
      # or expect: {matrix: "<a table in upstream's PrettyPrint layout>"}

Every source, destination and port is probed, all cells at once, and the observed table of
each port is compared with the one expected table, as upstream's NetworkPolicy e2e tests
compare theirs (testbed.scenario.truthtable). Pods are NAMESPACE/NAME, or a bare NAME when
only one namespace has a pod of that name (testbed.scenario.preflight checks the names against
the manifests, and that a machine without SCTP gets no SCTP port).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.scenario.actions import DAY, MAX_SECONDS
from testbed.scenario.truthtable import (
    ARROW,
    MatrixError,
    Peer,
    Table,
    parse_matrix,
    parse_pair,
)
from testbed.spec.source import Path_
from testbed.spec.validation import Checker, is_dns1123_label, is_dns1123_subdomain

PROTOCOLS = ("tcp", "udp", "sctp")
ICMP = "icmp"
REACHABILITY_KEYS = {"pods", "from", "to", "ports", "timeout", "retryFor", "loopback", "via"}
VIA = ("pod", "service")
EXPECT_FORMS = ("allow", "deny", "matrix")
LOOPBACK = ("ignore", "check")
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class PortSpec:
    protocol: str           # tcp, udp, sctp or icmp
    port: int | None = None

    def __str__(self) -> str:
        return self.protocol if self.port is None else f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class Expectation:
    """Everything allowed (default True) or denied (False) but the `exceptions`' pairs, or the
    cells of `matrix`."""

    default: bool | None = True
    exceptions: tuple[tuple[Peer, Peer], ...] = ()
    matrix: Table | None = None

    def describe(self) -> str:
        if self.matrix is not None:
            return "the matrix"
        text = "all allowed" if self.default else "all denied"
        if self.exceptions:
            pairs = ", ".join(f"{a} {ARROW} {b}" for a, b in self.exceptions)
            text += f" except {pairs}"
        return text


@dataclass(frozen=True)
class Reachability:
    sources: tuple[str, ...]          # as written: NS/NAME, a bare pod name, a node or client
    destinations: tuple[str, ...]     # pods
    ports: tuple[PortSpec, ...]
    expect: Expectation
    timeout: float = DEFAULT_TIMEOUT
    retry_for: float = 0.0
    check_loopback: bool = False
    shorthand: bool = False           # written as pods: (sources and destinations alike)
    via: str = "pod"                  # pod: the pod's IP; service: a Service selecting it

    def describe(self) -> str:
        ports = ",".join(map(str, self.ports))
        return f"reachability {len(self.sources)}x{len(self.destinations)} {ports}"

    def cells(self) -> int:
        return len(self.sources) * len(self.destinations) * len(self.ports)

    def field(self, destination: bool) -> str:
        """The field that names the sources (False) or the destinations (True)."""
        return "pods" if self.shorthand else "to" if destination else "from"


def parse_reachability(ck: Checker, path: Path_, raw: dict) -> Reachability | None:
    """The step `raw` (with `reachability` and `expect`), or None after recording problems."""
    before = len(ck.problems)
    where = path + ("reachability",)
    m = ck.fields(where, raw["reachability"], REACHABILITY_KEYS)
    if m is None:
        return None
    sources, destinations = _members(ck, where, m)
    ports = _ports(ck, where + ("ports",), m.get("ports"))
    timeout = ck.number(m, "timeout", where, minimum=0.1, default=DEFAULT_TIMEOUT,
                        maximum=MAX_SECONDS, unit=DAY)
    retry_for = ck.number(m, "retryFor", where, default=0.0, maximum=MAX_SECONDS, unit=DAY)
    loopback = ck.enum(m, "loopback", where, list(LOOPBACK)) if m.get("loopback") is not None \
        else "ignore"
    via = ck.enum(m, "via", where, list(VIA)) if m.get("via") is not None else "pod"
    if via == "service" and any(p.protocol == ICMP for p in ports):
        ck.invalid(where + ("via",), via, "icmp cannot go through a Service (a ClusterIP "
                                          "answers no ping): probe icmp with via: pod")
    expect = None
    if raw.get("expect") is None:
        ck.required(path + ("expect",), "allow: all or deny: all (with except), or a matrix")
    else:
        expect = _expectation(ck, path + ("expect",), raw["expect"], sources, destinations)
    if len(ck.problems) > before or expect is None or timeout is None or retry_for is None:
        return None
    return Reachability(sources, destinations, ports, expect, timeout, retry_for,
                        loopback == "check", "pods" in m, via or "pod")


def _members(ck: Checker, where: Path_, m: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sources, destinations): `pods` for both, or `from` and `to`."""
    if "pods" in m:
        for key in ("from", "to"):
            if key in m:
                ck.forbidden(where + (key,), "pods names both the sources and the "
                                             "destinations: give pods, or from and to")
        pods = _names(ck, where + ("pods",), m["pods"])
        return pods, pods
    if "from" not in m and "to" not in m:
        ck.required(where + ("pods",), "the pods to probe between (or from and to)")
        return (), ()
    return (_names(ck, where + ("from",), m.get("from")),
            _names(ck, where + ("to",), m.get("to")))


def _names(ck: Checker, path: Path_, raw: Any) -> tuple[str, ...]:
    if raw is None or raw == []:
        ck.required(path, "a list of NAMESPACE/NAME pods (or NAME when unambiguous)")
        return ()
    if not ck.is_type(path, raw, "array"):
        return ()
    out: list[str] = []
    for i, item in enumerate(raw):
        if not ck.is_type(path + (i,), item, "string") or not name_ok(ck, path + (i,), item):
            continue
        if item in out:
            ck.duplicate(path + (i,), item)
            continue
        out.append(item)
    return tuple(out)


def name_ok(ck: Checker, path: Path_, text: str) -> bool:
    """NAMESPACE/NAME (a DNS label and a DNS subdomain), or a bare NAME."""
    namespace, slash, name = text.rpartition("/")
    ok = ck.names(path, text, [f"name part: {e}" for e in is_dns1123_subdomain(name)]) \
        if name else ck.names(path, text, ["must be NAMESPACE/NAME or NAME"])
    if slash:
        ok = ck.names(path, text, [f"namespace part: {e}" for e in is_dns1123_label(namespace)]) \
            and ok
    return ok


def _ports(ck: Checker, path: Path_, raw: Any) -> tuple[PortSpec, ...]:
    if raw is None or raw == []:
        ck.required(path, "e.g. [tcp/80, udp/80, icmp]")
        return ()
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        items = [(path, raw)]            # one port, written without brackets
    elif ck.is_type(path, raw, "array"):
        items = [(path + (i,), item) for i, item in enumerate(raw)]
    else:
        return ()
    out: list[PortSpec] = []
    for where, item in items:
        spec = parse_port(item)
        if isinstance(spec, str):
            ck.invalid(where, item, spec)
        elif spec in out:
            ck.duplicate(where, item)
        else:
            out.append(spec)
    return tuple(out)


def parse_port(raw: Any) -> PortSpec | str:
    """tcp/80, udp/53, sctp/80, 80 (tcp), icmp -> PortSpec; a string saying why not."""
    usage = "must be PROTOCOL/PORT (tcp, udp or sctp, and a port from 1 to 65535), a port " \
            "number (tcp), or icmp"
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        return usage
    text = str(raw).strip()
    if text.lower() == ICMP:
        return PortSpec(ICMP)
    protocol, slash, number = text.rpartition("/")
    protocol = protocol.lower() if slash else "tcp"
    if protocol not in PROTOCOLS:
        return f"unsupported protocol {protocol!r}: {usage}"
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        return f"the port must be between 1 and 65535, inclusive: {usage}"
    return PortSpec(protocol, int(number))


def _expectation(ck: Checker, path: Path_, raw: Any, sources: tuple[str, ...],
                 destinations: tuple[str, ...]) -> Expectation | None:
    m = ck.fields(path, raw, {*EXPECT_FORMS, "except"})
    if m is None:
        return None
    forms = [k for k in EXPECT_FORMS if k in m]
    if len(forms) != 1:
        if forms:
            ck.forbidden(path, f"one of allow, deny or matrix, not {' and '.join(forms)}")
        else:
            ck.required(path, "one of allow: all, deny: all or matrix")
        return None
    form = forms[0]
    if form == "matrix":
        if "except" in m:
            ck.forbidden(path + ("except",), "a matrix names every cell; except goes with "
                                             "allow: all or deny: all")
            return None
        table = _matrix(ck, path + ("matrix",), m["matrix"], sources, destinations)
        return None if table is None else Expectation(None, (), table)
    if m[form] != "all":
        ck.unsupported(path + (form,), m[form], ["all"])
        return None
    exceptions = _exceptions(ck, path + ("except",), m.get("except"))
    return None if exceptions is None else Expectation(form == "allow", exceptions)


def _exceptions(ck: Checker, path: Path_, raw: Any) -> tuple[tuple[Peer, Peer], ...] | None:
    if raw is None:
        return ()
    if isinstance(raw, str):
        items = [(path, raw)]            # one pair, written without brackets
    elif ck.is_type(path, raw, "array"):
        items = [(path + (i,), item) for i, item in enumerate(raw)]
    else:
        return None
    before = len(ck.problems)
    out: list[tuple[Peer, Peer]] = []
    for where, item in items:
        if not ck.is_type(where, item, "string"):
            continue
        try:
            pair = parse_pair(item)
        except ValueError as err:
            ck.invalid(where, item, str(err))
            continue
        for peer in pair:
            if peer.namespace:
                ck.names(where, item, [f"namespace {peer.namespace!r}: {e}"
                                       for e in is_dns1123_label(peer.namespace)])
            if peer.name:
                ck.names(where, item, [f"name {peer.name!r}: {e}"
                                       for e in is_dns1123_subdomain(peer.name)])
        out.append(pair)
    return tuple(out) if len(ck.problems) == before else None


def _matrix(ck: Checker, path: Path_, raw: Any, sources: tuple[str, ...],
            destinations: tuple[str, ...]) -> Table | None:
    if not ck.is_type(path, raw, "string"):
        return None
    try:
        table = parse_matrix(raw)
    except MatrixError as err:
        ck.invalid(path, err.line, err.detail)
        return None
    ok = True
    for what, named, wanted in (("rows (sources)", table.froms, sources),
                                ("columns (destinations)", table.tos, destinations)):
        if not wanted:
            continue   # the step's own lists are wrong: reported there
        missing = [n for n in wanted if n not in named]
        strangers = [n for n in named if n not in wanted]
        if missing or strangers:
            ok = False
            detail = [f"lacks {', '.join(missing)}"] if missing else []
            detail += [f"names {', '.join(strangers)}, not in the step"] if strangers else []
            ck.invalid(path, " ".join(named), f"the matrix's {what} must be the step's "
                                              f"{', '.join(wanted)}: it {'; it '.join(detail)}")
    return table if ok else None
