"""Pure: the `run`, `get` and `kubeProxy` steps of a scenario: parsed, checked, judged.

    - run: {in: w1, command: [iptables, -t, nat, -F, KUBE-SERVICES]}   # a node, the gateway,
      expect: {exitCode: 0}                                            # a client, or a pod
    - run: {in: x/a, container: c, command: [getent, hosts, kubernetes.default]}
      expect: {exitCode: 0, stdoutContains: "${service:kubernetes.clusterIP}",
               stdoutMatches: "^10\\."}      # a regular expression, searched (as grep does)
      timeout: 10                            # the command's (default 10 s); retryFor: SECONDS
    - get: {kind: Service, name: web, namespace: default,
            jsonpath: "{.status.loadBalancer.ingress[0].ip}"}
      expect: {matches: "^192\\.0\\.2\\."}      # or equals:, contains:
      retryFor: 10                           # read again until it holds or the time is up
    - get: {kind: EndpointSlice, selector: kubernetes.io/service-name=web,
            jsonpath: "{.items[*].endpoints[*].addresses[0]}"}
      expect: {contains: "${pod:web-0.ip}"}
    - kubeProxy: {node: w1, sync: full}      # the node's kube-proxy does a full sync now

A `run` command is an argument list (never a shell string: write [sh, -c, "..."] for one); in a
node, the gateway or a client it runs in that host's network namespace, in a pod as the pod's
container (its first by default) runs its own processes. `expect` defaults to exit code 0.
A `get` reads one object (kind, name, namespace: default for namespaced kinds) or, with
`selector`, the list of those that match, and prints the JSONPath template against it as
kubectl -o jsonpath does (testbed.scenario.jsonpath); a missing object prints nothing. Texts
to expect and command arguments may hold ${pod:NAME.ip}, ${service:NAME.clusterIP} and
${node:NAME.ip} (testbed.scenario.substitution), resolved when the step runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from testbed.api.resources import BY_KIND, CLUSTER_SCOPED
from testbed.scenario.actions import DAY, MAX_SECONDS, namespace_field, node_name
from testbed.scenario.jsonpath import JsonPathError, compile_template
from testbed.scenario.substitution import check as check_ref
from testbed.scenario.substitution import parse as parse_refs
from testbed.spec.source import Path_
from testbed.spec.validation import Checker, is_dns1123_label, is_dns1123_subdomain

RUN_KEYS = {"in", "command", "container"}
RUN_EXPECT_KEYS = {"exitCode", "stdoutContains", "stdoutMatches"}
GET_KEYS = {"kind", "name", "namespace", "selector", "jsonpath"}
GET_EXPECT_KEYS = {"equals", "contains", "matches"}
SYNCS = ("full",)
DEFAULT_RUN_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunCommand:
    """A command in a node, the gateway, a client or a pod's container, and what it must do."""

    where: str                       # a pod (NAMESPACE/NAME or NAME), node, gateway or client
    command: tuple[str, ...]
    container: str = ""
    timeout: float = DEFAULT_RUN_TIMEOUT
    exit_code: int | None = 0        # None: any
    stdout_contains: str | None = None
    stdout_matches: str | None = None
    retry_for: float = 0.0

    def describe(self) -> str:
        parts = [f"exit {self.exit_code}" if self.exit_code is not None else "any exit"]
        if self.stdout_contains is not None:
            parts.append(f"stdout has {self.stdout_contains!r}")
        if self.stdout_matches is not None:
            parts.append(f"stdout matches {self.stdout_matches!r}")
        return ", ".join(parts)

    def texts(self) -> list[tuple[Path_, str]]:
        """(path in the step, text) of everything of the step that may hold references."""
        out: list[tuple[Path_, str]] = [(("run", "command", i), arg)
                                        for i, arg in enumerate(self.command)]
        return out + [(("expect", key), text) for key, text in (
            ("stdoutContains", self.stdout_contains), ("stdoutMatches", self.stdout_matches))
            if text is not None]


