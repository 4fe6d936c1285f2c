"""Pure: the HTML report of a scenario run (`testbed run --html FILE`), as one page.

One self-contained page: inline CSS, no script, no font, image or style sheet from anywhere
else, so that it opens offline, in a CI artifact viewer and on a phone. On top, the scenario's
summary and the cluster's diagram (inline SVG, scaled to the page's width; or a sentence saying
why there is none); then every step with its line, expectation, observation and time. What a
step's details hold is folded under it with <details>: an inspection's output (NAT tables,
routes, bridges, ps), a reachability step's tables, and a failed probe's trace (the walk-through
of the failing connection, testbed.trace.text, and its JSON form). Every string that came from a
scenario, the cluster or a trace is escaped; only the diagram's SVG, which Graphviz wrote, goes
in as markup, and not when it holds a script or a reference outside the page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from testbed.scenario.report import counts, totals_of
from testbed.scenario.results import StepResult
from testbed.trace.text import render_text

# The details keys a step section shows in a fold of its own; the rest go under "details".
_SHOWN = ("output", "tables", "trace", "traceSeconds", "static", "text")

# What would make an SVG act or reach outside the page: then it is not embedded.
_UNSAFE_SVG = re.compile(r"<\s*script|<\s*foreignObject|\bon[a-z]+\s*=|javascript:|@import|url\(\s*['\"]?\s*[a-z]+:"
                         r"|(?:href|src)\s*=\s*['\"]\s*(?!#)[a-z][a-z0-9+.-]*:", re.IGNORECASE)


@dataclass(frozen=True)
class Diagram:
    """The cluster's picture: its SVG text, or why there is none."""
    svg: str | None = None
    unavailable: str = ""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root { --pass: #1a7f37; --fail: #c62828; --pass-bg: #e9f7ec; --fail-bg: #fdecea; --line: #d0d7de;
        --muted: #57606a; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.45;
       margin: 0 auto; padding: 0.75rem; max-width: 72rem; color: #1f2328; background: #fff;
       overflow-wrap: anywhere; }
h1 { font-size: 1.4rem; margin: 0.2rem 0; }
h2 { font-size: 1.15rem; margin: 1.2rem 0 0.5rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 0; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.82rem; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 0.5rem;
      overflow-x: auto; white-space: pre; max-width: 100%; margin: 0.3rem 0; }
