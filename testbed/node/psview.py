"""Pure: a `docker ps`-like listing of pods' pause processes and containers, node by node.

It reads the state the kubelets of a running cluster save (emu/rundir.kubelet_ps_state), so
`testbed ps` works from another terminal, and the CLI's `ps` shows the same. Names follow the kubelet's dockershim
form, k8s_<container>_<pod>_<namespace>_<uid>_<attempt>, with POD for the pause container.
"""

from __future__ import annotations

from collections.abc import Callable

PAUSE_IMAGE = "registry.k8s.io/pause (testbed-pause)"
HEADER = ("NODE", "PID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"Up {seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 3600:
        return f"Up {seconds // 60} minute{'s' if seconds >= 120 else ''}"
    return f"Up {seconds // 3600} hour{'s' if seconds >= 7200 else ''}"


def ps_rows(state: dict, node: str | None, now: float, alive: Callable[[int | None, int | None], bool]) -> list[tuple]:
    rows = []
    for pod in sorted(state.get("pods", []), key=lambda p: (p["node"], p["namespace"], p["name"])):
        if node and pod["node"] != node:
            continue
        uid = pod.get("uid", "")[:8]
        pause = pod["pause"]
        status = _uptime(now - pod.get("created", now)) if alive(pause["pid"], pause.get("start")) else "Exited"
        rows.append((pod["node"], str(pause["pid"]), PAUSE_IMAGE, '"/pause"', status, f"{pod['ip']}",
                     f"k8s_POD_{pod['name']}_{pod['namespace']}_{uid}_0"))
        for c in pod["containers"]:
            running = alive(c.get("pid"), c.get("start"))
            rows.append((pod["node"], str(c.get("pid") or "-"), _short(c.get("image", ""), 40),
                         '"' + _short(" ".join(c["argv"]), 38) + '"',
                         _uptime(now - pod.get("created", now)) if running else "Exited",
                         ", ".join(c.get("ports", [])) or "-",
                         f"k8s_{c['name']}_{pod['name']}_{pod['namespace']}_{uid}_0"))
    return rows


def format_rows(rows: list[tuple]) -> str:
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)
