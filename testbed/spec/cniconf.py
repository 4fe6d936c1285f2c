"""Pure: CNI network configuration lists: a user's read and checked, the default kubenet chain,
and what one node makes of either.

A configuration list (the CNI specification, section 1) is {cniVersion, name, disableCheck,
plugins}; each plugin object needs a `type` and may hold anything else, which reaches the
plugin unchanged. `load_conflist(path)` reads a user's list (JSON, or YAML: JSON is YAML) through
spec.source, so every problem names its file, line and field, and raises SpecError with all of
them at once; given the plugin directories (CNI_PATH), it also finds every plugin the list
names (`type`, and `ipam.type`), as libcni's FindInPath will, so that a missing one is an input
error before anything is built, not a pod that never starts.

Versions: 1.0.0 and 0.4.0, and also 0.3.1 and 0.3.0, whose results have 0.4.0's shape (cheap
to accept); those two lack CHECK and the cached result on DEL, and the chain honours that
(`ConfList.has_check`). containerd's own loopback network (`LOOPBACK`) is 0.3.1.

What a node makes of a list (`for_node`):

* `{{.PodCIDR}}` in any string of a plugin becomes the node's pod CIDR, as in containerd's
  conf_template, and `{{.MTU}}` the pod network's MTU (1450 under vxlan, as flannel hands its
  CNI plugin the MTU through subnet.env), a number when it is the whole value (`"mtu":
  "{{.MTU}}"`); any other placeholder is refused when the list is read;
* host-local keeps its allocations in dataDir, by default /var/lib/cni/networks. Every emulated
  node shares the machine's one mount namespace (only its network namespace is its own), so
  that default would be one store for all nodes, left behind after the run: every host-local
  ipam section without a dataDir, in a user's list too, gets the node's own directory in the
  run directory (emu/rundir.py names it).

`kubenet(mtu)` is the default chain: kubenet's bridge configuration (its NET_CONFIG_TEMPLATE,
named "kubenet", bridge cbr0 with isGateway) turned into a list, with portmap for hostPort
(and disableCheck: see `kubenet`).
`plugin_request` derives what one plugin reads on standard input (libcni's buildOneConfig);
`port_mappings` is a pod's portMappings capability argument, as the kubelet and containerd
pass it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.spec.source import Document, Path_, SpecError, read_one
from testbed.spec.validation import Checker

SUPPORTED_VERSIONS = ("1.0.0", "0.4.0", "0.3.1", "0.3.0")
TOP_KEYS = {"cniVersion", "name", "disableCheck", "plugins"}
# Set by the runtime when it runs a plugin (the specification's reserved keys); prevResult too.
RESERVED_KEYS = ("runtimeConfig", "args", "prevResult")
RESERVED_PREFIX = "cni.dev/"
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")     # libcni's ValidateNetworkName
POD_CIDR = re.compile(r"\{\{\s*\.PodCIDR\s*\}\}")     # containerd's conf_template placeholder
MTU = re.compile(r"\{\{\s*\.MTU\s*\}\}")             # the pod network's MTU
TEMPLATE = re.compile(r"\{\{.*?\}\}")

KUBENET = "kubenet"
KUBENET_PLUGINS = ("loopback", "bridge", "host-local", "portmap")   # what the default chain runs
BRIDGE = "cbr0"             # the pods' bridge on both pod networks (emu/network.py makes the built-in's)
POD_IFNAME = "eth0"
LOOPBACK_IFNAME = "lo"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def at_least(version: str, minimum: str) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


@dataclass(frozen=True)
class ConfList:
    """A network configuration list. `plugins` are the plugin objects as written (JSON data);
    `source` is the file it came from ("" when built here)."""

    name: str
    cni_version: str
    plugins: tuple[dict, ...]
    disable_check: bool = False
    source: str = field(default="", compare=False)

    @property
    def has_check(self) -> bool:
        """CHECK, and the cached result given to DEL, came with 0.4.0."""
        return at_least(self.cni_version, "0.4.0")

    def to_json(self) -> dict:
        out: dict[str, Any] = {"cniVersion": self.cni_version, "name": self.name}
        if self.disable_check:
            out["disableCheck"] = True
        out["plugins"] = [copy.deepcopy(p) for p in self.plugins]
        return out


def conflist_from_json(data: Mapping) -> ConfList:
    """A list as `ConfList.to_json` wrote it (the config of a cache entry, cni/cache.py)."""
    return ConfList(str(data.get("name", "")), str(data.get("cniVersion", "")),
                    tuple(p for p in data.get("plugins") or [] if isinstance(p, dict)),
                    data.get("disableCheck") is True)


@dataclass(frozen=True)
class Network:
    """One network a pod is attached to, and the interface it gets in the pod."""

    conf: ConfList
    ifname: str


# containerd's loopback network (go-cni's WithLoNetwork), attached on "lo" before the others.
LOOPBACK = ConfList("cni-loopback", "0.3.1", ({"type": "loopback"},))


# -- reading a user's list ----------------------------------------------------------------------

def load_conflist(path: str | Path, cni_path: Sequence[str] | None = None) -> ConfList:
    """Read and check a network configuration list (JSON or YAML); SpecError names every
    problem with its file, line and field. With `cni_path`, every plugin must be found there."""
    return parse_conflist(read_one(path), cni_path)


def parse_conflist(doc: Document, cni_path: Sequence[str] | None = None) -> ConfList:
    ck = Checker(doc)
    top = ck.fields((), doc.data, TOP_KEYS) or {}
    version = ck.get(top, "cniVersion", (), "string", required=True)
    if version is not None and version not in SUPPORTED_VERSIONS:
        ck.unsupported(("cniVersion",), version, list(SUPPORTED_VERSIONS))
    name = ck.get(top, "name", (), "string", required=True)
    if name and not NAME.fullmatch(name):
        ck.invalid(("name",), name, "must start with a letter or digit, followed by letters, "
                                    "digits, '_', '.' or '-'")
    disable = _boolean(ck, top, "disableCheck")
    plugins = []
    for path, plugin in ck.items(top, "plugins", (), required=True):
        if ck.is_type(path, plugin, "object"):
            _check_plugin(ck, path, plugin)
            plugins.append(plugin)
    if cni_path is not None:
        for i, plugin in enumerate(plugins):
            for where, kind in ((("plugins", i, "type"), plugin.get("type")),
                                (("plugins", i, "ipam", "type"), (plugin.get("ipam") or {}).get("type"))):
                if isinstance(kind, str) and find_plugin(kind, cni_path) is None:
                    ck.invalid(where, kind, f'failed to find plugin "{kind}" in path '
                                            f"[{' '.join(cni_path)}]")
    if ck.problems:
        raise SpecError(ck.problems)
    return ConfList(name, version, tuple(plugins), disable, doc.file)


def find_plugin(kind: str, cni_path: Sequence[str]) -> str | None:
    """libcni's FindInPath: the first regular file named `kind` in the directories."""
    for directory in cni_path:
        candidate = Path(directory) / kind
        if candidate.is_file():
            return str(candidate)
    return None


