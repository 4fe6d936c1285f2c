"""Pure: the `trace` step of a scenario, read and checked at load and judged against a trace
(testbed.scenario.steps takes it, through testbed.emu.tracing).

    - name: "4. pod to Service: DNAT to the endpoint on node2"
      trace:
        from: client-1
        to: service-test            # a pod, Service, IP, NODE:PORT, LoadBalancer IP, Ingress host
        port: 80                    # optional (a Service's first port; NAME:PORT works too)
        protocol: tcp               # tcp (default), udp, icmp
        timeout: 2                  # seconds to wait for an answer
      expect:
        verdict: delivered          # delivered, dropped or rejected
        hosts: [client-1, node1, gateway, node2, "default/service-test-*"]   # in order, all of them
        chains: [nat/KUBE-SERVICES, "nat/KUBE-SVC-*", "nat/KUBE-SEP-*"]      # hit in this order
        chain: filter/KUBE-SERVICES # one chain hit (anywhere on the way there)
        dnat: 10.0.2.3:8080         # or an IP, or a pod (NAMESPACE/NAME, a glob): the DNAT target
        sourceIP: kept              # the endpoint sees the client's own address; masqueraded:
                                    # another one; or that IP (or name's address)
        static: agree               # a static trace (the rules alone) finds the same path

Names in `hosts` and pods in `dnat` are glob patterns (fnmatch) over the trace's host names
(pods as NAMESPACE/NAME; a bare NAME matches a pod of that name in any namespace); a chain is
"TABLE/CHAIN" or just "CHAIN", also a glob.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from testbed.spec.source import Path_
from testbed.spec.validation import Checker

TRACE_KEYS = {"from", "to", "port", "protocol", "timeout"}
EXPECT_KEYS = {"verdict", "hosts", "chains", "chain", "dnat", "sourceIP", "static"}
VERDICTS = ["delivered", "dropped", "rejected"]
PROTOCOLS = ["tcp", "udp", "icmp"]


@dataclass(frozen=True)
class TraceExpect:
    verdict: str | None = None
    hosts: tuple[str, ...] | None = None
    chains: tuple[str, ...] = ()
    chain: str | None = None           # hit anywhere on the way there
    dnat: str | None = None
    source_ip: str | None = None       # "kept", an IP or a name
    static: bool = False

    def describe(self) -> str:
        parts = [self.verdict or "traced"]
        if self.hosts is not None:
            parts.append("via " + " -> ".join(self.hosts))
        if self.chains:
            parts.append("hits " + ", ".join(self.chains))
        if self.chain:
            parts.append(f"hits {self.chain}")
        if self.dnat:
            parts.append(f"DNAT to {self.dnat}")
        if self.source_ip:
            parts.append({"kept": "source IP kept", "masqueraded": "source IP masqueraded"}.get(
                self.source_ip, f"source {self.source_ip}"))
        if self.static:
            parts.append("the static trace agrees")
        return ", ".join(parts)


@dataclass(frozen=True)
class TraceStep:
    source: str
    target: Any           # a name, IP or NAME:PORT; or a Service target (testbed.scenario.spec)
    port: int | None
    protocol: str
    timeout: float
    expect: TraceExpect

    def describe(self) -> str:
        port = f":{self.port}" if self.port else ""
        if not isinstance(self.target, str):
            return f"trace {self.protocol} {self.source} -> {self.target.service} ({self.target.via})"
        return f"trace {self.protocol} {self.source} -> {self.target}{port}"


def parse_trace(ck: Checker, path: Path_, raw: dict, service_target=None) -> TraceStep | None:
    """The step; `service_target(ck, path, kind, raw)` reads a `to:` mapping as a probe's
    (`{service: NAME, nodePort: PORT, node: NODE}` or `{service: NAME, loadBalancer: PORT}`)."""
    before = len(ck.problems)
    where = path + ("trace",)
    t = ck.fields(where, raw.get("trace"), TRACE_KEYS)
    if t is None:
        return None
    source = ck.string(t, "from", where, required=True)
    protocol = ck.enum(t, "protocol", where, PROTOCOLS, default="tcp")
    if isinstance(t.get("to"), dict) and service_target is not None:
        target = service_target(ck, where + ("to",), protocol or "tcp", t["to"])
        if t.get("port") is not None:
            ck.forbidden(where + ("port",), "a Service target names its port itself")
    else:
        target = ck.string(t, "to", where, required=True)
        if isinstance(target, str) and ":" in target:
            port_text = target.rpartition(":")[2]
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                ck.invalid(where + ("to",), target, "the port after ':' must be between 1 and "
                                                   "65535, inclusive")
    for key, value in (("from", source), ("to", target if isinstance(target, str) else None)):
        if isinstance(value, str) and (not value.isprintable() or any(c.isspace() for c in value)):
            ck.invalid(where + (key,), value, "must hold no spaces or control characters")
    port = ck.port(t, "port", where)
    timeout = ck.number(t, "timeout", where, minimum=0, above=True, default=2.0, maximum=60,
                        unit=" seconds")
    if protocol == "icmp" and t.get("port") is not None:
        ck.forbidden(where + ("port",), "an icmp trace takes no port")
    expect = _expect(ck, path + ("expect",), raw.get("expect"))
    if len(ck.problems) > before or source is None or target is None or expect is None:
        return None
    return TraceStep(source, target, port, protocol or "tcp", timeout or 2.0, expect)


def _expect(ck: Checker, where: Path_, raw: Any) -> TraceExpect | None:
    if raw is None:
        return TraceExpect()
    e = ck.fields(where, raw, EXPECT_KEYS)
    if e is None:
        return None
    verdict = ck.enum(e, "verdict", where, VERDICTS)
    hosts = None
    if "hosts" in e:
        hosts = tuple(ck.string_list(e, "hosts", where))
        if not hosts:
            ck.invalid(where + ("hosts",), e["hosts"], "must name the hosts passed, in order")
    chains = list(ck.string_list(e, "chains", where)) if "chains" in e else []
    chain = ck.string(e, "chain", where, required=True) if "chain" in e else None
    dnat = ck.string(e, "dnat", where)
    source_ip = ck.string(e, "sourceIP", where)
    static = e.get("static")
    if static is not None and static != "agree":
        ck.unsupported(where + ("static",), static, ["agree"])
    return TraceExpect(verdict, hosts, tuple(chains), chain, dnat, source_ip, static == "agree")


# -- judging --------------------------------------------------------------------------------------

def host_matches(pattern: str, host: str) -> bool:
    if fnmatchcase(host, pattern):
        return True
    return "/" in host and "/" not in pattern and fnmatchcase(host.split("/", 1)[1], pattern)


def chain_matches(pattern: str, chain: str) -> bool:
    return fnmatchcase(chain, pattern) or ("/" not in pattern
                                           and fnmatchcase(chain.split("/", 1)[-1], pattern))


def hosts_of(trace: dict) -> list[str]:
    return [h["host"] for h in trace.get("hops", [])]


def chains_of(trace: dict) -> list[str]:
    return [c for h in trace.get("hops", []) for c in h.get("chains", [])]


def dnat_targets(trace: dict) -> list[str]:
    return [n["to"] for h in trace.get("hops", []) for n in h.get("nat", []) if n["type"] == "dnat"]


def source_seen(trace: dict) -> str | None:
    """The source address as the last hop (the endpoint) saw it."""
    hops = trace.get("hops", [])
    packet = next((h.get("packet") for h in reversed(hops) if h.get("packet")), None)
    if not packet:
        return None
    src = packet["src"]
    return src.rsplit(":", 1)[0] if src.count(":") == 1 else src


def _in_order(patterns: tuple[str, ...], chains: list[str]) -> str | None:
    """None when `patterns` are hit in this order, else which was not."""
    at = 0
    for pattern in patterns:
        while at < len(chains) and not chain_matches(pattern, chains[at]):
            at += 1
        if at == len(chains):
            hit = any(chain_matches(pattern, c) for c in chains)
            return f"{pattern} was {'hit, but out of order' if hit else 'not hit'}"
        at += 1
    return None


def judge(expect: TraceExpect, trace: dict, addresses: dict[str, str] | None = None,
          pods_at: dict[str, str] | None = None, static: dict | None = None) -> list[str]:
    """What of `expect` the trace does not bear out (empty: all of it). `addresses` maps names
    to IPs (for sourceIP by name), `pods_at` IPs to pod keys (for dnat by pod)."""
    wrong = []
    if expect.verdict and trace["verdict"] != expect.verdict:
        cause = trace.get("cause") or {}
        at = f" at {cause.get('host')} {cause.get('chain') or ''}".rstrip() if cause else ""
        wrong.append(f"verdict {trace['verdict']}{at}, not {expect.verdict}")
    hosts = hosts_of(trace)
    if expect.hosts is not None and (len(hosts) != len(expect.hosts) or not all(
            host_matches(p, h) for p, h in zip(expect.hosts, hosts, strict=False))):
        wrong.append(f"passed {' -> '.join(hosts)}")
    missing = _in_order(expect.chains, chains_of(trace))
    if missing:
        wrong.append(missing)
    if expect.chain and not any(chain_matches(expect.chain, c) for c in chains_of(trace)):
        wrong.append(f"{expect.chain} was not hit")
    if expect.dnat:
        targets = dnat_targets(trace)
        pods = [(pods_at or {}).get(t.rsplit(":", 1)[0], "") for t in targets]
        if not any(t == expect.dnat or t.rsplit(":", 1)[0] == expect.dnat
                   or (p and host_matches(expect.dnat, p)) for t, p in zip(targets, pods, strict=True)):
            wrong.append(f"DNAT to {', '.join(targets) or 'nothing'}, not {expect.dnat}")
    if expect.source_ip:
        seen = source_seen(trace)
        client = trace.get("source", "").rsplit(":", 1)[0]
        if seen is None:
            wrong.append("no hop shows the address the endpoint saw")
        elif expect.source_ip == "masqueraded":
            if seen == client:
                wrong.append(f"the endpoint saw the client's own address {seen}")
        else:
            want = (client if expect.source_ip == "kept"
                    else (addresses or {}).get(expect.source_ip, expect.source_ip))
            if seen != want:
                wrong.append(f"the endpoint saw {seen}, not {want}")
    if expect.static and static is not None:
        wrong.extend(differences(trace, static))
    return wrong


def differences(live: dict, static: dict) -> list[str]:
    """Where the static trace disagrees with the live one: the verdict, the hosts, the nat
    chains, the endpoint (the live one must be among the static trace's possible ones)."""
    out = []
    if live["verdict"] != static["verdict"]:
        out.append(f"static verdict {static['verdict']}, live {live['verdict']}")
    if hosts_of(live) != hosts_of(static):
        out.append(f"static hosts {' -> '.join(hosts_of(static))}, live "
                   f"{' -> '.join(hosts_of(live))}")
    nat_live = [c for c in chains_of(live) if c.startswith(("nat/", "kube-proxy/"))]
    nat_static = [c for c in chains_of(static) if c.startswith(("nat/", "kube-proxy/"))]
    if _squeeze(nat_live) != _squeeze(nat_static):
        out.append(f"static nat chains {', '.join(nat_static)}; live {', '.join(nat_live)}")
    live_targets = dnat_targets(live)
    possible = static.get("endpoints") or dnat_targets(static)
    if live_targets and possible and not set(live_targets) <= set(possible):
        out.append(f"live DNAT to {', '.join(live_targets)}, static allows {', '.join(possible)}")
    return out


def _squeeze(chains: list[str]) -> list[str]:
    """Chains without the returns to a chain already listed (a -> b -> a is a -> b)."""
    out: list[str] = []
    for c in chains:
        if c not in out:
            out.append(c)
    return out
