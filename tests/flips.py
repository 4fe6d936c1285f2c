"""Flip tests: every pure decision function has unit tests that fail when a condition in it flips.

A review once planted five small bugs (finished pods kept in EndpointSlices, a Ready=Unknown
node taken as schedulable, Prefix beating Exact within one Ingress, the kubelet's grace period
uncapped, the benchmark scheduler choosing the busiest node) and the unit tests passed. The
habit that keeps that from happening again is mechanical:

* `REGISTRY` names the decision functions (module, function or Class.method) and the unit test
  files (or test ids) that must catch a flip in each.
* `mutants(decision)` reads the module's source with `ast` and, inside that function only,
  makes one mutant per change, one change at a time: an `if`/`while`/`x if c else y` test or a
  comprehension's `if` negated (`c` -> `not c`; `not c` -> `c`), a `not` dropped, a comparison
  operator flipped (`<`<->`>=`, `<=`<->`>`, `==`<->`!=`, `in`<->`not in`, `is`<->`is not`)
  and a boolean operator swapped (`and`<->`or`). `x or {}` (`or` with a literal: a default
  value, not a condition) is left alone.
* `run_decisions(decisions)` compiles each mutated module under its real name and file and, in
  a fresh interpreter, installs it in `sys.modules` before pytest starts (`BOOTSTRAP`), then
  runs `pytest -x -q -p no:cacheprovider <the decision's tests>`, two interpreters at a time.
  The mutant is killed when the tests fail and survives when they pass. The tests are first
  run unmutated: a mutant is only judged against tests that pass without it.
* Each mutant has a stable id, `function:+line-offset-in-function:operator` (e.g.
  `choose_node:+14:If->not`; `#2` marks the second such change on one line). A mutant that
  cannot change behaviour (an equivalent mutant) is listed in its decision's `equivalent` by
  that id, with the reason; it is not run.
* A decision's *main* mutants are those its `main` names, by id or by a piece of the source
  line they sit on (`ALL`: every one); without `main`, those of the function's first top-level
  `if`/`while`, or `return` holding a condition.

tests/unit/test_flips.py runs them: the main mutants by default, every mutant with FLIPS=all.
It fails naming each surviving mutant, its line and the flipped text; write the missing test
(tests/unit/test_decisions_flipped.py holds those asked for so far: one input on each side of
the condition), or list the mutant as equivalent. It also fails when a public function of
kubeletplan.py, scheduler.py or endpointslice.py that contains an `if` is not registered, or
when a registered id or main line no longer matches the code.

How to run it, from the repository root: `.venv/bin/python -m pytest -q tests/unit/test_flips.py`
runs the main mutants (under a minute on two idle cores); every mutant, after changing a
decision function or its tests:

    FLIPS=all .venv/bin/python -m pytest -q tests/unit/test_flips.py

`.venv/bin/python -m tests.flips [FILTER]` lists the mutants (FILTER: part of `module:function`,
e.g. `scheduler:choose_node`) and `--run [--all] [FILTER]` runs them and prints each outcome.
"""

from __future__ import annotations

import ast
import marshal
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2           # subprocesses at once
TIMEOUT = 120.0       # seconds for one mutant's test run; longer counts as killed (a hang)

C = "tests/unit/test_controllers_conditions.py"
R = "tests/unit/test_controllers_reconcile.py"
K = "tests/unit/test_kubeletplan.py"
PS = "tests/unit/test_podstatus.py"
ING = "tests/unit/test_ingress.py"
LB = "tests/unit/test_loadbalancer.py"
IPAM = "tests/unit/test_node_ipam.py"
PR = "tests/unit/test_proxy_rules.py"
PG = "tests/unit/test_proxy_golden.py"
PF = "tests/unit/test_proxy_packet_flows.py"
PH = "tests/unit/test_proxy_healthcheck.py"
NPR = "tests/unit/test_netpol_rules.py"
NPS = "tests/unit/test_netpol_syncer.py"
PL = "tests/unit/test_emu_podlab.py"
KINDS = "tests/unit/test_api_kinds.py::test_endpointslice"   # a test id works too
RF = "tests/unit/test_routing_flannel.py"
RS = "tests/unit/test_routing_syncer.py"
RB = "tests/unit/test_routing_bird.py"
PN = "tests/unit/test_spec_pod_network.py"
SS = "tests/unit/test_scenario_spec.py"
F = "tests/unit/test_decisions_flipped.py"   # the tests this registry asked for
ALL = ("*",)   # as `main`: every mutant of the function is main


