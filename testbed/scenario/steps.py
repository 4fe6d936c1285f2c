"""Acts: carrying out one scenario step on a running cluster, and judging what it observed.

`execute(cluster, step, objects, progress)` returns an Outcome: passed or not, what was
expected, what was observed (in words a person reads in the report), and details for the
JSON report. Probes run `tries` times and, with `retryFor`, again until they pass or the time
is up; a `backends` expectation compares the pods that answered with the pods that should; an
unreachable expectation with a `reason` compares it with the probe's failure (refused or
timeout); `backends: {same: true}` wants one pod to have given every answer. Who answered is
the server's socket (tcp, http) or the pod its reply names (a UDP server's hostname, as
agnhost's serve-hostname and netexec answer). Run, get and kubeProxy steps run in
testbed.scenario.runget_step, which also resolves an apply step's ${...} references. A reachability step runs in testbed.scenario.reachability_step; a label step sends
a merge patch of the labels (null removes one) to the API server, as `kubectl label
--overwrite` does. A capture step runs tcpdump on a host's interface while its probe runs, and
passes only when the probe passes too; a route step reads a host's route to one prefix until it
is as expected or its timeout is over.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from testbed.api.meta import object_key
from testbed.emu import faults
from testbed.emu.capture import CaptureError, capture_while, routes_to
from testbed.emu.controlplane import ControlPlaneError, has_netpol
from testbed.emu.inspect import InspectError
from testbed.emu.probes import (
    Observation,
    SocketWatch,
    probe_dns,
    probe_http,
    probe_icmp,
    probe_tcp,
    probe_udp,
)
from testbed.scenario.actions import (
    Apply,
    Delete,
    Fault,
    Label,
    NetFault,
    PodRef,
    Scale,
    Wait,
    describe,
)
from testbed.scenario.reachability import Reachability
from testbed.scenario.reachability_step import run_reachability
from testbed.scenario.runget import GetField, ProxySync, RunCommand
from testbed.scenario.runget_step import (
    Unresolved,
    get_step,
    proxy_sync_step,
    resolve_objects,
    run_step,
)
from testbed.scenario.spec import Capture, Expect, Probe, RouteCheck, Sleep, Step
from testbed.scenario.substitution import has_references
from testbed.scenario.trace_step import TraceStep, dnat_targets, hosts_of
from testbed.scenario.trace_step import judge as judge_trace


@dataclass
class Outcome:
    passed: bool
    expectation: str
    observed: str
    details: dict = field(default_factory=dict)


def evaluate(expect: Expect, obs: Observation, cluster) -> tuple[bool, str]:
    """Did one observation meet the expectation (backends aside)? (passed, why not)."""
    if not expect.reachable:
        if obs.reachable:
            return False, "it was reachable"
        if expect.reason and obs.failure != expect.reason:
            return False, f"it was unreachable for another reason ({obs.failure or 'unknown'}), " \
                          f"not {expect.reason}"
        return True, ""
    if not obs.reachable:
        return False, "it was not reachable"
    if expect.source_ip:
        want = str(cluster.address_of(expect.source_ip))
        if obs.source_ip is None:
            return False, "could not see the source IP the server saw"
        if obs.source_ip != want:
            return False, f"server saw {obs.source_ip}, expected {want} ({expect.source_ip})"
    if expect.status is not None and obs.status != expect.status:
        return False, f"status {obs.status}, expected {expect.status}"
    if expect.body_contains is not None and expect.body_contains not in (obs.body or ""):
        return False, f"body lacks {expect.body_contains!r}"
    if expect.reply is not None and expect.reply not in (obs.reply or ""):
        return False, f"reply lacks {expect.reply!r}"
    return True, ""


def expected_backends(cluster, expect: Expect) -> set[str]:
    b = expect.backends
    pods = cluster.pods_matching(b.namespace, b.selector)
    return {p.key for p in pods if p.ready and (not b.nodes or p.node in b.nodes)}


def judge_backends(expect: Expect, answered: set[str], wanted: set[str],
                   unknown: int = 0) -> tuple[bool, str]:
    """Who answered over the tries (`answered`; `unknown`: answers no pod could be told from)
    against who should (`wanted`: the selector's ready pods; empty for `same` without one)."""
    b = expect.backends
    if b.same:
        if b.selector and not wanted:
            return False, f"no ready pod matches {b.selector}"
        if unknown or not answered:
            return False, f"could not tell which pod gave {unknown or 'any'} of the answers"
        if len(answered) > 1:
            return False, f"answered by {len(answered)} pods: {', '.join(sorted(answered))}"
        if b.selector and not answered <= wanted:
            return False, f"answered by a pod outside the set: {', '.join(sorted(answered))}"
        return True, ""
    if not wanted:
        return False, f"no ready pod matches {expect.backends.selector}"
    strangers = answered - wanted
    if strangers:
        return False, f"answered by pods outside the set: {', '.join(sorted(strangers))}"
    missing = wanted - answered
    if expect.backends.all and missing:
        return False, f"never answered: {', '.join(sorted(missing))}"
    return True, ""


def _named_in_body(body: str | None, pods: set[str]) -> str | None:
    """The one expected pod whose name the response names (servers that echo their hostname,
    like the article's "Hello from <pod>", or serve-hostname's UDP reply), which settles who
    answered behind any proxy. A name that is part of another named one (web-1 in web-10)
    does not count."""
    if not body:
        return None
    found = {key: name for key in pods if (name := key.split("/", 1)[1]) in body}
    named = [key for key, name in found.items()
             if not any(name in other and name != other for other in found.values())]
    return named[0] if len(named) == 1 else None


def probe_step(cluster, probe: Probe, started: float) -> Outcome:
    source = cluster.endpoint(probe.source)
    if probe.target.via:
        try:
            address, port = service_target(cluster, probe)
        except KeyError as err:
            return Outcome(False, probe.expect.describe(), f"no target: {err.args[0]}")
        probe = dataclasses.replace(probe, target=dataclasses.replace(probe.target, port=port))
    else:
        address = None if probe.kind == "dns" else cluster.address_of(probe.target.host)
    pod_files = cluster.pod_files(source.name) if source.kind == "pod" else None
    if source.pid is None:
        return Outcome(False, probe.expect.describe(), f"{probe.source} has no running sandbox")
    pods = [p for p in cluster.all_pods() if p.pid]
    namespaces = {p.key: p.pid for p in pods}
    namespaces.update({h.name: h.pid for h in cluster.network.hosts.values()})
    addresses = {p.key: {str(p.ip)} for p in pods if p.ip}
    for node in cluster.topo.nodes:
        addresses[node.name] = {str(node.address)} | ({str(node.bridge_address)} if node.pod_cidr else set())
    deadline = started + probe.retry_for
    backends = probe.expect.backends
    wanted = expected_backends(cluster, probe.expect) if backends is not None and \
        backends.selector else set()
    # who may have answered: the selector's pods, or (same: without one) any pod
    candidates = wanted or {p.key for p in pods}
    rounds = 0
    while True:
        rounds += 1
        answered: set[str] = set()
        unknown = 0
        passed, why, obs = True, "", None
        for _ in range(probe.tries):
            obs = run_probe(probe, source.pid, address, namespaces, pod_files, addresses)
            ok, reason = evaluate(probe.expect, obs, cluster)
            who = _named_in_body(obs.body or obs.reply, candidates) or obs.served_by
            if who:
                answered.add(who)
            elif obs.reachable:
                unknown += 1
            if not ok:
                passed, why = False, reason
                break
        if passed and backends is not None:
            passed, why = judge_backends(probe.expect, answered, wanted, unknown)
        if passed or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    text = obs.text if probe.tries == 1 else f"{probe.tries} tries, last: {obs.text}"
    if answered and probe.tries > 1:
        text += f"; answered by {', '.join(sorted(answered))}"
    observed = text + (f" [{why}]" if why else "") + (f" after {rounds} rounds" if rounds > 1 else "")
    details = {"reachable": obs.reachable, "failure": obs.failure, "sourceIP": obs.source_ip,
               "servedBy": obs.served_by,
               "answeredBy": sorted(answered), "status": obs.status, "address": str(address),
               "rounds": rounds}
    return Outcome(passed, probe.expect.describe(), observed, details)


def service_target(cluster, probe: Probe) -> tuple:
    """The address and port of a nodePort or loadBalancer target, read from the Service now."""
    from ipaddress import IPv4Address

    t = probe.target
    namespace, _, name = t.service.partition("/")
    svc = cluster.client.get("Service", namespace, name)
    if svc is None:
        raise KeyError(f"no Service {t.service}")
    if t.via == "nodePort" and t.service_port == "healthCheck":
        port = svc["spec"].get("healthCheckNodePort")
        if not port:
            raise KeyError(f"Service {t.service} has no healthCheckNodePort")
        return cluster.address_of(t.host), int(port)
    ports = svc["spec"].get("ports", [])
    protocol = "UDP" if probe.kind == "udp" else "TCP"
    chosen = next((p for p in ports if (p.get("protocol") or "TCP") == protocol and (
        not t.service_port or str(p.get("name")) == t.service_port
        or str(p.get("port")) == t.service_port)), None)
    if chosen is None:
        raise KeyError(f"Service {t.service} has no port {t.service_port}")
    if t.via == "nodePort":
        if not chosen.get("nodePort"):
            raise KeyError(f"Service {t.service} has no nodePort")
        return cluster.address_of(t.host), int(chosen["nodePort"])
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress or not ingress[0].get("ip"):
        raise KeyError(f"Service {t.service} has no load balancer address yet")
    return IPv4Address(ingress[0]["ip"]), int(chosen["port"])


def wait_step(cluster, wait: Wait, progress: Callable[[str], None]) -> Outcome:
    deadline = time.monotonic() + wait.timeout
    last_report = time.monotonic()
    while True:
        done, state = _wait_state(cluster, wait)
        if done:
            return Outcome(True, describe(wait), state)
        now = time.monotonic()
        if now >= deadline:
            return Outcome(False, describe(wait), f"timed out after {wait.timeout:g}s: {state}")
        if now - last_report > 3:
            progress(f"  ... still waiting for {wait.what} of {wait.namespace}/{wait.target}: {state}")
            last_report = now
        time.sleep(0.2)


def _wait_state(cluster, wait: Wait) -> tuple[bool, str]:
    client = cluster.client
    if wait.what == "ready":
        pods = cluster.pods_matching(wait.namespace, wait.target)
        ready = [p for p in pods if p.ready]
        want = wait.count if wait.count is not None else max(len(pods), 1)
        return len(ready) == want and (wait.count is not None or len(ready) == len(pods)), \
            f"{len(ready)} of {len(pods)} pods ready (want {want})"
    if wait.what == "endpoints":
        slices, _ = client.list("EndpointSlice", wait.namespace, selector=f"kubernetes.io/service-name={wait.target}")
        ready = {a for s in slices for e in s.get("endpoints") or []
                 if (e.get("conditions") or {}).get("ready", True) for a in e.get("addresses", [])}
        if wait.count is None:
            return bool(ready), f"{len(ready)} ready endpoints"
        return len(ready) == wait.count, f"{len(ready)} ready endpoints (want {wait.count})"
    svc = client.get("Service", wait.namespace, wait.target)
    if svc is None:
        return False, "no such Service"
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress]
    return bool(ips), f"address {', '.join(ips)}" if ips else "no address yet"


