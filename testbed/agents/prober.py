"""Acts: the kubelet's readiness and liveness probes (httpGet, tcpSocket, exec).

The kubelet runs in its node's network namespace, so httpGet and tcpSocket probes go from the
node to the pod's IP, as on a real node (which is why NetworkPolicies must allow the node).
exec probes run the command inside the pod's namespaces through `testbed-pause enter`.
When a probe is due and what its results add up to (`ProbeTracker`: initialDelaySeconds,
periodSeconds, success and failure thresholds) are the kubelet's plan's, node/kubeletplan.py.
"""

from __future__ import annotations

import http.client
import socket
import subprocess

__all__ = ["resolve_port", "run_probe"]


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