@dataclass(frozen=True)
class Decision:
    """A pure decision function and the unit test files that must catch a flip in it."""

    module: str                      # testbed.controllers.scheduler
    function: str                    # choose_node, or Class.method
    tests: Sequence[str]             # paths from the repository root (or pytest test ids)
    # Run by default: mutants named by id, or every mutant on a source line containing the text
    # given, or ALL; () -> those of the function's first condition (see `_main_statement`).
    main: Sequence[str] = ()
    equivalent: dict[str, str] = field(default_factory=dict)   # mutant id -> why it is

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", tuple(self.tests))
        object.__setattr__(self, "main", tuple(self.main))

    @property
    def id(self) -> str:
        return f"{self.module.removeprefix('testbed.')}:{self.function}"

    @property
    def path(self) -> Path:
        return ROOT / (self.module.replace(".", "/") + ".py")


REGISTRY: list[Decision] = [
    # -- the scheduler: node readiness and schedulability, load, least loaded ----------------
    Decision("testbed.controllers.scheduler", "_node_ready", [C], main=[
        'condition.get("type") == "Ready"', 'condition.get("status") == "True"']),
    Decision("testbed.controllers.scheduler", "node_load", [C]),
    Decision("testbed.controllers.scheduler", "choose_node", [C, R], main=[
        '.get("unschedulable")', "not _node_ready(node)", "labels.get(k) != v"]),
    Decision("testbed.controllers.scheduler", "schedule_pending", [R, C], main=[
        'if pod["spec"].get("nodeName") or not is_active(pod)']),
    # -- EndpointSlices: which pods are endpoints, their conditions, their ports ---------------
    Decision("testbed.controllers.endpointslice", "resolve_port", [R, F], main=[
        'port.get("name") == target']),
    Decision("testbed.controllers.endpointslice", "_endpoint", [C, R, F], main=[
        '"ready": publish or', '"serving": publish or ready']),
    Decision("testbed.controllers.endpointslice", "desired_groups", [C, R], main=[
        'get("podIP") or is_terminal(pod)']),
    Decision("testbed.controllers.endpointslice", "place_endpoints", [R], main=[
        '(s.get("ports") or []) == port_list', "(i := _identity(e)) in wanted",
        "if held or (not endpoints", "if not endpoints and not kept"]),
    Decision("testbed.controllers.endpointslice", "reconcile_service", [R, F], main=[
        "if match is not None"]),
    Decision("testbed.controllers.endpointslice", "reconcile_endpointslices", [R], main=[
        'spec.get("type") == "ExternalName" or not spec.get("selector")',
        "if owner not in live"]),
    Decision("testbed.api.endpointslices", "_check_endpoint", [KINDS, F], main=[
        "if not addresses", 'address_type == "IPv4"', 'address_type == "FQDN"']),
    # -- the Deployment controller: scale, roll, conditions, orphans --------------------------
    Decision("testbed.controllers.deployment", "reconcile_deployment", [R, F], main=[
        'strategy.get("type") == "Recreate"', "elif not old", "surge == 0 and unavailable == 0"]),
    Decision("testbed.controllers.deployment", "_resolve", [R]),
    Decision("testbed.controllers.deployment", "conditions", [R, C], main=[
        'status["availableReplicas"] >= replicas - unavailable',
        'complete = (status["updatedReplicas"] == replicas']),
    Decision("testbed.controllers.deployment", "reconcile_deployments", [R, F], main=[
        'refs and refs[0].get("uid") not in uids']),
    # -- the kubelet's plan ----------------------------------------------------------------------
    Decision("testbed.node.kubeletplan", "ProbeTracker.due", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "ProbeTracker.next_run", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "ProbeTracker.begin", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "ProbeTracker.carry", [K]),
    Decision("testbed.node.kubeletplan", "probe_sleep", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "next_due", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "ContainerTrack.container_started", [K]),
    Decision("testbed.node.kubeletplan", "ContainerTrack.probers", [K]),
    Decision("testbed.node.kubeletplan", "ProbeTracker.record", [K, F], main=[
        "successThreshold", "failureThreshold"]),
    Decision("testbed.node.kubeletplan", "ContainerTrack.fresh", [K]),
    Decision("testbed.node.kubeletplan", "teardown_grace", [K]),
    Decision("testbed.node.kubeletplan", "should_create", [K]),
    Decision("testbed.node.kubeletplan", "creation_failure", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "stop_pod", [K], main=ALL),
    Decision("testbed.node.kubeletplan", "plan", [K], main=[
        "if obj is None or is_terminating(obj)", "if should_create("]),
    Decision("testbed.node.kubeletplan", "plan_containers", [K], main=[
        "if not seen.running", "tracker.due(started, now)"]),
    Decision("testbed.node.kubeletplan", "_restart", [K], main=[
        "if not should_restart(policy, last_exit)", "if now >= track.backoff_until"]),
    Decision("testbed.node.kubeletplan", "liveness_grace", [K]),
    Decision("testbed.node.kubeletplan", "after_probes", [K], main=[
        'if kind == "liveness" and tracker.result is False']),
    Decision("testbed.node.kubeletplan", "plan_adoption", [K]),
    Decision("testbed.node.kubeletplan", "observation", [K, F], main=["ready = c.running and"]),
    Decision("testbed.node.kubeletplan", "same_status", [K]),
    Decision("testbed.node.kubeletplan", "needs_report", [K]),
    # -- pod status: restart policy, back-off, exit codes, phase --------------------------------
    Decision("testbed.api.podstatus", "should_restart", [PS, K], main=ALL),
    Decision("testbed.api.podstatus", "exit_code", [PS], main=ALL),
    Decision("testbed.api.podstatus", "phase", [PS, F], main=[
        "elif c.restart_count or", 'if obs.restart_policy == "Always"', "if stopped == succeeded"]),
    # -- ingress: which Ingresses, which locations, which endpoints ----------------------------
    Decision("testbed.ingress.config", "serves", [ING]),
    Decision("testbed.ingress.config", "_matches", [ING], main=[
        'if kind == "Exact"', 'if kind == "Prefix"']),
    Decision("testbed.ingress.config", "build", [ING, F], main=[
        'p.get("pathType") != "Exact"', "default is not None and server.fallback is None"]),
    Decision("testbed.ingress.config", "_Backends._endpoints", [ING, F], main=[
        'get("ready", True) is False', 'p.get("name", "") == port.get("name", "")']),
    # -- the load-balancer allocator and its routes -------------------------------------------
    Decision("testbed.controllers.loadbalancer", "wants_load_balancer", [LB]),
    Decision("testbed.controllers.loadbalancer", "PoolAllocator.ensure", [LB], main=[
        "if requested and not self.in_pool(requested)", "if ip not in self._owners"]),
    Decision("testbed.controllers.loadbalancer", "PoolAllocator.restore", [LB]),
    Decision("testbed.controllers.loadbalancer", "local_nodes", [LB], main=[
        'get("ready", True) and ep.get("nodeName")']),
    Decision("testbed.controllers.loadbalancer", "plan_routes", [LB], main=[
        '.get("externalTrafficPolicy") == "Local"']),
    # -- host-local pod IPAM ---------------------------------------------------------------------
    Decision("testbed.node.ipam", "HostLocalIPAM.allocate", [IPAM], main=[
        "if candidate not in self.by_ip and candidate not in"]),
    Decision("testbed.node.ipam", "HostLocalIPAM.assign", [IPAM], main=[
        "if holder is not None and holder != key"]),
    # -- kube-proxy: which endpoints, which chains -----------------------------------------------
    Decision("testbed.proxy.model", "categorize", [PR, PG, PF, F], main=[
        "cluster = [ep for ep in eps if ep.ready]", "if not cluster",
        "if ep.serving and ep.terminating]", "elif ep.serving and ep.terminating"], equivalent={
        "categorize:+29:Or->And": "the early return only skips the merge: when local is empty "
                                  "or ready-only it is a subset of cluster, and the merge gives "
                                  "cluster back in the same ip:port order"}),
    Decision("testbed.proxy.model", "traffic_plan", [PR, PG, PF], main=ALL),
    Decision("testbed.proxy.model", "ServicePort.uses_cluster_endpoints", [PR, PG, PF],
             main=ALL),
    Decision("testbed.proxy.model", "ServicePort.uses_local_endpoints", [PR, PG, PF], main=ALL),
    Decision("testbed.proxy.healthcheck", "health_checks", [PH], main=[
        "if ep.ready and ep.is_local(node_name)"]),
    # -- NetworkPolicy: upstream's semantics, a node's plan, what a sync writes ------------------
    # (each function's first condition by default; FLIPS=all runs all 136, none survives)
    Decision("testbed.netpol.model", "selects", [NPR]),
    Decision("testbed.netpol.model", "_side_allows", [NPR]),
    Decision("testbed.netpol.model", "allows", [NPR]),
    Decision("testbed.netpol.model", "_port_matches", [NPR]),
    Decision("testbed.netpol.model", "_peer_matches_pod", [NPR]),
    Decision("testbed.netpol.model", "_in_block", [NPR]),
    Decision("testbed.netpol.model", "block_networks", [NPR], main=["elif net.subnet_of(hole)"]),
    Decision("testbed.netpol.model", "pod_info", [NPR]),
    Decision("testbed.netpol.model", "parse_policy", [NPR]),
    Decision("testbed.netpol.model", "_planned_rule", [NPR]),
    Decision("testbed.netpol.model", "resolve", [NPR, NPS], main=["if not selects(policy, pod)"]),
    Decision("testbed.netpol.syncer", "PolicySyncer.sync", [NPS], main=[
        "skip = not full and not self.dirty"]),
    Decision("testbed.netpol.syncer", "PolicySyncer._apply_iptables", [NPS, NPR]),
    Decision("testbed.netpol.syncer", "PolicySyncer._apply_nftables", [NPS, NPR]),
    # -- pod networks: the topology's podNetwork, flannel's plan and syncer, bird, when: -----------
    Decision("testbed.spec.topology", "check_pod_network", [PN]),
    Decision("testbed.spec.topology", "parse_pod_network", [PN]),
    Decision("testbed.spec.topology", "layer_pod_network", [PN]),
    Decision("testbed.spec.topology", "resolve_pod_network", [PN]),
    Decision("testbed.routing.flannel", "plan", [RF, RS]),
    Decision("testbed.routing.flannel", "parse_lease", [RF, RS]),
    Decision("testbed.routing.flannel", "owned_route", [RF, RS]),
    Decision("testbed.routing.flannel", "annotations_stale", [RF, RS]),
    Decision("testbed.routing.flannel", "vxlan_incompatible", [RF, RS]),
    Decision("testbed.routing.syncer", "RouteSyncer.sync", [RS]),
    Decision("testbed.routing.bird", "established", [RB]),
    Decision("testbed.scenario.spec", "Step.skipped_under", [SS], main=ALL),
    Decision("testbed.scenario.steps", "judge_route", [SS]),
    # -- the benchmark pod lab's placement -------------------------------------------------------
    Decision("testbed.emu.podlab", "least_loaded", [PL, C], main=[
        'if spec["nodeName"] not in names', ".get(k) == v", "if not fits"]),
]


