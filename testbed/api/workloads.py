"""Pure: validation and defaults for Deployments (apps/v1).

Defaults as the API server fills them: replicas 1, strategy RollingUpdate with maxSurge and
maxUnavailable 25%, revisionHistoryLimit 10, progressDeadlineSeconds 600, and the pod template
defaults from pods.py. The selector must select the template's labels, as in Kubernetes.
"""

from __future__ import annotations

from testbed.api.meta import check_label_selector, check_metadata, go_selector, selector_matches
from testbed.api.pods import POD_SPEC_FIELDS, check_pod_spec
from testbed.api.schema import field_names
from testbed.api.schema_base import APPS, CORE, META
from testbed.spec.source import Path_
from testbed.spec.validation import Checker, check_labels, go_map

# What each object may hold: the schema's fields (testbed/api/schema_groups.py); a template's
# metadata is an ObjectMeta, as upstream's.
DEPLOYMENT_SPEC_FIELDS = field_names(APPS + "DeploymentSpec")
TEMPLATE_FIELDS = field_names(CORE + "PodTemplateSpec")
TEMPLATE_META_FIELDS = field_names(META + "ObjectMeta")
STRATEGY_FIELDS = field_names(APPS + "DeploymentStrategy")
ROLLING_UPDATE_FIELDS = field_names(APPS + "RollingUpdateDeployment")


def check_deployment(ck: Checker, path: Path_, obj: dict) -> None:
    check_metadata(ck, path, obj)
    spec = ck.obj(obj, "spec", path, DEPLOYMENT_SPEC_FIELDS, required=True)
    if spec is None:
        return
    p = path + ("spec",)
    if ck.integer(spec, "replicas", p, 0) is None and "replicas" not in spec:   # an int32
        spec["replicas"] = 1
    for key, default in (("revisionHistoryLimit", 10), ("progressDeadlineSeconds", 600),
                         ("minReadySeconds", 0)):
        if ck.positive(spec, key, p, minimum=0) is None and key not in spec:
            spec[key] = default
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds")
    if type(deadline) is int and type(min_ready) is int and 0 <= min_ready \
            and 0 <= deadline <= min_ready:
        ck.invalid(p + ("progressDeadlineSeconds",), deadline,
                   "must be greater than minReadySeconds")
    ck.get(spec, "paused", p, "boolean")
    _check_strategy(ck, p, spec)

    selector = None
    # as upstream: no selector is labels.Nothing(), which no template's labels match
    nothing = spec.get("selector") is None
    if nothing:
        ck.required(p + ("selector",))
    else:
        before = len(ck.problems)
        selector = check_label_selector(ck, p + ("selector",), spec["selector"])
        if selector is not None and not selector.get("matchLabels") \
                and not selector.get("matchExpressions"):
            ck.add(p + ("selector",), f"Invalid value: {go_selector(selector)}: empty selector "
                   "is invalid for deployment")
            selector = None
        elif selector is not None and len(ck.problems) > before:
            # LabelSelectorAsSelector fails on what the checks above refused
            ck.add(p + ("selector",), f"Invalid value: {go_selector(selector)}: invalid label "
                   "selector")
            selector = None
    template = ck.obj(spec, "template", p, TEMPLATE_FIELDS, required=True)
    if template is None:
        return
    tp = p + ("template",)
    meta = ck.obj(template, "metadata", tp, TEMPLATE_META_FIELDS) or {}
    labels = check_labels(ck, tp + ("metadata", "labels"), meta.get("labels"))
    if nothing or (selector is not None and not selector_matches(selector, labels)):
        shown = go_map(meta.get("labels") if isinstance(meta.get("labels"), dict) else None)
        ck.add(tp + ("metadata", "labels"), f"Invalid value: {shown}: `selector` does not "
               "match template `labels`")
    pod_spec = ck.obj(template, "spec", tp, POD_SPEC_FIELDS, required=True)
    if pod_spec is not None:
        check_pod_spec(ck, tp + ("spec",), pod_spec)
        if pod_spec.get("restartPolicy") not in ("Always", None) and isinstance(
                pod_spec.get("restartPolicy"), str):
            ck.unsupported(tp + ("spec", "restartPolicy"), pod_spec["restartPolicy"], ["Always"])


def _check_strategy(ck: Checker, p: Path_, spec: dict) -> None:
    strategy = ck.obj(spec, "strategy", p, STRATEGY_FIELDS)
    if strategy is None:
        if spec.get("strategy") is not None:
            return
        strategy = spec["strategy"] = {}
    sp = p + ("strategy",)
    kind = ck.enum(strategy, "type", sp, ["Recreate", "RollingUpdate"], default="RollingUpdate")
    rolling = ck.obj(strategy, "rollingUpdate", sp, ROLLING_UPDATE_FIELDS)
    if kind == "Recreate":
        if rolling is not None:
            ck.forbidden(sp + ("rollingUpdate",), "may not be specified when strategy `type` is "
                         "'Recreate'")
        return
    if rolling is None:
        rolling = strategy["rollingUpdate"] = {}
    rp = sp + ("rollingUpdate",)
    for key in ("maxSurge", "maxUnavailable"):
        value = rolling.setdefault(key, "25%")
        if isinstance(value, str):
            if not (value.endswith("%") and value[:-1].isdigit()):
                ck.invalid(rp + (key,), value, "a valid percent string must be a numeric string "
                           "followed by an ending '%' (e.g. '1%',  or '93%')")
        elif type(value) is not int or value < 0:
            ck.invalid(rp + (key,), value, "must be greater than or equal to 0")
    if rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
        ck.invalid(rp + ("maxUnavailable",), rolling["maxUnavailable"],
                   "may not be 0 when `maxSurge` is 0")


OLD_DEPLOYMENT_VERSIONS = ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2")


# The versions whose defaulting filled spec.selector in from the template's labels; apps/v1beta2
# stopped doing that (its selector is required, as apps/v1's).
SELECTOR_DEFAULTING_VERSIONS = ("extensions/v1beta1", "apps/v1beta1")


def convert_old_deployment(obj: dict) -> dict:
    """An extensions/v1beta1 (or apps/v1beta1, apps/v1beta2) Deployment as apps/v1.

    The first two defaulted spec.selector to the template's labels, which apps/v1 (and
    apps/v1beta2 already) requires to be written out; the rest of the spec is the same.
    `rollbackTo` and other fields apps/v1 dropped are left in for the v1 checks to report.
    """
    import copy

    out = copy.deepcopy(obj)
    out["apiVersion"] = "apps/v1"
    spec = out.get("spec")
    if obj.get("apiVersion") in SELECTOR_DEFAULTING_VERSIONS and isinstance(spec, dict) \
            and "selector" not in spec:
        template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
        labels = (template.get("metadata") or {}).get("labels") if isinstance(template.get("metadata"), dict) else None
        if isinstance(labels, dict):
            spec["selector"] = {"matchLabels": dict(labels)}
    return out
