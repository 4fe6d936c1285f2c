"""nginx.conf rendering from Ingresses (v1 and the converted v1beta1 form), and the controller's
check-then-reload logic over a fake nginx and a fake API client."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testbed.api.ingress import convert_v1beta1
from testbed.ingress.config import CONFIG_SNIPPET, NginxPaths, build, culprit, render, serves
from testbed.ingress.controller import ERROR_ANNOTATION, IngressController


def ingress(name: str, rules=None, default=None, created="2024-01-01T00:00:00Z", cls=None,
            notes=None) -> dict:
    spec: dict = {}
    if rules is not None:
        spec["rules"] = rules
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if cls:
        spec["ingressClassName"] = cls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                         "annotations": dict(notes or {})}, "spec": spec}


def rule(host, *paths):
    return {**({"host": host} if host else {}), "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
        for p, t, s in paths]}}


def service(name: str, port_name: str = "") -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": port_name, "port": 80, "targetPort": 8080}]}}


def slice_(name: str, *ips: str, ready: bool = True, port_name: str = "") -> dict:
    return {"metadata": {"name": f"{name}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


SERVICES = [service("web"), service("api"), service("fallback")]
SLICES = [slice_("web", "10.244.0.5", "10.244.1.5"), slice_("api", "10.244.1.7"),
          slice_("fallback", "10.244.0.9")]


def locations(model, host):
    return {m: (loc.backend.upstream if loc.backend else None)
            for m, loc in model.servers[host].locations.items()}


def test_paths_hosts_and_backends() -> None:
    ing = ingress("a", [rule("a.example.com", ("/", "Prefix", "web"), ("/api/", "Prefix", "api"),
                             ("/exact", "Exact", "api"), ("/impl", "ImplementationSpecific", "web")),
                        rule(None, ("/any", "Exact", "web"))])
    model = build([ing], SERVICES, SLICES)
    assert locations(model, "a.example.com") == {
        "/": "default_web_80", "= /api": "default_api_80", "/api/": "default_api_80",
        "= /exact": "default_api_80", "/impl": "default_web_80"}
    assert locations(model, "_") == {"= /any": "default_web_80"}
    assert model.backends["default_web_80"].servers == ("10.244.0.5:8080", "10.244.1.5:8080")
    assert model.problems == []


def test_exact_beats_prefix_and_oldest_ingress_wins() -> None:
    old = ingress("old", [rule("h.example.com", ("/p", "Prefix", "web"))], created="2024-01-01T00:00:00Z")
    new = ingress("new", [rule("h.example.com", ("/p", "Exact", "api"), ("/p", "Prefix", "api"))],
                  created="2024-02-01T00:00:00Z")
    model = build([new, old], SERVICES, SLICES)
    locs = model.servers["h.example.com"].locations
    assert locs["= /p"].ingress == "default/old" and locs["/p/"].ingress == "default/old"


def test_exact_beats_prefix_within_one_ingress_whatever_the_order() -> None:
    for paths in ((("/p", "Prefix", "web"), ("/p", "Exact", "api")),
                  (("/p", "Exact", "api"), ("/p", "Prefix", "web"))):
        model = build([ingress("one", [rule("h.example.com", *paths)])], SERVICES, SLICES)
        assert locations(model, "h.example.com") == {"= /p": "default_api_80",
                                                      "/p/": "default_web_80"}


def test_classes() -> None:
    assert serves(ingress("a"))                               # no class: the default class
    assert serves(ingress("a", cls="nginx"))
    assert not serves(ingress("a", cls="other"))
    assert not serves(ingress("a", notes={"kubernetes.io/ingress.class": "gce"}))
    assert not serves(ingress("a"), default_class=False)


def test_default_backend_and_404() -> None:
    plain = build([ingress("a", [rule("a.example.com", ("/x", "Exact", "web"))])], SERVICES, SLICES)
    text = render(plain, NginxPaths("/run/p"))
    assert text.count('return 404 "default backend - 404\\n";') == 2   # catch-all and a's "/"
    with_default = build([ingress("a", [rule("a.example.com", ("/x", "Exact", "web"))], default="fallback")],
                         SERVICES, SLICES)
    assert with_default.servers["_"].fallback.backend.upstream == "default_fallback_80"
    assert with_default.servers["a.example.com"].fallback.backend.upstream == "default_fallback_80"


def test_no_endpoints_or_no_service_is_503_and_reported() -> None:
    model = build([ingress("a", [rule("a.example.com", ("/", "Prefix", "gone"), ("/w", "Prefix", "web"))])],
                  SERVICES, [slice_("web", "10.244.0.5", ready=False)])
    text = render(model, NginxPaths("/run/p"))
    assert 'return 503 "no endpoints for default/gone:80\\n";' in text
    assert 'return 503 "no endpoints for default/web:80\\n";' in text
    assert "    upstream " not in text  # an upstream with no servers would fail nginx -t
    assert any("Service default/gone not found" in p for p in model.problems)


def test_named_service_ports_and_unsafe_paths() -> None:
    ing = ingress("a", [rule("a.example.com", ("/ok", "Exact", "named"), ("/bad;path", "Prefix", "named"))])
    ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http"}
    model = build([ing], [service("named", "http")], [slice_("named", "10.244.0.3", port_name="http")])
    assert model.backends["default_named_http"].servers == ("10.244.0.3:8080",)
    assert "= /bad;path" not in model.servers["a.example.com"].locations
    assert any("'/bad;path' left out" in p for p in model.problems)


def test_the_articles_v1beta1_form() -> None:
    old = {"apiVersion": "extensions/v1beta1", "kind": "Ingress",
           "metadata": {"name": "nginx-ingress", "namespace": "default"},
           "spec": {"rules": [{"host": "nginx.example.com", "http": {"paths": [
               {"backend": {"serviceName": "web", "servicePort": 80}}]}}]}}
    model = build([convert_v1beta1(old)], SERVICES, SLICES)
    assert locations(model, "nginx.example.com") == {"/": "default_web_80"}


def test_culprit_maps_lines_to_ingresses() -> None:
    ing = ingress("bad", [rule("a.example.com", ("/", "Prefix", "web"))],
                  notes={CONFIG_SNIPPET: "no_such_directive on;"})
    text = render(build([ing], SERVICES, SLICES), NginxPaths("/run/p"))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "no_such_directive" in t)
    assert culprit(text, line) == "default/bad"
    first_server = next(i for i, t in enumerate(text.splitlines(), 1) if "listen 80" in t)
    assert culprit(text, first_server) is None
    assert culprit(text, 10_000) is None


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_rendered_config_passes_nginx_t(tmp_path) -> None:
    ing = ingress("a", [rule("a.example.com", ("/", "Prefix", "web"), ("/api", "Prefix", "api"),
                             ("/e", "Exact", "gone")), rule("*.wild.example.com", ("/", "Prefix", "web"))],
                  default="fallback")
    text = render(build([ing], SERVICES, SLICES), NginxPaths(str(tmp_path)), port=18080)
    (tmp_path / "nginx.conf").write_text(text)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    result = subprocess.run([NGINX, "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log"), "-t"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + text


# -- the controller over fakes ------------------------------------------------------------------

class FakeNginx:
    def __init__(self, tmp: Path):
        self.paths = NginxPaths(str(tmp))
        self.up = False
        self.loads = 0

    def test(self, conf: str) -> tuple[bool, str]:
        text = Path(conf).read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if "no_such_directive" in line:
                return False, f'nginx: [emerg] unknown directive "no_such_directive" in {conf}:{number}'
        return True, "ok"

    def running(self) -> bool:
        return self.up

    def load(self) -> str:
        self.up = True
        self.loads += 1
        return "reloaded"

    def stop(self) -> None:
        self.up = False


class FakeClient:
    def __init__(self):
        self.updates: list[dict] = []

    def update(self, obj: dict) -> dict:
        self.updates.append(obj)
        return obj


def test_bad_ingress_is_left_out_and_reported_good_config_stays(tmp_path) -> None:
    nginx, client = FakeNginx(tmp_path), FakeClient()
    ctl = IngressController(client, nginx)
    good = ingress("good", [rule("good.example.com", ("/", "Prefix", "web"))])
    ctl.sync([good], SERVICES, SLICES)
    assert nginx.loads == 1
    loaded = (tmp_path / "nginx.conf").read_text()
    bad = ingress("bad", [rule("bad.example.com", ("/", "Prefix", "api"))],
                  created="2024-03-01T00:00:00Z", notes={CONFIG_SNIPPET: "no_such_directive on;"})
    ctl.sync([good, bad], SERVICES, SLICES)
    assert nginx.loads == 1                                 # nothing new to load: bad was left out
    assert (tmp_path / "nginx.conf").read_text() == loaded
    assert "unknown directive" in ctl.errors["default/bad"]
    assert client.updates[-1]["metadata"]["annotations"][ERROR_ANNOTATION].startswith("nginx: [emerg]")
    # Other changes still load while the bad Ingress stays out.
    other = ingress("other", [rule("other.example.com", ("/", "Prefix", "api"))])
    ctl.sync([good, bad, other], SERVICES, SLICES)
    assert nginx.loads == 2
    text = (tmp_path / "nginx.conf").read_text()
    assert "other.example.com" in text and "bad.example.com" not in text
    # Fixing it loads it and clears the annotation.
    fixed = dict(bad, metadata=dict(bad["metadata"], annotations={
        ERROR_ANNOTATION: ctl.errors["default/bad"]}))
    ctl.sync([good, fixed, other], SERVICES, SLICES)
    assert "bad.example.com" in (tmp_path / "nginx.conf").read_text()
    assert ERROR_ANNOTATION not in client.updates[-1]["metadata"]["annotations"]


def test_endpoint_changes_reload(tmp_path) -> None:
    nginx = FakeNginx(tmp_path)
    ctl = IngressController(FakeClient(), nginx)
    ing = ingress("a", [rule("a.example.com", ("/", "Prefix", "web"))])
    ctl.sync([ing], SERVICES, SLICES)
    ctl.sync([ing], SERVICES, SLICES)
    assert nginx.loads == 1
    ctl.sync([ing], SERVICES, [slice_("web", "10.244.0.5")])
    assert nginx.loads == 2
    assert "10.244.1.5" not in (tmp_path / "nginx.conf").read_text()


def test_status_lists_the_nodes_of_ready_controller_pods(tmp_path) -> None:
    client = FakeClient()
    client.update_status = lambda obj: client.updates.append(obj) or obj
    ctl = IngressController(client, FakeNginx(tmp_path), publish=("nginx-ingress", "app=nginx-ingress"))

    def pod(ip, ready):
        return {"status": {"hostIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]}}
    mine, theirs = ingress("a", []), ingress("b", [], cls="other")
    ctl.publish_status([mine, theirs], [pod("172.16.2.2", True), pod("172.16.1.2", True), pod("172.16.3.2", False)])
    assert [u["metadata"]["name"] for u in client.updates] == ["a"]
    want = {"loadBalancer": {"ingress": [{"ip": "172.16.1.2"}, {"ip": "172.16.2.2"}]}}
    assert client.updates[0]["status"] == want
    ctl.publish_status([dict(mine, status=want)], [pod("172.16.2.2", True), pod("172.16.1.2", True)])
    assert len(client.updates) == 1   # already right: no write