# -- finding the function -----------------------------------------------------------------------

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def find_function(tree: ast.Module, qualname: str) -> FunctionNode | None:
    """The def of `qualname` ("f" or "Class.method") at the top of `tree`, or None."""
    body: list[ast.stmt] = tree.body
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in body if isinstance(n, kinds) and n.name == part]
        if not found:
            return None
        if last:
            return found[-1]   # a later def replaces an earlier one, as at run time
        body = found[-1].body
    return None


def functions_with_if(path: Path) -> list[str]:
    """Qualified names of the top-level functions and methods of top-level classes in `path`
    whose own names do not start with "_" and that hold an `if` (statement, expression or a
    comprehension's)."""
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def has_if(fn: ast.AST) -> bool:
        return any(isinstance(n, (ast.If, ast.IfExp)) or (isinstance(n, ast.comprehension)
                                                          and n.ifs) for n in ast.walk(fn))

    for node in tree.body:
        defs = [(node.name, node)] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
            else [(f"{node.name}.{n.name}", n) for n in node.body
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] \
            if isinstance(node, ast.ClassDef) else []
        for qualname, fn in defs:
            if not qualname.rsplit(".", 1)[-1].startswith("_") and has_if(fn):
                out.append(qualname)
    return out


# -- mutants ------------------------------------------------------------------------------------