def execute(cluster, step: Step, objects: list[dict] | None, progress: Callable[[str], None]) -> Outcome:
    """Carry out one step; `objects` are the manifests of an apply or delete step."""
    action = step.action
    started = time.monotonic()
    if isinstance(action, Probe):
        return probe_step(cluster, action, started)
    if isinstance(action, Reachability):
        return Outcome(*run_reachability(cluster, action, progress))
    if isinstance(action, TraceStep):
        return trace_step(cluster, action)
    if isinstance(action, Capture):
        return capture_step(cluster, action)
    if isinstance(action, RouteCheck):
        return route_step(cluster, action)
    if isinstance(action, RunCommand):
        return run_step(cluster, action)
    if isinstance(action, GetField):
        return get_step(cluster, action)
    if isinstance(action, ProxySync):
        return proxy_sync_step(cluster, action)
    if isinstance(action, (Label, Apply, Delete)):
        had_policies = policies_exist(cluster)      # before the write: it may delete them
        if isinstance(action, Apply) and objects and has_references(objects):
            try:
                objects = resolve_objects(cluster, objects)
            except Unresolved as err:
                return Outcome(False, describe(action), f"unresolved reference {err.args[0]}")
        return enforced(cluster, write_step(cluster, action, objects), had_policies)
    if isinstance(action, Sleep):
        time.sleep(action.seconds)
        return Outcome(True, f"sleep {action.seconds:g}s", "slept")
    if isinstance(action, Wait):
        return wait_step(cluster, action, progress)
    if isinstance(action, Scale):
        cluster.client.scale("Deployment", action.namespace, action.name, action.replicas)
        return Outcome(True, describe(action), f"{action.namespace}/{action.name} scaled to {action.replicas}")
    if isinstance(action, NetFault):
        return net_fault(cluster, action)
    if isinstance(action, Fault) and action.pod is not None:
        pod = resolve_pod(cluster, action.pod)
        killed = cluster.kill_container(pod, action.container or None)
        return Outcome(True, describe(action), f"killed {', '.join(killed)} of {pod.key}")
    if isinstance(action, Fault):
        node = action.node or cluster.topo.master.name
        if action.action == "kill":
            cluster.cp.kill(action.agent, node)
            return Outcome(True, describe(action), f"{action.agent} on {node} killed")
        agent = cluster.cp.restart(action.agent, node)
        cluster.cp.wait_agent(agent)   # as the cluster's start does: the next step finds it serving
        return Outcome(True, describe(action), f"{action.agent} on {node} restarted (pid {agent.pid})")
    raise TypeError(f"unknown step action {action!r}")


