"""Acts: the kubelet's readiness and liveness probes (httpGet, tcpSocket, exec).

The kubelet runs in its node's network namespace, so httpGet and tcpSocket probes go from the
node to the pod's IP, as on a real node (which is why NetworkPolicies must allow the node).
exec probes run the command inside the pod's namespaces through `testbed-pause enter`.
`ProbeTracker` applies Kubernetes' timing: initialDelaySeconds after the container started,
every periodSeconds, a result counting only after successThreshold successes or
failureThreshold failures in a row.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from dataclasses import dataclass


def resolve_port(port: int | str, container: dict) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def run_probe(probe: dict, container: dict, pod_ip: str, exec_prefix: list[str], env: dict) -> tuple[bool, str]:
    """One attempt: (succeeded, what happened)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        get = probe["httpGet"]
        port = resolve_port(get.get("port"), container)
        if port is None:
            return False, f"unknown port {get.get('port')!r}"
        host = get.get("host") or pod_ip
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            conn.request("GET", get.get("path", "/"), headers={"User-Agent": "kube-probe/1.30", **headers})
            response = conn.getresponse()
            response.read(1024)
            ok = 200 <= response.status < 400
            return ok, f"HTTP probe failed with statuscode: {response.status}" if not ok else "ok"
        except (OSError, http.client.HTTPException) as err:
            return False, f'Get "http://{host}:{port}{get.get("path", "/")}": {err}'
        finally:
            conn.close()
    if "tcpSocket" in probe:
        port = resolve_port(probe["tcpSocket"].get("port"), container)
        if port is None:
            return False, f"unknown port {probe['tcpSocket'].get('port')!r}"
        try:
            with socket.create_connection((probe["tcpSocket"].get("host") or pod_ip, port), timeout=timeout):
                return True, "ok"
        except OSError as err:
            return False, f"dial tcp {pod_ip}:{port}: {err.strerror or err}"
    if "exec" in probe:
        command = probe["exec"].get("command") or []
        try:
            proc = subprocess.run(exec_prefix + list(command), capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {timeout:g}s"
        if proc.returncode == 0:
            return True, "ok"
        return False, f"command exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[:200]}"
    return False, "probe has no handler"


@dataclass
class ProbeTracker:
    """Consecutive results of one probe of one container, and the verdict they add up to."""

    probe: dict
    result: bool | None = None        # None until a threshold was reached
    successes: int = 0
    failures: int = 0
    last_run: float = 0.0
    message: str = ""

    def due(self, container_started: float, now: float) -> bool:
        if now < container_started + self.probe.get("initialDelaySeconds", 0):
            return False
        return now >= self.last_run + self.probe.get("periodSeconds", 10)

    def record(self, ok: bool, message: str, now: float) -> bool:
        """Count one attempt; True when the verdict changed."""
        self.last_run = now
        self.message = message
        before = self.result
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.get("successThreshold", 1):
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.probe.get("failureThreshold", 3):
                self.result = False
        return self.result != before
