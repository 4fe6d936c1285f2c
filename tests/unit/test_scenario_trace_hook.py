"""The runner traces a failed probe step at once (testbed.scenario.runner's hook), and a trace
that cannot be taken is recorded, never raised. No cluster is built: a fake stands in for the
one thing a probe step asks of it first, and a fake tracer for testbed.emu.tracing."""

from __future__ import annotations

import time

from testbed.scenario.runner import Prepared, Runner, trace_failure
from testbed.scenario.spec import Expect, Probe, Sleep, Step, Target

PROBE = Probe("tcp", "pod-a", Target("pod-c", 9999), Expect())
TRACE = {"mode": "live", "verdict": "rejected", "hops": [{"host": "default/pod-a"}]}


class NoSuchSource:
    """A cluster where the probe's source is missing: the probe step fails (as an error)."""

    def endpoint(self, name):
        raise KeyError(f"no endpoint {name}")


class Tracer:
    def __init__(self, result=TRACE, delay: float = 0.0):
        self.result, self.delay, self.calls = result, delay, []

    def __call__(self, cluster, probe):
        self.calls.append((cluster, probe))
        time.sleep(self.delay)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def runner(tracer) -> tuple[Runner, list[str]]:
    said: list[str] = []
    r = Runner(Prepared(None, None, []), said.append, tracer=tracer)
    r.cluster = NoSuchSource()
    return r, said


def test_a_failed_probe_is_traced_at_once_and_the_trace_kept():
    tracer = Tracer(delay=0.3)
    r, said = runner(tracer)
    result = r.run_step(Step("pod-a to a closed port", 4, PROBE), 0)
    assert not result.passed
    assert tracer.calls == [(r.cluster, PROBE)]
    assert result.details["trace"] == TRACE
    assert result.details["traceSeconds"] >= 0.3
    assert result.seconds < 0.3          # the step's own time, without the trace's
    assert any("tracing the failing connection" in line for line in said)


def test_a_trace_that_fails_is_recorded_not_raised():
    r, _ = runner(Tracer(RuntimeError("no such chain")))
    result = r.run_step(Step("pod-a to a closed port", 4, PROBE), 0)
    assert not result.passed
    assert result.details["trace"] == "trace failed: RuntimeError: no such chain"
    assert trace_failure(None, PROBE, Tracer(KeyError("x"))) == "trace failed: KeyError: 'x'"


def test_passing_and_non_probe_steps_are_not_traced():
    tracer = Tracer()
    r, said = runner(tracer)
    result = r.run_step(Step("a pause", 2, Sleep(0.0)), 0)
    assert result.passed and "trace" not in result.details
    assert tracer.calls == [] and not any("tracing" in line for line in said)


def test_a_failed_reachability_step_traces_its_first_wrong_cell(monkeypatch):
    from testbed.scenario import runner as runner_module
    from testbed.scenario.reachability import Reachability
    from testbed.scenario.steps import Outcome

    wrong = [{"port": "tcp/80", "from": "x/a", "to": "y/b", "expected": False, "observed": True},
             {"port": "udp/81", "from": "x/b", "to": "y/b", "expected": False, "observed": True}]
    monkeypatch.setattr(runner_module, "execute", lambda *a: Outcome(
        False, "x/a only", "2 of 9 cells wrong", {"mismatches": wrong}))
    cells = Tracer()
    said: list[str] = []
    r = Runner(Prepared(None, None, []), said.append, tracer=Tracer(), cell_tracer=cells)
    r.cluster = NoSuchSource()
    step = Step("x/a only", 9, object.__new__(Reachability))
    result = r.run_step(step, 0)
    assert cells.calls == [(r.cluster, wrong[0])] and result.details["trace"] == TRACE
    assert any("tracing the first wrong cell: x/a -> y/b tcp/80" in line for line in said)
    monkeypatch.setattr(runner_module, "execute", lambda *a: Outcome(True, "x/a only", "ok", {}))
    assert "trace" not in r.run_step(step, 0).details        # a passing one is not traced
