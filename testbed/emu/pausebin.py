"""Acts: finds or builds the `testbed-pause` binary from pause.c beside this file.

The binary is built once per source version with the system C compiler (installed by
scripts/install.sh) and cached under /var/cache/testbed, named by the source's hash, so an
edited pause.c is rebuilt and two versions never mix.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from testbed.emu import rundir
from testbed.node.images import container_env, image_argv, image_path

SOURCE = Path(__file__).with_name("pause.c")
CACHE = Path(os.environ.get("TESTBED_CACHE", "/var/cache/testbed"))


class PauseBuildError(RuntimeError):
    pass


def pause_binary() -> str:
    """The path of a built testbed-pause matching pause.c, building it if needed."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    target = CACHE / f"testbed-pause-{digest}"
    if target.exists():
        return str(target)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    for flags in (["-static"], []):  # static is smaller resident; fall back when libc.a is absent
        proc = subprocess.run(["cc", "-O2", "-Wall", *flags, "-o", str(tmp), str(SOURCE)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            os.replace(tmp, target)
            return str(target)
    raise PauseBuildError(f"cannot build {SOURCE} with cc (run scripts/install.sh): {proc.stderr.strip()}")


def enter_argv(pause_bin: str, pid: int, pod_dir: Path,
               files: tuple[str, ...] = (rundir.POD_HOSTS, rundir.POD_RESOLV_CONF),
               *, sysfs: bool = False, chdir: str = "/") -> list[str]:
    """The `testbed-pause enter` prefix that runs a command in pod `pid`'s namespaces, with each
    of the pod's `files` (in `pod_dir`) bind-mounted over /etc/<file>; the command follows."""
    argv = [pause_bin, "enter", str(pid)]
    for name in files:
        argv += ["--bind", f"{rundir.pod_file(pod_dir, name)}:/etc/{name}"]
    return argv + (["--sysfs"] if sysfs else []) + ["--chdir", chdir, "--"]


def container_process(pause_bin: str, pause_pid: int, pod_dir: Path, manifest: dict,
                      container: str, argv: list[str], path: str) -> tuple[list[str], dict]:
    """(argv, env) that run `argv` in container `container` of a pod as its own processes run:
    the pod's namespaces and files, the container's environment, working directory and PATH.
    The kubelet starts containers with it; exec, the CLI and scripts run commands with it."""
    spec = next((c for c in (manifest.get("spec") or {}).get("containers") or []
                 if c.get("name") == container), {})
    workdir = rundir.container_directory(pod_dir, container)
    # A workingDir that exists on the node is used as it is; otherwise the container runs in
    # its own directory (there is no image filesystem to create it in).
    wanted = spec.get("workingDir")
    cwd = wanted if wanted and os.path.isdir(wanted) else str(workdir)
    hostname = (manifest.get("spec") or {}).get("hostname") or manifest["metadata"]["name"]
    env = {"PATH": image_path(str(spec.get("image", "")), path), "HOSTNAME": hostname,
           "HOME": str(workdir), "PYTHONUNBUFFERED": "1"}
    env.update(container_env(spec))
    argv = image_argv(str(spec.get("image", "")), list(argv))
    return enter_argv(pause_bin, pause_pid, pod_dir, rundir.POD_FILES, sysfs=True, chdir=cwd) + argv, env