def write_step(cluster, action, objects: list[dict] | None) -> Outcome:
    """An apply, delete or label step's write."""
    if isinstance(action, Label):
        return label_step(cluster, action)
    if isinstance(action, Apply):
        cluster.apply(objects)
        cluster.wait_ready(objects, timeout=90)
        return Outcome(True, describe(action), f"applied {len(objects)} objects; their pods are ready")
    targets = [(o["kind"], *object_key(o)) for o in objects or []]
    if not targets:
        targets = [(action.kind, action.namespace, action.name)]
    gone = [f"{k} {ns}/{n}" for k, ns, n in targets if cluster.client.delete(k, ns, n) is not None]
    return Outcome(True, describe(action), f"deleted {', '.join(gone) or 'nothing (already gone)'}")


def policies_exist(cluster) -> bool:
    """Does the cluster hold a NetworkPolicy (and agents that enforce them)?"""
    if getattr(cluster, "cp", None) is None or not any(map(has_netpol, cluster.topo.workers)):
        return False
    return bool(cluster.client.list("NetworkPolicy")[0])


def enforced(cluster, outcome: Outcome, had_policies: bool) -> Outcome:
    """After a step that wrote (`outcome`, the write's own): when there are NetworkPolicies
    (now, or before the step: `had_policies`), wait until every running policy agent enforces
    the cluster as it now is, so that the next step probes the new rules, not the old ones.
    Agents on nodes a fault cut off from the API server are not waited for (they cannot
    know); the outcome fails when another lags behind."""
    if not outcome.passed or not (had_policies or policies_exist(cluster)):
        return outcome
    started = time.monotonic()
    skip = faults.cut_off(cluster)
    try:
        nodes = cluster.cp.wait_policies_enforced(skip=skip)
    except ControlPlaneError as err:
        return Outcome(False, outcome.expectation, f"{outcome.observed}; but {err}", outcome.details)
    if nodes:
        outcome.observed += (f"; enforced by the NetworkPolicy agents of {', '.join(nodes)} "
                             f"({time.monotonic() - started:.2f}s)")
        outcome.details["enforcedBy"] = nodes
    policed = {w.name for w in cluster.topo.workers if has_netpol(w)}
    passed = [f"{node} ({why})" for node, why in sorted(skip.items()) if node in policed]
    if passed:
        outcome.observed += f"; not waited for, cut off from the API server: {', '.join(passed)}"
    return outcome


