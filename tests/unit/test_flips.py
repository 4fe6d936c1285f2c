"""Flipping a decision function's main condition fails a unit test (tests/flips.py).

For each decision of tests/flips.py's REGISTRY, the main mutants (every mutant with FLIPS=all)
are run against the decision's test files, each in a fresh interpreter, two at a time; a
mutant that the tests let pass fails this test, named with its line and the flipped text.
The registry itself is checked too: it names functions that exist, its ids and main lines
still match the code, and every public function with an `if` in the kubelet's plan, the
scheduler and the EndpointSlice controller is registered.
"""

from __future__ import annotations

import os

import pytest

from tests import flips

CHECKED_MODULES = ("testbed/node/kubeletplan.py", "testbed/controllers/scheduler.py",
                   "testbed/controllers/endpointslice.py")


# -- the registry -------------------------------------------------------------------------------

def test_the_registry_names_functions_that_exist() -> None:
    problems = []
    ids = [d.id for d in flips.REGISTRY]
    problems += [f"{i}: registered twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for d in flips.REGISTRY:
        try:
            found = flips.mutants(d)
        except LookupError as e:
            problems.append(f"{d.id}: {e}")
            continue
        if not found:
            problems.append(f"{d.id}: no condition to flip (not a decision function?)")
        if not any(m.main for m in found):
            problems.append(f"{d.id}: no main mutant: name its main condition's line in `main`")
        problems += [f"{d.id}: test file {t} does not exist" for t in d.tests
                     if not (flips.ROOT / t.split("::")[0]).is_file()]
        ids_here = {m.id for m in found}
        problems += [f"{d.id}: equivalent mutant {e} is not a mutant of the function any more "
                     "(it changed: check it again and update the id)"
                     for e in d.equivalent if e not in ids_here]
        problems += [f"{d.id}: main {item!r} matches no mutant (the function changed?)"
                     for item in d.main if item not in flips.ALL and not any(
                         flips.is_main([item], m.id, m.line_text) for m in found)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHECKED_MODULES)
def test_every_public_decision_function_is_registered(path: str) -> None:
    """A new function with an `if` here comes with a REGISTRY entry (and so a flip test)."""
    module = path.removesuffix(".py").replace("/", ".")
    registered = {d.function for d in flips.REGISTRY if d.module == module}
    missing = [f for f in flips.functions_with_if(flips.ROOT / path) if f not in registered]
    assert not missing, (f"{path}: decision functions without a flip test: {missing}; add them "
                         "to tests/flips.py's REGISTRY with the test files that catch a flip")


def test_the_mutator_makes_each_kind_of_change() -> None:
    """On a known function: one mutant per condition, comparison, `not` and `and`/`or`, ids by
    line offset and operator, and `x or {}` (a default, not a condition) left alone."""
    source = ("def f(a, b, c):\n"
              "    d = c or {}\n"
              "    if a < b and not c:\n"
              "        return [x for x in d if x is None]\n"
              "    return 1 if a in d else 2\n")
    d = flips.Decision("m", "f", [])
    got = {m.id: m.flipped for m in flips.mutants(d, source)}
    assert got == {
        "f:+2:If->not": "not (a < b and (not c))",
        "f:+2:And->Or": "a < b or not c",
        "f:+2:Lt->GtE": "a >= b",
        "f:+2:Not->drop": "c",
        "f:+3:CompIf->not": "not x is None",
        "f:+3:Is->IsNot": "x is not None",
        "f:+4:IfExp->not": "not a in d",
        "f:+4:In->NotIn": "a not in d",
    }
    # and each compiles, under the module's real file name (tracebacks point at its lines)
    for m in flips.mutants(d, source):
        namespace: dict = {}
        exec(flips.mutated_code(m, source), namespace)
        assert namespace["f"].__code__.co_filename == str(d.path)


# -- the flips ----------------------------------------------------------------------------------

EVERY = os.environ.get("FLIPS", "") == "all"


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> dict[str, list[flips.Outcome]]:
    """Every selected decision's mutants, run at once (two at a time) so that no worker idles
    between decisions; each decision's test files are first run unmutated."""
    wanted = [item.callspec.params["decision"] for item in request.session.items
              if item.originalname == "test_flipping_a_main_condition_fails_a_test"
              and hasattr(item, "callspec")]
    return flips.run_decisions(wanted, every=EVERY)


@pytest.mark.parametrize("decision", flips.REGISTRY, ids=lambda d: d.id)
def test_flipping_a_main_condition_fails_a_test(decision: flips.Decision,
                                                outcomes: dict[str, list[flips.Outcome]]) -> None:
    results = outcomes[decision.id]
    base = results[0]
    assert base.mutant is None and base.returncode == 0, (
        f"{decision.id}: its tests fail without any mutant, so flips cannot be judged:\n"
        + base.output[-3000:])
    broken = [o for o in results[1:] if o.broken]
    assert not broken, "\n".join(f"{o.mutant}: the run says nothing (exit {o.returncode}):\n"
                                 f"{o.output[-1500:]}" for o in broken)
    survivors = [o.mutant for o in results[1:] if o.survived]
    assert not survivors, (
        f"{len(survivors)} flipped condition(s) in {decision.module}.{decision.function} pass "
        f"{', '.join(decision.tests)}: add a test calling it with one input on each side of "
        "the condition (tests/unit/test_decisions_flipped.py), or list the mutant in the "
        "entry's `equivalent` with the reason:\n"
        + "\n".join(f"  {m}" for m in survivors))
