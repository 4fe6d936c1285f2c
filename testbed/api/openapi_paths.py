"""Pure: the REST operations the API server serves, as OpenAPI describes them, from the
resource table (testbed/api/resources.py).

For every resource: the collection (list, watch, create, deletecollection), the object (read,
replace, patch, delete), every subresource the table lists (status, scale, log, exec, attach,
portforward), the every-namespace list of namespaced kinds and the deprecated /watch/ paths,
each operation with upstream's operationId (listCoreV1NamespacedPod, ...), x-kubernetes-action,
x-kubernetes-group-version-kind and query parameters (dryRun, fieldManager, fieldValidation on
POST, PUT and PATCH, force on PATCH, the list options...). Neutral records here;
testbed/api/openapi.py writes them as OpenAPI v2 or v3. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.api.resources import RESOURCES, Resource, SubResource, group_versions
from testbed.api.schema import for_kind

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
JSON = "application/json"
WATCH_STREAM = "application/json;stream=watch"


@dataclass(frozen=True)
class Param:
    name: str
    where: str          # "query" | "path"
    type: str           # "string" | "boolean" | "integer"
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    operation_id: str
    description: str
    action: str                       # x-kubernetes-action
    gvk: tuple[str, str, str]         # x-kubernetes-group-version-kind
    tag: str
    responses: tuple[tuple[str, str, str | None], ...]  # (code, description, definition)
    params: tuple[Param, ...] = ()
    body: str | None = None           # the request body's definition
    consumes: tuple[str, ...] = ("*/*",)
    produces: tuple[str, ...] = (JSON,)
    text: bool = False                # the response is text (pods/log), not a definition


@dataclass
class PathItem:
    path: str
    params: list[Param] = field(default_factory=list)
    ops: dict[str, Operation] = field(default_factory=dict)   # method -> operation


def _q(name: str, type_: str, description: str) -> Param:
    return Param(name, "query", type_, description)


PRETTY = _q("pretty", "string", "If 'true', the output is indented.")
DRY_RUN = _q("dryRun", "string", "\"All\": check and default the request but store nothing.")
FIELD_MANAGER = _q("fieldManager", "string", "Name of the actor making the change, recorded in "
                   "managedFields; required for apply patches.")
FIELD_VALIDATION = _q("fieldValidation", "string", "What to do with unknown or duplicate "
                      "fields in the body: Ignore (drop them), Warn (drop them and answer with "
                      "a Warning header each; the default) or Strict (refuse the request).")
FORCE = _q("force", "boolean", "For apply patches: take over fields other managers own.")
LIST_PARAMS = (
    _q("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events in a watch."),
    _q("continue", "string", "The continue token of the previous page of a limited list."),
    _q("fieldSelector", "string", "Only objects whose fields match, e.g. "
       "metadata.name=web or spec.nodeName=w1."),
    _q("labelSelector", "string", "Only objects whose labels match, e.g. app=web,tier!=db."),
    _q("limit", "integer", "The most items to return; more are reached with continue."),
    _q("resourceVersion", "string", "Which version of the collection to list, or where a "
       "watch starts."),
    _q("resourceVersionMatch", "string", "How resourceVersion applies to a list: "
       "NotOlderThan or Exact."),
    _q("sendInitialEvents", "boolean", "Start a watch with ADDED events for the objects that "
       "exist."),
    _q("timeoutSeconds", "integer", "How long a list or watch may take."),
    _q("watch", "boolean", "Watch for changes instead of listing: a stream of events."),
)
DELETE_PARAMS = (
    DRY_RUN,
    _q("gracePeriodSeconds", "integer", "Seconds the object may take to terminate; 0 "
       "deletes at once."),
    _q("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "Delete an object "
       "that cannot be read from storage."),
    _q("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
    _q("propagationPolicy", "string", "What happens to dependents: Orphan, Background or "
       "Foreground."),
)
WRITE_PARAMS = (DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION)
DELETE_COLLECTION_PARAMS = tuple(sorted(
    (*(p for p in LIST_PARAMS if p.name not in ("allowWatchBookmarks", "watch")), *DELETE_PARAMS),
    key=lambda p: p.name))
CONNECT_PARAMS = {
    "exec": (
        _q("command", "string", "The command to run; repeat the parameter per argument."),
        _q("container", "string", "The container; may be omitted for a pod of one."),
        _q("stderr", "boolean", "Stream the command's stderr."),
        _q("stdin", "boolean", "Stream stdin to the command."),
        _q("stdout", "boolean", "Stream the command's stdout."),
        _q("tty", "boolean", "Give the command a terminal."),
    ),
    "attach": (
        _q("container", "string", "The container; may be omitted for a pod of one."),
        _q("stderr", "boolean", "Stream the container's stderr."),
        _q("stdin", "boolean", "Stream stdin to the container."),
        _q("stdout", "boolean", "Stream the container's stdout."),
        _q("tty", "boolean", "The container has a terminal."),
    ),
    "portforward": (
        _q("ports", "integer", "The pod ports to forward; repeat the parameter per port."),
    ),
}
LOG_PARAMS = (
    _q("container", "string", "The container whose log to read."),
    _q("follow", "boolean", "Keep streaming the log until the container ends."),
    _q("insecureSkipTLSVerifyBackend", "boolean", "Skip verifying the kubelet's certificate."),
    _q("limitBytes", "integer", "The most bytes of log to return."),
    _q("previous", "boolean", "The log of the previous, ended run of the container."),
    _q("sinceSeconds", "integer", "Only lines newer than this many seconds."),
    _q("stream", "string", "All, Stdout or Stderr."),
    _q("tailLines", "integer", "Only this many lines from the end."),
    _q("timestamps", "boolean", "Put a timestamp before every line."),
)


# -- names ---------------------------------------------------------------------------------------

def _camel(group: str) -> str:
    """"" -> Core, "apps" -> Apps, "discovery.k8s.io" -> Discovery, as upstream names
    operations."""
    if not group:
        return "Core"
    return "".join(part.capitalize() for part in group.removesuffix(".k8s.io").split("."))


def tag(group_version: str) -> str:
    """"core_v1", "apps_v1", "discovery_v1": the tag of a group-version's operations."""
    group, _, version = group_version.rpartition("/")
    base = group.removesuffix(".k8s.io").replace(".", "_") if group else "core"
    return f"{base}_{version}"