def _boolean(ck: Checker, top: dict, key: str) -> bool:
    """A boolean; libcni also takes the strings "true" and "false" (any case)."""
    value = top.get(key)
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        ck.invalid((key,), value, "must be a boolean")
        return False
    return value


def _check_plugin(ck: Checker, path: Path_, plugin: dict) -> None:
    kind = ck.get(plugin, "type", path, "string", required=True)
    if kind and ("/" in kind or "\\" in kind or kind in (".", "..")):
        ck.invalid(path + ("type",), kind, "must be the file name of a plugin in the plugin "
                                           "directories, without '/'")
    caps = plugin.get("capabilities")
    if caps is not None and ck.is_type(path + ("capabilities",), caps, "object"):
        for cap, on in caps.items():
            ck.is_type(path + ("capabilities", cap), on, "boolean")
    ipam = plugin.get("ipam")
    if ipam is not None and ck.is_type(path + ("ipam",), ipam, "object"):
        ck.get(ipam, "type", path + ("ipam",), "string", required=True)
    for key in plugin:
        if key in RESERVED_KEYS or str(key).startswith(RESERVED_PREFIX):
            ck.forbidden(path + (key,), "set by the runtime when it runs the plugin, not in "
                                        "the configuration")
    for where, text in _strings(plugin, path):
        for found in TEMPLATE.findall(text):
            if not POD_CIDR.fullmatch(found) and not MTU.fullmatch(found):
                ck.invalid(where, text, f"{found} is not filled in: the placeholders are "
                                        "{{.PodCIDR}} (the node's pod CIDR) and {{.MTU}} (the "
                                        "pod network's MTU)")