def resolve_pod(cluster, ref: PodRef):
    if ref.name:
        pod = cluster.find_pod(ref.describe())   # NAMESPACE/NAME, or the one pod of a bare NAME
        if pod is None:
            raise KeyError(f"no pod {ref.describe()}")
        return pod
    pods = sorted((p for p in cluster.pods_matching(ref.namespace, ref.selector)
                   if p.pid and (not ref.node or p.node == ref.node)), key=lambda p: p.key)
    if not pods:
        raise KeyError(f"no running pod matches {ref.describe()}")
    return pods[0]


def label_step(cluster, action: Label) -> Outcome:
    """Set and remove labels of a pod or namespace in place (kubectl label --overwrite)."""
    if action.pod is not None:
        pod = resolve_pod(cluster, action.pod)
        kind, namespace, name, shown = "Pod", pod.namespace, pod.name, f"pod {pod.key}"
    else:
        kind, namespace, name, shown = "Namespace", None, action.namespace, \
            f"namespace {action.namespace}"
    obj = cluster.client.merge_patch(kind, namespace, name,
                                     {"metadata": {"labels": dict(action.labels)}})
    labels = (obj.get("metadata") or {}).get("labels") or {}
    now = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    return Outcome(True, describe(action), f"{shown} labels: {now}", {"labels": labels})


