"""Pure: the schema of meta/v1 types every kind shares (ObjectMeta, ListMeta, LabelSelector,
Status, DeleteOptions, WatchEvent, Condition, ...), under upstream's definition names.

Descriptions are the testbed's own short wording; patch and list metadata are upstream's.
No I/O.
"""

from __future__ import annotations

from testbed.api.schema_base import (
    ATOMIC,
    META,
    TypeDef,
    boolean,
    int32,
    int64,
    merge_list,
    obj,
    objects,
    string,
    string_map,
    strings,
    time,
    typedef,
)

RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
# The kinds meta/v1 defines for every group-version (Status, DeleteOptions, WatchEvent).
_EVERY_GROUP = ("", "apps", "autoscaling", "coordination.k8s.io", "discovery.k8s.io",
                "networking.k8s.io")


def _every_group(kind: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((group, "v1", kind) for group in _EVERY_GROUP)


TYPES: tuple[TypeDef, ...] = (
    typedef(
        META + "ObjectMeta",
        "Metadata every stored object carries: its identity (name, namespace, uid), labels and "
        "annotations, and the fields the server maintains (resourceVersion, generation, "
        "timestamps, managedFields).",
        string("name", "Name of the object, unique within its namespace (or the cluster, for "
               "cluster-scoped kinds). Required on create unless generateName is set; cannot be "
               "changed afterwards."),
        string("generateName", "A prefix from which the server makes a unique name when name is "
               "empty, by appending random characters."),
        string("namespace", "The namespace the object lives in. Empty means \"default\" for "
               "namespaced kinds; cluster-scoped kinds have none."),
        string("selfLink", "Deprecated; the server leaves it empty."),
        string("uid", "Unique identifier the server assigns on create; never reused. Read-only."),
        string("resourceVersion", "Opaque version of this object, changed on every write. Sent "
               "back on update for optimistic concurrency, and used to resume watches."),
        int64("generation", "Sequence number of the desired state, incremented by the server "
              "when the spec changes. Read-only."),
        time("creationTimestamp", "When the server created the object (RFC 3339, UTC). "
             "Read-only."),
        time("deletionTimestamp", "When the object is to be deleted; set by the server when a "
             "graceful deletion starts. Read-only."),
        int64("deletionGracePeriodSeconds", "Seconds the object is allowed to terminate "
              "gracefully; set together with deletionTimestamp. Read-only."),
        string_map("labels", "Key/value pairs that label the object; selectors of Services, "
                   "Deployments and list requests match on them."),
        string_map("annotations", "Key/value pairs of non-identifying information for tools "
                   "and people; not used for selection."),
        objects("ownerReferences", META + "OwnerReference", "Objects this one depends on; the "
                "Deployment controller marks the pods it creates this way.", **merge_list("uid")),
        strings("finalizers", "Names of actions that must finish before the object is removed "
                "from storage.", patch_strategy="merge", list_type="set"),
        objects("managedFields", META + "ManagedFieldsEntry", "Which manager (field manager) set "
                "which fields, for server-side apply. Mostly for internal use.", **ATOMIC),
    ),
    typedef(
        META + "ListMeta",
        "Metadata of a list response: the resource version it was read at and where to go on.",
        string("selfLink", "Deprecated; the server leaves it empty."),
        string("resourceVersion", "The version of the collection at which it was listed; a "
               "watch started from it sees every change after the list."),
        string("continue", "Set when the list was limited and more items exist: send it back "
               "as the continue parameter to get the next page."),
        int64("remainingItemCount", "How many items remain after this page, when the server "
              "knows it."),
    ),
    typedef(
        META + "OwnerReference",
        "A reference to an owning object in the same namespace.",
        string("apiVersion", "API version of the owner.", required=True),
        string("kind", "Kind of the owner.", required=True),
        string("name", "Name of the owner.", required=True),
        string("uid", "UID of the owner.", required=True),
        boolean("controller", "True when the owner is the managing controller; at most one "
                "owner reference may say so."),
        boolean("blockOwnerDeletion", "If true, foreground deletion of the owner waits for this "
                "object to be removed first."),
        map_type="atomic",
    ),
    typedef(
        META + "ManagedFieldsEntry",
        "One field manager's record: which fields it set, with which operation and when.",
        string("manager", "Name of the field manager (the client or controller)."),
        string("operation", "The operation that set the fields: \"Apply\" or \"Update\"."),
        string("apiVersion", "The API version the fields are expressed in."),
        time("time", "When the fields were last changed by this manager."),
        string("fieldsType", "Format of fieldsV1; always \"FieldsV1\"."),
        obj("fieldsV1", META + "FieldsV1", "The set of fields, as a tree of \"f:\" keys."),
        string("subresource", "The subresource the fields were set through, if any (e.g. "
               "\"status\")."),
    ),
    typedef(
        META + "FieldsV1",
        "A set of field paths encoded as a JSON tree (keys \"f:name\", \"k:{...}\", \"v:...\").",
        free_form=True,
    ),
    typedef(
        META + "LabelSelector",
        "Selects objects by label: every matchLabels pair and every matchExpressions "
        "requirement must hold. An empty selector selects everything.",
        string_map("matchLabels", "Labels that must be present with exactly these values."),
        objects("matchExpressions", META + "LabelSelectorRequirement", "Requirements on labels "
                "(In, NotIn, Exists, DoesNotExist).", **ATOMIC),
        map_type="atomic",
    ),
    typedef(
        META + "LabelSelectorRequirement",
        "One requirement on a label: a key, an operator and, for In and NotIn, values.",
        string("key", "The label key.", required=True),
        string("operator", "How the key relates to the values.", required=True,
               enum=("DoesNotExist", "Exists", "In", "NotIn")),
        strings("values", "The values for In and NotIn (non-empty); must be empty for Exists "
                "and DoesNotExist.", **ATOMIC),
    ),
    typedef(
        META + "Status",
        "The result of a request that does not return an object: success of a delete, or the "
        "reason a request failed.",
        string("apiVersion", "Always \"v1\"."),
        string("kind", "Always \"Status\"."),
        obj("metadata", META + "ListMeta", "Standard list metadata (mostly empty)."),
        string("status", "\"Success\" or \"Failure\"."),
        string("message", "A human-readable description of the result."),
        string("reason", "A machine-readable reason for a failure, e.g. \"NotFound\", "
               "\"AlreadyExists\", \"Invalid\", \"Conflict\"."),
        obj("details", META + "StatusDetails", "More about the failure: the object and the "
            "individual causes."),
        int32("code", "The HTTP status code of the response."),
        gvk=("", "v1", "Status"),
    ),
    typedef(
        META + "StatusDetails",
        "The object a failure concerns and its causes.",
        string("name", "Name of the object concerned."),
        string("group", "API group of the object."),
        string("kind", "Kind (or resource) of the object."),
        string("uid", "UID of the object, when known."),
        objects("causes", META + "StatusCause", "Individual problems, e.g. one per invalid "
                "field.", **ATOMIC),
        int32("retryAfterSeconds", "Seconds a client should wait before retrying, if set."),
    ),
    typedef(
        META + "StatusCause",
        "One cause of a failure.",
        string("reason", "Machine-readable cause, e.g. \"FieldValueInvalid\"."),
        string("message", "Human-readable description of the cause."),
        string("field", "The field concerned, as a path like \"spec.ports[0].port\"."),
    ),
    typedef(
        META + "DeleteOptions",
        "Options of a delete request, sent as its body.",
        string("apiVersion", "The versioned schema of this object."),
        string("kind", "Always \"DeleteOptions\"."),
        int64("gracePeriodSeconds", "Seconds the object may take to terminate; 0 deletes at "
              "once. Unset uses the object's own default (a Pod's "
              "terminationGracePeriodSeconds)."),
        obj("preconditions", META + "Preconditions", "Conditions the object must meet, or the "
            "delete fails with 409 Conflict."),
        boolean("orphanDependents", "Deprecated: use propagationPolicy."),
        string("propagationPolicy", "What happens to dependents: \"Orphan\", \"Background\" or "
               "\"Foreground\"."),
        strings("dryRun", "When set to [\"All\"], the request is checked but nothing is "
                "stored.", **ATOMIC),
        boolean("ignoreStoreReadErrorWithClusterBreakingPotential", "Deletes an object that "
                "cannot be read from storage; dangerous, normally unset."),
        gvk=("", "v1", "DeleteOptions"), extra_gvks=_every_group("DeleteOptions")[1:],
    ),
    typedef(
        META + "Preconditions",
        "What the object must be for a delete to go ahead.",
        string("uid", "The object's UID must be this one."),
        string("resourceVersion", "The object's resourceVersion must be this one."),
    ),
    typedef(
        META + "WatchEvent",
        "One event of a watch stream: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR, and the "
        "object concerned (a Status for ERROR).",
        string("type", "ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.", required=True),
        obj("object", RAW_EXTENSION, "The object as it is after the change (as it was before, "
            "for DELETED); a Status for ERROR.", required=True),
        gvk=("", "v1", "WatchEvent"), extra_gvks=_every_group("WatchEvent")[1:],
    ),
    typedef(
        RAW_EXTENSION,
        "An embedded object of any kind, kept as it is.",
        free_form=True,
    ),
    typedef(
        META + "Patch",
        "The body of a PATCH request: a JSON patch, merge patch, strategic merge patch or "
        "apply configuration, as the Content-Type says.",
        free_form=True,
    ),
    typedef(
        META + "Condition",
        "One aspect of an object's current state, in the standard shape.",
        string("type", "The condition's type, in CamelCase.", required=True),
        string("status", "\"True\", \"False\" or \"Unknown\".", required=True),
        int64("observedGeneration", "The .metadata.generation the condition was set from."),
        time("lastTransitionTime", "When the status last changed.", required=True),
        string("reason", "Machine-readable reason for the last transition, in CamelCase.",
               required=True),
        string("message", "Human-readable details of the last transition.", required=True),
    ),
)