.summary { padding: 0.6rem 0.8rem; border-radius: 6px; border-left: 6px solid; }
.summary.pass { background: var(--pass-bg); border-color: var(--pass); }
.summary.fail { background: var(--fail-bg); border-color: var(--fail); }
.summary p { margin: 0.2rem 0; }
.muted { color: var(--muted); }
.badge { font-size: 0.75rem; font-weight: 700; white-space: nowrap; padding: 0.05rem 0.4rem; border-radius: 3px; color: #fff; }
.badge.pass { background: var(--pass); }
.badge.fail { background: var(--fail); }
.badge.skip { background: #777; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; }
th { white-space: nowrap; }
th, td { border-bottom: 1px solid var(--line); padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
tr.fail td { background: var(--fail-bg); }
figure.diagram { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 0.4rem; overflow-x: auto; }
figure.diagram svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.unavailable { font-style: italic; color: var(--muted); }
ol.steps { list-style: none; padding: 0; margin: 0; }
li.step { border: 1px solid var(--line); border-left: 6px solid; border-radius: 6px; padding: 0.5rem 0.7rem;
          margin: 0.6rem 0; }
li.step.pass { border-left-color: var(--pass); }
li.step.fail { border-left-color: var(--fail); background: #fffafa; }
li.step.skip { border-left-color: #777; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.1rem 0.7rem; margin: 0.4rem 0; }
dt { font-weight: 600; color: var(--muted); }
dd { margin: 0; min-width: 0; }
details { margin: 0.3rem 0; }
summary { cursor: pointer; font-weight: 600; }
.trace-verdict { margin: 0.3rem 0; }
@media (max-width: 40rem) {
  body { padding: 0.4rem; }
  pre { font-size: 0.75rem; }
}
"""


def page(name: str, file: str, results: Sequence[StepResult], setup_seconds: float,
         diagram: Diagram) -> str:
    """The whole report: one HTML document, every part of it in the text."""
    tally = counts(results)
    said = totals_of(*tally)
    total = setup_seconds + sum(r.seconds for r in results)
    state = "fail" if tally[1] else "pass"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(name)}: {said}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<header class="summary {state}" id="summary">',
        f"<h1>{esc(name)}</h1>",
        f'<p><span class="badge {state}">{state.upper()}</span> '
        f"<strong>{said}</strong> of {len(results)} steps</p>",
        f'<p class="muted">scenario <code>{esc(file)}</code>; cluster ready in {setup_seconds:.2f}s, '
        f"{total:.2f}s in all</p>",
        "</header>",
        _overview(results),
        '<h2 id="cluster">The cluster</h2>',
        _diagram(diagram),
        '<h2 id="steps">Steps</h2>',
        '<ol class="steps">',
        *(_step(i, r) for i, r in enumerate(results, 1)),
        "</ol>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _overview(results: Sequence[StepResult]) -> str:
    rows = []
    for i, r in enumerate(results, 1):
        state = r.state
        rows.append(f'<tr class="{state}"><td class="num">{i}</td>'
                    f'<td><a href="#step-{i}">{esc(r.step.name)}</a></td>'
                    f'<td><span class="badge {state}">{state.upper()}</span></td>'
                    f'<td class="num">{r.seconds:.2f}s</td></tr>')
    return ('<div class="scroll"><table class="overview"><thead><tr><th>#</th><th>step</th>'
            '<th>result</th><th>time</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def _diagram(diagram: Diagram) -> str:
    if diagram.svg is None:
        return f'<p class="unavailable">diagram unavailable: {esc(diagram.unavailable or "not taken")}</p>'
    svg = inline_svg(diagram.svg)
    if svg is None:
        return '<p class="unavailable">diagram unavailable: the SVG held a script or an outside reference</p>'
    return f'<figure class="diagram">{svg}</figure>'


def inline_svg(svg: str) -> str | None:
    """Graphviz's SVG document as an element to put in HTML (without its XML declaration,
    doctype and comments), or None when it could act or reach outside the page."""
    start = svg.find("<svg")
    if start < 0 or _UNSAFE_SVG.search(svg):
        return None
    body = svg[start:]
    return re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL).strip()


def _step(index: int, r: StepResult) -> str:
    state = r.state
    out = [
        f'<li class="step {state}" id="step-{index}">',
        f'<h3><span class="muted">{index}.</span> <span class="name">{esc(r.step.name)}</span> '
        f'<span class="badge {state}">{state.upper()}</span></h3>',
        "<dl>",
        f"<dt>line</dt><dd>{r.step.line}</dd>",
        f'<dt>expected</dt><dd class="expected">{esc(r.expectation)}</dd>',
        f'<dt>observed</dt><dd class="observed">{esc(r.observed)}</dd>',
        f'<dt>time</dt><dd class="time">{r.seconds:.3f}s</dd>',
        "</dl>",
    ]
    details = r.details or {}
    if "trace" in details:
        # A failed probe's trace (taken by the runner), or a trace step's own result.
        failing = "traceSeconds" in details
        title = "trace of the failing connection" if failing else "the trace"
        out.append(_trace(details["trace"], details.get("traceSeconds"), title,
                          opened=failing or not r.passed))
    if isinstance(details.get("static"), dict):
        out.append(_trace(details["static"], None, "the static trace (the rules alone)",
                          opened=False))
    if isinstance(details.get("tables"), str):
        opened = "" if r.passed else " open"
        out.append(f'<details class="tables"{opened}><summary>reachability tables</summary>'
                   f"<pre>{esc(details['tables'])}</pre></details>")
    if isinstance(details.get("output"), str):
        lines = len(details["output"].splitlines())
        out.append(f'<details class="inspection"><summary>{esc(r.expectation)} '
                   f'<span class="muted">({lines} lines)</span></summary>'
                   f"<pre>{esc(details['output'])}</pre></details>")
    rest = {k: v for k, v in details.items() if k not in _SHOWN}
    if rest:
        out.append('<details class="details"><summary>details</summary>'
                   f"<pre>{esc(json.dumps(rest, indent=2, default=str))}</pre></details>")
    out.append("</li>")
    return "\n".join(out)


def _trace(trace: object, seconds: object, title: str, opened: bool) -> str:
    """A trace: its verdict and cause, the walk-through, the JSON (`opened` for a failure)."""
    took = f" ({seconds:.2f}s)" if isinstance(seconds, (int, float)) else ""
    head = (f'<details class="trace"{" open" if opened else ""}><summary>{esc(title)}{took}'
            '</summary>')
    if not isinstance(trace, dict):
        return f'{head}<p class="trace-error">{esc(trace)}</p></details>'
    verdict = trace.get("verdict") or "unknown"
    line = (f'<p class="trace-verdict"><strong>{esc(verdict)}</strong>: {esc(trace.get("from"))} to '
            f'{esc(trace.get("to"))} ({esc(trace.get("protocol"))} {esc(trace.get("source"))} &rarr; '
            f'{esc(trace.get("destination"))})')
    cause = trace.get("cause")
    if isinstance(cause, dict):
        line += (f'; at {esc(cause.get("host"))}, {esc(cause.get("chain"))}: '
                 f'<code>{esc(cause.get("rule"))}</code> ({esc(cause.get("verdict"))})')
    if trace.get("endpoint"):
        line += f'; endpoint {esc(trace["endpoint"])}'
    line += "</p>"
    return (f"{head}{line}<pre class=\"trace-text\">{esc(render_text(trace))}</pre>"
            '<details class="trace-json"><summary>the trace as JSON</summary>'
            f"<pre>{esc(json.dumps(trace, indent=2, default=str))}</pre></details></details>")