FLIPPED_CMP: dict[type, type] = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.LtE: ast.Gt, ast.Gt: ast.LtE,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
FLIPPED_BOOL: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass(frozen=True)
class Site:
    """One place a mutant changes: the node (by its index in the function's walk order),
    which change, and which part of the node (the comparison operator's or the `if`'s index)."""

    index: int
    kind: str       # If, While, IfExp, CompIf, Not, Cmp, Bool
    part: int = 0


@dataclass(frozen=True)
class Mutant:
    decision: Decision
    id: str          # function:+offset:operator, stable while the function's lines stay
    line: int        # in the module
    line_text: str   # the source line it sits on, stripped
    original: str    # the source text changed
    flipped: str     # what it became
    main: bool       # run by default
    site: Site

    def __str__(self) -> str:
        return (f"{self.id} ({self.decision.path.relative_to(ROOT)}:{self.line}): "
                f"{self.original}  ->  {self.flipped}")


def _walk(fn: FunctionNode) -> list[ast.AST]:
    """Every node of the function's body, in a fixed order (not its decorators, defaults or
    annotations: those are not its decisions)."""
    out: list[ast.AST] = []
    for stmt in fn.body:
        out.extend(ast.walk(stmt))
    return out


def _sites(nodes: list[ast.AST]) -> Iterator[tuple[Site, ast.AST, str]]:
    """(site, the node to show, operator label) for every change the function allows."""
    as_tests: set[int] = set()   # `not x` nodes that are an if's test: negating the if is dropping the not
    for node in nodes:
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            as_tests.add(id(node.test))
        elif isinstance(node, ast.comprehension):
            as_tests.update(id(t) for t in node.ifs)
    for index, node in enumerate(nodes):
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            kind = type(node).__name__
            yield Site(index, kind), node.test, f"{kind}->not"
        elif isinstance(node, ast.comprehension):
            for part, test in enumerate(node.ifs):
                yield Site(index, "CompIf", part), test, "CompIf->not"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) \
                and id(node) not in as_tests:
            yield Site(index, "Not"), node, "Not->drop"
        elif isinstance(node, ast.Compare):
            for part, op in enumerate(node.ops):
                flipped = FLIPPED_CMP[type(op)]
                yield Site(index, "Cmp", part), node, f"{type(op).__name__}->{flipped.__name__}"
        elif isinstance(node, ast.BoolOp) and not _is_default(node):
            flipped = FLIPPED_BOOL[type(node.op)]
            yield Site(index, "Bool"), node, f"{type(node.op).__name__}->{flipped.__name__}"