def _strings(value: Any, path: Path_):
    """(path, text) of every string in `value`, keys aside."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, path + (i,))


# -- the default chain, and what a node makes of a list --------------------------------------

def kubenet(mtu: int) -> ConfList:
    """kubenet's configuration as a list: bridge cbr0 as the pods' gateway (no masquerade: the
    cluster routes pod addresses), hairpin on every port, host-local over the node's pod CIDR
    with a default route; then portmap (hostPort, with SNAT for hairpin and localhost). The
    bridge plugin object keeps kubenet's network name, as a converted single configuration does
    (libcni's ConfListFromConf), so its errors read `plugin type="bridge" name="kubenet"`.

    The bridge declares the `ips` capability (the CNI convention for asking IPAM for given
    addresses; the bridge passes it on to host-local): the runtime uses it to give system pods
    the highest free addresses, as the built-in network does (emu/cninet.py), so that both
    networks give pods the same addresses.

    disableCheck is set, as the specification means it, for a combination known to return
    spurious errors: Debian's portmap (1.1.1) fails CHECK of every IPv4-only attachment, since
    it also looks for IPv6 DNAT rules it never made (containernetworking/plugins#819)."""
    return ConfList(KUBENET, "1.0.0", (
        {"type": "bridge", "name": KUBENET, "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
         "hairpinMode": True, "mtu": mtu, "capabilities": {"ips": True},
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
    ), disable_check=True)


def for_node(conf: ConfList, pod_cidr: str, data_dir: str, mtu: int = 1500) -> ConfList:
    """`conf` as one node uses it: {{.PodCIDR}} and {{.MTU}} filled in, host-local's dataDir
    set to `data_dir` where the list names none (see the module's docstring)."""
    plugins = []
    for plugin in conf.plugins:
        plugin = _fill(copy.deepcopy(plugin), pod_cidr, mtu)
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local" and not ipam.get("dataDir"):
            ipam["dataDir"] = data_dir
        plugins.append(plugin)
    return ConfList(conf.name, conf.cni_version, tuple(plugins), conf.disable_check, conf.source)


def _fill(value: Any, pod_cidr: str, mtu: int = 1500) -> Any:
    if isinstance(value, str):
        if MTU.fullmatch(value.strip()):
            return mtu       # a number, as plugins read "mtu"
        return MTU.sub(str(mtu), POD_CIDR.sub(pod_cidr, value))
    if isinstance(value, dict):
        return {key: _fill(item, pod_cidr, mtu) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, pod_cidr, mtu) for item in value]
    return value


def ips_store(conf: ConfList) -> str | None:
    """Where host-local keeps the list's allocations (dataDir/NETWORK), when a plugin of it
    declares the `ips` capability and hands it to host-local; None otherwise."""
    for plugin in conf.plugins:
        ipam = plugin.get("ipam")
        if (plugin.get("capabilities") or {}).get("ips") is True and isinstance(ipam, dict) \
                and ipam.get("type") == "host-local" and ipam.get("dataDir"):
            return f"{ipam['dataDir']}/{conf.name}"
    return None


def node_networks(conf: ConfList | None, pod_cidr: str, mtu: int, data_dir: str) -> tuple[Network, ...]:
    """The networks a pod on this node joins, in the order they are added: containerd's
    loopback on "lo", then the user's list (None: the kubenet chain) on "eth0"."""
    return (Network(LOOPBACK, LOOPBACK_IFNAME),
            Network(for_node(conf or kubenet(mtu), pod_cidr, data_dir, mtu), POD_IFNAME))


# -- what a plugin is given -------------------------------------------------------------------

def plugin_description(plugin: Mapping) -> str:
    """How libcni names a plugin in its errors: type="bridge", and name="..." when the plugin
    object has one of its own."""
    out = f'type="{plugin.get("type", "")}"'
    if plugin.get("name"):
        out += f' name="{plugin["name"]}"'
    return out


def plugin_request(conf: ConfList, plugin: Mapping, prev_result: dict | None,
                   capability_args: Mapping[str, Any]) -> dict:
    """The configuration one plugin reads on standard input (libcni's buildOneConfig): the
    plugin object with the list's name and cniVersion, the previous result when there is one,
    and runtimeConfig holding each capability argument the plugin declares it supports."""
    out = copy.deepcopy(dict(plugin))
    out["name"] = conf.name
    out["cniVersion"] = conf.cni_version
    if prev_result is not None:
        out["prevResult"] = prev_result
    caps = plugin.get("capabilities") or {}
    runtime = {cap: capability_args[cap] for cap, on in caps.items()
               if on is True and cap in capability_args}
    if runtime:
        out["runtimeConfig"] = runtime
    return out


def port_mappings(manifest: Mapping) -> list[dict]:
    """A pod's hostPort container ports as the portMappings capability argument: what the
    kubelet's makePortMappings hands the runtime and containerd's toCNIPortMappings passes on
    (ports without a hostPort are not mapped; the protocol in lower case)."""
    out: list[dict] = []
    seen: set[tuple] = set()
    for container in (manifest.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            host_port = port.get("hostPort") or 0
            if host_port <= 0:
                continue
            protocol = str(port.get("protocol") or "TCP").lower()
            key = (host_port, protocol, port.get("hostIP") or "")
            if key in seen:   # the kubelet drops a repeated mapping
                continue
            seen.add(key)
            mapping = {"hostPort": host_port, "containerPort": port.get("containerPort"),
                       "protocol": protocol}
            if port.get("hostIP"):
                mapping["hostIP"] = port["hostIP"]
            out.append(mapping)
    return out