@dataclass(frozen=True)
class GetField:
    """An object's fields read from the API server through a JSONPath template."""

    kind: str
    jsonpath: str
    name: str = ""
    namespace: str = "default"       # "" for cluster-scoped kinds
    selector: str = ""               # a list of the kind's objects instead of one by name
    equals: str | None = None
    contains: str | None = None
    matches: str | None = None
    retry_for: float = 0.0

    def target(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}" if self.name else \
            f"{self.kind}s {where}{{{self.selector}}}"

    def describe(self) -> str:
        for word, value in (("equals", self.equals), ("contains", self.contains),
                            ("matches", self.matches)):
            if value is not None:
                return f"{self.jsonpath} {word} {value!r}"
        return self.jsonpath

    def texts(self) -> list[tuple[Path_, str]]:
        """(path in the step, text) of the expected text, which may hold references."""
        return [(("expect", key), text) for key, text in (
            ("equals", self.equals), ("contains", self.contains), ("matches", self.matches))
            if text is not None]


@dataclass(frozen=True)
class ProxySync:
    """Make a node's kube-proxy sync now (`sync: full`: every rule written again)."""

    node: str
    sync: str = "full"
    timeout: float = 10.0

    def describe(self) -> str:
        return f"kube-proxy on {self.node} does a {self.sync} sync"


def _texts_with_refs(ck: Checker, path: Path_, text: str) -> None:
    for ref in parse_refs(text):
        why = check_ref(ref)
        if why:
            ck.invalid(path, text, why)


def _regex(ck: Checker, path: Path_, text: str | None) -> None:
    if text is None:
        return
    try:
        re.compile(text)
    except re.error as err:
        ck.invalid(path, text, f"not a regular expression: {err}")


def parse_run(ck: Checker, path: Path_, raw: dict) -> RunCommand | None:
    before = len(ck.problems)
    here = path + ("run",)
    conf = ck.fields(here, raw.get("run"), RUN_KEYS)
    if conf is None:
        return None
    where = conf.get("in")
    if where is None or where == "":
        ck.required(here + ("in",), "the pod, node, gateway or client to run the command in")
    elif ck.is_type(here + ("in",), where, "string"):
        ns, slash, name = where.rpartition("/")
        ck.names(here + ("in",), name, is_dns1123_subdomain(name))
        if slash:
            ck.names(here + ("in",), ns, is_dns1123_label(ns))
    command = conf.get("command")
    if command is None or command == []:
        ck.required(here + ("command",), "the command as a list of arguments, e.g. "
                                         "[iptables, -t, nat, -S]")
    elif not isinstance(command, list):
        ck.invalid(here + ("command",), command, "must be a list of arguments (a shell's "
                                                  "string is [sh, -c, \"...\"])")
    else:
        for i, arg in enumerate(command):
            if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
                ck.invalid(here + ("command", i), arg, "must be a string")
            elif "\0" in str(arg):
                ck.invalid(here + ("command", i), arg, "must hold no NUL character")
            else:
                _texts_with_refs(ck, here + ("command", i), str(arg))
        if command and isinstance(command[0], str) and not command[0]:
            ck.required(here + ("command", 0), "the program to run")
    container = ck.string(conf, "container", here, default="")
    if container and not ck.names(here + ("container",), container, is_dns1123_label(container)):
        container = None
    timeout = ck.number(raw, "timeout", path, minimum=0, above=True, default=DEFAULT_RUN_TIMEOUT,
                        maximum=MAX_SECONDS, unit=DAY)
    retry_for = ck.number(raw, "retryFor", path, default=0.0, maximum=MAX_SECONDS, unit=DAY)
    expect = raw.get("expect", {})
    fields: dict[str, Any] = {}
    epath = path + ("expect",)
    if expect is not None and ck.fields(epath, expect, RUN_EXPECT_KEYS) is not None:
        if "exitCode" in expect:
            if expect["exitCode"] == "any":
                fields["exit_code"] = None
            else:
                fields["exit_code"] = ck.integer(expect, "exitCode", epath, 0, 255)
        for key, attr in (("stdoutContains", "stdout_contains"), ("stdoutMatches", "stdout_matches")):
            text = ck.string(expect, key, epath)
            if text is not None:
                _texts_with_refs(ck, epath + (key,), text)
                fields[attr] = text
        _regex(ck, epath + ("stdoutMatches",), fields.get("stdout_matches"))
    if len(ck.problems) > before:
        return None
    return RunCommand(str(where), tuple(str(a) for a in command), container or "",
                      timeout or DEFAULT_RUN_TIMEOUT, retry_for=retry_for or 0.0, **fields)


