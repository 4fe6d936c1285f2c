"""The kubelet's state file (emu/rundir.py): the typed model both ways, the file format
others read, forgiving reads, and the views built on it (sandboxes, `testbed ps`)."""

from __future__ import annotations

import json

from testbed.emu.rundir import (
    SavedAttachment,
    SavedContainer,
    SavedPod,
    kubelet_nodes,
    kubelet_ps_state,
    kubelet_state_path,
    read_kubelet_state,
    sandboxes,
    write_kubelet_state,
)
from testbed.node.psview import ps_rows

MANIFEST = {"metadata": {"namespace": "default", "name": "web", "uid": "u-1"},
            "spec": {"containers": [{"name": "c", "image": "agnhost", "args": ["netexec"],
                                     "ports": [{"containerPort": 8080}]}]}}

# An entry exactly as the kubelet has always written it (Kubelet.save before the typed model).
ENTRY = {"namespace": "default", "name": "web", "uid": "u-1", "created": 1700000000.5,
         "pause": [4242, 777], "attachment": ["10.0.1.2", 24, "10.0.1.1", "veth1234abcd"],
         "containers": {"c": {"pid": 4250, "start": 780, "startedAt": 1700000001.0,
                              "restartCount": 2, "exitCode": None}},
         "manifest": MANIFEST}


def test_the_file_format_reads_into_the_model_and_writes_back_unchanged(tmp_path):
    kubelet_state_path(tmp_path, "w1").write_text(json.dumps({"u-1": ENTRY}))
    pod = read_kubelet_state(tmp_path, "w1")["u-1"]
    assert pod == SavedPod("u-1", "default", "web", 1700000000.5, 4242, 777,
                           SavedAttachment("10.0.1.2", 24, "10.0.1.1", "veth1234abcd"),
                           {"c": SavedContainer(4250, 780, 1700000001.0, 2, None)}, MANIFEST, "w1")
    assert (pod.key, pod.ip, pod.container_spec("c")["image"], pod.container_spec("x")) == (
        "default/web", "10.0.1.2", "agnhost", None)
    write_kubelet_state(tmp_path, "w2", {"u-1": pod})
    assert json.loads(kubelet_state_path(tmp_path, "w2").read_text()) == {"u-1": ENTRY}
    assert not kubelet_state_path(tmp_path, "w2").with_suffix(".tmp").exists()


def test_reads_forgive_a_missing_or_cut_file_and_missing_fields(tmp_path):
    assert read_kubelet_state(tmp_path, "w1") == {}
    kubelet_state_path(tmp_path, "w1").write_text('{"u-1": {"namesp')
    assert read_kubelet_state(tmp_path, "w1") == {}
    kubelet_state_path(tmp_path, "w1").write_text("[]")
    assert read_kubelet_state(tmp_path, "w1") == {}
    kubelet_state_path(tmp_path, "w1").write_text(json.dumps(
        {"u-1": {"containers": {"c": {"pid": 5}}}, "u-2": None}))
    state = read_kubelet_state(tmp_path, "w1")
    assert state["u-1"].containers == {"c": SavedContainer(5)}
    assert (state["u-1"].pause_pid, state["u-1"].attachment, state["u-1"].manifest) == (None, None, {})
    assert state["u-2"] == SavedPod("u-2", node="w1")


def test_nodes_and_sandboxes_across_state_files(tmp_path):
    write_kubelet_state(tmp_path, "w2", {"u-2": SavedPod("u-2", "default", "b")})
    write_kubelet_state(tmp_path, "w1", {"u-1": SavedPod("u-1", "default", "a")})
    assert kubelet_nodes(tmp_path) == ["w1", "w2"]
    found = sandboxes(tmp_path, ["w1", "w2", "w3"])
    assert {uid: (p.name, p.node) for uid, p in found.items()} == {"u-1": ("a", "w1"),
                                                                    "u-2": ("b", "w2")}


