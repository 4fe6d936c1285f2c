"""Pure: the lock of an object that one thread uses, and the shape of one that many share.

Pure code decides; whether an object is shared between threads is the acting caller's business.
So the store, the API's write path and kube-proxy's trackers and proxier take their lock (or
the store, its condition) from whoever builds them: the agents, which serve many threads, pass
`threading.Lock()`, `threading.RLock()` or `threading.Condition()`; everything else (unit tests,
one-shot renders, the benchmarks' single thread) gets `Unshared`, which has the same methods
and does what they would do when no other thread exists: nothing to exclude, and a wait for a
change that no one else can make simply lasts its timeout.
"""

from __future__ import annotations

import time
from typing import Protocol


class Lock(Protocol):
    """What pure code uses of a lock: `with lock:`."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> bool | None: ...


class Condition(Lock, Protocol):
    """What the store uses of a condition: `with cond:`, `cond.wait(t)`, `cond.notify_all()`."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def notify_all(self) -> None: ...


class Unshared:
    """A lock and condition for an object no other thread touches (re-entrant, like RLock)."""

    def __enter__(self) -> Unshared:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """No other thread can notify: the wait times out (a None timeout would never end)."""
        if timeout is None:
            raise RuntimeError("waiting without a timeout on an unshared object would never end")
        time.sleep(max(timeout, 0))
        return False

    def notify_all(self) -> None:
        pass


def companion(condition: Condition) -> Condition:
    """Another condition over the lock of `condition`, so that writers can wake some waiters
    and not others (the store's per-kind watchers). A threading.Condition is a lock that a
    Condition can be built over (it has acquire, release and the owner checks), so one of the
    same type is made around it; an Unshared one gets an Unshared companion."""
    if isinstance(condition, Unshared):
        return Unshared()
    return type(condition)(condition)   # type: ignore[call-arg]
