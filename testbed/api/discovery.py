"""Pure: the discovery documents the API server serves, made from the resource table.

    /api                  APIVersions          (core group)
    /apis                 APIGroupList         (named groups)
    /apis/GROUP           APIGroup
    /api/v1, /apis/G/V    APIResourceList      (resources, subresources, verbs, short names)
    /version              version.Info

`aggregated(core, version)` is the aggregated form (apidiscovery.k8s.io/v2 or v2beta1
APIGroupDiscoveryList) that clients ask for with
`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`; kubectl 1.30
and later do, older clients read the per-group-version lists. Everything comes from
testbed/api/resources.py, so discovery lists exactly what the server routes.
"""

from __future__ import annotations

import re

from testbed.api.resources import RESOURCES, Resource, group_versions

# The Kubernetes version whose API this server follows (kubectl's skew warning reads it).
MAJOR, MINOR = 1, 37
VERSION_INFO = {
    "major": str(MAJOR), "minor": str(MINOR), "emulationMajor": str(MAJOR),
    "emulationMinor": str(MINOR), "minCompatibilityMajor": str(MAJOR),
    "minCompatibilityMinor": str(MINOR - 1), "gitVersion": f"v{MAJOR}.{MINOR}.0+testbed",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc",
    "platform": "linux/amd64",
}

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def _groups() -> list[str]:
    """Named groups in table order (the core group "" is served under /api)."""
    out: list[str] = []
    for gv in group_versions():
        group = gv.rpartition("/")[0]
        if group and group not in out:
            out.append(group)
    return out


def _versions(group: str) -> list[str]:
    return [gv.rpartition("/")[2] for gv in group_versions() if gv.rpartition("/")[0] == group]


def _gv(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}" if group else version, "version": version}


def api_versions(server_address: str) -> dict:
    """GET /api."""
    return {"kind": "APIVersions", "versions": _versions(""),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def api_group(group: str) -> dict | None:
    """GET /apis/GROUP, or None for a group the server does not serve."""
    versions = _versions(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group,
            "versions": [_gv(group, v) for v in versions],
            "preferredVersion": _gv(group, versions[0])}


def api_group_list() -> dict:
    """GET /apis."""
    groups = [api_group(g) for g in _groups()]
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in g.items() if k not in ("kind", "apiVersion")}
                       for g in groups if g is not None]}


def _in(group_version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group_version == group_version]


def resource_list(group_version: str) -> dict | None:
    """GET /api/v1 or /apis/GROUP/VERSION, or None when nothing is served there."""
    resources = _in(group_version)
    if not resources:
        return None
    out = []
    for r in resources:
        entry: dict = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub in r.subresources:
            item: dict = {"name": f"{r.plural}/{sub.name}", "singularName": "",
                          "namespaced": r.namespaced, "kind": sub.kind, "verbs": list(sub.verbs)}
            if sub.group_version:
                group, _, version = sub.group_version.rpartition("/")
                item["group"], item["version"] = group, version
            out.append(item)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": out}


def _gvk(group_version: str, kind: str) -> dict:
    group, _, version = group_version.rpartition("/")
    return {"group": group, "version": version, "kind": kind}


def _resource_discovery(r: Resource) -> dict:
    entry: dict = {"resource": r.plural, "responseKind": _gvk(r.group_version, r.kind),
                   "scope": "Namespaced" if r.namespaced else "Cluster",
                   "singularResource": r.singular, "verbs": list(r.verbs)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    if r.subresources:
        entry["subresources"] = [
            {"subresource": s.name, "responseKind": _gvk(s.group_version or r.group_version,
                                                         s.kind),
             "verbs": list(s.verbs)} for s in r.subresources]
    return entry


def aggregated(core: bool, version: str = "v2") -> dict:
    """The APIGroupDiscoveryList of /api (`core`) or /apis, in apidiscovery `version`."""
    groups = [""] if core else _groups()
    items = []
    for group in groups:
        versions = [{"version": v,
                     "resources": [_resource_discovery(r)
                                   for r in _in(f"{group}/{v}" if group else v)],
                     "freshness": "Current"} for v in _versions(group)]
        items.append({"metadata": {"name": group} if group else {}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"{AGGREGATED_GROUP}/{version}",
            "metadata": {}, "items": items}


def aggregated_content_type(version: str) -> str:
    return f"application/json;g={AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"


_MEDIA_PARAM = re.compile(r"\s*;\s*")


def wants_aggregated(accept: str) -> str | None:
    """The apidiscovery version an Accept header asks for first ("v2", "v2beta1"), or None
    when it asks for plain JSON first (or for no aggregated form at all)."""
    for choice in (accept or "").split(","):
        base, *params = _MEDIA_PARAM.split(choice.strip())
        values = dict(p.split("=", 1) for p in params if "=" in p)
        if base not in ("application/json", "*/*", "application/*"):
            continue
        if values.get("as") == "APIGroupDiscoveryList" and values.get("g") == AGGREGATED_GROUP:
            if values.get("v") in AGGREGATED_VERSIONS:
                return values["v"]
            continue
        if "as" not in values:
            return None   # plain JSON is preferred over anything later in the list
    return None
