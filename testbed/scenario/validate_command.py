"""Acts (reads files, prints): `testbed validate FILE [-f MANIFEST ...]`, checking without building.

As netlab's `validate` and kind's config check, for CI jobs and editors: FILE is recognised as

* a scenario (a mapping with `steps` or `topology`): checked with everything it names, its
  topology, its manifests and the manifests of later `apply` steps, by `prepare`, the very
  function `testbed run` calls before it builds anything;
* Kubernetes manifests (documents with `apiVersion` or `kind`): checked by
  testbed.checks' `check_manifests`, as `testbed apply -f` does;
* otherwise a topology: checked by `load_topology`, with the `-f` manifests by
  `check_manifests` against it, as `testbed up` and `testbed cli TOPOLOGY -f ...` do.

No second set of checks lives here: what `validate` accepts, a run accepts. It needs no root
and builds nothing. Exit 0 with one "valid" line on standard output, or 2 with every problem
as `testbed: file:line: field: reason` lines on standard error (printed by testbed.cli);
warnings, as a run prints them, on standard error either way.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, TextIO

from testbed.scenario.command import add_mode_options, pod_network_options
from testbed.spec.source import Document, Problem, SpecError, read_documents


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a topology, scenario or manifests; build nothing",
                       description="Check FILE (a scenario with everything it names, Kubernetes "
                                   "manifests, or a topology with the -f manifests) exactly as "
                                   "`testbed run`, `apply -f`, `up` and `cli` check their input, "
                                   "without building anything or needing root. Exit 0 when valid, "
                                   "2 with every problem otherwise.")
    p.add_argument("file", metavar="FILE", help="a scenario, a topology, or a manifest file")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="MANIFEST",
                   help="manifests to check along with a topology; may be repeated")
    add_mode_options(p)
    p.set_defaults(func=cmd_validate)


def recognise(docs: list[Document]) -> str:
    """"scenario", "manifests" or "topology" for a file's documents (a topology by default,
    whose own checks then say what is wrong with a file that is none of them)."""
    mappings = [d.data for d in docs if isinstance(d.data, dict)]
    if any("apiVersion" in m or "kind" in m for m in mappings):
        return "manifests"
    if len(docs) == 1 and mappings and ("steps" in mappings[0] or "topology" in mappings[0]):
        return "scenario"
    return "topology"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _collect(problems: list[Problem], load: Any, *args: Any) -> Any:
    """load(*args), or None with its problems added (so that every file is checked)."""
    try:
        return load(*args)
    except SpecError as err:
        problems.extend(err.problems)
        return None


def _topology_summary(topo: Any) -> str:
    def modes(attr: str) -> str:
        found = [getattr(w, attr) for w in topo.workers]
        return ", ".join(f"{m} on {_plural(found.count(m), 'worker')}" if len(set(found)) > 1
                         else m for m in dict.fromkeys(found))

    return (f"topology {topo.name} with {_plural(len(topo.workers), 'worker')}, "
            f"{_plural(len(topo.clients), 'client')} (kube-proxy {modes('proxy_mode')}, "
            f"network policy {modes('policy_mode')}; pod network {topo.pod_network.describe()})")


def validate(file: str, manifests: list[str], warn: TextIO | None = None,
             proxy_mode: str | None = None, policy_mode: str | None = None,
             pod_network: dict | None = None) -> str:
    """The one-line summary of a valid FILE (and -f manifests); SpecError with every problem.
    Warnings (what upstream accepts but likely is not meant) go to `warn` either way.
    `proxy_mode` and `policy_mode` set every worker's, as --kube-proxy and --network-policy
    do for `testbed run` (and are refused with manifests alone, which have no workers)."""
    from testbed.checks import check_manifests, check_with_topology, report_warnings
    from testbed.scenario.preflight import COMMAND_LINE, POD_NETWORK_OPTIONS, pod_network_of
    from testbed.spec.topology import with_modes

    problems: list[Problem] = []
    warnings: list[Problem] = []

    def manifest_checks(paths: list[str], topo: Any = None) -> int:
        checked = check_manifests(paths, topo, which=shutil.which)
        problems.extend(checked.problems)
        warnings.extend(checked.warnings)
        return len(checked.objects)

    try:
        docs = _collect(problems, read_documents, file)
        if docs is None:  # FILE is not even YAML: still check the -f files, to report everything
            manifest_checks(manifests)
            raise SpecError(problems)
        kind = recognise(docs)
        if kind == "scenario":
            from testbed.scenario.runner import prepare

            if manifests:
                problems.append(Problem(COMMAND_LINE, None, "-f", "a scenario names its own "
                                        "manifests; -f goes with a topology"))
            prepared = _collect(problems, prepare, file, proxy_mode, policy_mode, pod_network)
            if problems:
                raise SpecError(problems)
            warnings.extend(prepared.warnings)
            step_objects = sum(len(objs) for objs in prepared.step_objects.values())
            return (f"valid: {file}: scenario {prepared.scenario.name}, "
                    f"{_topology_summary(prepared.topology)}; "
                    f"{_plural(len(prepared.objects) + step_objects, 'object')} in "
                    f"{_plural(len(prepared.scenario.manifests), 'manifest file')} and its steps; "
                    f"{_plural(len(prepared.scenario.steps), 'step')}")
        if kind == "manifests":
            problems += [Problem(COMMAND_LINE, None, option, "goes with a scenario or a "
                                 "topology; manifests alone have no workers")
                         for option, given in (("--kube-proxy", proxy_mode),
                                               ("--network-policy", policy_mode),
                                               *((POD_NETWORK_OPTIONS[k][0], v) for k, v in
                                                 (pod_network or {}).items())) if given]
            count = manifest_checks([file, *manifests])
            if problems:
                raise SpecError(problems)
            return (f"valid: {file}: {_plural(count, 'object')} in "
                    f"{_plural(1 + len(manifests), 'manifest file')}")
        topo, checked = check_with_topology(file, manifests, which=shutil.which)
        problems.extend(checked.problems)
        warnings.extend(checked.warnings)
        count = len(checked.objects)
        if pod_network and topo is not None:
            topo, found = pod_network_of(topo, None, pod_network)
            problems += found
        if problems:
            raise SpecError(problems)
        topo = with_modes(topo, {"*": proxy_mode} if proxy_mode else None,
                          {"*": policy_mode} if policy_mode else None)
        extra = (f"; {_plural(count, 'object')} in "
                 f"{_plural(len(manifests), 'manifest file')}") if manifests else ""
        return f"valid: {file}: {_topology_summary(topo)}{extra}"
    finally:
        if warn is not None:
            report_warnings(warnings, warn)


def cmd_validate(args: argparse.Namespace) -> int:
    print(validate(args.file, args.filename, sys.stderr, args.proxy_mode, args.policy_mode,
                   pod_network_options(args)))
    return 0
