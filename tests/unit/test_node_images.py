"""testbed.node.images: $(VAR) expansion, image names, entrypoints, commands along a PATH."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from testbed.node.images import (
    ENTRYPOINTS,
    ImageError,
    container_argv,
    container_env,
    container_path,
    expand,
    image_name,
    pod_command_problems,
    resolve_command,
)

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
ENV = {"A": "alpha", "B": "$(A)", "MY_VAR": "m", "my-var.x": "dotted"}


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "alpha"),
    ("x-$(A)-y", "x-alpha-y"),
    ("$(A)$(MY_VAR)", "alpham"),
    ("$(my-var.x)", "dotted"),
    ("$(UNDEFINED)", "$(UNDEFINED)"),        # undefined: left as is
    ("$(A) $(NOPE)", "alpha $(NOPE)"),
    ("$$(A)", "$(A)"),                       # $$ escapes: the reference is not expanded
    ("$$", "$"),
    ("$$$(A)", "$alpha"),
    ("$$$$", "$$"),
    ("cost: $5", "cost: $5"),               # a lone $ is kept
    ("$A", "$A"),                            # only the $(...) form expands
    ("$(A", "$(A"),                          # unclosed
    ("$()", "$()"),
    ("$(1A)", "$(1A)"),
    ("$(B)", "$(A)"),                        # one pass: values are not expanded again
    ("", ""),
])
def test_expand(text, expected):
    assert expand(text, ENV) == expected


@pytest.mark.parametrize(("image", "name"), [
    (AGNHOST, "agnhost"),
    ("agnhost", "agnhost"),
    ("agnhost:2.39", "agnhost"),
    ("localhost:5000/team/agnhost:1.0", "agnhost"),
    ("registry.k8s.io/pause@sha256:abcdef", "pause"),
    ("docker.io/library/nginx:1.25@sha256:0123", "nginx"),
    ("busybox", "busybox"),
])
def test_image_name(image, name):
    assert image_name(image) == name


def test_agnhost_entrypoint_gets_the_args():
    argv = container_argv({"image": AGNHOST, "args": ["netexec", "--http-port=$(PORT)"]}, {"PORT": "8080"})
    assert argv == [sys.executable, "-m", "testbed.workloads.agnhost", "netexec", "--http-port=8080"]
    assert ENTRYPOINTS["agnhost"] == [sys.executable, "-m", "testbed.workloads.agnhost"]


def test_agnhost_without_args_runs_the_images_cmd():
    # ENTRYPOINT ["/agnhost"], CMD ["pause"]: a bare agnhost container pauses
    assert container_argv({"image": "agnhost"}, {}) == [sys.executable, "-m", "testbed.workloads.agnhost", "pause"]
    assert container_argv({"image": AGNHOST, "args": []}, {}) == AGNHOST_ARGV + ["pause"]


AGNHOST_ARGV = [sys.executable, "-m", "testbed.workloads.agnhost"]


@pytest.mark.parametrize(("container", "argv"), [
    # upstream's e2e forms: args alone (NewAgnhostPod), the image's program as the command,
    # the program as the command with the subcommand in args
    ({"args": ["netexec", "--http-port=8083", "--udp-port=8081"]}, ["netexec", "--http-port=8083", "--udp-port=8081"]),
    ({"command": ["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", "9376"]},
     ["serve-hostname", "--tcp", "--http=false", "--port", "9376"]),
    ({"command": ["/agnhost"], "args": ["netexec", "--delay-shutdown", "9999"]}, ["netexec", "--delay-shutdown", "9999"]),
    ({"command": ["/agnhost", "netexec"], "args": ["--http-port=$(PORT)"]}, ["netexec", "--http-port=80"]),
    ({"command": ["/agnhost-2", "pause"]}, ["pause"]),             # the image's link to it
    ({"command": ["/agnhost"]}, []),         # a command drops the image's CMD: agnhost's help
])
def test_agnhost_command_forms(container, argv):
    assert container_argv({"image": AGNHOST, **container}, {"PORT": "80"}) == AGNHOST_ARGV + argv


def test_agnhost_program_only_in_its_image_and_only_by_its_path():
    assert container_argv({"image": "busybox", "command": ["/agnhost", "netexec"]}, {}) == ["/agnhost", "netexec"]
    # `agnhost` is not on the image's PATH: left as written, then not found on the node
    assert container_argv({"image": AGNHOST, "command": ["agnhost", "netexec"]}, {}) == ["agnhost", "netexec"]
    assert container_argv({"image": AGNHOST, "command": ["sh", "-c", "/agnhost connect a:1"]}, {}) == \
        ["sh", "-c", "/agnhost connect a:1"]


def test_pause_image_sleeps():
    assert container_argv({"image": "registry.k8s.io/pause:3.9"}, {}) == ["sleep", "infinity"]


def test_command_wins_over_the_image_and_is_expanded():
    container = {"image": AGNHOST, "command": ["sh", "-c", "echo $(MSG) $$(MSG)"], "args": ["$(MSG)"]}
    assert container_argv(container, {"MSG": "hi"}) == ["sh", "-c", "echo hi $(MSG)", "hi"]


def test_unknown_image_without_command():
    with pytest.raises(ImageError) as info:
        container_argv({"image": "nginx:1.25"}, {})
    assert str(info.value) == ("image 'nginx:1.25' has no entrypoint the testbed knows: give the "
                               "container a command (known images: agnhost, pause)")


def test_unknown_image_runs_its_args_as_an_image_without_entrypoint_does():
    container = {"image": "busybox", "args": ["sh", "-c", "echo $(MSG)"]}
    assert container_argv(container, {"MSG": "hi"}) == ["sh", "-c", "echo hi"]


def test_empty_command_means_no_command():
    with pytest.raises(ImageError):
        container_argv({"image": "nginx", "command": []}, {})


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


def test_container_env():
    container = {"env": [{"name": "A", "value": "1"}, {"name": "EMPTY"},
                         {"name": "N", "value": 5},
                         {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"value": "nameless"}]}
    assert container_env(container) == {"A": "1", "EMPTY": "", "N": "5", "FROM": ""}
    assert container_env({}) == {}
    assert container_env({"env": None}) == {}


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH directory with one executable `mytool` and one non-executable `notexec`."""
    d = tmp_path / "bin"
    d.mkdir()
    tool = d / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (d / "notexec").write_text("data\n")
    (d / "notexec").chmod(0o644)
    return d


