"""The benchmarks leave the machine as they found it: its mount table and /run/netns included."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.integration.conftest import ROOT


def _mounts() -> list[str]:
    """Mount points and their sources (not the ids, which count up)."""
    return sorted(" ".join(line.split()[3:5]) for line in Path("/proc/self/mountinfo").read_text()
                  .splitlines())


def _netns_files() -> list[str] | None:
    """The files of named network namespaces (None: no /run/netns at all)."""
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else None


def test_the_bringup_baseline_leaves_the_mount_table_as_it_was():
    spec = importlib.util.spec_from_file_location("bringup", ROOT / "bench" / "bringup.py")
    bringup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bringup)
    before, files = _mounts(), _netns_files()
    assert bringup.measure_baseline(5) > 0
    assert _mounts() == before
    assert _netns_files() == files     # ip netns add's files on /run are gone too


def test_the_bringup_benchmark_measures_the_cni_path_too():
    spec = importlib.util.spec_from_file_location("bringup", ROOT / "bench" / "bringup.py")
    bringup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bringup)
    builtin = bringup.measure_cluster(1, 3, "builtin")
    cni = bringup.measure_cluster(1, 3, "cni")
    # Real plugins are processes per pod (loopback, bridge, host-local, portmap): slower, and
    # measured in the same phase as the built-in network's.
    assert cni["phases"]["network"] > builtin["phases"]["network"] > 0


def _marked(marker: bytes) -> list[int]:
    """The processes that carry `marker` in their environment (inherited from a benchmark)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _bench(script: str, *args: str) -> str:
    """Run a benchmark as a person would (tiny sizes); its output. Nothing it started is left:
    no process that inherited its environment (pause holders, node shells, servers), so no
    namespace either (other sessions' namespaces on a shared machine are not its)."""
    marker = f"TESTBED_BENCH_SMOKE={uuid.uuid4().hex}"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, marker.split("=")[0]: marker.split("=")[1]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _marked(marker.encode()) == []
    return proc.stdout


def _rows(out: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| mode |")
            and not line.startswith("| policies |")]


def test_the_netpol_sync_benchmark_enforces_every_change_in_both_modes():
    out = _bench("netpol_sync.py", "--pods", "40", "--policies", "16", "--baseline-pods", "5",
                 "--baseline-policies", "1", "--repeat", "1")
    rows = _rows(out)
    changes = ["initial", "+policy", "pod labels", "ns labels", "-policy", "restart"]
    assert [(r[0], r[1]) for r in rows] == [(m, c) for m in ("iptables", "nftables") for c in changes]
    for row in rows:
        assert row[-1].startswith("yes"), row        # read back from the kernel after the sync
        what = row[-2]
        if row[1] in ("pod labels", "ns labels"):
            assert what.endswith("(sets only)") and what.startswith("0 / "), row
        elif row[1] in ("+policy", "-policy"):
            assert what.endswith("(rules)"), row
        else:
            assert what.endswith("(full)"), row
    assert "iptables, 40 pods / 16 policies: node w1 isolates" in out
    assert "nftables, 40 pods / 16 policies: node w1 isolates" in out


def test_the_netpol_datapath_benchmark_measures_selected_and_unselected_pods():
    out = _bench("netpol_datapath.py", "--policies", "3", "--samples", "5", "--seconds", "0.05",
                 "--streams", "1", "--rounds", "1")
    rows = _rows(out)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (n, m, p) for n, m in (("0", "-"), ("3", "iptables"), ("3", "nftables"))
        for p in ("same node", "across nodes")]
    for row in rows:
        assert all(float(x) > 0 for x in row[3].split(" / ") + row[4].split(" / ")), row
        assert float(row[6]) > 0 and float(row[7]) > 0, row
    # the server and client-a on w1 and the intruder are isolated there, client-b on w2
    assert "iptables 3: [3, 1]" in out and "nftables 3: [3, 1]" in out


def test_the_startup_benchmark_measures_all_three_and_the_run_passes(tmp_path):
    out = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--runs", "1",
                           "--topology", str(ROOT / "topologies" / "two-node.yaml"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "x baseline (target: 2x)" in proc.stdout and "testbed run, one-probe scenario" in proc.stdout
    import json

    [two_node] = json.loads(out.read_text())
    med = two_node["median"]
    assert two_node["name"] == "two-node" and two_node["workers"] == 2
    # each figure was measured: the cluster does more than its network and pods alone, and a
    # whole run more than the cluster's bring-up (it ran, and its probe passed, or it raised)
    assert 0 < med["baseline"] < med["cluster"] and med["teardown"] > 0 and med["run"] > 0
    assert set(two_node["phases"]) >= {"zygote", "network", "control plane"}
