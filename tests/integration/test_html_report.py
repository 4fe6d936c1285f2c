"""`testbed run --html FILE` on a real cluster, the page rendered by headless Chromium.

One small scenario on the two-node topology: a passing probe, a probe that must fail (a
closed port expected reachable: its connection is traced at once), two inspections. The page
is loaded in chromium with no network at all; its rendered DOM must hold the diagram with the
topology's nodes and the pods, every step, the failing step's trace and the folded
inspections; nothing may be logged to the console or asked of the network. Screenshots (a
phone's window and a desktop's) stay in artifacts/ for CI to keep.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import pytest

from tests.chromium import PHONE, browser_or_skip, png_size, render
from tests.integration.conftest import SCENARIOS, TOPOLOGIES, run_testbed

PODS = SCENARIOS / "manifests" / "pods-two-nodes.yaml"
NODES = ("master", "w1", "w2", "client")
PODS_NAMES = ("pod-a", "pod-b", "pod-c")

STEPS = """\
  - name: pod-a reaches pod-c across the gateway
    probe: tcp
    from: pod-a
    to: pod-c:8080
    retryFor: 10
  - name: pod-a reaches a closed port of pod-c (deliberately wrong)
    probe: tcp
    from: pod-a
    to: pod-c:9999
    timeout: 1
  - name: the NAT table of w1
    inspect: {nat: w1}
  - name: the bridge of w1
    inspect: {bridge: w1}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    browser_or_skip()
    tmp = tmp_path_factory.mktemp("html")
    scenario = tmp / "html-report.yaml"
    scenario.write_text(f"name: html-report\ntopology: {TOPOLOGIES / 'two-node.yaml'}\n"
                        f"manifests: [{PODS}]\nsteps:\n{STEPS}")
    page, report = tmp / "report.html", tmp / "report.json"
    result = run_testbed("run", str(scenario), "--html", str(page), "--json", str(report), timeout=180)
    return result, page, json.loads(report.read_text()) if report.exists() else None


@pytest.fixture(scope="module")
def rendered(run):
    _, page, _ = run
    assert page.exists(), run[0].stderr
    return render(page, "html-report")


def step_of(dom: str, index: int) -> str:
    start = dom.index(f'id="step-{index}"')
    end = dom.find('<li class="step', start)
    return dom[start:] if end < 0 else dom[start:end]


def test_the_run_fails_on_the_wrong_step_and_traces_it(run):
    result, page, data = run
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 passed, 1 failed" in result.stdout
    assert "tracing the failing connection" in result.stderr
    steps = data["steps"]
    assert [s["passed"] for s in steps] == [True, False, True, True]
    assert all("trace" not in s["details"] for s in steps if s["passed"])
    trace = steps[1]["details"]["trace"]
    if importlib.util.find_spec("testbed.emu.tracing") is None:
        assert isinstance(trace, str) and trace.startswith("trace failed: ")
    else:
        assert isinstance(trace, dict), trace
        assert trace["destination"].endswith(":9999") and trace["hops"], trace
        assert trace["hops"][0]["host"] == "default/pod-a"


def test_the_page_renders_offline_without_errors(rendered):
    assert rendered.console == []
    assert rendered.requests == []
    assert "<title>html-report: 3 passed, 1 failed</title>" in rendered.dom


def test_the_diagram_shows_the_nodes_and_pods(rendered):
    dom = rendered.dom
    if shutil.which("dot") is None:
        assert "diagram unavailable: Graphviz" in dom
        pytest.skip("Graphviz's dot is not installed: the page says so in the diagram's place")
    assert "diagram unavailable" not in dom
    figure = dom[dom.index('<figure class="diagram">'):dom.index("</figure>")]
    assert "<svg" in figure
    shown = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", figure))
    for name in NODES + PODS_NAMES:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", shown), f"{name} not drawn: {shown}"


def test_steps_trace_and_inspections_are_in_the_page(rendered):
    dom = rendered.dom
    for i, name in enumerate(["pod-a reaches pod-c across the gateway",
                              "pod-a reaches a closed port of pod-c (deliberately wrong)",
                              "the NAT table of w1", "the bridge of w1"], 1):
        part = step_of(dom, i)
        assert f'<span class="name">{name}</span>' in part
        assert '<dd class="expected">' in part and '<dd class="observed">' in part
        assert re.search(r'<dd class="time">\d+\.\d{3}s</dd>', part)
    failed = step_of(dom, 2)
    assert 'class="step fail"' in dom and '<details class="trace" open="">' in failed
    assert "trace of the failing connection" in failed
    assert "<details class=\"trace\"" not in step_of(dom, 1)
    nat = step_of(dom, 3)
    assert '<details class="inspection">' in nat and "KUBE-SERVICES" in nat
    assert '<details class="inspection">' in step_of(dom, 4) and "cbr0" in step_of(dom, 4)


def test_screenshots_are_kept(rendered):
    phone, desktop = rendered.screenshots
    assert png_size(phone) == PHONE
    assert png_size(desktop)[0] == 1280
    assert phone.parent.name == "artifacts" and phone.stat().st_size > 5000


def test_the_offline_and_console_checks_can_fail(tmp_path):
    """A control: a page that reaches for the network and logs an error is caught by the
    same checks the report passes (so their passing means something)."""
    browser_or_skip()
    page = tmp_path / "control.html"
    page.write_text('<!doctype html><html><body><p>control</p>'
                    '<img src="http://198.51.100.1/x.png" alt="x">'
                    '<script>console.error("control error")</script></body></html>')
    seen = render(page, "html-control", sizes=())
    assert any(r.startswith("http://198.51.100.1/") for r in seen.requests), seen.requests
    assert any("control error" in line for line in seen.console), seen.console
