"""Acts (a thread): the event recorder components use to write Events, as client-go's does.

    recorder = EventRecorder(client, "kubelet", host="w1").start()
    recorder.record(Note(reference(pod, container_path("web")), "Normal", "Started",
                         "Started container web"))

Writes go through a queue to one background thread, so that recording never slows the
component down, and a failed write is logged and dropped (events are best effort upstream
too). A note identical to one recorded before (same object, type, reason and message) is
counted into the existing Event (count + 1, lastTimestamp) instead of creating another, as
client-go's EventCorrelator does. The sink is anything with `create(obj)` and `update(obj)`:
the testbed's API Client, or the store itself for the controllers inside the API server.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from testbed.api.events import Note, new_event, repeat

log = logging.getLogger("testbed.events")

CACHE_SIZE = 4096   # remembered events per recorder (client-go keeps 4096 too)


class Sink(Protocol):
    def create(self, obj: dict) -> dict: ...
    def update(self, obj: dict) -> dict: ...


class EventRecorder:
    def __init__(self, sink: Sink, component: str, host: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.sink, self.component, self.host, self.now = sink, component, host, now
        self._queue: queue.Queue[Note | None] = queue.Queue(maxsize=10000)
        self._seen: OrderedDict[tuple, dict] = OrderedDict()   # note key -> last Event written
        self._thread: threading.Thread | None = None

    def start(self) -> EventRecorder:
        self._thread = threading.Thread(target=self._run, name=f"events-{self.component}",
                                        daemon=True)
        self._thread.start()
        return self

    def record(self, note: Note) -> None:
        """Queue `note`; never blocks (a full queue drops it, with a log line)."""
        if self._thread is None:
            self.write(note)
            return
        try:
            self._queue.put_nowait(note)
        except queue.Full:
            log.warning("event queue full; dropped %s %s", note.reason, note.message)

    def stop(self, timeout: float = 2.0) -> None:
        """Write what is queued (for up to `timeout` seconds), then end the thread."""
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:   # a sink that never answers: give up on what is queued
                pass
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            note = self._queue.get()
            if note is None:
                return
            self.write(note)

    def write(self, note: Note) -> None:
        """Create the Event, or count a repetition into the one written before."""
        now = self.now()
        previous = self._seen.get(note.key)
        try:
            if previous is not None:
                try:
                    written = self.sink.update(repeat(previous, now))
                except Exception:  # gone (expired, deleted) or changed: start a new one
                    written = self.sink.create(new_event(note, self.component, self.host, now))
            else:
                written = self.sink.create(new_event(note, self.component, self.host, now))
        except Exception as err:  # best effort, as upstream: never break the component
            log.info("event %s for %s not recorded: %s", note.reason,
                     note.about.get("name"), err)
            return
        self._seen[note.key] = written
        self._seen.move_to_end(note.key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
