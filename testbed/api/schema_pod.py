"""Pure: the schema of Pods (core/v1): Pod, PodSpec, Container and the types under them, and
PodTemplateSpec, under upstream's definition names.

The fields are those the testbed serves and validates (testbed/api/pods.py takes its allowed
field sets from here); types it does not look inside (affinity, security contexts, lifecycle
hooks, most volume sources) are free-form objects. Patch and list metadata are upstream's.
Pod status types are in schema_podstatus.py. No I/O.
"""

from __future__ import annotations

from testbed.api.schema_base import (
    ATOMIC,
    CORE,
    META,
    Field,
    TypeDef,
    boolean,
    int32,
    int64,
    int_or_string,
    kind_header,
    merge_list,
    obj,
    objects,
    string,
    string_map,
    strings,
    typedef,
)

PROTOCOLS = ("SCTP", "TCP", "UDP")


def _free(name: str, description: str) -> TypeDef:
    return typedef(CORE + name, description, free_form=True)


def _port(name: str, description: str) -> Field:
    return int_or_string(name, description, required=True)


TYPES: tuple[TypeDef, ...] = (
    typedef(
        CORE + "Pod",
        "A group of containers that share one network namespace (one IP) and run together on "
        "one node. In the testbed a pod is a pause process holding namespaces, with a veth "
        "into its node's cbr0 bridge.",
        *kind_header("Pod", "pod"),
        obj("spec", CORE + "PodSpec", "What the pod runs: its containers, restart policy, "
            "node and DNS settings."),
        obj("status", CORE + "PodStatus", "What the kubelet last observed: phase, conditions, "
            "IPs and container states. Read-only to users."),
        gvk=("", "v1", "Pod"),
    ),
    typedef(
        CORE + "PodTemplateSpec",
        "The pods a workload controller creates: their metadata and spec.",
        obj("metadata", META + "ObjectMeta", "Metadata given to each pod, chiefly its labels, "
            "which the owner's selector must match."),
        obj("spec", CORE + "PodSpec", "The spec of each pod."),
    ),
    typedef(
        CORE + "PodSpec",
        "The desired state of a pod.",
        objects("volumes", CORE + "Volume", "Volumes the containers may mount.",
                patch_strategy="merge,retainKeys", patch_merge_key="name", list_type="map",
                list_map_keys=("name",)),
        objects("initContainers", CORE + "Container", "Containers run one after another, each "
                "to completion, before the regular containers start.", **merge_list("name")),
        objects("containers", CORE + "Container", "The pod's containers; at least one. They "
                "share the pod's IP, so two containers may not declare the same port.",
                required=True, **merge_list("name")),
        string("restartPolicy", "Which ended containers the kubelet restarts: Always (the "
               "default), OnFailure (those that exited non-zero) or Never.",
               enum=("Always", "Never", "OnFailure")),
        int64("terminationGracePeriodSeconds", "Seconds between SIGTERM and SIGKILL when the pod "
              "is deleted. Defaults to 30; 0 kills at once."),
        int64("activeDeadlineSeconds", "Seconds the pod may be active before the kubelet fails "
              "it."),
        string("dnsPolicy", "How the pod's resolv.conf is made: ClusterFirst (the cluster DNS, "
               "the default), ClusterFirstWithHostNet, Default (the node's) or None (only "
               "dnsConfig).", enum=("ClusterFirst", "ClusterFirstWithHostNet", "Default",
                                     "None")),
        string_map("nodeSelector", "Labels a node must have for the pod to be scheduled on it.",
                   map_type="atomic"),
        string("serviceAccountName", "The service account the pod runs as."),
        string("serviceAccount", "Deprecated alias of serviceAccountName."),
        boolean("automountServiceAccountToken", "Whether a service account token is mounted."),
        string("nodeName", "The node the pod runs on. Set by the scheduler; setting it yourself "
               "bypasses scheduling."),
        boolean("hostNetwork", "Run in the node's network namespace instead of the pod's own; "
                "the pod's IP is then the node's."),
        boolean("shareProcessNamespace", "Share one PID namespace between the containers."),
        obj("securityContext", CORE + "PodSecurityContext", "Pod-wide security settings (user, "
            "group, sysctls). Accepted, not enforced by the testbed."),
        objects("imagePullSecrets", CORE + "LocalObjectReference", "Secrets used to pull "
                "images. Not used by the testbed (images are local programs).",
                **merge_list("name")),
        string("hostname", "The pod's hostname; defaults to the pod's name."),
        string("subdomain", "With hostname, gives the pod the DNS name "
               "<hostname>.<subdomain>.<namespace>.svc.<cluster domain> behind a headless "
               "Service of that name."),
        obj("affinity", CORE + "Affinity", "Node and pod affinity rules. Accepted, not used by "
            "the testbed's scheduler."),
        string("schedulerName", "The scheduler that places the pod."),
        objects("tolerations", CORE + "Toleration", "Taints the pod tolerates.", **ATOMIC),
        objects("hostAliases", CORE + "HostAlias", "Extra /etc/hosts entries.",
                **merge_list("ip")),
        string("priorityClassName", "Name of the pod's PriorityClass."),
        int32("priority", "The pod's priority, resolved from priorityClassName."),
        obj("dnsConfig", CORE + "PodDNSConfig", "Extra resolv.conf settings, merged with what "
            "dnsPolicy gives."),
        objects("readinessGates", CORE + "PodReadinessGate", "Extra conditions that must be "
                "True for the pod to be Ready.", **ATOMIC),
        boolean("enableServiceLinks", "Whether Services are exposed to containers as "
                "environment variables."),
        objects("topologySpreadConstraints", CORE + "TopologySpreadConstraint", "How pods "
                "spread over topology domains. Accepted, not used by the scheduler.",
                patch_strategy="merge", patch_merge_key="topologyKey", list_type="map",
                list_map_keys=("topologyKey", "whenUnsatisfiable")),
    ),
    typedef(
        CORE + "Container",
        "One program of a pod. In the testbed an image names a program the node runs inside "
        "the pod's namespaces.",
        string("name", "Name of the container, a DNS label unique within the pod.",
               required=True),
        string("image", "The image to run; in the testbed, the name of a built-in program such "
               "as agnhost or busybox."),
        strings("command", "The entrypoint, replacing the image's; not run in a shell.",
                **ATOMIC),
        strings("args", "Arguments to the entrypoint.", **ATOMIC),
        string("workingDir", "The container's working directory."),
        objects("ports", CORE + "ContainerPort", "Ports the container listens on. Informational "
                "except for names, which probes and Services may refer to.",
                **merge_list("containerPort", "containerPort", "protocol")),
        objects("envFrom", CORE + "EnvFromSource", "Sources of many environment variables at "
                "once.", **ATOMIC),
        objects("env", CORE + "EnvVar", "Environment variables of the container.",
                **merge_list("name")),
        obj("resources", CORE + "ResourceRequirements", "CPU and memory requests and limits. "
            "Accepted, not enforced by the testbed."),
        objects("volumeMounts", CORE + "VolumeMount", "Volumes mounted into the container.",
                **merge_list("mountPath")),
        obj("livenessProbe", CORE + "Probe", "Restart the container when this check fails "
            "failureThreshold times in a row."),
        obj("readinessProbe", CORE + "Probe", "The container is Ready (and receives Service "
            "traffic) while this check passes."),
        obj("startupProbe", CORE + "Probe", "Other probes wait until this check has passed "
            "once."),
        obj("lifecycle", CORE + "Lifecycle", "Hooks run after start and before stop. Accepted, "
            "not run by the testbed."),
        string("terminationMessagePath", "File whose contents become the termination message."),
        string("terminationMessagePolicy", "Where the termination message comes from: File or "
               "FallbackToLogsOnError.", enum=("FallbackToLogsOnError", "File")),
        string("imagePullPolicy", "When the image is pulled: Always, IfNotPresent or Never.",
               enum=("Always", "IfNotPresent", "Never")),
        obj("securityContext", CORE + "SecurityContext", "Per-container security settings. "
            "Accepted, not enforced by the testbed."),
        boolean("stdin", "Keep a stdin open for the container."),
        boolean("stdinOnce", "Close stdin after the first attach ends."),
        boolean("tty", "Give the container a terminal."),
    ),
    typedef(
        CORE + "ContainerPort",
        "A port a container listens on.",
        string("name", "A name for the port (an IANA service name, at most 15 characters), "
               "unique within the pod; Services and probes may refer to it."),
        int32("hostPort", "A node port that forwards to this port."),
        int32("containerPort", "The port number on the pod's IP (1-65535).", required=True),
        string("protocol", "TCP (the default), UDP or SCTP.", enum=PROTOCOLS),
        string("hostIP", "The node IP that hostPort binds to."),
    ),
    typedef(
        CORE + "EnvVar",
        "One environment variable.",
        string("name", "The variable's name.", required=True),
        string("value", "The value; $(VAR) refers to variables defined earlier."),
        obj("valueFrom", CORE + "EnvVarSource", "Where the value comes from instead of value."),
    ),
    typedef(
        CORE + "EnvVarSource",
        "The source of an environment variable's value; exactly one of the fields.",
        obj("fieldRef", CORE + "ObjectFieldSelector", "A field of the pod, such as "
            "metadata.name or status.podIP."),
        obj("resourceFieldRef", CORE + "ResourceFieldSelector", "A resource request or limit "
            "of a container."),
        obj("configMapKeyRef", CORE + "ConfigMapKeySelector", "A key of a ConfigMap."),
        obj("secretKeyRef", CORE + "SecretKeySelector", "A key of a Secret."),
    ),
    typedef(
        CORE + "ObjectFieldSelector",
        "A field of the pod, by path.",
        string("apiVersion", "Version of the schema fieldPath is written in; \"v1\" by "
               "default."),
        string("fieldPath", "Path of the field, e.g. metadata.name, status.podIP, "
               "metadata.labels['app'].", required=True),
        map_type="atomic",
    ),
    typedef(
        CORE + "ResourceFieldSelector",
        "A container's resource request or limit.",
        string("containerName", "The container; needed in volumes, optional in env."),
        string("resource", "The resource, e.g. limits.cpu or requests.memory.", required=True),
        string("divisor", "Unit the value is divided by (a quantity, default 1)."),
        map_type="atomic",
    ),
    typedef(
        CORE + "ConfigMapKeySelector",
        "A key of a ConfigMap.",
        string("name", "Name of the ConfigMap."),
        string("key", "The key.", required=True),
        boolean("optional", "Whether the ConfigMap or key may be missing."),
        map_type="atomic",
    ),
    typedef(
        CORE + "SecretKeySelector",
        "A key of a Secret.",
        string("name", "Name of the Secret."),
        string("key", "The key.", required=True),
        boolean("optional", "Whether the Secret or key may be missing."),
        map_type="atomic",
    ),
    typedef(
        CORE + "EnvFromSource",
        "A ConfigMap or Secret whose keys all become environment variables.",
        string("prefix", "A prefix put before every key."),
        obj("configMapRef", CORE + "ConfigMapEnvSource", "The ConfigMap."),
        obj("secretRef", CORE + "SecretEnvSource", "The Secret."),
    ),
    typedef(
        CORE + "ConfigMapEnvSource",
        "A ConfigMap to take environment variables from.",
        string("name", "Name of the ConfigMap."),
        boolean("optional", "Whether the ConfigMap may be missing."),
    ),
    typedef(
        CORE + "SecretEnvSource",
        "A Secret to take environment variables from.",
        string("name", "Name of the Secret."),
        boolean("optional", "Whether the Secret may be missing."),
    ),
    typedef(
        CORE + "Probe",
        "A check the kubelet runs against a container: exactly one of exec, httpGet, tcpSocket "
        "or grpc, and its timing.",
        obj("exec", CORE + "ExecAction", "Run a command in the container; exit 0 passes."),
        obj("httpGet", CORE + "HTTPGetAction", "An HTTP GET; a status from 200 to 399 passes."),
        obj("tcpSocket", CORE + "TCPSocketAction", "A TCP connect; an accepted connection "
            "passes."),
        obj("grpc", CORE + "GRPCAction", "A gRPC health check."),
        int32("initialDelaySeconds", "Seconds after the container starts before the first "
              "check. Defaults to 0."),
        int32("timeoutSeconds", "Seconds a check may take. Defaults to 1."),
        int32("periodSeconds", "Seconds between checks. Defaults to 10."),
        int32("successThreshold", "Passes in a row, after a failure, to count as passing. "
              "Defaults to 1; must be 1 for liveness and startup probes."),
        int32("failureThreshold", "Failures in a row to count as failing. Defaults to 3."),
        int64("terminationGracePeriodSeconds", "Grace period when a failed liveness or startup "
              "probe kills the container, overriding the pod's."),
    ),
    typedef(
        CORE + "HTTPGetAction",
        "An HTTP GET request to the container.",
        string("path", "The request path. Defaults to \"/\"."),
        _port("port", "The port: a number, or the name of one of the container's ports."),
        string("host", "Host to connect to; defaults to the pod's IP."),
        string("scheme", "HTTP (the default) or HTTPS.", enum=("HTTP", "HTTPS")),
        objects("httpHeaders", CORE + "HTTPHeader", "Extra request headers.", **ATOMIC),
    ),
    typedef(
        CORE + "HTTPHeader",
        "One HTTP header.",
        string("name", "The header name.", required=True),
        string("value", "The header value.", required=True),
    ),
    typedef(
        CORE + "TCPSocketAction",
        "A TCP connection to the container.",
        _port("port", "The port: a number, or the name of one of the container's ports."),
        string("host", "Host to connect to; defaults to the pod's IP."),
    ),
    typedef(
        CORE + "ExecAction",
        "A command run inside the container.",
        strings("command", "The command and its arguments; not run in a shell.", **ATOMIC),
    ),
    typedef(
        CORE + "GRPCAction",
        "A gRPC health check (grpc.health.v1).",
        int32("port", "The port of the gRPC service (1-65535).", required=True),
        string("service", "The service name sent in the health request."),
    ),
    typedef(
        CORE + "VolumeMount",
        "A volume mounted into a container.",
        string("name", "Name of the pod volume.", required=True),
        boolean("readOnly", "Mount read-only."),
        string("recursiveReadOnly", "Whether read-only applies to submounts too."),
        string("mountPath", "Where in the container the volume appears.", required=True),
        string("subPath", "A path inside the volume to mount instead of its root."),
        string("mountPropagation", "How mounts propagate between host and container."),
        string("subPathExpr", "Like subPath, with $(VAR) expanded from the environment."),
    ),
    typedef(
        CORE + "Volume",
        "A named volume of the pod; one source field says what it holds.",
        string("name", "Name of the volume, a DNS label unique within the pod.",
               required=True),
        obj("emptyDir", CORE + "EmptyDirVolumeSource", "An empty directory that lives as long "
            "as the pod."),
        obj("hostPath", CORE + "HostPathVolumeSource", "A file or directory of the node."),
        obj("configMap", CORE + "ConfigMapVolumeSource", "The keys of a ConfigMap as files."),
        obj("secret", CORE + "SecretVolumeSource", "The keys of a Secret as files."),
        obj("projected", CORE + "ProjectedVolumeSource", "Several sources in one directory."),
        obj("downwardAPI", CORE + "DownwardAPIVolumeSource", "Fields of the pod as files."),
        obj("persistentVolumeClaim", CORE + "PersistentVolumeClaimVolumeSource", "A "
            "PersistentVolumeClaim's volume."),
        obj("nfs", CORE + "NFSVolumeSource", "An NFS export."),
        obj("csi", CORE + "CSIVolumeSource", "A volume of a CSI driver."),
        obj("ephemeral", CORE + "EphemeralVolumeSource", "A volume provisioned for the pod "
            "alone."),
        obj("image", CORE + "ImageVolumeSource", "The contents of an OCI image."),
    ),
    typedef(
        CORE + "EmptyDirVolumeSource",
        "An empty directory created with the pod.",
        string("medium", "\"\" for the node's disk, or \"Memory\" for a tmpfs."),
        string("sizeLimit", "The most the directory may hold (a quantity)."),
    ),
    typedef(
        CORE + "HostPathVolumeSource",
        "A path on the node.",
        string("path", "The path on the node.", required=True),
        string("type", "What must be at the path (Directory, File, DirectoryOrCreate, ...)."),
    ),
    _free("ConfigMapVolumeSource", "A ConfigMap's keys as files (kept as given)."),
    _free("SecretVolumeSource", "A Secret's keys as files (kept as given)."),
    _free("ProjectedVolumeSource", "Several volume sources in one directory (kept as given)."),
    _free("DownwardAPIVolumeSource", "Pod fields as files (kept as given)."),
    _free("PersistentVolumeClaimVolumeSource", "A claim's volume (kept as given)."),
    _free("NFSVolumeSource", "An NFS export (kept as given)."),
    _free("CSIVolumeSource", "A CSI driver's volume (kept as given)."),
    _free("EphemeralVolumeSource", "A volume provisioned for one pod (kept as given)."),
    _free("ImageVolumeSource", "An OCI image as a volume (kept as given)."),
    typedef(
        CORE + "ResourceRequirements",
        "Compute resources of a container: what it is guaranteed and what it may use at most.",
        string_map("limits", "The most of each resource (cpu, memory, ...) the container may "
                   "use, as quantities such as \"500m\" or \"128Mi\"."),
        string_map("requests", "The amount of each resource the container is guaranteed, as "
                   "quantities; defaults to limits."),
    ),
    _free("Affinity", "Node affinity, pod affinity and anti-affinity rules (kept as given)."),
    _free("PodSecurityContext", "Pod-wide security settings (kept as given)."),
    _free("SecurityContext", "A container's security settings (kept as given)."),
    _free("Lifecycle", "postStart and preStop hooks of a container (kept as given)."),
    typedef(
        CORE + "LocalObjectReference",
        "A reference to an object by name, in the same namespace.",
        string("name", "Name of the object."),
        map_type="atomic",
    ),
    typedef(
        CORE + "Toleration",
        "Lets a pod be scheduled onto nodes with a matching taint.",
        string("key", "The taint key; empty with operator Exists matches every taint."),
        string("operator", "Exists or Equal (the default).", enum=("Equal", "Exists")),
        string("value", "The taint value to match with operator Equal."),
        string("effect", "The taint effect to match; empty matches all.",
               enum=("NoExecute", "NoSchedule", "PreferNoSchedule")),
        int64("tolerationSeconds", "For NoExecute: how long the pod stays after the taint "
              "appears."),
    ),
    typedef(
        CORE + "HostAlias",
        "An entry of the pod's /etc/hosts.",
        string("ip", "The IP address.", required=True),
        strings("hostnames", "Host names for the address.", **ATOMIC),
    ),
    typedef(
        CORE + "PodDNSConfig",
        "resolv.conf settings of a pod, beyond those of its dnsPolicy.",
        strings("nameservers", "Extra name server IPs.", **ATOMIC),
        strings("searches", "Extra search domains.", **ATOMIC),
        objects("options", CORE + "PodDNSConfigOption", "resolver options.", **ATOMIC),
    ),
    typedef(
        CORE + "PodDNSConfigOption",
        "One resolver option, such as ndots:2.",
        string("name", "The option's name."),
        string("value", "The option's value, if it takes one."),
    ),
    typedef(
        CORE + "PodReadinessGate",
        "A pod condition that must be True for the pod to be Ready.",
        string("conditionType", "The condition's type.", required=True),
    ),
    typedef(
        CORE + "TopologySpreadConstraint",
        "How matching pods spread over the values of a node label.",
        int32("maxSkew", "The largest allowed difference in matching pods between domains.",
              required=True),
        string("topologyKey", "The node label whose values are the domains.", required=True),
        string("whenUnsatisfiable", "DoNotSchedule or ScheduleAnyway.", required=True,
               enum=("DoNotSchedule", "ScheduleAnyway")),
        obj("labelSelector", META + "LabelSelector", "The pods that are counted."),
        int32("minDomains", "The least number of eligible domains."),
        string("nodeAffinityPolicy", "Whether node affinity limits the domains: Honor or "
               "Ignore."),
        string("nodeTaintsPolicy", "Whether node taints limit the domains: Honor or Ignore."),
        strings("matchLabelKeys", "Label keys whose values are added to the selector from "
                "the incoming pod.", **ATOMIC),
    ),
)
