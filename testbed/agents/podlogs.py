"""Acts (reads files): the pods/log subresource, from the containers' output in the run directory.

Upstream the API server asks the pod's kubelet, which reads the runtime's log files. Here every
process runs on one machine, so the API server reads the same files the kubelet's runtime
writes (testbed/emu/record.py owns their paths: RUN/pods/NS_NAME/CONTAINER/log, and log.previous
for the run before the last restart) and asks the kubelet's state file (RUN/kubelet-NODE.json)
whether the container still runs, to know when a `follow` ends.

Options as upstream's PodLogOptions: container (required when the pod has several), follow,
previous, tailLines, limitBytes. sinceSeconds, sinceTime and timestamps are refused with 400:
the runtime writes plain output files without per-line times, so they cannot be honoured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from testbed.api.failures import ApiFailure
from testbed.emu.record import alive
from testbed.emu.rundir import container_log, pod_directory, read_kubelet_state

FOLLOW_POLL = 0.2   # seconds between looks at a followed log
CHUNK = 64 * 1024


def _bad(message: str) -> ApiFailure:
    return ApiFailure(400, "BadRequest", message)


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = _last(query, name)
    if value is None or value == "":
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise _bad(f'invalid boolean value for {name}: "{value}"')


def _number(query: dict[str, list[str]], name: str, minimum: int, pod: str) -> int | None:
    """An integer option; below `minimum` it is refused as upstream's PodLogOptions
    validation refuses it (422)."""
    value = _last(query, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _bad(f'invalid value for {name}: "{value}"') from None
    if number < minimum:
        rule = ("must be greater than or equal to 0" if minimum == 0
                else "must be greater than 0")
        raise ApiFailure(422, "Invalid", f'PodLogOptions "{pod}" is invalid: {name}: Invalid '
                         f"value: {number}: {rule}",
                         [{"reason": "FieldValueInvalid", "message": f"Invalid value: {number}: "
                           f"{rule}", "field": name}])
    return number


def choose_container(pod: dict, wanted: str | None) -> str:
    """The container a log request is about, as the API server picks it."""
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in pod["spec"].get("containers") or []]
    inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
    if wanted:
        if wanted not in containers + inits:
            raise _bad(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(containers) == 1:
        return containers[0]
    raise _bad(f"a container name must be specified for pod {name}, choose one of: "
               f"[{' '.join(containers)}]" + (f" or one of the init containers: "
                                              f"[{' '.join(inits)}]" if inits else ""))


class PodLogs:
    """Serves pods/log for the pods of one run directory."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def _process(self, pod: dict, container: str) -> tuple[int | None, int | None]:
        """The (pid, start time) of the container's current process, as its kubelet saved it."""
        saved = read_kubelet_state(self.run_dir, pod["spec"].get("nodeName") or "")
        found = saved.get(pod["metadata"].get("uid", ""))
        c = found.containers.get(container) if found else None
        return (c.pid, c.start) if c else (None, None)

    def open(self, pod: dict, query: dict[str, list[str]],
             wanted: Callable[[], bool] = lambda: True) -> Iterator[bytes]:
        """The log's bytes as a stream of chunks; ApiFailure (before the first chunk) when the
        request cannot be served. A follow ends when the container process that ran when it
        began has ended (a restart starts another log), or when `wanted()` turns false (the
        client went away, the server stops)."""
        for refused in ("sinceSeconds", "sinceTime", "timestamps"):
            if _last(query, refused) not in (None, "", "false"):
                raise _bad(f"{refused} is not supported by this cluster's container runtime: it "
                           "keeps each container's output without per-line times")
        container = choose_container(pod, _last(query, "container"))
        follow, previous = _flag(query, "follow"), _flag(query, "previous")
        meta = pod["metadata"]
        tail = _number(query, "tailLines", 0, meta["name"])
        limit = _number(query, "limitBytes", 1, meta["name"])
        path = container_log(pod_directory(self.run_dir, meta["namespace"], meta["name"]),
                             container, previous)
        if previous and not path.exists():
            raise _bad(f'previous terminated container "{container}" in pod "{meta["name"]}" '
                       "not found")
        try:
            handle = path.open("rb")
        except OSError:
            raise _bad(f'container "{container}" in pod "{meta["name"]}" is waiting to start: '
                       "ContainerCreating") from None
        process = self._process(pod, container)
        following = follow and not previous
        return self._stream(handle, lambda: following and alive(*process) and wanted(), tail,
                            limit)

    @staticmethod
    def _stream(handle, follow: Callable[[], bool], tail: int | None,
                limit: int | None) -> Iterator[bytes]:
        with handle:
            if tail is not None:
                handle.seek(_tail_offset(handle, tail))
            sent = 0
            while True:
                data = handle.read(CHUNK if limit is None else min(CHUNK, limit - sent))
                if data:
                    sent += len(data)
                    yield data
                    if limit is not None and sent >= limit:
                        return
                    continue
                if not follow():
                    # one more look: what the container wrote just before it ended
                    rest = handle.read()
                    if rest:
                        yield rest[:None if limit is None else limit - sent]
                    return
                time.sleep(FOLLOW_POLL)


def _tail_offset(handle, lines: int) -> int:
    """The offset where the last `lines` lines of the file start."""
    if lines == 0:
        return handle.seek(0, 2)
    end = handle.seek(0, 2)
    pos, found, block = end, 0, 8192
    # A final newline ends the last line; it does not start another one.
    handle.seek(max(0, end - 1))
    skip_last = handle.read(1) == b"\n"
    while pos > 0:
        start = max(0, pos - block)
        handle.seek(start)
        chunk = handle.read(pos - start)
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i:i + 1] == b"\n":
                if skip_last and start + i == end - 1:
                    continue
                found += 1
                if found == lines:
                    return start + i + 1
        pos = start
    return 0