def definition_name(group_version: str, kind: str) -> str:
    """The definition of a kind: the schema's name for it (Pod -> io.k8s.api.core.v1.Pod)."""
    return for_kind(group_version, kind).name


def _gvk(group_version: str, kind: str) -> tuple[str, str, str]:
    group, _, version = group_version.rpartition("/")
    return group, version, kind


# -- operations -----------------------------------------------------------------------------------

def _ok(definition: str, *codes: tuple[str, str]) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((code, text, definition) for code, text in
                 (("200", "OK"), *codes))


def resource_paths(r: Resource) -> list[PathItem]:
    """Every path of one resource, with its operations."""
    gv, kind = r.group_version, r.kind
    name = definition_name(gv, kind)
    group, version = r.group, r.version
    prefix = f"{_camel(group)}{version.capitalize()}"
    scope = "Namespaced" if r.namespaced else ""
    gvk = _gvk(gv, kind)
    t = tag(gv)
    ns_param = Param("namespace", "path", "string", "The namespace of the objects.", True)
    name_param = Param("name", "path", "string", f"The name of the {kind}.", True)
    base = r.prefix + ("/namespaces/{namespace}" if r.namespaced else "")
    scoped = [ns_param] if r.namespaced else []
    out: list[PathItem] = []

    collection = PathItem(f"{base}/{r.plural}", [*scoped, PRETTY])
    if "list" in r.verbs:
        collection.ops["get"] = Operation(
            f"list{prefix}{scope}{kind}", f"list or watch objects of kind {kind}", "list", gvk,
            t, _ok(name + "List"), LIST_PARAMS, produces=(JSON, WATCH_STREAM))
    if "create" in r.verbs:
        collection.ops["post"] = Operation(
            f"create{prefix}{scope}{kind}", f"create a {kind}", "post", gvk, t,
            _ok(name, ("201", "Created"), ("202", "Accepted")), WRITE_PARAMS, body=name)
    if "deletecollection" in r.verbs:
        collection.ops["delete"] = Operation(
            f"delete{prefix}Collection{scope}{kind}", f"delete a collection of {kind}",
            "deletecollection", gvk, t, _ok(META + "Status"),
            DELETE_COLLECTION_PARAMS, body=META + "DeleteOptions")
    out.append(collection)

    item = PathItem(f"{base}/{r.plural}/{{name}}", [name_param, *scoped, PRETTY])
    item.ops["get"] = Operation(f"read{prefix}{scope}{kind}", f"read the given {kind}", "get",
                                gvk, t, _ok(name))
    if "update" in r.verbs:
        item.ops["put"] = Operation(f"replace{prefix}{scope}{kind}", f"replace the given {kind}",
                                    "put", gvk, t, _ok(name, ("201", "Created")), WRITE_PARAMS,
                                    body=name)
    if "patch" in r.verbs:
        item.ops["patch"] = Operation(
            f"patch{prefix}{scope}{kind}", f"partially update the given {kind}", "patch", gvk,
            t, _ok(name, ("201", "Created")), (*WRITE_PARAMS, FORCE), body=META + "Patch",
            consumes=PATCH_TYPES)
    if "delete" in r.verbs:
        item.ops["delete"] = Operation(
            f"delete{prefix}{scope}{kind}", f"delete a {kind}", "delete", gvk, t,
            _ok(name, ("202", "Accepted")), DELETE_PARAMS, body=META + "DeleteOptions")
    out.append(item)

    for sub in r.subresources:
        out.append(_subresource(r, sub, base, prefix, scope, [name_param, *scoped], t))

    if "watch" in r.verbs:
        out.extend(_watch_paths(r, name, prefix, scope, gvk, t, ns_param, name_param))
    if r.namespaced and "list" in r.verbs:
        every = PathItem(f"{r.prefix}/{r.plural}", [*LIST_PARAMS, PRETTY])
        every.ops["get"] = Operation(
            f"list{prefix}{kind}ForAllNamespaces", f"list or watch objects of kind {kind} in "
            "every namespace", "list", gvk, t, _ok(name + "List"),
            produces=(JSON, WATCH_STREAM))
        out.append(every)
    return out


