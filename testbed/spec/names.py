"""Pure: name rules for topology files (DNS-1123 names, as the API checks them) and interface names."""

from __future__ import annotations

import hashlib

from testbed.api.validation import is_dns1123_label, is_dns1123_subdomain


def label_error(value: object) -> str | None:
    """Why `value` is not a DNS-1123 label, or None when it is one (the API server's words)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    errors = is_dns1123_label(value)
    return errors[0] if errors else None


def subdomain_error(value: object) -> str | None:
    """Why `value` is not a DNS-1123 subdomain, or None when it is one (the API server's words)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    errors = is_dns1123_subdomain(value)
    return errors[0] if errors else None


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