def net_fault(cluster, action: NetFault) -> Outcome:
    expectation = describe(action)
    try:
        if action.kind == "link":
            text = faults.link(cluster, action.target, action.up)
        elif action.kind == "node":
            text = faults.node_state(cluster, action.target, action.up)
        elif action.kind == "partition":
            text = faults.partition(cluster, [list(g) for g in action.groups])
        elif action.kind == "heal":
            text = faults.heal(cluster)
        elif action.kind == "readiness":
            text = faults.readiness(cluster, resolve_pod(cluster, action.pod), action.up)
        elif action.kind == "shape":
            text = faults.shape(cluster, action.target, action.rate, action.delay, action.loss)
        elif action.what == "ps":
            from testbed.emu.record import alive
            from testbed.node.psview import format_rows, ps_rows

            rows = ps_rows(cluster.ps_state(), action.target, time.time(), alive)
            text = format_rows(rows)
        else:
            text = faults.inspect(cluster, action.what, action.target)
    except (faults.FaultError, InspectError) as err:
        return Outcome(False, expectation, f"failed: {err}")
    details = {"output": text} if action.kind == "inspect" else {}
    observed = text if action.kind != "inspect" else f"{len(text.splitlines())} lines (in the JSON report)"
    return Outcome(True, expectation, observed, details)