def test_ps_state_lists_pause_and_containers_for_testbed_ps(tmp_path):
    kubelet_state_path(tmp_path, "w1").write_text(json.dumps({"u-1": ENTRY}))
    state = kubelet_ps_state("article", tmp_path, ["w1"])
    (entry,) = state["pods"]
    assert state["cluster"] == "article"
    assert (entry["node"], entry["ip"], entry["pause"]) == ("w1", "10.0.1.2", {"pid": 4242, "start": 777})
    (c,) = entry["containers"]
    assert (c["name"], c["pid"], c["image"], c["ports"]) == ("c", 4250, "agnhost", ["8080/TCP"])
    rows = ps_rows(state, None, 1700000010.0, lambda pid, start: True)
    assert [r[6] for r in rows] == ["k8s_POD_web_default_u-1_0", "k8s_c_web_default_u-1_0"]


# -- the rest of the run directory: paths, owner, cluster info, kube-proxy's status ----------

def test_every_path_of_a_run_directory(tmp_path):
    from testbed.emu import rundir

    assert rundir.record_log(tmp_path) == tmp_path / "record.jsonl"
    assert rundir.cluster_file(tmp_path) == tmp_path / "cluster.json"
    assert rundir.api_socket(tmp_path) == tmp_path / "apiserver.sock"
    assert rundir.api_state(tmp_path) == tmp_path / "apiserver.state"
    assert rundir.control_socket(tmp_path) == tmp_path / "control.sock"
    assert rundir.agent_log(tmp_path, "kubelet-w1") == tmp_path / "logs" / "kubelet-w1.log"
    pod = rundir.pod_directory(tmp_path, "default", "web")
    assert pod == tmp_path / "pods" / "default_web"
    assert rundir.container_log(pod, "c", previous=True) == pod / "c" / "log.previous"
    assert rundir.kubelet_state_path(tmp_path, "w1") == tmp_path / "kubelet-w1.json"
    assert rundir.proxy_directory(tmp_path, "w1") == tmp_path / "proxy" / "w1"
    assert rundir.netpol_directory(tmp_path, "w1") == tmp_path / "netpol" / "w1"


def test_a_pods_container_logs_this_runs_before_the_previous(tmp_path):
    from testbed.emu import rundir

    pod = rundir.pod_directory(tmp_path, "default", "web")
    for container, previous in (("web", True), ("web", False), ("sidecar", False), ("idle", None)):
        rundir.container_directory(pod, container).mkdir(parents=True, exist_ok=True)
        if previous is not None:
            rundir.container_log(pod, container, previous).write_text("x\n")
    rundir.pod_file(pod, rundir.POD_HOSTS).write_text("127.0.0.1 localhost\n")
    assert list(rundir.container_logs(pod)) == [
        ("sidecar", rundir.container_log(pod, "sidecar")), ("web", rundir.container_log(pod, "web")),
        ("web", rundir.container_log(pod, "web", previous=True))]
    assert list(rundir.container_logs(rundir.pod_directory(tmp_path, "default", "gone"))) == []


def test_owner_and_cluster_info_round_trip_and_read_forgivingly(tmp_path):
    from testbed.emu import rundir

    assert rundir.read_owner(tmp_path) == {} and rundir.read_cluster_info(tmp_path) == {}
    rundir.write_owner(tmp_path, 12, 345, "demo")
    assert rundir.read_owner(tmp_path) == {"pid": 12, "start": 345, "name": "demo"}
    rundir.write_cluster_info(tmp_path, {"name": "demo", "hosts": []})
    assert rundir.read_cluster_info(tmp_path) == {"name": "demo", "hosts": []}
    rundir.cluster_file(tmp_path).write_text('{"name": "de')          # cut short by a kill
    assert rundir.read_cluster_info(tmp_path) == {}
    assert not list(tmp_path.glob("*.tmp"))


