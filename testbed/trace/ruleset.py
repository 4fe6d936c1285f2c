"""Pure: the `iptables -S` text of the rules an nftables trace names by handle.

iptables-nft keeps iptables' tables (filter, nat, mangle, raw, security) as nftables tables of
family ip, one nftables rule per iptables rule, in the same order. A trace names a rule by
its chain and handle; `nft -a list table ip nat` gives each chain's handles in order, and
`iptables -t nat -S` each chain's rules in the same order, so the n-th handle of a chain is
its n-th `-A` line.
"""

from __future__ import annotations

import re

IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
_CHAIN = re.compile(r"^\s*chain (?P<name>\S+) \{")
_HANDLE = re.compile(r"# handle (?P<handle>\d+)\s*$")


def handles(listing: str) -> dict[str, list[int]]:
    """Chain -> its rules' handles in order, from `nft -a list table ...`."""
    out: dict[str, list[int]] = {}
    chain = None
    for line in listing.splitlines():
        m = _CHAIN.match(line)
        if m:
            chain = m["name"].strip('"')
            out[chain] = []
            continue
        if line.strip() == "}":
            chain = None
            continue
        h = _HANDLE.search(line)
        if chain is not None and h and not line.strip().startswith(("type ", "policy ")):
            out[chain].append(int(h["handle"]))
    return out


def rule_lines(save: str) -> dict[str, list[str]]:
    """Chain -> its `-A` lines in order, from `iptables -t TABLE -S`."""
    out: dict[str, list[str]] = {}
    for line in save.splitlines():
        if line.startswith("-A "):
            out.setdefault(line.split()[1], []).append(line.rstrip())
    return out


def iptables_texts(listing: str, save: str) -> dict[tuple[str, int], str]:
    """(chain, handle) -> the rule as `iptables -S` shows it, for the chains where the two
    listings agree on the number of rules (a chain that changed between them is left out)."""
    lines = rule_lines(save)
    out = {}
    for chain, hs in handles(listing).items():
        texts = lines.get(chain, [])
        if len(texts) != len(hs):
            continue
        out.update({(chain, h): t for h, t in zip(hs, texts, strict=True)})
    return out
