"""Every bad input is refused cleanly: exit 2, file and line (or field), no traceback, in time.

The corpus is tests/bad_inputs/<area>/<name>.yaml (or another extension where the case is
about that), one case per file, whose first lines are comments:

    # command: validate {}             the testbed subcommand and its arguments ({} is this
                                       file's path, relative to the repository, which is the
                                       working directory); other files of the case live beside
                                       it, named <name>.*.yaml, and have no `# command:` line
    # expect: {}:4: workers[0].labels  a substring standard error must contain (may repeat)

Each case runs as `python -m testbed ...`, all of them at once in parallel, and must exit 2
with every expected text on standard error, no "Traceback" anywhere, within TIME_LIMIT. As
root the cases run as root without capabilities, so that one that slipped through validation
could build nothing; the `run`, `cli` and `up` cases run again as the unprivileged user nobody,
to see them refuse bad input before they ask for root.

What the repository cannot hold is made here: FIFOs, sockets, directories, devices, /proc and
/sys files, files too large, and files the invoking user may not read (under sudo, as
SUDO_UID; or as nobody), whose contents must never be printed. The alias bomb and 5,000-deep
nesting are also measured: refused within a second, in under 100 MB of address space.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from testbed.spec.userfile import MAX_BYTES
from testbed.spec.yamlload import MAX_NODES

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "bad_inputs"
TOPOLOGY = "topologies/two-node.yaml"
TIME_LIMIT = 20.0          # seconds for one case while the whole corpus runs at once (2 cores)
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
IS_ROOT = os.geteuid() == 0
NO_CAPS = ([SETPRIV, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
           if IS_ROOT and SETPRIV else [])
AS_NOBODY = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
SUBCOMMANDS = ("validate", "run", "cli", "apply", "delete", "up", "proxy")
NEED_ROOT_LATER = ("run", "cli", "up")   # what they build needs root; bad input must not get there


@dataclass(frozen=True)
class Case:
    path: Path                 # relative to ROOT
    args: tuple[str, ...]
    expects: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(self.path.relative_to(CORPUS.relative_to(ROOT)))


@dataclass(frozen=True)
class Result:
    code: int | None           # None: killed after the time limit
    stdout: str
    stderr: str
    seconds: float


def read_case(path: Path) -> Case | None:
    """The case a corpus file describes, or None for one of a case's other files."""
    rel = path.relative_to(ROOT)
    command, expects = None, []
    with path.open("rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line.startswith("#"):
                break
            key, _, value = line[1:].strip().partition(":")
            if key == "command":
                command = value.strip()
            elif key == "expect":
                expects.append(value.strip().replace("{}", str(rel)))
    if command is None:
        return None
    args = tuple(a.replace("{}", str(rel)) for a in shlex.split(command))
    return Case(rel, args, tuple(expects))


def corpus() -> list[Case]:
    cases = (read_case(p) for p in sorted(CORPUS.rglob("*")) if p.is_file())
    return [c for c in cases if c is not None]


CASES = corpus()


# Where a case that slipped through validation would put its run directory: never the machine's
# (and as root the cases run without capabilities, so such a case could build nothing anyway).
SCRATCH_RUN_ROOT = tempfile.mkdtemp(prefix="testbed-bad-inputs-")
atexit.register(shutil.rmtree, SCRATCH_RUN_ROOT, True)


def _env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": "/nonexistent", "TESTBED_RUN_ROOT": SCRATCH_RUN_ROOT}
    env.update(extra)
    return env


def run_testbed(args: Sequence[str], prefix: Sequence[str] = (), env: dict | None = None,
                timeout: float = TIME_LIMIT * 2) -> Result:
    start = time.monotonic()
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "testbed", *args], cwd=ROOT,
                              env=env or _env(), capture_output=True, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else ""
        return Result(None, out, "", time.monotonic() - start)
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


