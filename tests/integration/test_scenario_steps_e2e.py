"""The scenario steps and expectations of issue 16 against a real cluster, in iptables and
nftables modes: run (in a node and in a pod), get (with retryFor and a list), references in an
apply step's manifest, dns over TCP, a fixed source port, refused vs timeout for tcp, udp and
http, the same backend over tries, and a full kube-proxy sync forced by a step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, TOPOLOGIES, run_testbed

PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: w2
  containers:
  - {name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.53,
     args: [netexec, --http-port=80, --udp-port=80]}
---
apiVersion: v1
kind: Pod
metadata: {name: peer}
spec:
  nodeName: w1
  containers:
  - {name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [pause]}
---
apiVersion: v1
kind: Service
metadata: {name: web-svc}
spec:
  selector: {app: web}
  ports: [{name: tcp, port: 80}, {name: udp, port: 80, protocol: UDP}]
"""

# Applied by a step: its values are known only once the cluster runs.
LATER = """\
apiVersion: v1
kind: Pod
metadata: {name: later}
spec:
  nodeName: w1
  containers:
  - name: agnhost
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [pause]
    env:
    - {name: WEB_IP, value: "${pod:web.ip}"}
    - {name: WEB_SVC, value: "${service:web-svc.clusterIP}"}
    - {name: NODE_IP, value: "${node:w2.ip}"}
"""

STEPS = """\
  - wait: {endpoints: {service: web-svc, count: 1}}
  - name: run in a node
    run: {in: w1, command: [ip, -4, addr, show, dev, w1-eth0]}
    expect: {stdoutContains: "${node:w1.ip}"}
  - name: run in a pod fails as expected
    run: {in: peer, command: [sh, -c, "echo out; exit 3"]}
    expect: {exitCode: 3, stdoutMatches: "^out$"}
  - name: a run step whose expectation does not hold fails
    run: {in: peer, command: [hostname]}
    expect: {stdoutContains: not-this-pod}
  - apply: later.yaml
  - name: the references were resolved when the step ran
    run: {in: later, command: [sh, -c, "echo $WEB_IP $WEB_SVC $NODE_IP"]}
    expect: {stdoutContains: "${pod:web.ip} ${service:web-svc.clusterIP} ${node:w2.ip}"}
  - name: get a pod's IP
    get: {kind: Pod, name: web, jsonpath: "{.status.podIP}"}
    expect: {equals: "${pod:web.ip}"}
  - name: get a list through a selector
    get: {kind: EndpointSlice, selector: kubernetes.io/service-name=web-svc,
          jsonpath: "{.items[*].endpoints[*].addresses[0]}"}
    expect: {contains: "${pod:web.ip}"}
    retryFor: 5
  - name: dns over TCP
    probe: dns
    transport: tcp
    from: peer
    to: web-svc
    expect: {answer: "10.96."}
  - name: tcp from a fixed source port
    probe: tcp
    from: peer
    to: web-svc:80
    sourcePort: 23456
    expect: {backends: {same: true}}
  - name: udp from a fixed source port, the reply names the pod
    probe: udp
    from: peer
    to: web-svc:80
    sourcePort: 23457
    tries: 3
    expect: {backends: {selector: app=web}}
  - name: drop and reject in the server pod
    run: {in: web, command: [sh, -c, "iptables -A INPUT -p tcp --dport 81 -j DROP && iptables -A INPUT -p udp --dport 81 -j DROP && iptables -A INPUT -p tcp --dport 82 -j REJECT --reject-with tcp-reset"]}
  - {name: tcp refused, probe: tcp, from: peer, to: "web:82", expect: {unreachable: refused}}
  - {name: tcp timeout, probe: tcp, from: peer, to: "web:81", timeout: 1, expect: {unreachable: timeout}}
  - {name: udp refused (no listener), probe: udp, from: peer, to: "web:83", expect: {unreachable: refused}}
  - {name: udp timeout, probe: udp, from: peer, to: "web:81", timeout: 1, expect: {unreachable: timeout}}
  - {name: http refused, probe: http, from: peer, to: "http://web:82/", expect: {unreachable: refused}}
  - {name: http timeout, probe: http, from: peer, to: "http://web:81/", timeout: 1, expect: {unreachable: timeout}}
  - name: a refusal is not a timeout
    probe: tcp
    from: peer
    to: web:82
    expect: {unreachable: timeout}
"""

SYNC = """\
  - name: flush the service rules
    run: {in: w1, command: [sh, -c, "iptables -t nat -F KUBE-SERVICES 2>/dev/null || nft flush map ip kube-proxy service-ips"]}
  - name: not served while the rules are gone
    probe: tcp
    from: peer
    to: web-svc:80
    timeout: 1
    expect: unreachable
  - kubeProxy: {node: w1, sync: full}
  - name: the rules are back
    run: {in: w1, command: [sh, -c, "iptables -t nat -S KUBE-SERVICES 2>/dev/null || nft list map ip kube-proxy service-ips"]}
    expect: {stdoutMatches: "KUBE-SVC-|goto service-"}
  - name: served again after the full sync
    probe: tcp
    from: peer
    to: web-svc:80
"""

FAILING = {"a run step whose expectation does not hold fails", "a refusal is not a timeout"}


def _has_force_full_sync() -> bool:
    from testbed.emu.controlplane import ControlPlane

    return hasattr(ControlPlane, "force_full_sync")


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_new_steps_on_a_real_cluster(mode: str, tmp_path: Path):
    (tmp_path / "pods.yaml").write_text(PODS)
    (tmp_path / "later.yaml").write_text(LATER)
    steps = STEPS + (SYNC if _has_force_full_sync() else "")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: steps\ntopology: {TOPOLOGIES / 'two-node.yaml'}\n"
                        f"manifests: [pods.yaml]\nsteps:\n{steps}")
    report = tmp_path / "report.json"
    result = run_testbed("run", str(scenario), "--kube-proxy", mode, "--json", str(report),
                         timeout=400)
    data = json.loads(report.read_text())
    by_name = {s["name"]: s for s in data["steps"]}
    wrong = {s["name"]: s["observed"] for s in data["steps"] if s["passed"] == (s["name"] in FAILING)}
    assert not wrong, wrong
    assert result.returncode == 1, result.stderr[-2000:]     # the two steps meant to fail
    assert "other reason (refused)" in by_name["a refusal is not a timeout"]["observed"]
    assert "lacks 'not-this-pod'" in by_name["a run step whose expectation does not hold fails"]["observed"]
    assert by_name["run in a pod fails as expected"]["details"]["exitCode"] == 3
    assert "over TCP" in by_name["dns over TCP"]["observed"]
    assert by_name["udp from a fixed source port, the reply names the pod"]["details"]["answeredBy"] \
        == ["default/web"]


def test_the_upstream_scenario_runs_in_nftables_mode(tmp_path: Path):
    """test_scenarios.py runs it as shipped (iptables); here with --kube-proxy nftables."""
    report = tmp_path / "report.json"
    result = run_testbed("run", str(ROOT / "scenarios" / "upstream-e2e.yaml"), "--kube-proxy",
                         "nftables", "--json", str(report), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert json.loads(report.read_text())["failed"] == 0
