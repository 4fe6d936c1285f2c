"""Acts: running CNI plugins as a container runtime runs them (libcni's AddNetworkList,
DelNetworkList and CheckNetworkList, over the result cache of cache.py).

A plugin is the executable its `type` names, looked up as a regular file in the plugin
directories in order (a user's binDir first, then Debian's /usr/lib/cni). It runs with exactly
the CNI parameters in its environment (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
CNI_ARGS, CNI_PATH) and PATH (plugins run iptables and their delegates), its request
(spec.cniconf.plugin_request) on standard input, for at most PLUGIN_TIMEOUT seconds. A failure is a
`CniError` holding the plugin's type and name, the network, the command and the plugin's own
message (its error JSON's msg and details), worded as libcni words it:
`plugin type="bridge" name="kubenet" failed (add): MSG`.

The chains, for one network (`Cni`):

* ADD runs the plugins in order, each given the previous one's result as prevResult; the last
  result is cached and returned. A failure stops the chain (the caller then runs DEL, as
  containerd does, so that what the first plugins made goes again).
* DEL runs them in reverse, each given the cached result (converted to the list's version) as
  prevResult, from 0.4.0 on; the cache entry goes once every plugin succeeded, whatever the
  version, as libcni's DelNetworkList removes it.
* CHECK runs them in order with the cached result; refused below 0.4.0 as libcni refuses it,
  and nothing is run when the list sets disableCheck.

`Exec` is the one seam: `run_plugin` starts a real process; unit tests hand in a fake.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.cni import cache
from testbed.cni.result import ResultError, convert, parse_result
from testbed.net.run import ns_prefix
from testbed.spec.cniconf import ConfList, find_plugin, plugin_description, plugin_request

PLUGIN_TIMEOUT = 30.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VERBS = {"ADD": "add", "DEL": "delete", "CHECK": "check"}
CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")


class CniError(Exception):
    """A chain failed. `msg` and `details` are the plugin's own words (or the runtime's, when
    no plugin ran); `plugin_type` is "" when the failure is not one plugin's."""

    def __init__(self, msg: str, *, network: str = "", command: str = "",
                 plugin: Mapping | None = None, code: int | None = None, details: str = ""):
        self.msg, self.details, self.code = msg, details, code
        self.network, self.command = network, command
        self.plugin_type = str((plugin or {}).get("type", ""))
        self.plugin_name = str((plugin or {}).get("name") or "")
        self.description = plugin_description(plugin) if plugin is not None else ""
        super().__init__(str(self))

    @property
    def message(self) -> str:
        """The plugin's message as libcni's types.Error prints it: msg, then "; details"."""
        return self.msg + (f"; {self.details}" if self.details else "")

    def __str__(self) -> str:
        if not self.description:
            return self.message
        return f"plugin {self.description} failed ({VERBS.get(self.command, self.command)}): {self.message}"


@dataclass(frozen=True)
class RuntimeConf:
    """One attachment's parameters (libcni's RuntimeConf): the same for its ADD, CHECK and DEL,
    but for the namespace, which a DEL after the pod has gone leaves empty."""

    container_id: str
    netns: str
    ifname: str
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)


def container_id(uid: str, sandbox_pid: int | None = None) -> str:
    """A pod sandbox's container ID, 64 hex digits as a runtime's are. Each sandbox has its own,
    as CRI's RunPodSandbox gives each a new one: derived from the pod's uid and the pid of the
    pause process holding the sandbox, so that a sandbox made again for the same pod is not
    mistaken for the last one (host-local and portmap key their state by this ID: a DEL still
    owed for the old sandbox must not undo the new one's ADD). A restarted kubelet finds the ID
    in the result cache, by the pod's name."""
    which = f"sandbox:{uid}" if sandbox_pid is None else f"sandbox:{uid}:{sandbox_pid}"
    return hashlib.sha256(which.encode()).hexdigest()


