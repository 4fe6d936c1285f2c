"""Pure: warnings for what the API server accepts but a person likely did not mean.

Upstream answers some valid writes with `Warning:` headers (pkg/api/pod/warnings.go,
GetWarningsForPod and ...ForPodTemplate) instead of refusing them. `pod_warnings` gives the
ones the testbed reproduces, as (path within the object, message) in upstream's words
(upstream's header is `field_name(path) + ": " + message`); the checks made before anything
is built (testbed.checks) print them with file and line.
"""

from __future__ import annotations

from testbed.spec.source import Path_


def pod_spec_path(obj: dict) -> Path_ | None:
    """Where an object holds a pod spec: spec (Pod), spec.template.spec (Deployment)."""
    if obj.get("kind") == "Pod":
        return ("spec",)
    if obj.get("kind") == "Deployment":
        return ("spec", "template", "spec")
    return None


def pod_spec(obj: dict) -> dict:
    """The pod spec of a Pod or a Deployment's template ({} for other kinds)."""
    where = pod_spec_path(obj)
    if where is None:
        return {}
    node = obj
    for key in where:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def pod_warnings(obj: dict) -> list[tuple[Path_, str]]:
    """Upstream's warnings for the pod spec of a Pod or a Deployment's template."""
    where = pod_spec_path(obj)
    if where is None:
        return []
    spec = pod_spec(obj)
    out = []
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            out += _duplicate_env(container, where + (key, i))
    return out


def _duplicate_env(container: dict, path: Path_) -> list[tuple[Path_, str]]:
    """A second env entry of one name hides the first (and `kubectl apply` may drop one of
    them): warned unless the new value builds on the old one, X="$(X):more"."""
    seen: set[str] = set()
    out = []
    for i, item in enumerate(container.get("env") or []):
        name = item.get("name")
        if name not in seen:
            seen.add(name)
            continue
        ref = f"$({name})"
        value = item.get("value") or ""
        if item.get("valueFrom") is not None or value == ref or ref not in value:
            where = path + ("env", i)
            out.append((where, f'hides previous definition of "{name}", which may be dropped '
                               "when using apply"))
    return out
