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
from testbed.scenario.preflight import check_scenario
from testbed.scenario.results import StepResult
from testbed.scenario.spec import Scenario, Step
from testbed.scenario.steps import Outcome, execute
from testbed.spec.source import Problem
from testbed.spec.topology import Topology


@dataclass
class Prepared:
    scenario: Scenario
    topology: Topology
    objects: list[dict]
    step_objects: dict[int, list[dict]] = field(default_factory=dict)   # apply/delete steps' manifests
    warnings: list[Problem] = field(default_factory=list)   # accepted, worth a line on stderr


def prepare(path: str, proxy_mode: str | None = None, policy_mode: str | None = None) -> Prepared:
    """Load and check the scenario and everything it names (testbed.scenario.preflight's
    check_scenario; `proxy_mode` and `policy_mode` override every worker's, as --kube-proxy
    and --network-policy do); SpecError lists every problem. Warnings come back to be printed."""
    checked = check_scenario(path, which=shutil.which, has_sctp=sctp_supported,
                             proxy_mode=proxy_mode,
                             policy_mode=policy_mode)
    checked.raise_if_problems()
    assert checked.scenario is not None and checked.topology is not None
    return Prepared(checked.scenario, checked.topology, checked.objects, checked.step_objects,
                    checked.warnings)


class Runner:
    def __init__(self, prepared: Prepared, progress: Callable[[str], None]):
        self.prepared = prepared
        self.progress = progress
        self.results: list[StepResult] = []
        self.cluster: Cluster | None = None
        self.setup_seconds = 0.0

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
                mark = "PASS" if result.passed else "FAIL"
                self.progress(f"[{index}/{total}] {mark} {step.name}: {result.observed} ({result.seconds:.2f}s)")
        finally:
            self.progress("tearing down")
            self.cluster.down()

    def run_step(self, step: Step, index: int) -> StepResult:
        started = time.monotonic()
        try:
            outcome = execute(self.cluster, step, self.prepared.step_objects.get(index), self.progress)
        except (ApiError, ControlPlaneError, TimeoutError, KeyError, OSError) as err:
            # A step that cannot be carried out fails, and the scenario goes on.
            outcome = Outcome(False, step.name, f"error: {err}")
        return StepResult(step, outcome.passed, outcome.expectation, outcome.observed,
                          time.monotonic() - started, outcome.details)


def log_progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
