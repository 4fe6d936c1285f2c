"""exec/attach/port-forward decisions (agents/streaming/protocol.py, pure) and how the emulated
runtime finds a pod's sandbox in the kubelet's state (agents/streaming/emulated.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testbed.agents.streaming import protocol as proto
from testbed.agents.streaming.emulated import EmulatedRuntime, exec_command, read_sandbox
from testbed.agents.streaming.runtime import StreamingError
from testbed.api.admission import ApiFailure
from testbed.emu.record import start_time


def pod(phase="Running", containers=("c",), running=("c",), node="w1", **spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {"nodeName": node, "containers": [{"name": n, "image": "busybox"}
                                                       for n in containers], **spec},
            "status": {"phase": phase, "containerStatuses": [
                {"name": n, "state": {"running": {}}} for n in running]}}


def test_versions_and_encodings():
    assert [proto.version_of(p) for p in proto.WS_REMOTECOMMAND] == [5, 4, 4, 1, 1]
    assert [proto.version_of(p) for p in proto.SPDY_REMOTECOMMAND] == [4, 3, 2, 1]
    assert [proto.is_base64(p) for p in proto.WS_REMOTECOMMAND] == [False, False, True, False,
                                                                    True]


def test_stream_request_as_the_kubelet_reads_it():
    query = {"command": ["sh", "-c", "true"], "stdin": ["true"], "stdout": ["1"],
             "stderr": ["true"], "tty": ["true"], "container": ["c"]}
    got = proto.stream_request("exec", query)
    # a tty carries stderr on stdout: no stderr stream is opened
    assert got == proto.StreamRequest("c", ("sh", "-c", "true"), proto.Stdio(True, True, False, True))
    with pytest.raises(ApiFailure, match="at least one command"):
        proto.stream_request("exec", {"stdout": ["true"]})
    with pytest.raises(ApiFailure, match="at least 1 of stdin, stdout, stderr"):
        proto.stream_request("exec", {"command": ["ls"]})
    assert proto.stream_request("attach", {"stdout": ["true"]}).command == ()


def test_container_choice_words_as_upstream():
    assert proto.choose_container(pod(), "") == "c"
    assert proto.choose_container(pod(containers=("c", "d")), "d") == "d"
    with pytest.raises(ApiFailure, match=r"^container nope is not valid for pod p$"):
        proto.choose_container(pod(), "nope")
    with pytest.raises(ApiFailure, match=r"choose one of: \[c d\]$"):
        proto.choose_container(pod(containers=("c", "d")), "")


@pytest.mark.parametrize("the_pod,sub,message", [
    (pod(node=""), "exec", "pod p does not have a host assigned"),
    (pod("Succeeded"), "exec",
     "cannot exec into a container in a completed pod; current phase is Succeeded"),
    (pod("Failed"), "attach",
     "cannot attach to a container in a completed pod; current phase is Failed"),
    (pod("Failed"), "portforward",
     "unable to forward port because pod is not running. Current status=Failed"),
    (pod("Pending"), "exec", "pod p is not running (phase Pending)"),
    (pod(running=()), "exec", 'container not found ("c")'),
])
def test_pods_that_cannot_be_streamed_to(the_pod, sub, message):
    with pytest.raises(ApiFailure) as err:
        proto.check_pod(the_pod, sub, None if sub == "portforward" else "c")
    assert err.value.code == 400 and err.value.message == message


def test_a_running_pod_passes():
    proto.check_pod(pod(), "exec", "c")
    proto.check_pod(pod(running=()), "portforward", None)   # port-forward needs no container


def test_exit_status_is_what_kubectl_reads_its_exit_code_from():
    assert proto.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = proto.exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    # v4+ send the Status as JSON, older versions the failure's message (and nothing on success)
    assert json.loads(proto.error_stream_bytes(failed, 4)) == failed
    assert proto.error_stream_bytes(failed, 3) == failed["message"].encode()
    assert proto.error_stream_bytes(proto.SUCCESS, 1) == b""


def test_resize_events_split_anywhere():
    sizes, rest = proto.parse_resizes(b'{"Width":80,"Height":24}\n{"Width":1')
    assert sizes == [(80, 24)] and rest == b'{"Width":1'
    sizes, rest = proto.parse_resizes(rest + b'20,"Height":40}\n')
    assert sizes == [(120, 40)] and rest == b""


def test_forward_ports_from_the_query():
    assert proto.forward_ports({"ports": ["80,8080"], "port": ["9"]}) == [80, 8080, 9]
    with pytest.raises(ApiFailure):
        proto.forward_ports({"ports": ["http"]})
    with pytest.raises(ApiFailure):
        proto.forward_ports({})


# -- the emulated runtime's sandbox lookup ---------------------------------------------------------

def kubelet_state(run: Path, pause: list, containers: dict | None = None) -> None:
    """A kubelet-w1.json as Kubelet.save writes it (uid -> Pod.to_state + manifest)."""
    manifest = {"metadata": {"name": "p", "namespace": "default"},
                "spec": {"hostname": "web", "containers": [
                    {"name": "c", "image": "python:2.7", "workingDir": "/no/such/dir",
                     "env": [{"name": "GREETING", "value": "hi"}]}]}}
    state = {"u-1": {"namespace": "default", "name": "p", "uid": "u-1", "created": 0,
                     "pause": pause, "attachment": None, "containers": containers or {},
                     "manifest": manifest}}
    (run / "kubelet-w1.json").write_text(json.dumps(state))


def test_sandbox_found_by_node_and_uid(tmp_path):
    me = [os.getpid(), start_time(os.getpid())]
    kubelet_state(tmp_path, me, {"c": {"pid": me[0], "start": me[1]}})
    sandbox = EmulatedRuntime(tmp_path).sandbox(pod())
    assert (sandbox.pause_pid, sandbox.node) == (os.getpid(), "w1")
    assert sandbox.directory == tmp_path / "pods" / "default_p"
    argv, env = exec_command(sandbox, "c", ["sh", "-c", "id"], True, "/bin/testbed-pause")
    assert argv[:3] == ["/bin/testbed-pause", "enter", str(os.getpid())]
    assert f"{tmp_path}/pods/default_p/hostname:/etc/hostname" in argv
    assert "--sysfs" in argv
    assert argv[argv.index("--chdir") + 1] == str(tmp_path / "pods" / "default_p" / "c")
    assert argv[-4:] == ["--", "sh", "-c", "id"]
    assert env["HOSTNAME"] == "web" and env["GREETING"] == "hi" and env["TERM"] == "xterm"
    assert env["PATH"].split(":")[0].endswith("shims/python2")   # the image's PATH, as the kubelet


def test_sandbox_lookup_failures(tmp_path):
    with pytest.raises(StreamingError, match="has no sandbox on node w1"):
        read_sandbox(tmp_path, pod())    # no kubelet state (yet): no sandbox
    kubelet_state(tmp_path, [os.getpid(), start_time(os.getpid())])
    other = pod()
    other["metadata"]["uid"] = "u-2"   # a pod recreated under the same name is another pod
    with pytest.raises(StreamingError, match="has no sandbox on node w1"):
        read_sandbox(tmp_path, other)
    kubelet_state(tmp_path, [os.getpid(), 1])   # the pid was reused: a different start time
    with pytest.raises(StreamingError, match="is not running"):
        EmulatedRuntime(tmp_path).sandbox(pod())


def test_attach_refuses_input_and_dead_containers(tmp_path):
    me = [os.getpid(), start_time(os.getpid())]
    kubelet_state(tmp_path, me, {"c": {"pid": me[0], "start": 1}})
    runtime = EmulatedRuntime(tmp_path)
    with pytest.raises(StreamingError, match="stdin from /dev/null"):
        runtime.attach(pod(), "c", proto.Stdio(stdin=True))
    with pytest.raises(StreamingError, match="container c of pod default/p is not running"):
        runtime.attach(pod(), "c", proto.Stdio())
