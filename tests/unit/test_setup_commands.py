"""The README's two set-up commands stay true: they are the first commands of the README, the
scripts they run exist, CI runs the test one, and nothing they run needs `sudo` (a minimal
image's root may have none; the README says to drop it there)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_the_demo_and_the_test_command():
    assert readme_commands() == ["sudo bash scripts/demo.sh", "sudo bash scripts/test.sh"]
    for command in readme_commands():
        assert (ROOT / shlex.split(command)[-1]).is_file()


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def _commands(script: Path) -> list[str]:
    """The script's lines that run something (comments and echoed text left out)."""
    out = []
    for line in script.read_text().splitlines():
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        code = re.sub(r"""(["'])(?:(?!\1).)*\1""", "''", code)   # quoted text says, not runs
        if code.strip():
            out.append(code)
    return out


def test_nothing_the_setup_commands_run_calls_sudo():
    scripts = [ROOT / "scripts" / name for name in ("demo.sh", "test.sh", "install.sh",
                                                     "test-clients.sh")]
    scripts += [ROOT / ".ci" / "run", ROOT / "Makefile"]
    found = [f"{s.relative_to(ROOT)}: {c.strip()}" for s in scripts if s.exists()
             for c in _commands(s) if re.search(r"(^|[\s;&|(`])sudo(\s|$)", c)]
    assert not found, "these would fail where root has no sudo:\n" + "\n".join(found)
    readme = (ROOT / "README.md").read_text()
    assert "without `sudo`" in readme.split("## What it is")[0]
