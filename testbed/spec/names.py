"""Pure: name rules shared by every input check (DNS-1123 labels and subdomains)."""

from __future__ import annotations

import hashlib
import re

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_error(value: object) -> str | None:
    """Why `value` is not a DNS-1123 label, or None when it is one."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL.fullmatch(value):
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character")
    return None


def subdomain_error(value: object) -> str | None:
    """Why `value` is not a DNS-1123 subdomain, or None when it is one."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _SUBDOMAIN.fullmatch(value):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character")
    return None


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
