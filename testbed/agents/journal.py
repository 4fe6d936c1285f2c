"""Acts (a file): the API server's store, journaled so that it survives a restart.

`JournaledStore` appends every write to its file as a JSON line and reloads (and compacts) it
at start; resourceVersions continue from the last one, and a watch from before the restart gets
410 Expired, so informers relist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from testbed.api.store import Key, Store, key_of

# -- persistence ---------------------------------------------------------------------------------

def read_journal(path: Path) -> tuple[dict[Key, dict], int]:
    """Objects and the last resourceVersion of a journal; a line cut short by a kill is skipped."""
    objects: dict[Key, dict] = {}
    rv = 0
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return objects, 0
    for line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        rv = max(rv, int(item.get("rv", 0)))
        if "object" in item:
            objects[key_of(item["object"])] = item["object"]
        elif "deleted" in item:
            objects.pop(tuple(item["deleted"]), None)  # type: ignore[arg-type]
    return objects, rv


def write_journal(path: Path, objects: dict[Key, dict], rv: int) -> None:
    """Replace the journal with one line per object (compaction), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as out:
        for obj in objects.values():
            out.write(json.dumps({"rv": int(obj["metadata"]["resourceVersion"]), "object": obj},
                                 separators=(",", ":")) + "\n")
        out.write(json.dumps({"rv": rv}) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class JournaledStore(Store):
    """A Store whose every write is appended to a JSON-lines file, reloaded at start.

    Contract with testbed.api.store: restoring sets Store's protected object map, counter and
    history floor (Store has no restore API), and `_write` (called under the store's lock for
    every change, in resourceVersion order) is the hook that journals.
    """

    def __init__(self, path: Path, **kwargs: Any):
        super().__init__(**kwargs)
        objects, rv = read_journal(path)
        self._objects.update(objects)
        self._rv = self._dropped_upto = rv  # older watches get 410 and relist
        path.parent.mkdir(parents=True, exist_ok=True)
        write_journal(path, objects, rv)
        self._journal = open(path, "a")  # noqa: SIM115 - closed by close()

    def _write(self, key: Key, new: dict | None, kind: str, old: dict | None) -> dict:
        shown = super()._write(key, new, kind, old)
        item = {"rv": self._rv, "object": new} if new is not None else \
            {"rv": self._rv, "deleted": list(key)}
        if not self._journal.closed:
            self._journal.write(json.dumps(item, separators=(",", ":")) + "\n")
            self._journal.flush()
        return shown

    def close(self) -> None:
        with self._lock:
            self._journal.close()
