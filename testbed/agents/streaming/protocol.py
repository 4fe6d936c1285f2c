"""Pure: what an exec, attach or port-forward request asks for, whether the pod can give it,
which protocol version is spoken, and the Status objects the error stream carries.

Upstream splits this between the API server (pod and container checks: pkg/registry/core/pod
streamLocation) and the kubelet (k8s.io/kubelet/cri/streaming: stream options, protocol
handshakes, the v4 Status on the error stream). The messages are theirs, so clients print what
they print against a real cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from testbed.api.failures import ApiFailure

# remotecommand (exec, attach) subprotocols, newest first. Over SPDY they are offered in
# X-Stream-Protocol-Version (the kubelet speaks v1-v4); over WebSocket in Sec-WebSocket-Protocol:
# v5 (an explicit stdin close; the API server's own translator) and the kubelet's v4 and
# pre-v4 channel protocols, each also base64-encoded for text-only clients.
V5, V4, V3, V2, V1 = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                      "v2.channel.k8s.io", "channel.k8s.io")
BASE64_V4, BASE64_V1 = "v4.base64.channel.k8s.io", "base64.channel.k8s.io"
SPDY_REMOTECOMMAND = (V4, V3, V2, V1)
WS_REMOTECOMMAND = (V5, V4, BASE64_V4, V1, BASE64_V1)
PORTFORWARD = "portforward.k8s.io"
SPDY_PORTFORWARD = (PORTFORWARD,)
TUNNEL_PREFIX = "SPDY/3.1+"                       # SPDY inside WebSocket (kubectl 1.30+)
WS_TUNNEL_PORTFORWARD = (TUNNEL_PREFIX + PORTFORWARD,)
WS_PORTFORWARD = (V4, BASE64_V4, V1, BASE64_V1)   # the kubelet's channel-per-port protocol

# WebSocket channel numbers (and SPDY stream types) of remotecommand
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                "resize": RESIZE}
CLOSE_SIGNAL = 255                                 # v5: [255, channel] half-closes a channel


def version_of(protocol: str) -> int:
    """v5.channel.k8s.io -> 5, v4.base64... -> 4, channel.k8s.io -> 1."""
    head = protocol.split(".", 1)[0]
    return int(head[1:]) if head[:1] == "v" and head[1:].isdigit() else 1


def is_base64(protocol: str) -> bool:
    return ".base64." in f".{protocol}"


@dataclass(frozen=True)
class Stdio:
    """Which standard streams a session carries; with a tty, stderr is merged into stdout."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False


@dataclass(frozen=True)
class StreamRequest:
    """An exec or attach request's options (PodExecOptions / PodAttachOptions)."""

    container: str
    command: tuple[str, ...]
    stdio: Stdio


