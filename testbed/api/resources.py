"""Pure: the REST resources the API server serves, and the paths that name them.

One table, shared by the API server (path -> resource, discovery, OpenAPI) and the clients
(kind -> path), so they cannot disagree. Paths are those of Kubernetes:

    /api/v1/namespaces/{ns}/pods[/{name}[/status]]        core group, namespaced
    /api/v1/nodes[/{name}[/status]]                         core group, cluster-scoped
    /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale  named group, with a subresource
    /api/v1/pods                                            every namespace (list and watch)

Each Resource carries what discovery publishes for it (singular name, verbs, short names,
categories, subresources with their own kinds and verbs), as the upstream API server's
discovery lists the resources it serves. Only what the testbed really serves is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

# The verbs of an ordinary resource, in the order discovery lists them.
STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update",
                  "watch")


@dataclass(frozen=True)
class SubResource:
    """A subresource such as pods/status or deployments/scale: its object kind and verbs."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group_version: str | None = None  # the kind's group/version when not the parent's


STATUS = ("get", "patch", "update")


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    group_version: str  # "v1", "apps/v1", ...
    namespaced: bool
    subresources: tuple[SubResource, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.group_version.rpartition("/")[2]

    @property
    def qualified(self) -> str:
        """"deployments.apps", "pods": how kubectl and error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresource(self, name: str) -> SubResource | None:
        return next((s for s in self.subresources if s.name == name), None)

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The collection (name None) or object path; namespace None lists every namespace."""
        out = self.prefix
        if self.namespaced and namespace is not None:
            out += f"/namespaces/{quote(namespace, safe='')}"
        out += f"/{self.plural}"
        if name is not None:
            out += f"/{quote(name, safe='')}"
            if subresource:
                out += f"/{subresource}"
        return out


def _status(kind: str) -> SubResource:
    return SubResource("status", kind, STATUS)


RESOURCES = (
    Resource("Pod", "pods", "v1", True, (
        _status("Pod"),
        SubResource("log", "Pod", ("get",)),
        SubResource("exec", "PodExecOptions", ("create", "get")),
        SubResource("attach", "PodAttachOptions", ("create", "get")),
        SubResource("portforward", "PodPortForwardOptions", ("create", "get")),
    ), ("po",), ("all",)),
    Resource("Service", "services", "v1", True, (_status("Service"),), ("svc",), ("all",)),
    Resource("Endpoints", "endpoints", "v1", True, (), ("ep",)),
    Resource("Namespace", "namespaces", "v1", False, (_status("Namespace"),), ("ns",),
             verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Resource("Node", "nodes", "v1", False, (_status("Node"),), ("no",)),
    Resource("Event", "events", "v1", True, (), ("ev",)),
    Resource("Deployment", "deployments", "apps/v1", True, (
        _status("Deployment"),
        SubResource("scale", "Scale", STATUS, "autoscaling/v1"),
    ), ("deploy",), ("all",)),
    Resource("EndpointSlice", "endpointslices", "discovery.k8s.io/v1", True),
    Resource("Ingress", "ingresses", "networking.k8s.io/v1", True, (_status("Ingress"),),
             ("ing",)),
    # no categories: upstream keeps NetworkPolicies out of "all"; no status (tombstoned)
    Resource("NetworkPolicy", "networkpolicies", "networking.k8s.io/v1", True, (), ("netpol",)),
    Resource("Lease", "leases", "coordination.k8s.io/v1", True),
)
BY_KIND = {r.kind: r for r in RESOURCES}
# Kinds without a namespace: the store keys them with namespace "".
CLUSTER_SCOPED = frozenset(r.kind for r in RESOURCES if not r.namespaced)


def group_versions() -> list[str]:
    """Every served group/version, core first, then the groups in table order."""
    seen: list[str] = []
    for r in RESOURCES:
        if r.group_version not in seen:
            seen.append(r.group_version)
    return seen


class UnknownResource(LookupError):
    pass


def resource_for(kind: str) -> Resource:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise UnknownResource(f"the server doesn't have a resource type {kind!r}") from None


def lookup(word: str) -> Resource:
    """A resource by what a user types: kind, plural, singular, short name, or plural.group."""
    w = word.lower()
    for r in RESOURCES:
        names = {r.kind.lower(), r.plural, r.qualified, *r.short_names,
                 f"{r.kind.lower()}.{r.group}" if r.group else r.kind.lower()}
        if w in names:
            return r
    raise UnknownResource(f'the server doesn\'t have a resource type "{word}"')


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str | None  # None: every namespace, or a cluster-scoped kind
    name: str | None
    subresource: str | None
    watch: bool = False    # the deprecated /watch/ form of a path (a watch of it)


def parse_path(path: str) -> Route | None:
    """The resource a request path names, or None when no resource has that path."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group_version, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    watch = bool(rest) and rest[0] == "watch"   # /api/v1/watch/namespaces/ns/pods[/name]
    if watch:
        rest = rest[1:]
    namespace = None
    plurals = {r.plural for r in RESOURCES if r.namespaced and r.group_version == group_version}
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in plurals:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    for r in RESOURCES:
        if r.group_version == group_version and r.plural == rest[0]:
            if namespace is not None and not r.namespaced:
                return None
            sub = rest[2] if len(rest) == 3 else None
            if sub is not None and (watch or r.subresource(sub) is None):
                return None
            return Route(r, namespace, rest[1] if len(rest) >= 2 else None, sub, watch)
    return None
