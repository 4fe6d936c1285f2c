"""The kubelet's state file (emu/kubeletstate.py): the typed model both ways, the file format
others read, forgiving reads, and the views built on it (sandboxes, `testbed ps`)."""

from __future__ import annotations

import json

from testbed.emu.kubeletstate import (
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