@dataclass(frozen=True)
class Job:
    args: tuple[str, ...]
    prefix: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def run_all(jobs: Sequence[Job]) -> list[Result]:
    """All jobs at once, as many as there are cores (each is a Python start-up, CPU-bound)."""
    workers = (os.cpu_count() or 2) + 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda j: run_testbed(j.args, j.prefix, _env(**dict(j.env))), jobs))


@cache
def nobody_cannot_run() -> str | None:
    """Why nothing can run as nobody here (None: it can)."""
    if not IS_ROOT:
        return "not root: everything already runs unprivileged"
    if SETPRIV is None:
        return "no setpriv"
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import testbed.cli"], cwd=ROOT,
                           env=_env(), capture_output=True)
    return None if probe.returncode == 0 else "nobody cannot read the checkout or its venv"


@cache
def results(mode: str) -> dict[str, Result]:
    """The corpus run at once as the invoker ("invoker"), or its run/cli/up cases as nobody
    ("nobody"); computed once, on first use."""
    if IS_ROOT and SETPRIV is None:
        pytest.fail("setpriv (util-linux) is needed to run the bad-input corpus as root without "
                    "capabilities: with all of root's, a case that slipped through would build")
    if mode == "nobody":
        cases = [c for c in CASES if c.args[0] in NEED_ROOT_LATER]
        prefix = tuple(AS_NOBODY)
    else:
        cases, prefix = CASES, tuple(NO_CAPS)
    found = run_all([Job(c.args, prefix) for c in cases])
    return dict(zip([c.id for c in cases], found, strict=True))


def check_refused(result: Result, expects: Sequence[str], what: str,
                  secrets: Sequence[str] = ()) -> None:
    assert result.code is not None, f"{what}: still running after {result.seconds:.0f}s"
    output = result.stdout + result.stderr
    assert "Traceback" not in output, f"{what}: a traceback:\n{output}"
    assert result.code == 2, f"{what}: exit {result.code}, not 2:\n{output}"
    for text in expects:
        assert text in result.stderr, f"{what}: {text!r} not in:\n{result.stderr}"
    assert "needs root" not in result.stderr, f"{what}: reached the root check:\n{result.stderr}"
    for secret in secrets:
        assert secret not in output, f"{what}: printed what it may not read:\n{output}"
    assert result.seconds < TIME_LIMIT, f"{what}: took {result.seconds:.1f}s"


# -- the corpus ----------------------------------------------------------------------------------

def test_the_corpus_is_large_and_well_formed():
    assert len(CASES) >= 100
    for case in CASES:
        assert case.expects, f"{case.id}: no # expect: line"
        assert case.args and case.args[0] in SUBCOMMANDS, case.id
        assert any(str(case.path) in a for a in case.args), f"{case.id}: does not use {{}}"
    assert set(SUBCOMMANDS) <= {c.args[0] for c in CASES}
    # every file beside a case belongs to one: <name>.*.yaml next to <name>.yaml
    for path in CORPUS.rglob("*.*.yaml"):
        owner = path.with_name(path.name.split(".")[0] + ".yaml")
        assert owner.is_file() and read_case(owner), f"{path} belongs to no case"
        assert read_case(path) is None, f"{path}: a case's other file has a # command: line"


def test_read_case_parses_the_header():
    case = read_case(CORPUS / "yaml" / "duplicate-key-top.yaml")
    assert case is not None
    assert case.args == ("validate", "tests/bad_inputs/yaml/duplicate-key-top.yaml")
    assert case.expects == ("tests/bad_inputs/yaml/duplicate-key-top.yaml:8: name: duplicate key",)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_cleanly(case: Case):
    check_refused(results("invoker")[case.id], case.expects,
                  f"{case.id} ({shlex.join(case.args)})")


@pytest.mark.parametrize("case", [c for c in CASES if c.args[0] in NEED_ROOT_LATER],
                         ids=lambda c: c.id)