def parse_get(ck: Checker, path: Path_, raw: dict) -> GetField | None:
    before = len(ck.problems)
    here = path + ("get",)
    conf = ck.fields(here, raw.get("get"), GET_KEYS)
    if conf is None:
        return None
    kind = ck.enum(conf, "kind", here, sorted(BY_KIND))
    if conf.get("kind") is None:
        ck.required(here + ("kind",), "the kind of the object to read, e.g. Service")
    name = ck.string(conf, "name", here, default="")
    selector = ck.selector(conf, "selector", here) or ""
    if name and selector:
        ck.forbidden(here, "one of name (an object) or selector (a list), not both")
    elif not name and not selector and "name" not in conf and "selector" not in conf:
        ck.required(here + ("name",), "the object's name (or a selector for a list)")
    if name:
        ck.names(here + ("name",), name, is_dns1123_subdomain(name))
    namespace = namespace_field(ck, conf, here)
    if kind in CLUSTER_SCOPED:
        if "namespace" in conf:
            ck.forbidden(here + ("namespace",), f"a {kind} has no namespace")
        namespace = ""
    jsonpath = ck.string(conf, "jsonpath", here, required=True)
    if jsonpath is not None:
        try:
            compile_template(jsonpath)
        except JsonPathError as err:
            ck.invalid(here + ("jsonpath",), jsonpath, f"not a JSONPath template: {err}")
    retry_for = ck.number(raw, "retryFor", path, default=0.0, maximum=MAX_SECONDS, unit=DAY)
    epath = path + ("expect",)
    expect = raw.get("expect")
    fields: dict[str, str] = {}
    if expect is None:
        ck.required(epath, "one of equals, contains or matches")
    elif ck.fields(epath, expect, GET_EXPECT_KEYS) is not None:
        given = [k for k in ("equals", "contains", "matches") if k in expect]
        if len(given) != 1:
            (ck.forbidden(epath, f"one of equals, contains or matches, not {' and '.join(given)}")
             if given else ck.required(epath, "one of equals, contains or matches"))
        for key in given:
            value = expect[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)          # equals: 443 means the text 443
            if ck.is_type(epath + (key,), value, "string"):
                _texts_with_refs(ck, epath + (key,), value)
                fields[key] = value
        _regex(ck, epath + ("matches",), fields.get("matches"))
    if len(ck.problems) > before or kind is None or jsonpath is None or namespace is None:
        return None
    return GetField(kind, jsonpath, name or "", namespace, selector, retry_for=retry_for or 0.0,
                    **fields)


def parse_proxy_sync(ck: Checker, path: Path_, raw: dict) -> ProxySync | None:
    before = len(ck.problems)
    here = path + ("kubeProxy",)
    conf = ck.fields(here, raw.get("kubeProxy"), {"node", "sync"})
    if conf is None:
        return None
    node = node_name(ck, conf, "node", here, what="the worker whose kube-proxy syncs")
    if conf.get("sync") is None:
        ck.required(here + ("sync",), "full")
    sync = ck.enum(conf, "sync", here, list(SYNCS))
    timeout = ck.number(raw, "timeout", path, minimum=0, above=True, default=10.0,
                        maximum=MAX_SECONDS, unit=DAY)
    if len(ck.problems) > before or node is None or sync is None:
        return None
    return ProxySync(node, sync, timeout or 10.0)


# -- judging (what the acting side observed) -----------------------------------------------

def judge_run(step: RunCommand, code: int, stdout: str, contains: str | None,
              matches: str | None) -> str:
    """Why the command's result is not as expected ("" when it is); `contains` and `matches`
    are the step's texts with their references resolved."""
    wrong = []
    if step.exit_code is not None and code != step.exit_code:
        wrong.append(f"exit code {code}, expected {step.exit_code}")
    if contains is not None and contains not in stdout:
        wrong.append(f"stdout lacks {contains!r}")
    if matches is not None and re.search(matches, stdout, re.MULTILINE) is None:
        wrong.append(f"stdout does not match {matches!r}")
    return "; ".join(wrong)


def judge_get(step: GetField, value: str, expected: str) -> str:
    """Why the printed value is not as expected ("" when it is); `expected` is the step's text
    with its references resolved."""
    if step.equals is not None and value != expected:
        return f"{value!r} is not {expected!r}"
    if step.contains is not None and expected not in value:
        return f"{value!r} does not contain {expected!r}"
    if step.matches is not None and re.search(expected, value, re.MULTILINE) is None:
        return f"{value!r} does not match {expected!r}"
    return ""


def expected_text(step: GetField) -> str:
    return next(t for t in (step.equals, step.contains, step.matches) if t is not None)