def capture_step(cluster, cap: Capture, *, capture: Callable = capture_while,
                 probe: Callable[..., Outcome] = probe_step) -> Outcome:
    """tcpdump on the host's interface (its uplink by default) while the probe runs; the
    packets it decodes (`-v`: a tunnel's inner packets too) are judged and kept in the details.
    `capture` (capture_while's signature) and `probe` (probe_step's) are handed in by tests."""
    interface = cap.interface or faults.uplink(cap.host)
    try:
        packets, text, probed = capture(cluster.network.pid(cap.host), interface, cap.filter,
                                        lambda: probe(cluster, cap.probe, time.monotonic()))
    except CaptureError as err:
        return Outcome(False, cap.describe(), f"failed: {err}")
    missing = [s for s in cap.shows if s not in text]
    first = packets[0] if packets else ""
    observed = f"{len(packets)} packet{'s' if len(packets) != 1 else ''} on {cap.host}:{interface}"
    if first:
        observed += f", the first: {first}"
    observed += f"; probe: {probed.observed}"
    # The probe must do what it expects too: a capture that saw nothing because nothing was
    # sent (broken routing) proves nothing.
    passed = (bool(packets) == cap.seen) and not missing and probed.passed
    if missing:
        observed += "; not shown: " + ", ".join(repr(m) for m in missing)
    if not probed.passed:
        observed += f"; the probe failed: expected {probed.expectation}"
    return Outcome(passed, cap.describe(), observed,
                   {"packets": len(packets), "capture": text, "probe": probed.details,
                    "interface": interface})


def route_step(cluster, check: RouteCheck) -> Outcome:
    """The host's route to `check.to`, read until it is as expected or the timeout is over."""
    pid = cluster.network.pid(check.host)
    via = None
    if check.via:
        try:
            via = str(cluster.address_of(check.via))
        except KeyError as err:
            return Outcome(False, check.describe(), f"no address for {check.via}: {err}")
    deadline = time.monotonic() + check.timeout
    while True:
        try:
            routes = routes_to(pid, check.to)
        except CaptureError as err:
            return Outcome(False, check.describe(), f"failed: {err}")
        passed, observed = judge_route(check, routes, via)
        if passed or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    return Outcome(passed, check.describe(), observed, {"routes": routes})


def judge_route(check: RouteCheck, routes: list[dict], via: str | None) -> tuple[bool, str]:
    """Whether `routes` (ip -j route's, to exactly check.to) are as `check` wants; what they are."""
    def show(route: dict) -> str:
        hops = [route.get("gateway")] if route.get("gateway") else \
            [h.get("gateway") for h in route.get("nexthops", []) if h.get("gateway")]
        parts = [route.get("dst", check.to)] + [f"via {h}" for h in hops]
        parts += [f"dev {route['dev']}"] if route.get("dev") else []
        parts += [f"proto {route['protocol']}"] if route.get("protocol") else []
        return " ".join(parts)

    if not routes:
        return check.absent, f"no route to {check.to} on {check.host}"
    text = "; ".join(show(r) for r in routes)
    if check.absent:
        return False, f"still there: {text}"
    for route in routes:
        hops = {route.get("gateway")} | {h.get("gateway") for h in route.get("nexthops", [])}
        devs = {route.get("dev")} | {h.get("dev") for h in route.get("nexthops", [])}
        if via is not None and via not in hops:
            continue
        if check.dev is not None and check.dev not in devs:
            continue
        if check.proto is not None and str(route.get("protocol")) != check.proto:
            continue
        return True, text
    return False, text


def run_probe(probe: Probe, source_pid: int, address: IPv4Address | None, namespaces: dict[str, int],
              pod_files: Path | None = None, addresses: dict[str, set[str]] | None = None) -> Observation:
    """One attempt of `probe` from `source_pid` to `address`."""
    t = probe.target
    if probe.kind == "dns":
        return probe_dns(source_pid, t.host, probe.record, probe.timeout, pod_files,
                         tcp=probe.transport == "tcp")
    if probe.kind == "icmp":
        return probe_icmp(source_pid, address, probe.timeout)
    if probe.kind == "udp":
        return probe_udp(source_pid, address, t.port, probe.payload, probe.timeout,
                         source_port=probe.source_port)
    watch = SocketWatch(namespaces, addresses)
    if probe.kind == "tcp":
        return probe_tcp(source_pid, address, t.port, probe.timeout, watch,
                         source_port=probe.source_port)
    name = t.host or str(address)
    host = name if t.port == 80 else f"{name}:{t.port}"
    return probe_http(source_pid, address, t.port, t.path, host, dict(probe.headers), probe.timeout, watch)


