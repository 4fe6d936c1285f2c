"""fieldValidation (testbed/api/fieldvalidation.py): Strict, Warn, Ignore and bad directives,
through the pure API and over HTTP (Warning headers); the testbed's own batch apply stays
strict through the validators."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from testbed.api.failures import ApiFailure
from testbed.api.fieldvalidation import FieldValidation, strict_failure, warning_header
from testbed.api.resources import resource_for
from tests.unit.conftest import start_api


def deployment(name: str = "web", **extra: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}},
                     **extra}}


def with_unknowns() -> dict:
    obj = deployment(foo=1)
    obj["spec"]["template"]["spec"]["containers"][0]["bar"] = 2
    return obj


def test_strict_refuses_with_upstreams_message() -> None:
    with pytest.raises(ApiFailure) as err:
        FieldValidation("Strict").screen(with_unknowns())
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    assert err.value.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].bar", unknown field "spec.foo"')


def test_warn_drops_and_warns_ignore_drops_silently() -> None:
    obj = with_unknowns()
    warn = FieldValidation("Warn")
    warn.screen(obj)
    assert "foo" not in obj["spec"] and "bar" not in obj["spec"]["template"]["spec"][
        "containers"][0]
    assert warn.warnings == ['unknown field "spec.template.spec.containers[0].bar"',
                             'unknown field "spec.foo"']
    assert warn.headers()[1] == ("Warning", '299 - "unknown field \\"spec.foo\\""')
    obj = with_unknowns()
    ignore = FieldValidation("Ignore")
    ignore.screen(obj)
    assert "foo" not in obj["spec"] and ignore.warnings == []


def test_duplicates_come_from_the_raw_body() -> None:
    raw = json.dumps(deployment()).replace('"replicas": 1', '"replicas": 1, "replicas": 2')
    obj = json.loads(raw)
    with pytest.raises(ApiFailure) as err:
        FieldValidation("Strict", raw.encode()).screen(obj)
    assert err.value.message.endswith('strict decoding error: duplicate field "spec.replicas"')
    warn = FieldValidation("Warn", raw.encode())
    warn.screen(obj)
    assert warn.warnings == ['duplicate field "spec.replicas"'] and obj["spec"]["replicas"] == 2


@pytest.mark.parametrize(("verb", "kind"), [("create", "CreateOptions"),
                                            ("update", "UpdateOptions"),
                                            ("patch", "PatchOptions")])
def test_an_unknown_directive_is_invalid(verb: str, kind: str) -> None:
    with pytest.raises(ApiFailure) as err:
        FieldValidation("strict").screen(deployment(), verb)
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert err.value.message == (
        f'{kind}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": '
        'supported values: "", "Ignore", "Strict", "Warn"')
    assert FieldValidation.from_query({"fieldValidation": [""]}).directive == "Warn"
    assert FieldValidation.from_query({}).directive == "Warn"


def test_kinds_in_old_versions_are_left_to_the_validators() -> None:
    old = {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "i"},
           "spec": {"backend": {"serviceName": "s", "servicePort": 80}}}
    FieldValidation("Strict").screen(old)
    assert old["spec"]["backend"] == {"serviceName": "s", "servicePort": 80}


def test_patch_wording_and_warning_escapes() -> None:
    failure = strict_failure({"kind": "Pod", "spec": {}}, ['unknown field "spec.x"'], "patch")
    assert failure.code == 422 and failure.message == (
        ' "" is invalid: patch: Invalid value: "{\\"kind\\":\\"Pod\\",\\"spec\\":{}}": strict '
        'decoding error: unknown field "spec.x"')
    assert warning_header('a "b" \\ c') == '299 - "a \\"b\\" \\\\ c"'
    with pytest.raises(ApiFailure) as err:  # PATCH's wording, from the request's own verb
        FieldValidation("Strict", verb="patch").screen({"kind": "Pod", "apiVersion": "v1",
                                                        "x": 1}, "update")
    assert err.value.code == 422 and err.value.message.startswith(' "" is invalid: patch: ')


def test_the_api_prunes_on_create_and_replace_and_batch_apply_stays_strict(
        tmp_path: Path) -> None:
    server = start_api(tmp_path)
    try:
        api, r = server.api, resource_for("Deployment")
        fields = FieldValidation("Warn")
        created = api.create(r, "default", with_unknowns(), fields=fields)
        assert "foo" not in created["spec"] and len(fields.warnings) == 2
        again = dict(created, spec=dict(created["spec"], foo=3))
        with pytest.raises(ApiFailure) as err:
            api.replace(r, "default", "web", again, fields=FieldValidation("Strict"))
        assert err.value.code == 400 and 'unknown field "spec.foo"' in err.value.message
        with pytest.raises(ApiFailure) as err:
            api.apply_batch([deployment("other", foo=1)])
        assert err.value.code == 422 and 'spec.foo: unknown field "foo"' in err.value.message
    finally:
        server.stop()


def _post(port: int, path: str, body: str) -> tuple[int, list[str], dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, resp.headers.get_all("Warning") or [], data


def test_over_http_warnings_and_refusals(tmp_path: Path) -> None:
    server = start_api(tmp_path)
    try:
        base = "/apis/apps/v1/namespaces/default/deployments"
        code, warnings, created = _post(server.port, base, json.dumps(with_unknowns()))
        assert code == 201 and "foo" not in created["spec"]
        assert warnings == ['299 - "unknown field \\"spec.template.spec.containers[0].bar\\""',
                            '299 - "unknown field \\"spec.foo\\""']
        body = json.dumps(deployment("b", foo=1))
        code, warnings, _ = _post(server.port, base + "?fieldValidation=Ignore", body)
        assert (code, warnings) == (201, [])
        code, _, status = _post(server.port, base + "?fieldValidation=Strict",
                                json.dumps(deployment("c", foo=1)))
        assert (code, status["reason"]) == (400, "BadRequest")
        assert status["message"].endswith('strict decoding error: unknown field "spec.foo"')
        dup = json.dumps(deployment("d")).replace('"name": "d"', '"name": "d", "name": "e"', 1)
        code, _, status = _post(server.port, base + "?fieldValidation=Strict", dup)
        assert code == 400 and 'duplicate field \\"metadata.name\\"' in json.dumps(status)
        code, _, status = _post(server.port, base + "?fieldValidation=No", body)
        assert (code, status["reason"]) == (422, "Invalid")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", base + "/web")
        current = json.loads(conn.getresponse().read())
        current["spec"]["foo"] = 1
        conn.request("PUT", base + "/web", json.dumps(current),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and resp.headers.get_all("Warning") == [
            '299 - "unknown field \\"spec.foo\\""']
        conn.close()
    finally:
        server.stop()
