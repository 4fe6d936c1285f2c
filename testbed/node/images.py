"""Pure: what a container runs, given its image, command, args and env (there is no registry).

A container's `command` runs on the node's own filesystem, as written, after Kubernetes'
`$(VAR)` expansion. With no `command`, the image's entrypoint is looked up here: images the
testbed knows (agnhost, for its netexec server) map to programs shipped with the testbed; any
other image runs its `args` as an image without an ENTRYPOINT does (busybox, alpine, ...);
with neither, the error says a command must be given.

The runtime's rule (containerd's WithProcessArgs): no command and no args run the image's
ENTRYPOINT with its CMD; args alone run ENTRYPOINT + args; a command runs as given with the
args, the image's CMD ignored. agnhost's image has ENTRYPOINT ["/agnhost"] and CMD ["pause"],
so `args: [netexec, ...]`, `command: [/agnhost, netexec, ...]` and `command: [/agnhost]` +
`args: [netexec, ...]` all run netexec, and a bare agnhost container pauses.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)")


# Where a program is found along a PATH: shutil.which, handed in by the acting caller (the
# runtime, the commands), so that nothing here looks at a filesystem.
Which = Callable[..., "str | None"]


class ImageError(ValueError):
    pass


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion: $(VAR) -> value when VAR is defined, $$ -> $, else left as is."""
    def sub(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)
    return _REF.sub(sub, text)


def image_name(image: str) -> str:
    """registry.k8s.io/e2e-test-images/agnhost:2.39 -> agnhost."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


# Images whose entrypoint the testbed provides: name -> argv prefix (args are appended).
ENTRYPOINTS: dict[str, list[str]] = {
    "agnhost": [sys.executable, "-m", "testbed.workloads.agnhost"],
    "pause": [],  # handled by the sandbox itself; a pause container just sleeps
}


# Their CMD: the arguments the entrypoint gets when the container gives neither command nor args.
IMAGE_CMDS: dict[str, list[str]] = {"agnhost": ["pause"]}


# Where those images keep their program, as a command or `kubectl exec` names it
# (`command: [/agnhost, netexec]`, `kubectl exec POD -- /agnhost connect HOST:PORT`). The image
# also has /agnhost-2, a link to it (upstream's entrypoint tests); `agnhost` alone is not on the
# image's PATH, so it is not found here either.
IMAGE_PROGRAMS: dict[str, tuple[str, ...]] = {"agnhost": ("/agnhost", "/agnhost-2")}


def image_argv(image: str, argv: list[str]) -> list[str]:
    """`argv` as run in a container of `image`: the image's own program, named by its path in
    the image, becomes the testbed's (there is no image filesystem)."""
    name = image_name(image)
    if argv and argv[0] in IMAGE_PROGRAMS.get(name, ()) and ENTRYPOINTS.get(name):
        return ENTRYPOINTS[name] + argv[1:]
    return argv


def container_argv(container: dict, env: dict[str, str]) -> list[str]:
    """The argv a container runs; ImageError when it cannot be known."""
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        return image_argv(str(container.get("image", "")), command + args)
    name = image_name(str(container.get("image", "")))
    if name in ENTRYPOINTS:
        entry = ENTRYPOINTS[name]
        return (entry + (args or IMAGE_CMDS.get(name, []))) if entry else ["sleep", "infinity"]
    if args:
        # An image without an ENTRYPOINT (busybox, alpine, debian, ...) runs its args: what
        # `kubectl run x --image=busybox -- sh -c ...` relies on.
        return args
    raise ImageError(f"image {container.get('image')!r} has no entrypoint the testbed knows: give "
                     f"the container a command (known images: {', '.join(sorted(ENTRYPOINTS))})")


SHIMS = Path(__file__).resolve().parent.parent / "emu" / "shims"   # shipped with the runtime


def image_path(image: str, path: str) -> str:
    """PATH for a container of `image`: shims first where the image needs them.

    python:2.x images get a `python` that maps Python 2 module names (SimpleHTTPServer) to
    Python 3's, since the nodes have no Python 2.
    """
    name, _, tag = image.rsplit("/", 1)[-1].partition(":")
    if name == "python" and (tag == "2" or tag.startswith("2.")):
        return f"{SHIMS / 'python2'}:{path}"
    return path


def container_env(container: dict) -> dict[str, str]:
    """The container's own env entries with literal values (valueFrom is resolved elsewhere)."""
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}


def resolve_command(container: dict, path: str, which: Which) -> list[str]:
    """container_argv, and the program must exist on the node along `path` (as `which`, the
    acting caller's shutil.which, finds it); ImageError if not."""
    argv = container_argv(container, container_env(container))
    path = image_path(str(container.get("image", "")), path)
    if which(argv[0], path=path) is None:
        raise ImageError(f"command {argv[0]!r} is not found on the node (PATH={path})")
    return argv


def container_path(python_bin: str = sys.executable) -> str:
    """PATH inside containers: the testbed's own programs (and its python) first."""
    import os

    return f"{os.path.dirname(python_bin)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pod_command_problems(pod: dict, path: str, which: Which) -> list[tuple[tuple, str]]:
    """[(field path, message)] for every container of `pod` whose command cannot run here."""
    out = []
    for index, container in enumerate(pod.get("spec", {}).get("containers", [])):
        try:
            resolve_command(container, path, which)
        except ImageError as err:
            out.append((("spec", "containers", index, "command"), str(err)))
    return out