def trace_step(cluster, step: TraceStep) -> Outcome:
    """Take the step's trace (and a static one, to compare), and judge it."""
    from testbed.emu.tracing import TraceError, static, trace
    from testbed.trace.text import render_text

    started = time.monotonic()
    if not isinstance(step.target, str):      # a Service's node port or load balancer
        try:
            address, port = service_target(cluster, Probe(
                "udp" if step.protocol == "udp" else "tcp", step.source, step.target, Expect()))
        except KeyError as err:
            return Outcome(False, step.expect.describe(), f"no target: {err.args[0]}")
        step = dataclasses.replace(step, target=f"{address}:{port}", port=None)
    try:
        result = trace(cluster, step.source, step.target, step.port, step.protocol, step.timeout)
    except TraceError as err:
        return Outcome(False, step.expect.describe(), f"no trace: {err}")
    details: dict = {"trace": result}
    static_result = None
    if step.expect.static:
        endpoint = (dnat_targets(result) or [None])[0]
        try:
            static_result = static(cluster, step.source, step.target, step.port, step.protocol,
                                   endpoint)
        except TraceError as err:
            return Outcome(False, step.expect.describe(), f"no static trace: {err}", details)
        details["static"] = static_result
    addresses: dict[str, str] = {}
    pods_at: dict[str, str] = {}
    if step.expect.source_ip or step.expect.dnat:     # names to match against addresses
        for pod in cluster.all_pods():
            if pod.ip:
                addresses[pod.key] = addresses[pod.name] = str(pod.ip)
                pods_at[str(pod.ip)] = pod.key
        for host in cluster.network.hosts.values():
            if host.address is not None:
                addresses[host.name] = str(host.address)
    wrong = judge_trace(step.expect, result, addresses, pods_at, static_result)
    observed = f"{result['verdict']} via {' -> '.join(hosts_of(result))}"
    targets = dnat_targets(result)
    if targets:
        observed += f"; DNAT to {', '.join(targets)}"
    if wrong:
        observed += " [" + "; ".join(wrong) + "]"
    details["text"] = render_text(result)
    details["seconds"] = round(time.monotonic() - started, 3)
    return Outcome(not wrong, step.expect.describe(), observed, details)


def trace_probe(cluster, probe: Probe) -> dict:
    """The trace of a probe's connection, as the runner attaches it to a failed probe."""
    from testbed.emu.tracing import TraceError, trace

    protocol = {"http": "tcp", "tcp": "tcp", "udp": "udp", "icmp": "icmp"}.get(probe.kind)
    if protocol is None:
        raise TraceError(f"a {probe.kind} probe is not traced (its connection is the resolver's)")
    if probe.target.via:
        try:
            address, port = service_target(cluster, probe)
        except KeyError as err:
            raise TraceError(f"no target: {err.args[0]}") from None
        return trace(cluster, probe.source, f"{address}:{port}", None, protocol, probe.timeout)
    return trace(cluster, probe.source, probe.target.host, probe.target.port, protocol,
                 probe.timeout)


def trace_mismatch(cluster, mismatch: dict, timeout: float | None = None) -> dict:
    """The trace of a reachability step's first wrong cell ({"from", "port", "address"} of its
    details' mismatches: a pod, node or client, a port such as tcp/80 or icmp, and the address
    the cell probed)."""
    from testbed.emu.tracing import TraceError, trace

    protocol = str(mismatch["port"]).partition("/")[0]
    if protocol not in ("tcp", "udp", "icmp"):
        raise TraceError(f"a {protocol} cell is not traced")
    if not mismatch.get("address"):
        raise TraceError(f"{mismatch['to']} had no address to probe")
    # The address the cell probed (the pod's, or its Service's with via: service), not a name
    # that a Service of the same name would take.
    return trace(cluster, mismatch["from"], mismatch["address"], None, protocol,
                 timeout or 1.0)