def test_bad_input_is_refused_before_asking_for_root(case: Case):
    why = nobody_cannot_run()
    if why:
        pytest.skip(why)
    check_refused(results("nobody")[case.id], case.expects, f"{case.id} as nobody")


# -- what the repository cannot hold ---------------------------------------------------------------

COMMANDS = {"validate": ("validate", "{}"), "run": ("run", "{}"), "cli": ("cli", "{}"),
            "cli -f": ("cli", TOPOLOGY, "-f", "{}"), "apply -f": ("apply", "-f", "{}"),
            "delete -f": ("delete", "-f", "{}"), "up": ("up", "{}"),
            "up -f": ("up", TOPOLOGY, "-f", "{}"), "proxy render": ("proxy", "render", "{}")}
SECRET = "Secret-Do-Not-Print-7c1e"     # not a DNS label: a topology's `name:` error quotes it
SECRET_TOPOLOGY = f"name: {SECRET}\nmaster: m\nworkers: [w1]\n"
SUDO_NOBODY = (("SUDO_UID", str(NOBODY)), ("SUDO_GID", str(NOBODY)), ("SUDO_USER", "nobody"))


@dataclass(frozen=True)
class Special:
    """One generated case: a file (made by `make`) given to a command, what stderr must say."""

    name: str
    command: str
    expects: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    as_nobody: bool = False
    secrets: tuple[str, ...] = ()


def _fifo(d: Path) -> str:
    os.mkfifo(d / "fifo.yaml")  # nothing ever writes: opening it for reading would block
    return str(d / "fifo.yaml")


def _socket(d: Path) -> str:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "socket.yaml"))
    s.close()
    return str(d / "socket.yaml")


def _symlink_to_fifo(d: Path) -> str:
    os.mkfifo(d / "fifo2")
    os.symlink(d / "fifo2", d / "link.yaml")
    return str(d / "link.yaml")


def _too_large(d: Path) -> str:
    with open(d / "large.yaml", "wb") as f:   # sparse: no disk used
        f.truncate(MAX_BYTES + 1)
    return str(d / "large.yaml")


def _too_many_values(d: Path) -> str:
    (d / "many.yaml").write_text("x: [" + ",".join(["1"] * (MAX_NODES + 1)) + "]\n")
    return str(d / "many.yaml")


def _secret(d: Path, mode: int = 0o600) -> str:
    path = d / f"secret-{mode:o}.yaml"
    path.write_text(SECRET_TOPOLOGY)
    path.chmod(mode)
    return str(path)


def _in_closed_directory(d: Path) -> str:
    (d / "closed").mkdir(mode=0o700)
    path = d / "closed" / "topology.yaml"
    path.write_text(SECRET_TOPOLOGY)
    path.chmod(0o644)
    return str(path)


def _scenario_naming(target: str, d: Path, name: str) -> str:
    path = d / name
    path.write_text(f"name: s\ntopology: {target}\nsteps: []\n")
    path.chmod(0o644)
    return str(path)


FIFO = "a named pipe (FIFO), not a regular file"
CHAR = "a character device, not a regular file"
PROC = "a kernel pseudo-file under /proc, not a regular file"
SUDO_REFUSED = f"not readable by nobody (uid {NOBODY}), who ran sudo: refused unread"