def _is_default(node: ast.BoolOp) -> bool:
    """`x or {}`, `x or ""`, `x or 0`: a value with its default, not a condition."""
    last = node.values[-1]
    return isinstance(node.op, ast.Or) and (
        isinstance(last, ast.Constant) or (isinstance(last, (ast.Dict, ast.List, ast.Tuple, ast.Set))
                                           and not getattr(last, "keys", None)
                                           and not getattr(last, "elts", None)))


def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.copy_location(ast.UnaryOp(ast.Not(), test), test)


def _apply(nodes: list[ast.AST], site: Site) -> ast.AST:
    """Change the tree at `site` in place; returns the node whose new text to show."""
    node = nodes[site.index]
    if site.kind in ("If", "While", "IfExp"):
        node.test = _negate(node.test)
        return node.test
    if site.kind == "CompIf":
        node.ifs[site.part] = _negate(node.ifs[site.part])
        return node.ifs[site.part]
    if site.kind == "Not":
        return node   # replaced by its operand in the parent, below
    if site.kind == "Cmp":
        node.ops[site.part] = FLIPPED_CMP[type(node.ops[site.part])]()
        return node
    node.op = FLIPPED_BOOL[type(node.op)]()
    return node


def _drop_not(fn: ast.AST, target: ast.AST) -> None:
    """Replace the `not x` node `target` by `x` wherever it sits in `fn`."""
    for parent in ast.walk(fn):
        for name, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, name, target.operand)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is target:
                        value[i] = target.operand
                        return
    raise AssertionError("the `not` to drop has no parent")


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _main_statement(fn: FunctionNode) -> ast.stmt | None:
    """The statement whose condition is the function's main one, by default: the first
    top-level `if`, `while` or `return` that holds a condition (an `if`, a comparison, a boolean
    operator or a `not`)."""
    conditional = (ast.If, ast.IfExp, ast.Compare, ast.BoolOp, ast.comprehension)
    for stmt in fn.body:
        if isinstance(stmt, (ast.If, ast.While)):
            return stmt
        if isinstance(stmt, ast.Return) and stmt.value is not None and any(
                isinstance(n, conditional) or (isinstance(n, ast.UnaryOp)
                                               and isinstance(n.op, ast.Not))
                for n in ast.walk(stmt.value)):
            return stmt
    return None


