"""Acts (files): libcni's result cache, the one owner of its format.

After a chain's ADD, libcni keeps what DEL and CHECK will need in
CACHEDIR/results/NETWORK-CONTAINERID-IFNAME (mode 0600), JSON of kind "cniCacheV1":

    {"kind": "cniCacheV1", "containerId": ID, "config": BASE64, "ifName": IFNAME,
     "networkName": NETWORK, "netns": PATH, "cniArgs": [[KEY, VALUE], ...],
     "capabilityArgs": {...}, "result": {... the chain's final result ...}}

`config` is the list's JSON as Go writes a []byte: base64. The testbed keeps one cache per node
in the run directory (emu/rundir.py names it). One addition: an entry without "result" stands
for a DEL still owed after a failed ADD (for which libcni writes nothing), so that a DEL that
keeps failing survives a kubelet restart; libcni itself reads such a file as no cached result.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

KIND = "cniCacheV1"


class CacheError(RuntimeError):
    pass


@dataclass(frozen=True)
class CacheEntry:
    container_id: str
    network: str
    ifname: str
    config: dict                      # the network configuration list, as JSON data
    netns: str = ""
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: dict = field(default_factory=dict)
    result: dict | None = None

    def to_json(self) -> dict:
        out: dict = {"kind": KIND, "containerId": self.container_id,
                     "config": base64.b64encode(json.dumps(self.config).encode()).decode(),
                     "ifName": self.ifname, "networkName": self.network}
        if self.netns:
            out["netns"] = self.netns
        if self.cni_args:
            out["cniArgs"] = [list(kv) for kv in self.cni_args]
        if self.capability_args:
            out["capabilityArgs"] = self.capability_args
        if self.result is not None:
            out["result"] = self.result
        return out

    @classmethod
    def from_json(cls, data: object) -> CacheEntry:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise CacheError(f"not a {KIND} entry")
        try:
            config = json.loads(base64.b64decode(data.get("config") or ""))
            args = tuple((str(k), str(v)) for k, v in data.get("cniArgs") or [])
            return cls(str(data["containerId"]), str(data["networkName"]), str(data["ifName"]),
                       config if isinstance(config, dict) else {}, str(data.get("netns") or ""),
                       args, dict(data.get("capabilityArgs") or {}),
                       data["result"] if isinstance(data.get("result"), dict) else None)
        except (KeyError, TypeError, ValueError) as err:
            raise CacheError(f"a broken {KIND} entry: {err}") from None


def results_directory(cache_dir: Path) -> Path:
    return Path(cache_dir) / "results"


def entry_path(cache_dir: Path, network: str, container_id: str, ifname: str) -> Path:
    return results_directory(cache_dir) / f"{network}-{container_id}-{ifname}"


def write_entry(cache_dir: Path, entry: CacheEntry) -> None:
    """Write (or replace) an entry atomically, readable by root only, as libcni writes it."""
    path = entry_path(cache_dir, entry.network, entry.container_id, entry.ifname)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(entry.to_json(), f)
    os.replace(tmp, path)


def read_entry(cache_dir: Path, network: str, container_id: str, ifname: str) -> CacheEntry | None:
    """The entry, None when there is none; CacheError when it cannot be read as one."""
    path = entry_path(cache_dir, network, container_id, ifname)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CacheError(f"{path}: {err.strerror}") from None
    try:
        return CacheEntry.from_json(json.loads(text))
    except (ValueError, CacheError) as err:
        raise CacheError(f"{path}: {err}") from None


def remove_entry(cache_dir: Path, network: str, container_id: str, ifname: str) -> None:
    """Remove it; one already gone is fine."""
    try:
        entry_path(cache_dir, network, container_id, ifname).unlink()
    except FileNotFoundError:
        pass


def entries(cache_dir: Path) -> list[CacheEntry]:
    """Every readable entry (libcni's GetCachedAttachments skips the others), by file name."""
    directory = results_directory(cache_dir)
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".tmp"):
            continue
        try:
            out.append(CacheEntry.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, CacheError):
            continue
    return out