SPECIALS = [Special("fifo", c, ("{}: " + FIFO,)) for c in COMMANDS] + [
    Special("socket", "validate", ("{}: a socket, not a regular file",)),
    Special("socket", "apply -f", ("{}: a socket, not a regular file",)),
    Special("directory", "validate", ("{}: a directory, not a regular file",)),
    Special("directory", "cli -f", ("{}: a directory, not a regular file",)),
    Special("symlink-to-fifo", "run", ("{}: " + FIFO,)),
    Special("dev-zero", "validate", ("/dev/zero: " + CHAR,)),
    Special("dev-zero", "up", ("/dev/zero: " + CHAR,)),
    Special("dev-zero", "proxy render", ("/dev/zero: " + CHAR,)),
    Special("dev-null", "cli", ("/dev/null: " + CHAR,)),
    Special("dev-stdin", "run", ("/dev/stdin: a character device",)),
    Special("proc-status", "validate", ("/proc/self/status: " + PROC,)),
    Special("proc-status", "apply -f", ("/proc/self/status: " + PROC,)),
    Special("proc-environ", "run", ("/proc/self/environ: " + PROC,), secrets=(SECRET,),
            env=(("TESTBED_SECRET", SECRET),)),
    Special("sys-file", "cli", ("/sys/kernel/uevent_seqnum: a kernel pseudo-file under /sys",)),
    Special("too-large", "validate", ("{}: too large: " + f"{MAX_BYTES + 1} bytes",)),
    Special("too-large", "delete -f", ("{}: too large",)),
    Special("too-many-values", "validate", ("{}:1: more than 100000 values",)),
    Special("too-many-values", "up -f", ("{}:1: more than 100000 values",)),
    # files the user who ran sudo may not read: refused unread, never quoted
    Special("secret-600", "validate", ("{}: " + SUDO_REFUSED,), SUDO_NOBODY, secrets=(SECRET,)),
    Special("secret-600", "cli", ("{}: " + SUDO_REFUSED,), SUDO_NOBODY, secrets=(SECRET,)),
    Special("secret-600", "apply -f", ("{}: " + SUDO_REFUSED,), SUDO_NOBODY, secrets=(SECRET,)),
    Special("in-closed-directory", "up", ("{}: " + SUDO_REFUSED,), SUDO_NOBODY, secrets=(SECRET,)),
    Special("scenario-naming-secret", "run", ("secret-600.yaml", SUDO_REFUSED), SUDO_NOBODY,
            secrets=(SECRET,)),
    Special("etc-shadow", "validate", ("/etc/shadow: " + SUDO_REFUSED,), SUDO_NOBODY,
            secrets=("root:",)),
    Special("etc-shadow", "cli", ("/etc/shadow: " + SUDO_REFUSED,), SUDO_NOBODY,
            secrets=("root:",)),
    Special("scenario-naming-shadow", "run", ("/etc/shadow", SUDO_REFUSED), SUDO_NOBODY,
            secrets=("root:",)),
    # the same, as nobody itself (no sudo): the kernel says no
    Special("secret-000", "validate", ("{}: permission denied",), as_nobody=True,
            secrets=(SECRET,)),
    Special("in-closed-directory", "run", ("{}: permission denied",), as_nobody=True,
            secrets=(SECRET,)),
    Special("etc-shadow", "cli", ("/etc/shadow: permission denied",), as_nobody=True,
            secrets=("root:",)),
    Special("fifo", "up", ("{}: " + FIFO,), as_nobody=True),
]


def _special_id(s: Special) -> str:
    return f"{s.name}-{s.command.replace(' ', '')}" + ("-as-nobody" if s.as_nobody else "") + \
        ("-under-sudo" if s.env == SUDO_NOBODY else "")