def _in_main(stmt: ast.stmt | None, node: ast.AST) -> bool:
    """`node` is part of the main statement's condition: its test (for an `if`/`while`, not
    its body) or its returned value."""
    if stmt is None:
        return False
    if node is stmt:
        return True
    part = stmt.test if isinstance(stmt, (ast.If, ast.While)) else stmt.value
    return any(n is node for n in ast.walk(part))


def parse(decision: Decision, source: str | None = None) -> tuple[str, ast.Module, FunctionNode]:
    source = decision.path.read_text() if source is None else source
    tree = ast.parse(source, str(decision.path))
    fn = find_function(tree, decision.function)
    if fn is None:
        raise LookupError(f"{decision.module} has no function {decision.function}")
    return source, tree, fn


def mutants(decision: Decision, source: str | None = None) -> list[Mutant]:
    """Every mutant of the decision's function, in source order, with stable ids."""
    source, _, fn = parse(decision, source)
    nodes = _walk(fn)
    main_stmt = _main_statement(fn)
    name = decision.function.rsplit(".", 1)[-1]
    found: list[tuple[int, int, str, Site, ast.AST]] = []
    for site, shown, label in _sites(nodes):
        node = nodes[site.index]
        found.append((shown.lineno, shown.col_offset, label, site, node))
    found.sort(key=lambda f: (f[0], f[1], f[2], f[3].part))
    out = []
    seen: dict[str, int] = {}
    for line, _col, label, site, node in found:
        base = f"{name}:+{line - fn.lineno}:{label}"
        seen[base] = seen.get(base, 0) + 1
        mid = base if seen[base] == 1 else f"{base}#{seen[base]}"
        # The flipped text: apply the change to a copy of the shown node.
        _, tree2, fn2 = parse(decision, source)
        nodes2 = _walk(fn2)
        changed = _apply(nodes2, site)
        original = ast.get_source_segment(source, _shown(nodes, site)) or ast.unparse(
            _shown(nodes, site))
        flipped = ast.unparse(changed.operand if site.kind == "Not" else changed)
        line_text = source.splitlines()[line - 1].strip()
        main = is_main(decision.main, mid, line_text) if decision.main \
            else _in_main(main_stmt, node)
        out.append(Mutant(decision, mid, line, line_text, _short(original), _short(flipped), main,
                          site))
    return out


def is_main(items: Sequence[str], mutant_id: str, line_text: str) -> bool:
    return any(item == ALL[0] or item == mutant_id or item in line_text for item in items)


def _shown(nodes: list[ast.AST], site: Site) -> ast.AST:
    node = nodes[site.index]
    if site.kind in ("If", "While", "IfExp"):
        return node.test
    if site.kind == "CompIf":
        return node.ifs[site.part]
    return node


def mutated_code(mutant: Mutant, source: str):
    """The module's code object with the mutant's one change, under the module's real file name
    (so tracebacks point at the real lines)."""
    _, tree, fn = parse(mutant.decision, source)
    nodes = _walk(fn)
    changed = _apply(nodes, mutant.site)
    if mutant.site.kind == "Not":
        _drop_not(fn, changed)
    ast.fix_missing_locations(tree)
    return compile(tree, str(mutant.decision.path), "exec", dont_inherit=True)


# -- running them -------------------------------------------------------------------------------

# Runs in the fresh interpreter: argv = module name, code file, real file, pytest arguments.
# The mutated module is imported (through a finder placed first) before pytest starts, so every
# later `import` of it, the tests' included, gets the mutant from sys.modules.
BOOTSTRAP = r"""
import importlib, importlib.abc, importlib.util, marshal, sys
name, code_path, origin, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__file__ = origin
        with open(code_path, "rb") as f:
            exec(marshal.load(f), module.__dict__)
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == name:
            return importlib.util.spec_from_loader(fullname, Loader(), origin=origin)
        return None
sys.meta_path.insert(0, Finder())
try:
    module = importlib.import_module(name)
    assert isinstance(module.__spec__.loader, Loader), "the mutant was not the module imported"
except BaseException as e:
    print(f"flips bootstrap: cannot import the mutant of {name}: {e!r}", file=sys.stderr)
    sys.exit(98)
import pytest
sys.exit(pytest.main(args))
"""
BOOTSTRAP_FAILED = 98


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant | None      # None: the unmutated baseline
    returncode: int | None     # None: timed out
    output: str

    @property
    def survived(self) -> bool:
        return self.returncode == 0

    @property
    def broken(self) -> bool:
        """The run says nothing about the tests: the bootstrap failed, pytest could not be
        used, or no test was collected."""
        return self.returncode in (BOOTSTRAP_FAILED, 4, 5)


