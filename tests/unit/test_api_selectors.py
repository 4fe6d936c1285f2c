"""Label and field selectors as strings (pure): upstream's grammar, matching and error wording."""

from __future__ import annotations

import pytest

from testbed.api.fields import FieldSelectorError, field_values, parse_fields
from testbed.api.meta import parse_selector, selector_matches
from testbed.spec.labels import SelectorError, parse_labels

# -- labels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,labels,want", [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {}, True),  # a missing key is "not equal"
    ("app!=web", {"app": "web"}, False),
    ("env in (a,b)", {"env": "b"}, True),
    ("env in (a,b)", {"env": "c"}, False),
    ("env in (a,b)", {}, False),
    ("env notin (a,b)", {}, True),
    ("env notin (a,b)", {"env": "a"}, False),
    ("legacy", {"legacy": ""}, True),
    ("legacy", {}, False),
    ("!legacy", {}, True),
    ("!legacy", {"legacy": "x"}, False),
    ("v>2", {"v": "3"}, True),
    ("v>2", {"v": "2"}, False),
    ("v<2", {"v": "1"}, True),
    ("v<2", {"v": "x"}, False),
    ("app=web,env in (a,b)", {"app": "web", "env": "a"}, True),
    ("app=web,env in (a,b)", {"app": "web", "env": "c"}, False),
    ("", {"anything": "x"}, True),
    ("x in (,)", {"x": ""}, True),  # "(," stands for the empty value
])
def test_label_selectors_match_as_upstream(text: str, labels: dict, want: bool) -> None:
    assert parse_labels(text).matches(labels) is want


@pytest.mark.parametrize("text,message", [
    ("app in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("!x=y", "found '=', expected: ',' or 'end of string'"),
    ("a=>b", "unable to parse requirement: found '>', expected: identifier"),
    ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' "
            "operators, the value must be an integer"),
])
def test_label_selector_errors_are_upstreams(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_labels(text)
    assert str(err.value) == message


def test_label_keys_and_values_are_validated() -> None:
    with pytest.raises(SelectorError, match=r'^unable to parse requirement: <nil>: Invalid value: '
                                            r'"-x": name part must consist'):
        parse_labels("-x=1")
    with pytest.raises(SelectorError, match=r'values\[0\]\[app\]: Invalid value: "-web-": a '
                                            "valid label must be"):
        parse_labels("app=-web-")


def test_parsed_selectors_sort_by_key_and_print_back() -> None:
    assert str(parse_labels("z=1, a in (c,b) ,!m")) == "a in (b,c),!m,z=1"


def test_meta_parse_selector_keeps_the_store_and_controllers_working() -> None:
    sel = parse_selector("app=web,tier notin (db)")
    assert selector_matches(sel, {"app": "web", "tier": "fe"})
    assert not selector_matches(sel, {"app": "web", "tier": "db"})
    # LabelSelector dicts and Service maps still match as before
    assert selector_matches({"matchLabels": {"app": "web"}}, {"app": "web"})
    assert not selector_matches({"app": "web"}, {"app": "db"})
    with pytest.raises(ValueError):
        parse_selector("app in (")


# -- fields ----------------------------------------------------------------------------------------

POD = {"kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop"},
       "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "default"},
       "status": {"phase": "Running", "podIP": "10.244.1.2"}}


@pytest.mark.parametrize("text,want", [
    ("spec.nodeName=n1", True),
    ("spec.nodeName==n1", True),
    ("spec.nodeName=n2", False),
    ("spec.nodeName!=n2", True),
    ("spec.nodeName!=n1", False),
    ("status.phase=Running,metadata.namespace=shop", True),
    ("status.phase=Running,metadata.namespace=default", False),
    ("metadata.name=web-1", True),
    ("status.podIP=10.244.1.2", True),
    ("spec.hostNetwork=false", True),
    ("spec.host=n1", True),  # the legacy name of spec.nodeName
    ("status.nominatedNodeName=", True),
    ("", True),
])
def test_pod_field_selectors(text: str, want: bool) -> None:
    assert parse_fields(text, "Pod").matches(field_values("Pod", POD)) is want


@pytest.mark.parametrize("kind,text,message", [
    ("Pod", "spec.foo=bar", "field label not supported: spec.foo"),
    ("Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Deployment", "spec.replicas=1",
     '"spec.replicas" is not a known field selector: only "metadata.name", '
     '"metadata.namespace"'),
    ("Pod", "spec.nodeName", "invalid selector: 'spec.nodeName'; can't understand "
                             "'spec.nodeName'"),
    ("Pod", "spec.nodeName=a=b", "invalid field selector: unescaped character in value: 61"),
    ("Pod", "spec.nodeName=a\\x", "invalid field selector: invalid escape sequence: \\x"),
])
def test_field_selector_errors_are_upstreams(kind: str, text: str, message: str) -> None:
    with pytest.raises(FieldSelectorError) as err:
        parse_fields(text, kind)
    assert str(err.value) == message


def test_field_labels_of_other_kinds() -> None:
    event = {"metadata": {"name": "e", "namespace": "default"}, "reason": "Started",
             "type": "Normal", "involvedObject": {"kind": "Pod", "name": "web-1"},
             "source": {"component": "kubelet"}}
    assert parse_fields("involvedObject.name=web-1,reason=Started,source=kubelet",
                        "Event").matches(field_values("Event", event))
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert parse_fields("spec.unschedulable=true", "Node").matches(field_values("Node", node))
    svc = {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9"}}
    assert parse_fields("spec.type=NodePort,spec.clusterIP=10.96.0.9", "Service").matches(
        field_values("Service", svc))
    ns = {"metadata": {"name": "shop"}, "status": {"phase": "Terminating"}}
    assert not parse_fields("status.phase=Active", "Namespace").matches(
        field_values("Namespace", ns))


def test_escaped_values_and_exact_matches() -> None:
    sel = parse_fields("metadata.name=a\\,b")
    assert sel.requires_exact("metadata.name") == "a,b"
    assert str(sel) == "metadata.name=a\\,b"
    assert parse_fields("metadata.name!=x").requires_exact("metadata.name") is None
