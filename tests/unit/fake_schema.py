"""A small schema in the shape of testbed/api/schema.py's interface (Field, TypeDef, definition,
for_kind), for the patch and managed-fields unit tests: a Deployment-like and a Service-like
kind with upstream's patch strategies, merge keys and list types."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    ref: str | None = None
    items: str | None = None
    description: str = ""
    required: bool = False
    format: str | None = None
    enum: tuple[str, ...] = ()
    patch_strategy: str | None = None
    patch_merge_key: str | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] = ()
    map_type: str | None = None


@dataclass(frozen=True)
class TypeDef:
    name: str
    description: str
    fields: dict[str, Field] = field(default_factory=dict)
    gvk: tuple[str, str, str] | None = None
    map_type: str | None = None


def _t(name: str, *fields: Field, gvk: tuple[str, str, str] | None = None,
       map_type: str | None = None) -> TypeDef:
    return TypeDef(name, "", {f.name: f for f in fields}, gvk, map_type)


S = "string"
TYPES = {t.name: t for t in [
    _t("Deployment", Field("apiVersion", S), Field("kind", S), Field("metadata", "object", "Meta"),
       Field("spec", "object", "DeploymentSpec"), Field("status", "object", "DeploymentStatus"),
       gvk=("apps", "v1", "Deployment")),
    _t("Meta", Field("name", S), Field("namespace", S), Field("uid", S),
       Field("resourceVersion", S), Field("generation", "integer"),
       Field("creationTimestamp", S), Field("labels", "map", items=S),
       Field("annotations", "map", items=S),
       Field("finalizers", "array", items=S, patch_strategy="merge", list_type="set"),
       Field("managedFields", "array", ref="ManagedFieldsEntry")),
    _t("ManagedFieldsEntry", Field("manager", S), Field("fieldsV1", "object")),
    _t("DeploymentSpec", Field("replicas", "integer"), Field("selector", "object", "Selector"),
       Field("template", "object", "PodTemplate"), Field("strategy", "object", "Strategy"),
       Field("paused", "boolean")),
    _t("Selector", Field("matchLabels", "map", items=S), map_type="atomic"),
    _t("Strategy", Field("type", S), Field("rollingUpdate", "object", "RollingUpdate")),
    _t("RollingUpdate", Field("maxSurge", "int-or-string"),
       Field("maxUnavailable", "int-or-string")),
    _t("PodTemplate", Field("metadata", "object", "Meta"), Field("spec", "object", "PodSpec")),
    _t("PodSpec",
       Field("containers", "array", "Container", patch_strategy="merge", patch_merge_key="name",
             list_type="map", list_map_keys=("name",), required=True),
       Field("volumes", "array", "Volume", patch_strategy="merge,retainKeys",
             patch_merge_key="name", list_type="map", list_map_keys=("name",)),
       Field("nodeSelector", "map", items=S), Field("hostname", S)),
    _t("Volume", Field("name", S), Field("emptyDir", "object", "EmptyDir"),
       Field("hostPath", "object", "HostPath")),
    _t("EmptyDir", Field("medium", S)),
    _t("HostPath", Field("path", S)),
    _t("Container", Field("name", S), Field("image", S),
       Field("args", "array", items=S),
       Field("ports", "array", "ContainerPort", patch_strategy="merge",
             patch_merge_key="containerPort", list_type="map",
             list_map_keys=("containerPort", "protocol")),
       Field("env", "array", "EnvVar", patch_strategy="merge", patch_merge_key="name"),
       Field("resources", "object", "Resources")),
    _t("ContainerPort", Field("containerPort", "integer"), Field("protocol", S),
       Field("name", S)),
    _t("EnvVar", Field("name", S), Field("value", S)),
    _t("Resources", Field("limits", "map", items=S), Field("requests", "map", items=S)),
    _t("DeploymentStatus", Field("replicas", "integer"), Field("readyReplicas", "integer")),
    _t("Scale", Field("apiVersion", S), Field("kind", S), Field("metadata", "object", "Meta"),
       Field("spec", "object", "ScaleSpec"), gvk=("autoscaling", "v1", "Scale")),
    _t("ScaleSpec", Field("replicas", "integer")),
]}


def definition(name: str) -> TypeDef:
    return TYPES[name]


def for_kind(group_version: str, kind: str) -> TypeDef:
    for t in TYPES.values():
        if t.gvk and ("/".join(p for p in t.gvk[:2] if p), t.gvk[2]) == (group_version, kind):
            return t
    raise KeyError(f"{group_version} {kind}")


def definitions() -> dict[str, TypeDef]:
    return dict(TYPES)