@pytest.fixture(scope="module")
def special_results() -> Iterator[dict[str, tuple[Result, str]]]:
    """Every SPECIALS case run at once: {id: (result, the file's path)}."""
    d = Path(tempfile.mkdtemp(prefix="testbed-bad-inputs-"))
    d.chmod(0o755)   # nobody may look inside: what it may not read is refused for that reason
    try:
        made = {"fifo": _fifo(d), "socket": _socket(d), "directory": str(d),
                "symlink-to-fifo": _symlink_to_fifo(d), "dev-zero": "/dev/zero",
                "dev-null": "/dev/null", "dev-stdin": "/dev/stdin",
                "proc-status": "/proc/self/status", "proc-environ": "/proc/self/environ",
                "sys-file": "/sys/kernel/uevent_seqnum", "too-large": _too_large(d),
                "too-many-values": _too_many_values(d), "secret-600": _secret(d),
                "secret-000": _secret(d, 0o000), "in-closed-directory": _in_closed_directory(d),
                "etc-shadow": "/etc/shadow"}
        made["scenario-naming-secret"] = _scenario_naming(made["secret-600"], d, "s1.yaml")
        made["scenario-naming-shadow"] = _scenario_naming("/etc/shadow", d, "s2.yaml")
        jobs = [Job(tuple(a.replace("{}", made[s.name]) for a in COMMANDS[s.command]),
                    tuple(AS_NOBODY if s.as_nobody else NO_CAPS), s.env) for s in SPECIALS]
        runnable = [not s.as_nobody or nobody_cannot_run() is None for s in SPECIALS]
        found = run_all([j for j, ok in zip(jobs, runnable, strict=True) if ok])
        out, it = {}, iter(found)
        for s, ok in zip(SPECIALS, runnable, strict=True):
            if ok:
                out[_special_id(s)] = (next(it), made[s.name])
        yield out
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("special", SPECIALS, ids=_special_id)
def test_special_files_are_refused_unopened_and_unquoted(special: Special, special_results):
    if special.as_nobody and nobody_cannot_run():
        pytest.skip(nobody_cannot_run())
    if (special.env or "shadow" in special.name) and not IS_ROOT:
        pytest.skip("sudo's SUDO_UID and /etc/shadow's refusal are seen as root")
    if special.name == "sys-file" and not Path("/sys/kernel/uevent_seqnum").exists():
        pytest.skip("no /sys/kernel/uevent_seqnum here")
    result, path = special_results[_special_id(special)]
    check_refused(result, [e.replace("{}", path) for e in special.expects], _special_id(special),
                  special.secrets)


@pytest.mark.skipif(not IS_ROOT, reason="root reads the file: the control for the sudo cases")
def test_the_secret_would_be_quoted_if_it_were_read(tmp_path: Path):
    """Control: read by root without sudo, the secret topology's error does quote it, so the
    sudo cases above show a real refusal, not a message that never quotes anything."""
    path = _secret(tmp_path)
    result = run_testbed(["validate", path], NO_CAPS)
    assert result.code == 2 and SECRET in result.stderr, result.stderr


# -- time and memory -------------------------------------------------------------------------------

BOUNDED = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (100 << 20, 100 << 20))
from testbed.spec.source import SpecError, read_documents
start = time.monotonic()
try:
    read_documents(sys.argv[1])
except SpecError as err:
    print(time.monotonic() - start, err)
"""


@pytest.mark.parametrize("name", ["limits/alias-bomb.yaml", "limits/nesting-5000-flow.yaml",
                                  "limits/alias-fan-out.yaml", "limits/int-5000-digits.yaml"])
def test_hostile_yaml_is_refused_within_a_second_and_100_mb(name: str):
    done = subprocess.run([sys.executable, "-c", BOUNDED, str(CORPUS / name)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    seconds, _, message = done.stdout.partition(" ")
    assert float(seconds) < 1.0, done.stdout
    assert f"{name.split('/')[1]}:" in message


def test_the_whole_command_runs_in_100_mb():
    wrapper = ("import resource, runpy, sys; "
               "resource.setrlimit(resource.RLIMIT_AS, (100 << 20, 100 << 20)); "
               "sys.argv = ['testbed', *sys.argv[1:]]; runpy.run_module('testbed', run_name='__main__')")
    for name in ("limits/alias-bomb.yaml", "limits/nesting-5000-flow.yaml"):
        done = subprocess.run([sys.executable, "-c", wrapper, "validate", f"tests/bad_inputs/{name}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_no_case_left_a_run_directory():
    """Last: whatever ran above, nothing was built (no run directory was even made)."""
    results("invoker")
    assert os.listdir(SCRATCH_RUN_ROOT) == []
