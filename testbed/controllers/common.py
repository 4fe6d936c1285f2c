"""Pure: helpers every controller shares: pod state predicates, owner references, random names.

Controllers read the store, decide, write through the store, and return the `Change`s they made
(for logs and tests), each with the Event upstream's controller records about it, if any
(`note`; the controller manager writes it). Randomness (name suffixes) comes from a `random.Random` the caller passes,
so tests are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from testbed.api.events import Note

# k8s.io/apimachinery/pkg/util/rand: no vowels, no confusable characters.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Change:
    verb: str  # create, update, delete, bind, status
    kind: str
    namespace: str
    name: str
    detail: str = ""
    note: Note | None = None   # the Event to record about it

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.verb} {self.kind} {where}" + (f": {self.detail}" if self.detail else "")


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(NAME_ALPHABET) for _ in range(length))


def name_of(obj: dict) -> str:
    return obj["metadata"]["name"]


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_ready(pod: dict) -> bool:
    """The pod's Ready condition is True (set by the kubelet from readiness probes)."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def is_active(pod: dict) -> bool:
    """Counts toward a controller's replicas: neither terminating nor finished."""
    return not is_terminating(pod) and not is_terminal(pod)


def owner_reference(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": name_of(owner), "uid": owner["metadata"].get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def is_owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"].get("uid")
    return any(ref.get("controller") and ref.get("uid") == uid and ref.get("kind") == owner["kind"]
               for ref in obj["metadata"].get("ownerReferences") or [])
