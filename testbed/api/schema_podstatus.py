"""Pure: the schema of a Pod's status (core/v1 PodStatus, PodCondition, ContainerStatus,
ContainerState...), under upstream's definition names.

The kubelet writes these (testbed/api/podstatus.py builds them); the schema lists every field
it writes and upstream's other common ones, so that pruning unknown fields never drops what
the testbed itself stores. Patch and list metadata are upstream's. No I/O.
"""

from __future__ import annotations

from testbed.api.schema_base import (
    ATOMIC,
    CORE,
    TypeDef,
    boolean,
    int32,
    int64,
    merge_list,
    obj,
    objects,
    string,
    string_map,
    time,
    typedef,
)

TYPES: tuple[TypeDef, ...] = (
    typedef(
        CORE + "PodStatus",
        "What the kubelet last observed of a pod.",
        int64("observedGeneration", "The pod generation the kubelet acted on."),
        string("phase", "Where the pod is in its life: Pending (not every container has run "
               "yet), Running, Succeeded or Failed (every container ended, under a policy that "
               "does not restart them), or Unknown.",
               enum=("Failed", "Pending", "Running", "Succeeded", "Unknown")),
        objects("conditions", CORE + "PodCondition", "PodScheduled, Initialized, "
                "ContainersReady and Ready, each True or False with the time it last changed.",
                **merge_list("type")),
        string("message", "Why the pod is in its state, for people."),
        string("reason", "Why the pod is in its state, in CamelCase (e.g. Evicted)."),
        string("nominatedNodeName", "A node the scheduler made room on by preemption."),
        string("hostIP", "IP of the node the pod runs on."),
        objects("hostIPs", CORE + "HostIP", "IPs of the node the pod runs on.",
                patch_strategy="merge", patch_merge_key="ip", list_type="atomic"),
        string("podIP", "The pod's IP, from its node's pod CIDR; empty until the sandbox is "
               "up."),
        objects("podIPs", CORE + "PodIP", "The pod's IPs (one per family).",
                **merge_list("ip")),
        time("startTime", "When the kubelet accepted the pod, before its containers started."),
        objects("initContainerStatuses", CORE + "ContainerStatus", "One status per init "
                "container.", **ATOMIC),
        objects("containerStatuses", CORE + "ContainerStatus", "One status per container.",
                **ATOMIC),
        string("qosClass", "Guaranteed, Burstable or BestEffort, from the containers' "
               "requests and limits.", enum=("BestEffort", "Burstable", "Guaranteed")),
        objects("ephemeralContainerStatuses", CORE + "ContainerStatus", "One status per "
                "ephemeral container.", **ATOMIC),
    ),
    typedef(
        CORE + "PodCondition",
        "One condition of a pod.",
        string("type", "PodScheduled, Initialized, ContainersReady, Ready, or a readiness "
               "gate's type.", required=True),
        int64("observedGeneration", "The pod generation the condition was set from."),
        string("status", "True, False or Unknown.", required=True),
        time("lastProbeTime", "When the condition was last checked."),
        time("lastTransitionTime", "When the status last changed."),
        string("reason", "Why the condition last changed, in CamelCase (e.g. "
               "ContainersNotReady)."),
        string("message", "Why the condition last changed, for people."),
    ),
    typedef(
        CORE + "PodIP",
        "One IP address of a pod.",
        string("ip", "The address.", required=True),
    ),
    typedef(
        CORE + "HostIP",
        "One IP address of a pod's node.",
        string("ip", "The address.", required=True),
    ),
    typedef(
        CORE + "ContainerStatus",
        "What the kubelet observed of one container.",
        string("name", "The container's name.", required=True),
        obj("state", CORE + "ContainerState", "The container's current state."),
        obj("lastState", CORE + "ContainerState", "How the previous run ended, if it was "
            "restarted."),
        boolean("ready", "Whether the readiness probe passes (True without a probe once "
                "running).", required=True),
        int32("restartCount", "How many times the container was restarted.", required=True),
        string("image", "The image the container runs.", required=True),
        string("imageID", "The image's ID; empty in the testbed.", required=True),
        string("containerID", "The container's ID, as <runtime>://<id>; the testbed uses "
               "testbed://<pid>."),
        boolean("started", "Whether the container has started and passed its startup probe."),
        string_map("allocatedResources", "Resources allocated to the container (quantities)."),
    ),
    typedef(
        CORE + "ContainerState",
        "A container's state: exactly one of waiting, running or terminated.",
        obj("waiting", CORE + "ContainerStateWaiting", "Not running yet, or waiting to be "
            "restarted."),
        obj("running", CORE + "ContainerStateRunning", "Running."),
        obj("terminated", CORE + "ContainerStateTerminated", "Ended."),
    ),
    typedef(
        CORE + "ContainerStateWaiting",
        "A container that is not running.",
        string("reason", "Why, in CamelCase: ContainerCreating, CrashLoopBackOff, ..."),
        string("message", "Why, for people."),
    ),
    typedef(
        CORE + "ContainerStateRunning",
        "A running container.",
        time("startedAt", "When the current run started."),
    ),
    typedef(
        CORE + "ContainerStateTerminated",
        "An ended container.",
        int32("exitCode", "Its exit code; 128 + N when killed by signal N.", required=True),
        int32("signal", "The signal that ended it, if any."),
        string("reason", "Why it ended, in CamelCase: Completed, Error, OOMKilled, ..."),
        string("message", "Why it ended, for people."),
        time("startedAt", "When the run started."),
        time("finishedAt", "When the run ended."),
        string("containerID", "The ID of the ended container."),
    ),
)