def test_resolve_command_along_path(bin_dir: Path):
    container = {"image": "x", "command": ["mytool", "--name=$(N)"], "env": [{"name": "N", "value": "v"}]}
    assert resolve_command(container, str(bin_dir), shutil.which) == ["mytool", "--name=v"]


def test_resolve_command_absolute_path(bin_dir: Path):
    tool = str(bin_dir / "mytool")
    assert resolve_command({"image": "x", "command": [tool]}, "/nonexistent", shutil.which) == [tool]


@pytest.mark.parametrize("program", ["othertool", "notexec"])
def test_resolve_command_not_found(bin_dir: Path, program: str):
    with pytest.raises(ImageError) as info:
        resolve_command({"image": "x", "command": [program]}, str(bin_dir), shutil.which)
    assert str(info.value) == f"command {program!r} is not found on the node (PATH={bin_dir})"


def test_resolve_command_uses_only_the_given_path(bin_dir: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError):
        resolve_command({"image": "x", "command": ["mytool"]}, str(empty), shutil.which)
    assert resolve_command({"image": "x", "command": ["mytool"]}, f"{empty}:{bin_dir}", shutil.which) == ["mytool"]


def test_container_path_puts_the_testbed_python_first():
    path = container_path("/opt/venv/bin/python3")
    assert path.split(":")[0] == "/opt/venv/bin"
    assert path.split(":")[1:] == ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    assert container_path().split(":")[0] == os.path.dirname(sys.executable)


def test_agnhost_resolves_along_the_container_path():
    argv = resolve_command({"image": AGNHOST, "args": ["netexec"]}, container_path(), shutil.which)
    assert argv[0] == sys.executable


def test_pod_command_problems(bin_dir: Path):
    pod = {"spec": {"containers": [
        {"name": "ok", "image": "x", "command": ["mytool"]},
        {"name": "bad", "image": "nginx"},
        {"name": "missing", "image": "x", "command": ["nope"]},
    ]}}
    problems = pod_command_problems(pod, str(bin_dir), shutil.which)
    assert [where for where, _ in problems] == [
        ("spec", "containers", 1, "command"), ("spec", "containers", 2, "command")]
    assert problems[0][1].startswith("image 'nginx' has no entrypoint")
    assert problems[1][1] == f"command 'nope' is not found on the node (PATH={bin_dir})"
    assert pod_command_problems({}, str(bin_dir), shutil.which) == []
