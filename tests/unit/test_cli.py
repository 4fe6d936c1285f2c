"""testbed.cli.main: bad input exits 2 with `testbed: FILE:LINE: field: reason` lines.

These tests only ever hand the command line bad input or bad options: `run` and `cli` check
every input before requiring root or building anything, and nothing here may build a cluster
(the tests may well run as root), so no test passes input that would pass every check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed.cli import build_parser, main

from .conftest import ROOT

LINE = re.compile(r"^testbed: (?P<file>[^:]+)(:(?P<line>\d+))?: (?P<rest>.+)$")
TOUR = ROOT / "scenarios" / "tour.yaml"


def error_lines(capsys) -> list[str]:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "expected problems on stderr"
    for line in lines:
        assert LINE.match(line), line
    return lines


def test_run_with_a_bad_topology(write, capsys, tmp_path):
    topo = write("topo.yaml", "workers: [w1, W2]\nnetwork: {mode: star}\n")
    scenario = write("s.yaml", "topology: topo.yaml\n")
    assert main(["run", str(scenario)]) == 2
    assert error_lines(capsys) == [
        f'testbed: {topo}:2: network.mode: Unsupported value: "star": supported values: "routed", '
        '"shared"',
        f'testbed: {topo}:1: workers[1].name: Invalid value: "W2": a lowercase RFC 1123 label must '
        "consist of lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ]


def test_run_with_a_bad_scenario(write, capsys):
    write("topo.yaml", "{}\n")
    scenario = write("s.yaml", """
        topology: topo.yaml
        steps:
          - {probe: ping, from: a, to: b}
          - sleep: -1
    """)
    assert main(["run", str(scenario)]) == 2
    assert error_lines(capsys) == [
        f'testbed: {scenario}:3: steps[0].probe: Unsupported value: "ping": supported values: '
        '"icmp", "tcp", "udp", "http", "dns"',
        f"testbed: {scenario}:4: steps[1].sleep: Invalid value: -1: must be greater than or equal to 0",
    ]


def test_run_with_unknown_names(write, capsys):
    write("topo.yaml", "{}\n")
    scenario = write("s.yaml", "topology: topo.yaml\nsteps:\n  - {probe: icmp, from: w1, to: ghost}\n")
    assert main(["run", str(scenario)]) == 2
    [line] = error_lines(capsys)
    assert line.startswith(f'testbed: {scenario}:3: steps[0].to: Invalid value: "ghost": no pod, '
                           "node or client")


def test_run_with_bad_yaml(write, capsys):
    scenario = write("s.yaml", "topology: [unclosed\n")
    assert main(["run", str(scenario)]) == 2
    [line] = error_lines(capsys)
    assert line.startswith(f"testbed: {scenario}:2: not valid YAML: ")


def test_run_on_a_missing_file(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing)]) == 2
    assert error_lines(capsys) == [f"testbed: {missing}: no such file"]


def test_run_with_an_unwritable_report_path(capsys, tmp_path):
    # the shipped tour is good input, so only the bad --junit/--json stops it before anything
    # is built: make sure the directories really are missing
    junit = tmp_path / "no-such-dir" / "report.xml"
    json_ = tmp_path / "also-missing" / "report.json"
    html = tmp_path / "missing-too" / "report.html"
    assert not junit.parent.exists() and not json_.parent.exists() and not html.parent.exists()
    assert main(["run", str(TOUR), "--junit", str(junit), "--json", str(json_), "--html", str(html)]) == 2
    assert error_lines(capsys) == [
        f"testbed: <command line>: --junit: cannot write {junit}: no writable directory {junit.parent}",
        f"testbed: <command line>: --json: cannot write {json_}: no writable directory {json_.parent}",
        f"testbed: <command line>: --html: cannot write {html}: no writable directory {html.parent}",
    ]


def test_run_with_a_report_path_that_is_a_directory(capsys, tmp_path):
    assert main(["run", str(TOUR), "--html", str(tmp_path)]) == 2
    assert error_lines(capsys) == [f"testbed: <command line>: --html: cannot write {tmp_path}: it is a directory"]


def test_cli_with_a_bad_topology_and_a_bad_manifest(write, capsys):
    topo = write("topo.yaml", "network: {nodeCIDR: 10.0.0.0/33}\n")
    pods = write("pods.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n")
    assert main(["cli", str(topo), "-f", str(pods)]) == 2
    lines = error_lines(capsys)
    assert lines[0].startswith(f'testbed: {topo}:1: network.nodeCIDR: Invalid value: "10.0.0.0/33": '
                               "must be a valid CIDR value")
    assert lines[1] == f"testbed: {pods}:4: spec.containers: Required value"
    assert len(lines) == 2


def test_cli_on_a_missing_topology(capsys, tmp_path):
    missing = tmp_path / "t.yaml"
    assert main(["cli", str(missing)]) == 2
    assert error_lines(capsys) == [f"testbed: {missing}: no such file"]


def test_proxy_render_on_a_missing_file(capsys, tmp_path):
    missing = tmp_path / "case.yaml"
    assert main(["proxy", "render", str(missing)]) == 2
    assert error_lines(capsys) == [f"testbed: {missing}: no such file"]


@pytest.mark.parametrize("argv", [
    ["bogus"],
    ["--bogus"],
    ["run", "--bogus", str(TOUR)],
    ["run", str(TOUR), "extra-arg"],
    ["proxy"],                                 # a proxy subcommand is required
    ["proxy", "render", "--mode", "ipvs", "x.yaml"],
    ["ps", "w1", "w2"],
])
def test_bad_arguments_exit_2_with_usage(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage: testbed" in err
    assert "error: " in err
    assert "Traceback" not in err


def test_unknown_subcommand_names_it(capsys):
    with pytest.raises(SystemExit):
        main(["bogus"])
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("testbed: error: argument COMMAND: invalid choice: 'bogus'")


def test_parser_lists_the_subcommands():
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("run", "cli", "ps", "clean", "proxy"):
        assert command in help_text
    args = parser.parse_args(["run", "x.yaml", "--junit", "j.xml"])
    assert (args.command, args.scenario, args.junit, args.json) == ("run", "x.yaml", "j.xml", None)


def test_run_defaults_to_the_tour():
    args = build_parser().parse_args(["run"])
    assert Path(args.scenario) == TOUR


def test_cli_without_a_topology_attaches_to_the_running_cluster_or_says_none_runs(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TESTBED_RUN_ROOT=str(tmp_path))
    for argv, words in ((["cli"], "no cluster is running"),
                        (["cli", "lab"], "no cluster named 'lab' is running")):
        done = subprocess.run([sys.executable, "-m", "testbed", *argv], env=env, text=True,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and words in done.stderr


def test_the_command_line_gives_mininet_the_standard_librarys_distutils_not_setuptools():
    import subprocess
    import sys

    code = ("import sys, testbed.cli as cli; cli.build_parser(); import mininet.node; "
            "print('setuptools' in sys.modules, sys.modules['distutils.version'].__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded_setuptools, version_file = out.stdout.split()
    assert loaded_setuptools == "False" and "setuptools" not in version_file
