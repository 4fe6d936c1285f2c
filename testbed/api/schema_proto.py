"""Pure: upstream's protobuf field numbers of every message under the served kinds, as data.

Kubernetes' protobuf encoding numbers each field of each type (k8s.io/api and k8s.io/apimachinery
generated.proto); those numbers are protocol facts and are copied here, with what Go's
encoding/json does with the same field (the json tag's name, omitempty, omitzero, inline;
whether the Go field is a pointer), so that testbed/api/protobuf.py can turn a message into the
dict a JSON-encoding Go client would have sent, and back. The tables were generated once from
upstream's generated.proto and types.go files; this module, schema_proto_core (core/v1 outside
the pod) and schema_proto_pod (core/v1 under PodSpec) hold them. Every message reachable from a
type of testbed/api/schema.py is listed, also those the schema keeps free-form (Affinity,
SecurityContext, the volume sources): a body's bytes cannot be read without them.

One field is one string, in upstream's declaration order (the order Go's JSON writes):

    "<json name> <number> <type> [?] [omitzero]"

    type       string, int32, int64, bool, bytes; a message ("core.PodSpec", the prefix naming
               its package in ALIASES); or a type with its own JSON form: time, microtime (RFC
               3339 strings), intorstring, quantity (a string), fieldsv1 (raw JSON), rawextension
    prefixes   [] repeated, {} map<string, type>, * a Go pointer (absent: nothing, or null
               without ?), ^ an embedded struct whose fields JSON writes inline (name "-")
    ?          the json tag's omitempty;  omitzero  the json tag's omitzero

`message(name)` reads a message under its OpenAPI definition name (io.k8s.api.core.v1.PodSpec),
as testbed/api/schema.py names types. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from testbed.api import schema_proto_core, schema_proto_pod

ALIASES = {
    "core": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "autoscaling": "io.k8s.api.autoscaling.v1",
    "coordination": "io.k8s.api.coordination.v1",
    "discovery": "io.k8s.api.discovery.v1",
    "networking": "io.k8s.api.networking.v1",
    "meta": "io.k8s.apimachinery.pkg.apis.meta.v1",
}
SCALARS = ("string", "int32", "int64", "bool", "bytes")
# Types with their own JSON form; testbed/api/protobuf.py knows their messages (Time and
# MicroTime: seconds 1, nanos 2; IntOrString: type 1, intVal 2, strVal 3; Quantity: string 1;
# FieldsV1 and RawExtension: raw 1).
SPECIAL = ("time", "microtime", "intorstring", "quantity", "fieldsv1", "rawextension")


@dataclass(frozen=True)
class ProtoField:
    """One field of a message: its JSON name ("" when inline), number and how Go writes it."""

    json: str
    number: int
    type: str   # a scalar, a SPECIAL form, or a message's definition name
    repeated: bool = False
    map: bool = False
    pointer: bool = False
    inline: bool = False
    omitempty: bool = False
    omitzero: bool = False

    @property
    def is_message(self) -> bool:
        return self.type not in SCALARS and self.type not in SPECIAL


@dataclass(frozen=True)
class Message:
    name: str
    fields: tuple[ProtoField, ...]   # in declaration order

    @property
    def by_number(self) -> dict[int, ProtoField]:
        return {f.number: f for f in self.fields}


def _expand(short: str) -> str:
    alias, _, name = short.partition(".")
    return f"{ALIASES[alias]}.{name}" if name else short


def _field(text: str) -> ProtoField:
    json_name, number, typ, *flags = text.split()
    kw = {"repeated": typ.startswith("[]"), "map": typ.startswith("{}"),
          "pointer": typ.startswith("*"), "inline": typ.startswith("^")}
    typ = typ.removeprefix("[]").removeprefix("{}").lstrip("*^")
    return ProtoField("" if kw["inline"] else json_name, int(number), _expand(typ),
                      omitempty="?" in flags, omitzero="omitzero" in flags, **kw)


@cache
def messages() -> dict[str, Message]:
    """Every message by definition name."""
    out: dict[str, Message] = {}
    for table in (MESSAGES, schema_proto_core.MESSAGES, schema_proto_pod.MESSAGES):
        for short, fields in table.items():
            name = _expand(short)
            out[name] = Message(name, tuple(_field(f) for f in fields))
    return out


def message(name: str) -> Message:
    """The message of definition `name` ("io.k8s.api.core.v1.PodSpec"); KeyError if none."""
    return messages()[name]


@cache
def json_fields(name: str) -> dict[str, tuple[int, ...]]:
    """The JSON field names of message `name` with the numbers that lead to each: (3,) for an
    own field, (2, 7) for field 7 of the message embedded inline as field 2."""
    out: dict[str, tuple[int, ...]] = {}
    for f in message(name).fields:
        if f.inline:
            out.update({k: (f.number, *v) for k, v in json_fields(f.type).items()})
        else:
            out[f.json] = (f.number,)
    return out


# -- meta/v1 and the groups' messages ------------------------------------------------------------

MESSAGES: dict[str, tuple[str, ...]] = {
    "apps.Deployment": (
        "metadata 1 meta.ObjectMeta ?", "spec 2 apps.DeploymentSpec ?",
        "status 3 apps.DeploymentStatus ?",
    ),
    "apps.DeploymentCondition": (
        "type 1 string", "status 2 string", "lastUpdateTime 6 time ?",
        "lastTransitionTime 7 time ?", "reason 4 string ?", "message 5 string ?",
    ),
    "apps.DeploymentList": ("metadata 1 meta.ListMeta ?", "items 2 []apps.Deployment"),
    "apps.DeploymentSpec": (
        "replicas 1 *int32 ?", "selector 2 *meta.LabelSelector", "template 3 core.PodTemplateSpec",
        "strategy 4 apps.DeploymentStrategy ?", "minReadySeconds 5 int32 ?",
        "revisionHistoryLimit 6 *int32 ?", "paused 7 bool ?", "progressDeadlineSeconds 9 *int32 ?",
    ),
    "apps.DeploymentStatus": (
        "observedGeneration 1 int64 ?", "replicas 2 int32 ?", "updatedReplicas 3 int32 ?",
        "readyReplicas 7 int32 ?", "availableReplicas 4 int32 ?", "unavailableReplicas 5 int32 ?",
        "terminatingReplicas 9 *int32 ?", "conditions 6 []apps.DeploymentCondition ?",
        "collisionCount 8 *int32 ?",
    ),
    "apps.DeploymentStrategy": (
        "type 1 string ?", "rollingUpdate 2 *apps.RollingUpdateDeployment ?",
    ),
    "apps.RollingUpdateDeployment": (
        "maxUnavailable 1 *intorstring ?", "maxSurge 2 *intorstring ?",
    ),
    "autoscaling.Scale": (
        "metadata 1 meta.ObjectMeta ?", "spec 2 autoscaling.ScaleSpec ?",
        "status 3 autoscaling.ScaleStatus ?",
    ),
    "autoscaling.ScaleSpec": ("replicas 1 int32 ?",),
    "autoscaling.ScaleStatus": ("replicas 1 int32", "selector 2 string ?"),
    "coordination.Lease": ("metadata 1 meta.ObjectMeta ?", "spec 2 coordination.LeaseSpec ?"),
    "coordination.LeaseList": ("metadata 1 meta.ListMeta ?", "items 2 []coordination.Lease"),
    "coordination.LeaseSpec": (
        "holderIdentity 1 *string ?", "leaseDurationSeconds 2 *int32 ?",
        "acquireTime 3 *microtime ?", "renewTime 4 *microtime ?", "leaseTransitions 5 *int32 ?",
        "strategy 6 *string ?", "preferredHolder 7 *string ?",
    ),
    "discovery.Endpoint": (
        "addresses 1 []string", "conditions 2 discovery.EndpointConditions ?",
        "hostname 3 *string ?", "targetRef 4 *core.ObjectReference ?",
        "deprecatedTopology 5 {}string ?", "nodeName 6 *string ?", "zone 7 *string ?",
        "hints 8 *discovery.EndpointHints ?",
    ),
    "discovery.EndpointConditions": (
        "ready 1 *bool ?", "serving 2 *bool ?", "terminating 3 *bool ?",
    ),
    "discovery.EndpointHints": (
        "forZones 1 []discovery.ForZone ?", "forNodes 2 []discovery.ForNode ?",
    ),
    "discovery.EndpointPort": (
        "name 1 *string ?", "protocol 2 *string ?", "port 3 *int32 ?", "appProtocol 4 *string ?",
    ),
    "discovery.EndpointSlice": (
        "metadata 1 meta.ObjectMeta ?", "addressType 4 string", "endpoints 2 []discovery.Endpoint",
        "ports 3 []discovery.EndpointPort",
    ),
    "discovery.EndpointSliceList": (
        "metadata 1 meta.ListMeta ?", "items 2 []discovery.EndpointSlice",
    ),
    "discovery.ForNode": ("name 1 string",),
    "discovery.ForZone": ("name 1 string",),
    "networking.HTTPIngressPath": (
        "path 1 string ?", "pathType 3 *string", "backend 2 networking.IngressBackend",
    ),
    "networking.HTTPIngressRuleValue": ("paths 1 []networking.HTTPIngressPath",),
    "networking.Ingress": (
        "metadata 1 meta.ObjectMeta ?", "spec 2 networking.IngressSpec ?",
        "status 3 networking.IngressStatus ?",
    ),
    "networking.IngressBackend": (
        "service 4 *networking.IngressServiceBackend ?",
        "resource 3 *core.TypedLocalObjectReference ?",
    ),
    "networking.IngressList": ("metadata 1 meta.ListMeta ?", "items 2 []networking.Ingress"),
    "networking.IngressLoadBalancerIngress": (
        "ip 1 string ?", "hostname 2 string ?", "ports 4 []networking.IngressPortStatus ?",
    ),
    "networking.IngressLoadBalancerStatus": (
        "ingress 1 []networking.IngressLoadBalancerIngress ?",
    ),
    "networking.IngressPortStatus": ("port 1 int32", "protocol 2 string", "error 3 *string ?"),
    "networking.IngressRule": ("host 1 string ?", "- 2 ^networking.IngressRuleValue"),
    "networking.IngressRuleValue": ("http 1 *networking.HTTPIngressRuleValue ?",),
    "networking.IngressServiceBackend": ("name 1 string", "port 2 networking.ServiceBackendPort ?"),
    "networking.IngressSpec": (
        "ingressClassName 4 *string ?", "defaultBackend 1 *networking.IngressBackend ?",
        "tls 2 []networking.IngressTLS ?", "rules 3 []networking.IngressRule ?",
    ),
    "networking.IngressStatus": ("loadBalancer 1 networking.IngressLoadBalancerStatus ?",),
    "networking.IngressTLS": ("hosts 1 []string ?", "secretName 2 string ?"),
    "networking.ServiceBackendPort": ("name 1 string ?", "number 2 int32 ?"),
    "networking.IPBlock": ("cidr 1 string", "except 2 []string ?"),
    "networking.NetworkPolicy": (
        "metadata 1 meta.ObjectMeta ?", "spec 2 networking.NetworkPolicySpec ?",
    ),
    "networking.NetworkPolicyEgressRule": (
        "ports 1 []networking.NetworkPolicyPort ?", "to 2 []networking.NetworkPolicyPeer ?",
    ),
    "networking.NetworkPolicyIngressRule": (
        "ports 1 []networking.NetworkPolicyPort ?", "from 2 []networking.NetworkPolicyPeer ?",
    ),
    "networking.NetworkPolicyList": (
        "metadata 1 meta.ListMeta ?", "items 2 []networking.NetworkPolicy",
    ),
    "networking.NetworkPolicyPeer": (
        "podSelector 1 *meta.LabelSelector ?", "namespaceSelector 2 *meta.LabelSelector ?",
        "ipBlock 3 *networking.IPBlock ?",
    ),
    "networking.NetworkPolicyPort": (
        "protocol 1 *string ?", "port 2 *intorstring ?", "endPort 3 *int32 ?",
    ),
    "networking.NetworkPolicySpec": (
        "podSelector 1 meta.LabelSelector", "ingress 2 []networking.NetworkPolicyIngressRule ?",
        "egress 3 []networking.NetworkPolicyEgressRule ?", "policyTypes 4 []string ?",
    ),
    "meta.Condition": (
        "type 1 string", "status 2 string", "observedGeneration 3 int64 ?",
        "lastTransitionTime 4 time", "reason 5 string", "message 6 string",
    ),
    "meta.DeleteOptions": (
        "gracePeriodSeconds 1 *int64 ?", "preconditions 2 *meta.Preconditions ?",
        "orphanDependents 3 *bool ?", "propagationPolicy 4 *string ?", "dryRun 5 []string ?",
        "ignoreStoreReadErrorWithClusterBreakingPotential 6 *bool ?",
    ),
    "meta.LabelSelector": (
        "matchLabels 1 {}string ?", "matchExpressions 2 []meta.LabelSelectorRequirement ?",
    ),
    "meta.LabelSelectorRequirement": ("key 1 string", "operator 2 string", "values 3 []string ?"),
    "meta.ListMeta": (
        "selfLink 1 string ?", "resourceVersion 2 string ?", "continue 3 string ?",
        "remainingItemCount 4 *int64 ?", "shardInfo 5 *meta.ShardInfo ?",
    ),
    "meta.ManagedFieldsEntry": (
        "manager 1 string ?", "operation 2 string ?", "apiVersion 3 string ?", "time 4 *time ?",
        "fieldsType 6 string ?", "fieldsV1 7 *fieldsv1 ?", "subresource 8 string ?",
    ),
    "meta.ObjectMeta": (
        "name 1 string ?", "generateName 2 string ?", "namespace 3 string ?", "selfLink 4 string ?",
        "uid 5 string ?", "resourceVersion 6 string ?", "generation 7 int64 ?",
        "creationTimestamp 8 time ? omitzero", "deletionTimestamp 9 *time ?",
        "deletionGracePeriodSeconds 10 *int64 ?", "labels 11 {}string ?",
        "annotations 12 {}string ?", "ownerReferences 13 []meta.OwnerReference ?",
        "finalizers 14 []string ?", "managedFields 17 []meta.ManagedFieldsEntry ?",
    ),
    "meta.OwnerReference": (
        "apiVersion 5 string", "kind 1 string", "name 3 string", "uid 4 string",
        "controller 6 *bool ?", "blockOwnerDeletion 7 *bool ?",
    ),
    "meta.Patch": (),
    "meta.Preconditions": ("uid 1 *string ?", "resourceVersion 2 *string ?"),
    "meta.ShardInfo": ("selector 1 string",),
    "meta.Status": (
        "metadata 1 meta.ListMeta ?", "status 2 string ?", "message 3 string ?",
        "reason 4 string ?", "details 5 *meta.StatusDetails ?", "code 6 int32 ?",
    ),
    "meta.StatusCause": ("reason 1 string ?", "message 2 string ?", "field 3 string ?"),
    "meta.StatusDetails": (
        "name 1 string ?", "group 2 string ?", "kind 3 string ?", "uid 6 string ?",
        "causes 4 []meta.StatusCause ?", "retryAfterSeconds 5 int32 ?",
    ),
    "meta.WatchEvent": ("type 1 string", "object 2 rawextension"),
}
