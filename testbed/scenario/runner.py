"""Acts: runs a scenario: validate everything, build the cluster, apply, run steps, tear down.

Everything the scenario names is loaded and checked first (testbed.scenario.preflight:
topology, manifests, names in steps); only then is anything built, so bad input never leaves anything behind. SIGINT and
SIGTERM tear the cluster down before the command exits.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.apiclient.client import ApiError
from testbed.emu.cluster import Cluster
from testbed.emu.controlplane import ControlPlaneError
from testbed.emu.probes import sctp_supported
from testbed.emu.shield import interrupted_once
from testbed.scenario.html import Diagram
from testbed.scenario.preflight import check_scenario
from testbed.scenario.reachability import Reachability
from testbed.scenario.results import StepResult
from testbed.scenario.spec import Probe, Scenario, Step
from testbed.scenario.steps import Outcome, execute, trace_mismatch, trace_probe
from testbed.spec.source import Problem
from testbed.spec.topology import Topology


@dataclass
class Prepared:
    scenario: Scenario
    topology: Topology
    objects: list[dict]
    step_objects: dict[int, list[dict]] = field(default_factory=dict)   # apply/delete steps' manifests
    warnings: list[Problem] = field(default_factory=list)   # accepted, worth a line on stderr


def prepare(path: str, proxy_mode: str | None = None, policy_mode: str | None = None,
            pod_network: dict | None = None) -> Prepared:
    """Load and check the scenario and everything it names (testbed.scenario.preflight's
    check_scenario; `proxy_mode` and `policy_mode` override every worker's, as --kube-proxy
    and --network-policy do; `pod_network` the command line's podNetwork fields); SpecError
    lists every problem. Warnings come back to be printed."""
    checked = check_scenario(path, which=shutil.which, has_sctp=sctp_supported,
                             proxy_mode=proxy_mode, policy_mode=policy_mode,
                             pod_network=pod_network)
    checked.raise_if_problems()
    assert checked.scenario is not None and checked.topology is not None
    return Prepared(checked.scenario, checked.topology, checked.objects, checked.step_objects,
                    checked.warnings)


class Runner:
    """Runs a prepared scenario. A failed probe step is traced at once, while the cluster is as
    the probe found it (details["trace"]); with `diagram`, the cluster's picture is taken after
    the last step, before the teardown (self.diagram)."""

    def __init__(self, prepared: Prepared, progress: Callable[[str], None], diagram: bool = False,
                 tracer: Callable[[Cluster, Probe], dict] | None = None,
                 cell_tracer: Callable[[Cluster, dict], dict] | None = None):
        self.prepared = prepared
        self.tracer = tracer   # testbed.scenario.steps.trace_probe unless handed another
        self.cell_tracer = cell_tracer   # testbed.scenario.steps.trace_mismatch unless handed another
        self.progress = progress
        self.results: list[StepResult] = []
        self.cluster: Cluster | None = None
        self.setup_seconds = 0.0
        self.want_diagram = diagram
        self.diagram = Diagram(unavailable="the run ended before its steps")

    def run(self) -> list[StepResult]:
        started = time.monotonic()
        self.cluster = Cluster(self.prepared.topology, progress=self.progress)
        with interrupted_once():   # Ctrl-C or SIGTERM: tear down; a second one cannot stop that
            self._run(started)
        return self.results

    def _run(self, started: float) -> None:
        try:
            self.cluster.up()
            objects = self.prepared.objects
            if objects:
                self.progress(f"applying {len(objects)} objects")
                self.cluster.apply(objects)
                self.progress("waiting for their pods to be ready")
                self.cluster.wait_ready(objects, timeout=90)
            self.setup_seconds = time.monotonic() - started
            self.progress(f"cluster ready in {self.setup_seconds:.2f}s")
            total = len(self.prepared.scenario.steps)
            for index, step in enumerate(self.prepared.scenario.steps, 1):
                self.progress(f"[{index}/{total}] {step.name} ...")
                result = self.run_step(step, index - 1)
                self.results.append(result)
                self.progress(f"[{index}/{total}] {result.state.upper()} {step.name}: "
                              f"{result.observed} ({result.seconds:.2f}s)")
            if self.want_diagram:
                self.diagram = take_diagram(self.cluster)
        finally:
            self.progress("tearing down")
            self.cluster.down()

    def run_step(self, step: Step, index: int) -> StepResult:
        topology = self.prepared.topology   # None where unit tests run steps without one
        why = step.skipped_under(topology.pod_network) if topology is not None else None
        if why is not None:
            return StepResult(step, True, "skipped", f"skipped: {why}", 0.0, skipped=True)
        started = time.monotonic()
        try:
            outcome = execute(self.cluster, step, self.prepared.step_objects.get(index), self.progress)
        except (ApiError, ControlPlaneError, TimeoutError, KeyError, OSError) as err:
            # A step that cannot be carried out fails, and the scenario goes on.
            outcome = Outcome(False, step.name, f"error: {err}")
        seconds = time.monotonic() - started
        failing = None if outcome.passed else self._failing(step, outcome)
        if failing is not None:
            what, tracer, said = failing
            self.progress(f"  tracing {said}")
            traced = time.monotonic()
            outcome.details["trace"] = trace_failure(self.cluster, what, tracer)
            outcome.details["traceSeconds"] = round(time.monotonic() - traced, 3)
        return StepResult(step, outcome.passed, outcome.expectation, outcome.observed,
                          seconds, outcome.details)


    def _failing(self, step: Step, outcome: Outcome):
        """(what to trace, the tracer, how to say it) for a failed step that has a connection:
        a probe's, or a reachability step's first wrong cell; None for other steps."""
        if isinstance(step.action, Probe):
            return step.action, self.tracer or trace_probe, "the failing connection"
        if isinstance(step.action, Reachability) and outcome.details.get("mismatches"):
            cell = outcome.details["mismatches"][0]
            tracer = self.cell_tracer or (lambda cluster, cell, timeout=step.action.timeout:
                                          trace_mismatch(cluster, cell, timeout))
            return cell, tracer, f"the first wrong cell: {cell['from']} -> {cell['to']} {cell['port']}"
        return None


def trace_failure(cluster: Cluster, probe: Probe | dict,
                  tracer: Callable[[Cluster, object], dict] | None = None) -> dict | str:
    """The trace of a failed probe's connection or a reachability step's wrong cell (`tracer`,
    by default testbed.scenario.steps' trace_probe), or "trace failed: why": a trace that cannot
    be taken never ends the run or changes the step's verdict."""
    try:
        return (tracer or trace_probe)(cluster, probe)
    except Exception as err:   # whatever went wrong is reported; the run goes on
        return f"trace failed: {type(err).__name__}: {err}"


def take_diagram(cluster: Cluster) -> Diagram:
    """The running cluster's picture as SVG (testbed.emu.diagram_command, which needs
    Graphviz's dot), or why there is none: a missing picture never fails the run."""
    if shutil.which("dot") is None:
        return Diagram(unavailable="Graphviz's dot is not installed (Debian's package graphviz)")
    try:
        from testbed.emu.diagram_command import cluster_svg

        return Diagram(svg=cluster_svg(cluster))
    except Exception as err:   # a report without a picture is still a report
        return Diagram(unavailable=f"{type(err).__name__}: {err}")


def log_progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