def _bool(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[-1].lower() in ("1", "t", "true")


def stream_request(subresource: str, query: dict[str, list[str]]) -> StreamRequest:
    """The options of an exec or attach query; ApiFailure(400) for what upstream refuses."""
    tty = _bool(query, "tty")
    # as the kubelet: a tty carries stderr on stdout, so a stderr stream is never opened
    stdio = Stdio(_bool(query, "stdin"), _bool(query, "stdout"),
                  _bool(query, "stderr") and not tty, tty)
    if not (stdio.stdin or stdio.stdout or stdio.stderr):
        raise ApiFailure(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    command = tuple(query.get("command") or [])
    if subresource == "exec" and not command:
        raise ApiFailure(400, "BadRequest",
                         "you must specify at least one command for the container")
    return StreamRequest((query.get("container") or [""])[-1], command, stdio)


def choose_container(pod: dict, requested: str) -> str:
    """The container a request names, or the pod's only one; ApiFailure(400) as upstream."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    others = [c["name"] for key in ("initContainers", "ephemeralContainers")
              for c in spec.get(key) or []]
    if requested:
        if requested not in containers + others:
            raise ApiFailure(400, "BadRequest", f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise ApiFailure(400, "BadRequest", f"a container name must be specified for pod {name}")
    text = (f"a container name must be specified for pod {name}, "
            f"choose one of: [{' '.join(containers)}]")
    if spec.get("initContainers"):
        inits = " ".join(c["name"] for c in spec["initContainers"])
        text += f" or one of the init containers: [{inits}]"
    raise ApiFailure(400, "BadRequest", text)


def check_pod(pod: dict, subresource: str, container: str | None) -> None:
    """Refuse (ApiFailure 400) a pod that cannot be streamed to: no node yet, finished, or (for
    exec and attach) the container is not running."""
    name = pod["metadata"]["name"]
    if not (pod.get("spec") or {}).get("nodeName"):
        raise ApiFailure(400, "BadRequest", f"pod {name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase in ("Succeeded", "Failed"):
        verb = {"exec": "exec into", "attach": "attach to"}.get(subresource)
        text = (f"cannot {verb} a container in a completed pod; current phase is {phase}"
                if verb else f"unable to forward port because pod is not running. "
                             f"Current status={phase}")
        raise ApiFailure(400, "BadRequest", text)
    if phase != "Running":
        raise ApiFailure(400, "BadRequest", f"pod {name} is not running (phase {phase})")
    if container is None:
        return
    statuses = [*((pod.get("status") or {}).get("containerStatuses") or []),
                *((pod.get("status") or {}).get("initContainerStatuses") or [])]
    if not any(s.get("name") == container and "running" in (s.get("state") or {})
               for s in statuses):
        # the kubelet's words when the runtime has no running container of that name
        raise ApiFailure(400, "BadRequest", f'container not found ("{container}")')


def forward_ports(query: dict[str, list[str]]) -> list[int]:
    """The ports of a WebSocket port-forward: `ports` as the API server's PodPortForwardOptions
    name them, `port` as the kubelet's; repeated or comma-separated."""
    ports = []
    for value in (query.get("ports") or []) + (query.get("port") or []):
        for text in value.split(","):
            if not text.strip().isdigit() or int(text) > 65535:
                raise ApiFailure(400, "BadRequest", f"unable to parse {text!r} as a port")
            if int(text) < 1:
                raise ApiFailure(400, "BadRequest", f"port {text!r} must be > 0")
            ports.append(int(text))
    if not ports:
        raise ApiFailure(400, "BadRequest", 'query parameter "port" is required')
    return ports


# -- what the error stream carries -----------------------------------------------------------------

SUCCESS = {"metadata": {}, "status": "Success"}


def exit_status(code: int, argv: tuple[str, ...] | list[str]) -> dict:
    """The metav1.Status that ends an exec: Success, or NonZeroExitCode with the ExitCode
    cause that kubectl turns into its own exit code."""
    if code == 0:
        return SUCCESS
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: command "
                       f"'{' '.join(argv)}' exited with {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> dict:
    """The Status of a session the runtime could not run (upstream: NewInternalError)."""
    return {"metadata": {}, "status": "Failure",
            "message": f"Internal error occurred: {message}", "reason": "InternalError",
            "details": {"causes": [{"message": message}]}, "code": 500}


def error_stream_bytes(status: dict, version: int) -> bytes:
    """v4 and v5 send the Status as JSON; v1-v3 send the message of a failure and nothing on
    success (kubelet's v1WriteStatusFunc)."""
    if version >= 4:
        return json.dumps(status).encode()
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()


def parse_resizes(buffer: bytes) -> tuple[list[tuple[int, int]], bytes]:
    """Terminal sizes {"Width","Height"} from a resize stream's bytes (JSON values back to back,
    as Go's json.Encoder writes them): the whole ones as (width, height), and what is left."""
    decoder = json.JSONDecoder()
    text, sizes, at = buffer.decode(errors="replace"), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return sizes, text[at:].encode()
        at = end
        if isinstance(value, dict):
            sizes.append((int(value.get("Width") or 0), int(value.get("Height") or 0)))
