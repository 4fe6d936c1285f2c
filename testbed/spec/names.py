"""Pure: interface names that fit the kernel's limit (topology names are checked as the API
server checks names, through testbed.spec.validation)."""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15  # the kernel's limit on interface names, without the trailing NUL


def ifname(base: str, suffix: str = "") -> str:
    """An interface name from `base` + `suffix` that fits the kernel's 15 characters.

    Short names are kept readable (`w1-eth0`); long ones keep the suffix, the base's first
    three characters and as many hex digits of a stable hash of the base as fit (24 bits with
    `-eth0`), so two long node names practically never map to one interface name.
    """
    name = base + suffix
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()
    room = IFNAMSIZ - len(suffix)
    keep = min(3, max(room - 5, 0))              # a readable prefix, then "_" and the hash
    return (base[:keep] + "_" + digest[: max(room - keep - 1, 4)] + suffix)[-IFNAMSIZ:]
