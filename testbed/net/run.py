"""Acts: the one place that runs commands. Argument lists only, optionally inside a namespace.

`run(["ip", "route"], netns=pid)` runs `ip route` in the network namespace of process `pid`
(a Mininet node's shell or a pod's pause process) through util-linux nsenter. Commands are
never shell strings; `shlex.join` is used only to show them in errors and logs.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass


class CommandError(RuntimeError):
    """A command failed; the message names the command, where it ran and what it printed."""

    def __init__(self, argv: list[str], returncode: int, output: str, where: str = ""):
        self.argv, self.returncode, self.output = argv, returncode, output
        place = f" in {where}" if where else ""
        super().__init__(f"`{shlex.join(argv)}`{place} exited {returncode}: {output.strip()[:2000]}")


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def ns_prefix(netns: int | None) -> list[str]:
    """The nsenter prefix that enters process `netns`'s network namespace."""
    if netns is None:
        return []
    return ["nsenter", f"--net=/proc/{netns}/ns/net", "--"]


def run(argv: list[str], *, netns: int | None = None, input: str | None = None,
        check: bool = True, timeout: float | None = 60, where: str = "") -> Result:
    """Run `argv` (in the namespace of pid `netns`), return its output; raise CommandError on failure."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"run() takes a list of strings, not {argv!r}")
    full = ns_prefix(netns) + argv
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as err:
        raise CommandError(full, 127, f"{argv[0]}: command not found", where) from err
    except subprocess.TimeoutExpired as err:
        raise CommandError(full, -1, f"timed out after {timeout}s", where) from err
    if check and proc.returncode != 0:
        raise CommandError(full, proc.returncode, proc.stderr or proc.stdout, where)
    return Result(full, proc.returncode, proc.stdout, proc.stderr)


def spawn(argv: list[str], *, netns: int | None = None, stderr: bool = False) -> subprocess.Popen:
    """Start `argv` (in the namespace of pid `netns`) and return it running, its standard
    output a text pipe read line by line (and with `stderr`, its standard error a pipe too,
    else discarded); the caller ends it (terminate, wait) by its pid."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"spawn() takes a list of strings, not {argv!r}")
    return subprocess.Popen(ns_prefix(netns) + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL, text=True,
                            bufsize=1)