def test_the_kube_proxy_status_file_both_ways(tmp_path):
    from testbed.emu import rundir

    assert rundir.read_proxy_status(tmp_path, "w1") is None
    state = rundir.proxy_directory(tmp_path, "w1")
    state.mkdir(parents=True)
    status = rundir.ProxyStatus("nftables", "w1", 99, 3, 1.5, {"ok": True, "full": False}, 7,
                                2, 1.25, 3600.0)
    rundir.write_proxy_status(state, status)
    assert json.loads((state / "kube-proxy.json").read_text()) == {
        "mode": "nftables", "node": "w1", "pid": 99, "syncs": 3, "time": 1.5,
        "last": {"ok": True, "full": False}, "services": 7,
        "full_syncs": 2, "last_full": 1.25, "full_sync_period": 3600.0}
    assert rundir.read_proxy_status(tmp_path, "w1") == status
    # a file written before full syncs were counted still reads, with none counted
    (state / "kube-proxy.json").write_text(json.dumps({
        "mode": "iptables", "node": "w1", "pid": 99, "syncs": 3, "time": 1.5, "last": None,
        "services": 7}))
    old = rundir.read_proxy_status(tmp_path, "w1")
    assert old == rundir.ProxyStatus("iptables", "w1", 99, 3, 1.5, None, 7)
    assert (old.full_syncs, old.last_full, old.full_sync_period) == (0, 0.0, 0.0)
    (state / "kube-proxy.json").write_text('{"syncs": 1}')              # no mode: not a status
    assert rundir.read_proxy_status(tmp_path, "w1") is None


def test_the_netpol_status_file_both_ways(tmp_path):
    from testbed.emu import rundir

    assert rundir.read_netpol_status(tmp_path, "w1") is None          # before the first sync
    state = rundir.netpol_directory(tmp_path, "w1")
    state.mkdir(parents=True)
    status = rundir.NetpolStatus("iptables", "w1", 42, 5, 2.5, {"ok": True, "rules": 12}, 3, 4, 2,
                                 {"Pod": [9, 77], "Namespace": [3, 12]})
    rundir.write_netpol_status(state, status)
    assert json.loads((state / "netpol.json").read_text()) == {
        "mode": "iptables", "node": "w1", "pid": 42, "syncs": 5, "time": 2.5,
        "last": {"ok": True, "rules": 12}, "policies": 3, "pods": 4, "generation": 2,
        "caught_up": {"Pod": [9, 77], "Namespace": [3, 12]}}
    assert rundir.read_netpol_status(tmp_path, "w1") == status
    assert not list(state.glob("*.tmp"))
    assert rundir.read_netpol_status(tmp_path, "w2") is None          # another node's: none
    later = rundir.NetpolStatus("iptables", "w1", 43, 1, 3.0, None, 3, 4, 3)
    rundir.write_netpol_status(state, later)                          # replaced whole
    assert rundir.read_netpol_status(tmp_path, "w1") == later
    (state / "netpol.json").write_text('{"mode": "nftables", "node": "w1", "pi')   # cut short
    assert rundir.read_netpol_status(tmp_path, "w1") is None
    (state / "netpol.json").write_text('{"syncs": 1}')                 # no mode: not a status
    assert rundir.read_netpol_status(tmp_path, "w1") is None
    (state / "netpol.json").write_text('{"mode": "nftables", "pid": "x"}')          # not a number
    assert rundir.read_netpol_status(tmp_path, "w1") is None
    (state / "netpol.json").write_text('{"mode": "nftables", "caught_up": {"Pod": [1]}}')   # short
    assert rundir.read_netpol_status(tmp_path, "w1") is None
    (state / "netpol.json").write_text('{"mode": "nftables"}')        # missing fields: defaults
    assert rundir.read_netpol_status(tmp_path, "w1") == rundir.NetpolStatus("nftables", "", 0)


RUN_FILE_NAMES = ("record.jsonl", "owner.json", "cluster.json", "apiserver.sock", "apiserver.state",
                  "control.sock", "kube-proxy.json", "netpol.json", "kubelet-", "log.previous",
                  "resolv.conf")


def test_no_module_but_rundir_spells_a_run_directory_file_name():
    """One owner: a file name of the run directory appears in code (not docstrings, comments
    or prose such as help texts) only in emu/rundir.py."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "testbed"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef |
                                    ast.AsyncFunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr)
                      and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and not any(c.isspace() for c in node.value)
                    and any(name in node.value for name in RUN_FILE_NAMES)):   # a name, not prose
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value!r}")
    assert not found, "run directory file names spelled outside emu/rundir.py:\n" + "\n".join(found)
