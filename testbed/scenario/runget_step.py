"""Acts: the `run`, `get` and `kubeProxy` steps on a running cluster, and the references
(${pod:NAME.ip}, ${service:NAME.clusterIP}, ${node:NAME.ip}) resolved when a step runs.

A run step's command runs in a node's, the gateway's or a client's network namespace (nsenter,
as every command the testbed runs on a host), or in a pod's container as that container's own
processes run (cluster.pod_process: its namespaces, files and environment); its exit code and
standard output are judged (testbed.scenario.runget), and kept in the details with its standard
error. A get step reads the object (or the list a selector picks) from the API server and prints
the JSONPath template against it. Both try again until they hold or `retryFor` is over. A
kubeProxy step asks the node's kube-proxy for a full sync and waits until it has done one
(ControlPlane.force_full_sync, the contract with kube-proxy's SIGUSR1).
"""

from __future__ import annotations

import subprocess
import time

from testbed.net.run import ns_prefix
from testbed.scenario.jsonpath import compile_template, evaluate
from testbed.scenario.runget import (
    GetField,
    ProxySync,
    RunCommand,
    expected_text,
    judge_get,
    judge_run,
)
from testbed.scenario.substitution import Ref, substitute, substitute_text


class Unresolved(KeyError):
    """A reference that names nothing the running cluster has (the step fails, naming it)."""


class NoTarget(Exception):
    """A run step's pod, node or container that the running cluster does not have (the step
    fails, saying so in plain words)."""


def resolver(cluster):
    """resolve(ref) -> the text a reference stands for now; Unresolved naming it otherwise."""
    def resolve(ref: Ref) -> str:
        if ref.kind == "pod":
            try:
                pod = cluster.find_pod(ref.name)
            except KeyError as err:
                raise Unresolved(f"{ref.text}: {err.args[0]}") from None
            if pod is None:
                raise Unresolved(f"{ref.text}: no pod {ref.name}")
            if pod.ip is None:
                raise Unresolved(f"{ref.text}: pod {pod.key} has no IP yet")
            return str(pod.ip)
        if ref.kind == "service":
            namespace, _, name = ref.name.rpartition("/")
            svc = cluster.client.get("Service", namespace or "default", name)
            if svc is None:
                raise Unresolved(f"{ref.text}: no Service {namespace or 'default'}/{name}")
            ip = (svc.get("spec") or {}).get("clusterIP")
            if not ip or ip == "None":
                raise Unresolved(f"{ref.text}: Service {namespace or 'default'}/{name} has no "
                                 f"ClusterIP ({ip or 'none'})")
            return str(ip)
        try:
            return str(cluster.address_of(ref.name))
        except KeyError as err:
            raise Unresolved(f"{ref.text}: {err.args[0]}") from None
    return resolve


def resolve_objects(cluster, objects: list[dict]) -> list[dict]:
    """An apply step's objects with their references resolved now."""
    return [substitute(obj, resolver(cluster)) for obj in objects]


def _run_once(cluster, step: RunCommand, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one run; -1 and why when it timed out."""
    pod = cluster.find_pod(step.where)
    env = None
    if pod is not None:
        if pod.pid is None:
            raise NoTarget(f"pod {pod.key} has no running sandbox")
        try:
            argv, env = cluster.pod_process(pod, argv, step.container or None)
        except KeyError as err:   # no such container
            raise NoTarget(err.args[0]) from None
    elif step.where in cluster.network.hosts:
        if step.container:
            raise NoTarget(f"{step.where} is no pod: it has no container {step.container}")
        argv = ns_prefix(cluster.network.pid(step.where)) + argv
    else:
        raise NoTarget(f"no pod, node or client is named {step.where!r}")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=step.timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
        return -1, out, f"timed out after {step.timeout:g}s"
    except FileNotFoundError as err:
        return 127, "", f"{argv[0]}: {err.strerror}"
    return proc.returncode, proc.stdout, proc.stderr


def run_step(cluster, step: RunCommand):
    from testbed.scenario.steps import Outcome

    resolve = resolver(cluster)
    try:
        argv = [substitute_text(a, resolve) for a in step.command]
        contains = None if step.stdout_contains is None else substitute_text(step.stdout_contains, resolve)
        matches = None if step.stdout_matches is None else substitute_text(step.stdout_matches, resolve)
    except Unresolved as err:
        return Outcome(False, step.describe(), f"unresolved reference {err.args[0]}")
    deadline = time.monotonic() + step.retry_for
    rounds = 0
    while True:
        rounds += 1
        try:
            code, stdout, stderr = _run_once(cluster, step, argv)
        except NoTarget as err:
            return Outcome(False, step.describe(), str(err))
        wrong = judge_run(step, code, stdout, contains, matches)
        if not wrong or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    first = stdout.strip().splitlines()[0][:80] if stdout.strip() else ""
    observed = f"exit {code}" + (f", stdout {first!r}" if first else ", no output") + \
        (f" ({len(stdout.splitlines())} lines)" if len(stdout.splitlines()) > 1 else "")
    if code != 0 and stderr.strip():
        observed += f", stderr {stderr.strip().splitlines()[-1][:80]!r}"
    if wrong:
        observed += f" [{wrong}]"
    if rounds > 1:
        observed += f" after {rounds} rounds"
    text = stdout + (f"\n--- stderr ---\n{stderr}" if stderr else "")
    return Outcome(not wrong, step.describe(), observed,
                   {"command": argv, "exitCode": code, "stdout": stdout, "stderr": stderr,
                    "output": text.strip() or "(no output)", "rounds": rounds})


def read_value(cluster, step: GetField) -> str:
    """The template printed against the object (or list) as it is now; "" when it is missing."""
    if step.name:
        obj = cluster.client.get(step.kind, step.namespace or None, step.name)
        data = obj if obj is not None else {}
    else:
        items, version = cluster.client.list(step.kind, step.namespace or None,
                                             selector=step.selector)
        data = {"apiVersion": "v1", "kind": "List", "items": items,
                "metadata": {"resourceVersion": str(version)}}
    return evaluate(compile_template(step.jsonpath), data)


def get_step(cluster, step: GetField):
    from testbed.scenario.steps import Outcome

    try:
        expected = substitute_text(expected_text(step), resolver(cluster))
    except Unresolved as err:
        return Outcome(False, step.describe(), f"unresolved reference {err.args[0]}")
    shown = step.describe() if expected == expected_text(step) else \
        step.describe().replace(repr(expected_text(step)), repr(expected))
    deadline = time.monotonic() + step.retry_for
    rounds = 0
    while True:
        rounds += 1
        value = read_value(cluster, step)
        wrong = judge_get(step, value, expected)
        if not wrong or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    observed = f"{step.target()}: {value!r}" + (f" [{wrong}]" if wrong else "") + \
        (f" after {rounds} rounds" if rounds > 1 else "")
    return Outcome(not wrong, shown, observed, {"value": value, "expected": expected,
                                                "rounds": rounds})


def proxy_sync_step(cluster, step: ProxySync):
    from testbed.scenario.steps import Outcome

    started = time.monotonic()
    cluster.cp.force_full_sync(step.node, timeout=step.timeout)
    return Outcome(True, step.describe(),
                   f"kube-proxy on {step.node} did a full sync ({time.monotonic() - started:.2f}s)")