def pod_args(namespace: str, name: str, uid: str, sandbox_id: str) -> tuple[tuple[str, str], ...]:
    """CNI_ARGS as the kubelet and containerd pass them for a pod sandbox."""
    return (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id), ("K8S_POD_UID", uid))


def netns_path(pid: int) -> str:
    """CNI_NETNS of a sandbox: its holder's network namespace."""
    return f"/proc/{pid}/ns/net"


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes
    error: str = ""            # why it did not run or finish (no such file, timed out)


Exec = Callable[[str, Mapping[str, str], bytes, float], Finished]


def run_plugin(path: str, env: Mapping[str, str], stdin: bytes, timeout: float,
               netns: int | None = None) -> Finished:
    """Run one plugin; retried on "text file busy" as libcni's RawExec does (a plugin being
    written at that moment). With `netns` it runs in that process's network namespace (a
    node's, for a process outside the nodes; the kubelet runs inside its node's)."""
    for attempt in range(6):
        try:
            proc = subprocess.run([*ns_prefix(netns), path], env=dict(env), input=stdin, capture_output=True,
                                  timeout=timeout, close_fds=True)
            return Finished(proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired as err:
            return Finished(-9, err.stdout or b"", err.stderr or b"",
                            f"timed out after {timeout:g}s")
        except OSError as err:
            if err.errno == errno.ETXTBSY and attempt < 5:
                time.sleep(1.0)
                continue
            return Finished(-1, b"", b"", f"fork/exec {path}: {err.strerror or err}")
    raise AssertionError("unreachable")


def plugin_failure(finished: Finished) -> tuple[str, int | None, str]:
    """(msg, code, details) of a failed run, as libcni's RawExec.pluginErr reads them: the
    error JSON on standard output, else what was on standard error."""
    why = finished.error or f"exit status {finished.returncode}"
    if not finished.stdout.strip():
        if not finished.stderr.strip():
            return f"netplugin failed with no error message: {why}", None, ""
        return f"netplugin failed: {finished.stderr.decode(errors='replace')!r}: {why}", None, ""
    try:
        error = json.loads(finished.stdout)
        if not isinstance(error, dict):
            raise ValueError("not an object")
    except ValueError as err:
        return (f"netplugin failed but error parsing its diagnostic message "
                f"{finished.stdout.decode(errors='replace')!r}: {err}", None, "")
    code = error.get("code")
    return (str(error.get("msg") or ""), code if isinstance(code, int) else None,
            str(error.get("details") or ""))


class Cni:
    """libcni over one cache directory and a list of plugin directories."""

    def __init__(self, plugin_dirs: Sequence[str], cache_dir: Path, *, execute: Exec = run_plugin,
                 timeout: float = PLUGIN_TIMEOUT, path: str | None = None):
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.cache_dir = Path(cache_dir)
        self.execute = execute
        self.timeout = timeout
        self.path = path or os.environ.get("PATH") or DEFAULT_PATH

    # -- one plugin ------------------------------------------------------------------------------

    def find(self, kind: str) -> str | None:
        """The first regular file named `kind` in the plugin directories (libcni's FindInPath)."""
        return find_plugin(kind, self.plugin_dirs)

    def environment(self, command: str, rt: RuntimeConf) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": rt.container_id,
                "CNI_NETNS": rt.netns, "CNI_IFNAME": rt.ifname,
                "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args),
                "CNI_PATH": os.pathsep.join(self.plugin_dirs), "PATH": self.path}

    def run(self, command: str, conf: ConfList, plugin: Mapping, rt: RuntimeConf,
            prev_result: dict | None) -> dict | None:
        """Run one plugin of `conf`; its result for ADD (None otherwise). CniError on failure."""
        def fail(msg: str, code: int | None = None, details: str = "") -> CniError:
            return CniError(msg, network=conf.name, command=command, plugin=plugin, code=code,
                            details=details)

        kind = str(plugin.get("type", ""))
        path = self.find(kind)
        if path is None:
            raise fail(f'failed to find plugin "{kind}" in path [{" ".join(self.plugin_dirs)}]')
        request = plugin_request(conf, plugin, prev_result, rt.capability_args)
        finished = self.execute(path, self.environment(command, rt), json.dumps(request).encode(),
                                self.timeout)
        if finished.returncode != 0 or finished.error:
            raise fail(*plugin_failure(finished))
        if command != "ADD":
            return None
        try:
            result = json.loads(finished.stdout)
            parse_result(result)
        except (ValueError, ResultError) as err:
            raise fail(f"netplugin returned a result that cannot be read: {err}") from None
        return result

    # -- chains ----------------------------------------------------------------------------------

    def add(self, conf: ConfList, rt: RuntimeConf) -> dict:
        """ADD the attachment: every plugin in order; the final result, cached."""
        self._validate(conf, rt)
        result: dict | None = None
        for plugin in conf.plugins:
            result = self.run("ADD", conf, plugin, rt, result)
        assert result is not None
        self.remember(conf, rt, result)
        return result

    def remember(self, conf: ConfList, rt: RuntimeConf, result: dict | None) -> None:
        """Write the attachment's cache entry (without a result: a DEL is owed, see cache.py)."""
        cache.write_entry(self.cache_dir, cache.CacheEntry(
            rt.container_id, conf.name, rt.ifname, conf.to_json(), rt.netns, tuple(rt.args),
            dict(rt.capability_args), result))

    def cached_result(self, conf: ConfList, rt: RuntimeConf) -> dict | None:
        """The cached result, in the list's version (libcni's GetNetworkListCachedResult)."""
        entry = cache.read_entry(self.cache_dir, conf.name, rt.container_id, rt.ifname)
        if entry is None or entry.result is None:
            return None
        return convert(entry.result, conf.cni_version)

    def delete(self, conf: ConfList, rt: RuntimeConf) -> None:
        """DEL the attachment: every plugin in reverse, with the cached result from 0.4.0 on
        (an unreadable entry counts as none, as in libcni). Repeating it is fine (plugins
        accept a DEL of what is gone); the cache entry goes once all plugins succeeded."""
        prev: dict | None = None
        if conf.has_check:
            try:
                prev = self.cached_result(conf, rt)
            except (cache.CacheError, ValueError):
                prev = None
        for plugin in reversed(conf.plugins):
            self.run("DEL", conf, plugin, rt, prev)
        cache.remove_entry(self.cache_dir, conf.name, rt.container_id, rt.ifname)

    def check(self, conf: ConfList, rt: RuntimeConf) -> None:
        """CHECK the attachment: every plugin in order, with the cached result."""
        if not conf.has_check:
            raise CniError(f'configuration version "{conf.cni_version}" does not support the '
                           "CHECK command", network=conf.name, command="CHECK")
        if conf.disable_check:
            return
        try:
            prev = self.cached_result(conf, rt)
        except (cache.CacheError, ValueError) as err:
            raise CniError(f'failed to get network "{conf.name}" cached result: {err}',
                           network=conf.name, command="CHECK") from None
        for plugin in conf.plugins:
            self.run("CHECK", conf, plugin, rt, prev)

    @staticmethod
    def _validate(conf: ConfList, rt: RuntimeConf) -> None:
        """libcni's checks of an attachment's names, before anything runs."""
        problem = None
        if not CONTAINER_ID.fullmatch(rt.container_id):
            problem = f"invalid characters in containerID: {rt.container_id!r}"
        elif not rt.ifname or len(rt.ifname) > 15 or rt.ifname in (".", "..") or \
                any(c in rt.ifname for c in "/: \t\n"):
            problem = f"invalid interface name: {rt.ifname!r}"
        if problem:
            raise CniError(problem, network=conf.name, command="ADD")