def _subresource(r: Resource, sub: SubResource, base: str, prefix: str, scope: str,
                 params: list[Param], t: str) -> PathItem:
    kind = r.kind
    gv = sub.group_version or r.group_version
    gvk = _gvk(gv, sub.kind)
    path = PathItem(f"{base}/{r.plural}/{{name}}/{sub.name}", [*params])
    suffix = sub.name.capitalize() if sub.name != "portforward" else "Portforward"
    op_id = f"{prefix}{scope}{kind}{suffix}"
    if sub.name in CONNECT_PARAMS:
        for method in ("get", "post"):
            path.ops[method] = Operation(
                f"connect{prefix}{method.capitalize()}{scope}{kind}{suffix}",
                f"connect {method.upper()} requests to {sub.name} of {kind}", "connect", gvk, t,
                (("200", "OK", None),), CONNECT_PARAMS[sub.name], produces=("*/*",), text=True)
        return path
    if sub.name == "log":
        path.ops["get"] = Operation(f"read{op_id}", f"read the log of the given {kind}", "get",
                                    gvk, t, (("200", "OK", None),), LOG_PARAMS,
                                    produces=("text/plain",), text=True)
        return path
    path.params.append(PRETTY)
    name = definition_name(gv, sub.kind)
    what = f"{sub.name} of the given {kind}"
    path.ops["get"] = Operation(f"read{op_id}", f"read {what}", "get", gvk, t, _ok(name))
    if "update" in sub.verbs:
        path.ops["put"] = Operation(f"replace{op_id}", f"replace {what}", "put", gvk, t,
                                    _ok(name, ("201", "Created")), WRITE_PARAMS, body=name)
    if "patch" in sub.verbs:
        path.ops["patch"] = Operation(
            f"patch{op_id}", f"partially update {what}", "patch", gvk, t,
            _ok(name, ("201", "Created")), (*WRITE_PARAMS, FORCE), body=META + "Patch",
            consumes=PATCH_TYPES)
    return path


def _watch_paths(r: Resource, name: str, prefix: str, scope: str, gvk: tuple[str, str, str],
                 t: str, ns_param: Param, name_param: Param) -> list[PathItem]:
    """The deprecated /watch/ paths, as upstream still serves and publishes them."""
    event = META + "WatchEvent"
    watch_base = r.prefix + "/watch" + ("/namespaces/{namespace}" if r.namespaced else "")
    scoped = [ns_param] if r.namespaced else []
    listing = PathItem(f"{watch_base}/{r.plural}", [*LIST_PARAMS, *scoped, PRETTY])
    listing.ops["get"] = Operation(
        f"watch{prefix}{scope}{r.kind}List", f"watch changes to a list of {r.kind} "
        "(deprecated: use the watch parameter of a list)", "watchlist", gvk, t, _ok(event),
        produces=(JSON, WATCH_STREAM))
    one = PathItem(f"{watch_base}/{r.plural}/{{name}}",
                   [*LIST_PARAMS, name_param, *scoped, PRETTY])
    one.ops["get"] = Operation(
        f"watch{prefix}{scope}{r.kind}", f"watch changes to one {r.kind} (deprecated: use the "
        "watch parameter of a list with a fieldSelector on its name)", "watch", gvk, t,
        _ok(event), produces=(JSON, WATCH_STREAM))
    out = [listing, one]
    if r.namespaced:
        every = PathItem(f"{r.prefix}/watch/{r.plural}", [*LIST_PARAMS, PRETTY])
        every.ops["get"] = Operation(
            f"watch{prefix}{r.kind}ListForAllNamespaces", f"watch changes to {r.kind} objects "
            "in every namespace (deprecated: use the watch parameter of a list)", "watchlist",
            gvk, t, _ok(event), produces=(JSON, WATCH_STREAM))
        out.append(every)
    return out


def paths(group_version: str | None = None) -> list[PathItem]:
    """The paths of one group-version ("v1", "apps/v1"), or of every served one."""
    out: list[PathItem] = []
    for gv in group_versions():
        if group_version in (None, gv):
            for r in RESOURCES:
                if r.group_version == gv:
                    out.extend(resource_paths(r))
    return out
