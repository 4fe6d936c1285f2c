"""Pure: read a kube-proxy case file (`harness:` + `objects:`) into settings and state.

Owns the `caseN_input.yaml` format of /work/shared/fidelity/kube-proxy: the `harness:` block
(the proxier's settings in upstream's test harness) becomes a `ProxierSettings`, `objects:`
(Services and EndpointSlices) a `ProxyState`. Fields are read with the API server's Checker
(testbed.proxy.objects.IssueChecker); every problem names file, line and field through
`testbed.spec.source` and is raised together as one SpecError. Unknown harness keys are
ignored: upstream's harness has more knobs than the renderer models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from testbed.proxy.model import IPV4, IPV6, LocalDetector, ProxierSettings
from testbed.proxy.objects import (
    CIDR_WORDS,
    IP_WORDS,
    Issue,
    IssueChecker,
    ProxyState,
    build_state,
    parse_cidr,
)
from testbed.spec.source import Document, Path_, Problem, SpecError, read_one
from testbed.spec.validation import parse_ip

_DETECTOR_KEYS = {"ClusterCIDR": "clusterCIDR", "NodeCIDR": "nodeCIDR",
                  "BridgeInterface": "bridgeInterface",
                  "InterfaceNamePrefix": "interfaceNamePrefix", "None": ""}


def settings_from_harness(harness: Mapping[str, Any], path: Path_,
                          issues: list[Issue]) -> ProxierSettings:
    """A `harness:` mapping -> ProxierSettings; missing keys keep the dataclass defaults."""
    s = ProxierSettings()
    changes: dict[str, Any] = {}
    r = IssueChecker(issues)

    def ip_list(key: str, cidr: bool) -> tuple[str, ...] | None:
        if key not in harness:
            return None
        raw = harness[key]
        if isinstance(raw, str):  # serviceCIDRs is a comma-separated string upstream
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not r.is_type(path + (key,), raw, "array"):
            return None
        out = []
        for i, item in enumerate(raw):
            value = parse_cidr(item) if cidr else parse_ip(item)
            if value is None:
                r.invalid(path + (key, i), item, CIDR_WORDS if cidr else IP_WORDS)
            else:
                out.append(value)
        return tuple(out)

    for key, attr in (("nodeName", "node_name"), ("masqueradeMark", "masquerade_mark")):
        if key in harness:
            value = r.string(harness, key, path, required=True)
            if value is not None:
                changes[attr] = value
    if "masquerade_mark" in changes:
        try:
            int(changes["masquerade_mark"], 16)
        except ValueError:
            r.invalid(path + ("masqueradeMark",), changes["masquerade_mark"],
                      "must be a hexadecimal mark, e.g. 0x4000")
    if "nodeIP" in harness:
        ip = parse_ip(harness["nodeIP"])
        if ip is None:
            r.invalid(path + ("nodeIP",), harness["nodeIP"], IP_WORDS)
        else:
            changes["node_ip"] = ip
    if "ipFamily" in harness:
        family = r.choice(harness, "ipFamily", path, choices=(IPV4, IPV6))
        if family is not None:
            changes["ip_family"] = family
    for key, attr in (("masqueradeAll", "masquerade_all"),
                      ("localhostNodePorts", "localhost_node_ports"),
                      ("conntrackTCPLiberal", "conntrack_tcp_liberal"),
                      ("hasRandomFully", "has_random_fully"),
                      ("largeClusterMode", "large_cluster_mode"), ("fullSync", "full_sync")):
        value = r.get(harness, key, path, "boolean")
        if value is not None:
            changes[attr] = value
    for key, attr, cidr in (("localIPs", "local_ips", False),
                            ("nodePortAddresses", "node_port_addresses", True),
                            ("serviceCIDRs", "service_cidrs", True)):
        value = ip_list(key, cidr)
        if value is not None:
            changes[attr] = value
    if "localDetector" in harness:
        changes["local_detector"] = _detector(harness["localDetector"], path, r)
    if "nfacctCounters" in harness:
        counters = r.get(harness, "nfacctCounters", path, "object")
        if counters is not None and all(r.is_type(path + ("nfacctCounters", k), v, "boolean")
                                        for k, v in counters.items()):
            changes["nfacct_counters"] = frozenset(k for k, v in counters.items() if v)
    if "existingNATChains" in harness:
        before = len(issues)
        chains = r.string_list(harness, "existingNATChains", path)
        if len(issues) == before:
            changes["existing_nat_chains"] = tuple(chains)
    return replace(s, **changes)


def _detector(raw: Any, path: Path_, r: IssueChecker) -> LocalDetector:
    dpath = path + ("localDetector",)
    if raw is None:
        return LocalDetector("None", "")
    if not r.is_type(dpath, raw, "object"):
        return LocalDetector("None", "")
    mode = r.choice(raw, "mode", dpath, default="ClusterCIDR", choices=tuple(_DETECTOR_KEYS))
    key = _DETECTOR_KEYS[mode]
    if not key:
        return LocalDetector("None", "")
    value = raw.get(key)
    if mode in ("ClusterCIDR", "NodeCIDR"):
        cidr = parse_cidr(value)
        if cidr is None:
            r.invalid(dpath + (key,), value, CIDR_WORDS)
            return LocalDetector("None", "")
        return LocalDetector(mode, cidr)
    name = r.string(raw, key, dpath, required=True)
    if name is None:
        return LocalDetector("None", "")
    return LocalDetector(mode, name)


def problems(doc: Document, issues: list[Issue]) -> list[Problem]:
    return [doc.problem(issue.path, issue.message) for issue in issues]


def load_case(doc: Document, harness_overrides: Mapping[str, Any] | None = None,
              objects_path: Path_ = ("objects",), harness_path: Path_ = ("harness",),
              ) -> tuple[ProxierSettings, ProxyState]:
    """Settings and state from one document; raises SpecError listing every problem."""
    issues: list[Issue] = []

    def at(path: Path_) -> Any:
        node: Any = doc.data
        for part in path:
            if isinstance(node, Mapping):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
        return node

    harness = at(harness_path)
    if harness is None:
        harness = {}
    reader = IssueChecker(issues)
    if not reader.is_type(harness_path, harness, "object"):
        harness = {}
    settings = settings_from_harness({**harness, **(harness_overrides or {})}, harness_path,
                                     issues)
    objects = at(objects_path)
    if objects is None:
        reader.required(objects_path, "the Services and EndpointSlices to render")
        objects = []
    elif not reader.is_type(objects_path, objects, "array"):
        objects = []
    state, obj_issues = build_state(objects, settings.ip_family, objects_path)
    issues += obj_issues
    if issues:
        raise SpecError(problems(doc, issues))
    return settings, state


def read_case(path: str) -> tuple[ProxierSettings, ProxyState]:
    """`load_case(read_one(path))`."""
    return load_case(read_one(path))