def _pytest_args(tests: Sequence[str]) -> list[str]:
    return ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *tests]


def _run(module: str, code, origin: Path, tests: Sequence[str], mutant: Mutant | None,
         workdir: Path) -> Outcome:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("FLIPS", None)
    if code is None:
        cmd = [sys.executable, "-m", "pytest", *_pytest_args(tests)]
    else:
        fd, code_path = tempfile.mkstemp(suffix=".marshal", dir=workdir)
        with os.fdopen(fd, "wb") as f:
            marshal.dump(code, f)
        cmd = [sys.executable, "-c", BOOTSTRAP, module, code_path, str(origin),
               *_pytest_args(tests)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        return Outcome(mutant, None, out + f"\n(timed out after {TIMEOUT:.0f} s)")
    return Outcome(mutant, done.returncode, done.stdout + done.stderr)


def selected_mutants(decision: Decision, every: bool | None = None,
                     source: str | None = None) -> list[Mutant]:
    """The mutants a run tries: the main ones, or all with `every` (default: FLIPS=all);
    never the known-equivalent ones (they would survive by definition)."""
    every = os.environ.get("FLIPS", "") == "all" if every is None else every
    return [m for m in mutants(decision, source)
            if (every or m.main) and m.id not in decision.equivalent]


def run_decisions(decisions: Iterable[Decision], every: bool | None = None,
                  workers: int = WORKERS) -> dict[str, list[Outcome]]:
    """decision id -> [the unmutated run of its test files, then one outcome per selected
    mutant], everything in one pool of `workers` interpreters. Each module's source is read
    once, so every mutant of it comes from the same text."""
    decisions = list(decisions)
    sources: dict[Path, str] = {}
    with tempfile.TemporaryDirectory(prefix="flips-") as tmp, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        work = Path(tmp)
        baselines = {}
        for d in decisions:
            if d.tests not in baselines:
                baselines[d.tests] = pool.submit(_run, "", None, ROOT, d.tests, None, work)
        futures = {}
        for d in decisions:
            source = sources.setdefault(d.path, d.path.read_text())
            futures[d.id] = [pool.submit(_run, d.module, mutated_code(m, source), d.path,
                                         d.tests, m, work)
                             for m in selected_mutants(d, every, source)]
        return {d.id: [baselines[d.tests].result(), *(f.result() for f in futures[d.id])]
                for d in decisions}


def _main(argv: list[str]) -> int:
    do_run = "--run" in argv
    every = "--all" in argv or os.environ.get("FLIPS") == "all"
    words = [a for a in argv if not a.startswith("--")]
    chosen = [d for d in REGISTRY if not words or any(w in d.id for w in words)]
    total = sum(len(mutants(d)) for d in chosen)
    main = sum(m.main for d in chosen for m in mutants(d))
    if not do_run:
        for d in chosen:
            for m in mutants(d):
                flag = "main" if m.main else "    "
                eq = f"  [equivalent: {d.equivalent[m.id]}]" if m.id in d.equivalent else ""
                print(f"{flag} {d.module}: {m}{eq}")
        print(f"{len(chosen)} decisions, {total} mutants, {main} main")
        return 0
    survivors = ran = 0
    results = run_decisions(chosen, every)
    for d in chosen:
        base, *outcomes = results[d.id]
        if base.returncode != 0:
            print(f"BASELINE FAILS {d.id}: {' '.join(d.tests)}\n{base.output[-2000:]}")
        for outcome in outcomes:
            ran += 1
            state = "SURVIVED" if outcome.survived else "killed" if not outcome.broken \
                else f"BROKEN rc={outcome.returncode}"
            survivors += outcome.survived
            print(f"{state:10} {d.module}: {outcome.mutant}", flush=True)
    print(f"{len(chosen)} decisions, {total} mutants, {main} main; ran {ran}; "
          f"{survivors} survivors")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

