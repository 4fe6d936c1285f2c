"""Pure: the final table, JUnit XML and JSON report of a scenario run.

A step whose details hold `tables` (a reachability step's matrices, printed as upstream
prints them) has them in its JUnit system-out and, when it failed, in its failure's text; the
JSON report carries every step's details as they are.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from testbed.scenario.results import StepResult


def table(results: Sequence[StepResult]) -> str:
    rows = [("#", "step", "expected", "observed", "result", "time")]
    for i, r in enumerate(results, 1):
        rows.append((str(i), r.step.name, r.expectation, r.observed, r.state.upper(),
                     f"{r.seconds:.2f}s"))
    limits = [4, 44, 30, 70, 6, 8]
    rows = [tuple(_cut(c, w) for c, w in zip(row, limits, strict=True)) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(totals(results))
    return "\n".join(lines)


def counts(results: Sequence[StepResult]) -> tuple[int, int, int]:
    """(passed, failed, skipped): a skipped step is neither passed nor failed."""
    skipped = sum(r.skipped for r in results)
    failed = sum(not r.passed for r in results)
    return len(results) - failed - skipped, failed, skipped


def totals(results: Sequence[StepResult]) -> str:
    return totals_of(*counts(results))


def totals_of(passed: int, failed: int, skipped: int) -> str:
    """"2 passed, 1 failed, 1 skipped" of counts()."""
    return f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def junit(name: str, results: Sequence[StepResult], setup_seconds: float) -> str:
    _, failed, skipped = counts(results)
    suite = ET.Element("testsuite", name=name, tests=str(len(results)), failures=str(failed),
                       errors="0", skipped=str(skipped),
                       time=f"{setup_seconds + sum(r.seconds for r in results):.3f}")
    for i, r in enumerate(results, 1):
        case = ET.SubElement(suite, "testcase", classname=name, name=f"{i:02d} {r.step.name}",
                             time=f"{r.seconds:.3f}")
        tables = r.details.get("tables") if isinstance(r.details.get("tables"), str) else ""
        if r.skipped:
            ET.SubElement(case, "skipped", message=r.observed)
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=f"expected {r.expectation}; observed {r.observed}")
            failure.text = f"step at line {r.step.line}\nexpected: {r.expectation}\nobserved: {r.observed}\n"
            if tables:
                failure.text += f"\n{tables}\n"
        ET.SubElement(case, "system-out").text = r.observed + (f"\n\n{tables}\n" if tables else "")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def as_json(name: str, file: str, results: Sequence[StepResult], setup_seconds: float) -> str:
    passed, failed, skipped = counts(results)
    return json.dumps({
        "scenario": name, "file": file, "setupSeconds": round(setup_seconds, 3),
        "passed": passed, "failed": failed, "skipped": skipped,
        "steps": [{"index": i, "name": r.step.name, "line": r.step.line, "expected": r.expectation,
                   "observed": r.observed, "passed": r.passed, "seconds": round(r.seconds, 3),
                   **({"skipped": True} if r.skipped else {}),
                   "details": r.details} for i, r in enumerate(results, 1)],
    }, indent=2) + "\n"
