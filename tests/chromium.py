"""Headless Chromium for tests that render a page: the HTML report, the cluster's diagram.

`render(page, screenshots)` loads a local file in Debian's chromium (scripts/test-browser.sh
installs it) three times: once for the DOM after rendering, once per window size for a PNG
screenshot. Each run is `unshare --net -- chromium --headless ...`: a network namespace of its
own with nothing in it, so a page that needed anything from outside would show it, and the
browser stays off the machine's network. What the page logged to its console (Chromium's
"CONSOLE" lines on stderr; a report has no script, so any line is an error) and every request
the page itself made for something that is not a local file (from Chromium's net log) come
back with the DOM, for the test to require empty.

Needs root (unshare). `browser_or_skip()` skips a test with the reason when no browser is
installed, and fails it instead when CI is set: there, scripts/test.sh has installed one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"      # kept by CI as an artifact; in .gitignore
PHONE = (412, 915)
DESKTOP = (1280, 2400)

# Chromium's own traffic (updates, sync, spelling) off, so the net log holds the page's.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--disable-extensions",
         "--disable-default-apps", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def browser() -> str | None:
    """Debian's chromium (or another Chromium build on PATH), when it runs."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path and not path.startswith("/snap/"):
            return path
    return None


def browser_or_skip() -> str:
    found = browser()
    if found is None:
        reason = "no chromium on PATH (scripts/test-browser.sh installs Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the browser tests must run")
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("rendering runs chromium in a network namespace of its own: needs root")
    return found


@dataclass
class Rendered:
    dom: str
    console: list[str] = field(default_factory=list)      # lines the page logged: errors
    requests: list[str] = field(default_factory=list)     # URLs the page asked the network for
    screenshots: list[Path] = field(default_factory=list)


def _chromium(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    """One headless run in an empty network namespace; the whole process group is ended if
    it hangs (it is this test's own: start_new_session)."""
    proc = subprocess.Popen(["unshare", "--net", "--", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _console(stderr: str) -> list[str]:
    """The page's console lines. Chromium's own pages (chrome://, its UI's scripts) log to the
    same stream now and then ("Slow network is detected" from its compose box): not the page's."""
    return [line for line in stderr.splitlines() if (":CONSOLE" in line or "Uncaught" in line)
            and not re.search(r"source: (chrome|devtools|chrome-extension)://", line)]


def _page_requests(netlog: Path) -> list[str]:
    """URLs requested on behalf of a page loaded from a file (its network isolation key is
    file://), other than files: what an offline page must not need."""
    if not netlog.exists():
        return ["(chromium wrote no net log)"]
    data = json.loads(netlog.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    out = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start and str(params.get("network_isolation_key", "")).startswith("file://"):
            if not str(params.get("url", "")).startswith(("file:", "data:")):
                out.append(params["url"])
    return out


def render(page: Path, stem: str, sizes=(PHONE, DESKTOP)) -> Rendered:
    """The rendered DOM of `page`, its console and network use, and screenshots at `sizes`
    saved as artifacts/STEM-WIDTHxHEIGHT.png."""
    chromium = browser_or_skip()
    url = page.resolve().as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="testbed-chromium-") as tmp:
        netlog = Path(tmp) / "net.json"
        dumped = _chromium([chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--log-net-log={netlog}",
                            "--dump-dom", url])
        assert dumped.returncode == 0, f"chromium --dump-dom exited {dumped.returncode}:\n{dumped.stderr[-3000:]}"
        rendered = Rendered(dumped.stdout, _console(dumped.stderr), _page_requests(netlog))
        for width, height in sizes:
            png = ARTIFACTS / f"{stem}-{width}x{height}.png"
            png.unlink(missing_ok=True)
            shot = _chromium([chromium, *FLAGS, f"--user-data-dir={tmp}/profile",
                              f"--window-size={width},{height}", f"--screenshot={png}", url])
            assert shot.returncode == 0 and png.exists(), \
                f"chromium --screenshot exited {shot.returncode}:\n{shot.stderr[-3000:]}"
            rendered.console += _console(shot.stderr)
            rendered.screenshots.append(png)
    return rendered


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
