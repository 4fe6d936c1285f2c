"""Pure: read a kube-proxy case file (`harness:` + `objects:`) into settings and state.

Owns the `caseN_input.yaml` format of /work/shared/fidelity/kube-proxy: the `harness:` block
(the proxier's settings in upstream's test harness) becomes a `ProxierSettings`, `objects:`
(Services and EndpointSlices) a `ProxyState`. Every problem names file, line and field through
`testbed.spec.source` and is raised together as one SpecError. Unknown harness keys are
ignored: upstream's harness has more knobs than the renderer models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from testbed.proxy.model import IPV4, IPV6, LocalDetector, ProxierSettings
from testbed.proxy.objects import Issue, ProxyState, build_state, parse_cidr, parse_ip
from testbed.spec.source import Document, Path_, Problem, SpecError, read_one

_DETECTOR_KEYS = {"ClusterCIDR": "clusterCIDR", "NodeCIDR": "nodeCIDR",
                  "BridgeInterface": "bridgeInterface",
                  "InterfaceNamePrefix": "interfaceNamePrefix", "None": ""}


def settings_from_harness(harness: Mapping[str, Any], path: Path_,
                          issues: list[Issue]) -> ProxierSettings:
    """A `harness:` mapping -> ProxierSettings; missing keys keep the dataclass defaults."""
    s = ProxierSettings()
    changes: dict[str, Any] = {}

    def bad(key: str | tuple[str | int, ...], message: str) -> None:
        key_path = (key,) if isinstance(key, str) else key
        issues.append(Issue(path + key_path, message))

    def boolean(key: str, attr: str) -> None:
        if key in harness:
            if isinstance(harness[key], bool):
                changes[attr] = harness[key]
            else:
                bad(key, "expected true or false")

    def ip_list(key: str, cidr: bool) -> tuple[str, ...] | None:
        if key not in harness:
            return None
        raw = harness[key]
        if isinstance(raw, str):  # serviceCIDRs is a comma-separated string upstream
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list):
            bad(key, "expected a list")
            return None
        out = []
        for i, item in enumerate(raw):
            value = parse_cidr(item) if cidr else parse_ip(item)
            if value is None:
                bad((key, i), f"not a valid {'CIDR' if cidr else 'IP address'}: {item!r}")
            else:
                out.append(value)
        return tuple(out)

    for key, attr in (("nodeName", "node_name"), ("masqueradeMark", "masquerade_mark")):
        if key in harness:
            if isinstance(harness[key], str) and harness[key]:
                changes[attr] = harness[key]
            else:
                bad(key, "expected a non-empty string")
    if "masquerade_mark" in changes:
        try:
            int(changes["masquerade_mark"], 16)
        except ValueError:
            bad("masqueradeMark", f"not a hex mark: {changes['masquerade_mark']!r}")
    if "nodeIP" in harness:
        ip = parse_ip(harness["nodeIP"])
        if ip is None:
            bad("nodeIP", f"not a valid IP address: {harness['nodeIP']!r}")
        else:
            changes["node_ip"] = ip
    if "ipFamily" in harness:
        if harness["ipFamily"] in (IPV4, IPV6):
            changes["ip_family"] = harness["ipFamily"]
        else:
            bad("ipFamily", f"must be IPv4 or IPv6, not {harness['ipFamily']!r}")
    for key, attr in (("masqueradeAll", "masquerade_all"),
                      ("localhostNodePorts", "localhost_node_ports"),
                      ("conntrackTCPLiberal", "conntrack_tcp_liberal"),
                      ("hasRandomFully", "has_random_fully"),
                      ("largeClusterMode", "large_cluster_mode"), ("fullSync", "full_sync")):
        boolean(key, attr)
    for key, attr, cidr in (("localIPs", "local_ips", False),
                            ("nodePortAddresses", "node_port_addresses", True),
                            ("serviceCIDRs", "service_cidrs", True)):
        value = ip_list(key, cidr)
        if value is not None:
            changes[attr] = value
    if "localDetector" in harness:
        changes["local_detector"] = _detector(harness["localDetector"], path, issues)
    if "nfacctCounters" in harness:
        counters = harness["nfacctCounters"]
        if isinstance(counters, Mapping) and all(isinstance(v, bool) for v in counters.values()):
            changes["nfacct_counters"] = frozenset(k for k, v in counters.items() if v)
        else:
            bad("nfacctCounters", "expected a mapping of counter name to true/false")
    if "existingNATChains" in harness:
        chains = harness["existingNATChains"]
        if isinstance(chains, list) and all(isinstance(c, str) and c for c in chains):
            changes["existing_nat_chains"] = tuple(chains)
        else:
            bad("existingNATChains", "expected a list of chain names")
    return replace(s, **changes)


def _detector(raw: Any, path: Path_, issues: list[Issue]) -> LocalDetector:
    dpath = path + ("localDetector",)
    if raw is None:
        return LocalDetector("None", "")
    if not isinstance(raw, Mapping):
        issues.append(Issue(dpath, "expected a mapping"))
        return LocalDetector("None", "")
    mode = raw.get("mode", "ClusterCIDR")
    if mode not in _DETECTOR_KEYS:
        issues.append(Issue(dpath + ("mode",), f"must be one of {', '.join(_DETECTOR_KEYS)}"))
        return LocalDetector("None", "")
    key = _DETECTOR_KEYS[mode]
    if not key:
        return LocalDetector("None", "")
    value = raw.get(key)
    if mode in ("ClusterCIDR", "NodeCIDR"):
        cidr = parse_cidr(value)
        if cidr is None:
            issues.append(Issue(dpath + (key,), f"not a valid CIDR: {value!r}"))
            return LocalDetector("None", "")
        return LocalDetector(mode, cidr)
    if not isinstance(value, str) or not value:
        issues.append(Issue(dpath + (key,), "expected an interface name"))
        return LocalDetector("None", "")
    return LocalDetector(mode, value)


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
    if not isinstance(harness, Mapping):
        issues.append(Issue(harness_path, "expected a mapping"))
        harness = {}
    settings = settings_from_harness({**harness, **(harness_overrides or {})}, harness_path,
                                     issues)
    objects = at(objects_path)
    if objects is None:
        issues.append(Issue(objects_path, "missing field"))
        objects = []
    elif not isinstance(objects, list):
        issues.append(Issue(objects_path, "expected a list of Kubernetes objects"))
        objects = []
    state, obj_issues = build_state(objects, settings.ip_family, objects_path)
    issues += obj_issues
    if issues:
        raise SpecError(problems(doc, issues))
    return settings, state


def read_case(path: str) -> tuple[ProxierSettings, ProxyState]:
    """`load_case(read_one(path))`."""
    return load_case(read_one(path))
