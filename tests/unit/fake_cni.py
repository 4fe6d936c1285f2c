"""A fake CNI plugin for the unit tests: a small executable script that records every call.

`FakePlugins(directory)` writes one script per plugin type into `directory`. Each run appends
one JSON line to calls.jsonl beside it: the plugin's type, CNI_COMMAND, the environment exactly
as the plugin received it (read from /proc/self/environ, before Python touches it) and its
standard input. It then does what control.json says for its type and command:

    {"bridge": {"ADD": {"code": 11, "msg": "...", "details": "...", "times": N},
                "sleep": SECONDS, "raw": "printed instead of a result", "stderr": "..."}}

(an error given `times` fails only the first N calls of that command, one given `pod` only the
calls for that pod's name). Otherwise ADD prints a
result: the prevResult passed through, or, with "address" in its configuration (or an ipam
range: its second address, the first as gateway), a new result in the configuration's cniVersion, shaped as the bridge plugin's (bridge, host veth, the pod's
interface with the sandbox set to CNI_NETNS, one IP with its gateway, a default route).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

SCRIPT = r'''#!PYTHON
import json, os, sys, time
from pathlib import Path

here = Path(__file__).resolve().parent
kind = Path(__file__).name
raw = open("/proc/self/environ", "rb").read().split(b"\0")
env = dict(item.decode().split("=", 1) for item in raw if item)
stdin = sys.stdin.read()
conf = json.loads(stdin) if stdin else {}
command = env.get("CNI_COMMAND", "")
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"type": kind, "command": command, "env": env, "stdin": conf}) + "\n")
control_file = here / "control.json"
control = json.loads(control_file.read_text()).get(kind, {}) if control_file.exists() else {}
if control.get("sleep"):
    time.sleep(control["sleep"])
if control.get("stderr"):
    sys.stderr.write(control["stderr"])
if control.get("raw") is not None and command == "ADD":
    sys.stdout.write(control["raw"])
    sys.exit(control.get("exit", 0))
fail = control.get(command)
if fail and fail.get("pod") and f"K8S_POD_NAME={fail['pod']};" not in env.get("CNI_ARGS", "") + ";":
    fail = None
if fail:
    counter = here / f"count-{kind}-{command}"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    if count <= fail.get("times", 10**9):
        if fail.get("msg") is not None:
            print(json.dumps({"cniVersion": conf.get("cniVersion"), "code": fail.get("code", 999),
                              "msg": fail["msg"], "details": fail.get("details", "")}))
        sys.exit(1)
if command != "ADD":
    sys.exit(0)
result = conf.get("prevResult")
ranges = (conf.get("ipam") or {}).get("ranges")
if ranges and not conf.get("address"):   # as host-local would start: .2, the gateway .1
    import ipaddress
    net = ipaddress.ip_network(ranges[0][0]["subnet"])
    conf["address"] = f"{net.network_address + 2}/{net.prefixlen}"
    conf["gateway"] = str(net.network_address + 1)
if conf.get("address"):
    version = conf["cniVersion"]
    ip = {"address": conf["address"], "gateway": conf.get("gateway"), "interface": 2}
    if version != "1.0.0":
        ip["version"] = "4"
    result = {"cniVersion": version,
              "interfaces": [{"name": "cbr0", "mac": "aa:aa:aa:aa:aa:01"},
                             {"name": conf.get("hostVeth", "veth1234abcd"), "mac": "aa:aa:aa:aa:aa:02"},
                             {"name": env["CNI_IFNAME"], "mac": "aa:aa:aa:aa:aa:03",
                              "sandbox": env["CNI_NETNS"]}],
              "ips": [ip], "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}
if result is None:
    result = {"cniVersion": conf.get("cniVersion")}
print(json.dumps(result))
'''


class FakePlugins:
    def __init__(self, directory: Path, types: tuple[str, ...] = ("bridge", "portmap", "loopback")):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for kind in types:
            path = self.directory / kind
            path.write_text(SCRIPT.replace("PYTHON", sys.executable, 1))
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.control_data: dict = {}

    def control(self, kind: str, **settings) -> None:
        """Set what plugin `kind` does (see the module's docstring); counters start over."""
        self.control_data[kind] = settings
        (self.directory / "control.json").write_text(json.dumps(self.control_data))
        for counter in self.directory.glob(f"count-{kind}-*"):
            counter.unlink()

    def calls(self) -> list[dict]:
        log = self.directory / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def order(self) -> list[tuple[str, str]]:
        """(type, command) of every call so far."""
        return [(c["type"], c["command"]) for c in self.calls()]

    def forget(self) -> None:
        (self.directory / "calls.jsonl").unlink(missing_ok=True)
