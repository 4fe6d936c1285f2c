"""Pure: what one step of a scenario came to, as the runner records it and the reports print it."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.scenario.spec import Step


@dataclass
class StepResult:
    step: Step
    passed: bool
    expectation: str
    observed: str
    seconds: float
    details: dict = field(default_factory=dict)
    skipped: bool = False     # not run: the step's `when:` excludes this run's pod network

    @property
    def state(self) -> str:
        """"skip", "pass" or "fail": what the reports and the progress lines mark it with."""
        return "skip" if self.skipped else "pass" if self.passed else "fail"
