"""Pure: the schema of the core/v1 kinds other than Pod: Service, Endpoints, Namespace, Node
and Event, and the types under them, under upstream's definition names.

Spec fields are those the testbed serves and validates (services.py, manifests.py and
admission.py take their allowed field sets from here); status types list what the testbed's
components write and upstream's other common fields. Patch and list metadata are upstream's.
No I/O.
"""

from __future__ import annotations

from testbed.api.schema_base import (
    ATOMIC,
    CORE,
    META,
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
    time,
    typedef,
)
from testbed.api.schema_pod import PROTOCOLS

META_CONDITION = "io.k8s.apimachinery.pkg.apis.meta.v1.Condition"

SERVICE = (
    typedef(
        CORE + "Service",
        "A stable virtual IP and DNS name in front of the pods its selector matches; "
        "kube-proxy turns it into iptables or nftables rules on every node.",
        *kind_header("Service", "Service"),
        obj("spec", CORE + "ServiceSpec", "The ports, the selector and how the Service is "
            "exposed."),
        obj("status", CORE + "ServiceStatus", "The load balancer given to a LoadBalancer "
            "Service. Read-only to users."),
        gvk=("", "v1", "Service"),
    ),
    typedef(
        CORE + "ServiceSpec",
        "How a Service is exposed and which pods serve it.",
        objects("ports", CORE + "ServicePort", "The ports the Service exposes; each needs a "
                "name when there is more than one.", **merge_list("port", "port", "protocol")),
        string_map("selector", "Pods with these labels are the Service's endpoints. Without a "
                   "selector, endpoints are managed by hand (EndpointSlices).",
                   map_type="atomic"),
        string("clusterIP", "The virtual IP, allocated from the service CIDR when empty; "
               "\"None\" makes a headless Service (DNS returns the pod IPs)."),
        strings("clusterIPs", "The virtual IPs (one per IP family); the first equals "
                "clusterIP.", **ATOMIC),
        string("type", "ClusterIP (the default: reachable inside the cluster), NodePort (also "
               "on a port of every node), LoadBalancer (also on an external address from the "
               "emulated cloud) or ExternalName (a DNS alias).",
               enum=("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")),
        strings("externalIPs", "Extra IPs on which nodes accept the Service's traffic.",
                **ATOMIC),
        string("sessionAffinity", "None (the default) or ClientIP: send each client to the "
               "same pod.", enum=("ClientIP", "None")),
        string("loadBalancerIP", "Deprecated: the address asked of the load balancer."),
        strings("loadBalancerSourceRanges", "Client CIDRs the load balancer admits.",
                **ATOMIC),
        string("externalName", "For ExternalName: the DNS name the Service's name is a CNAME "
               "of."),
        string("externalTrafficPolicy", "For NodePort and LoadBalancer: Cluster (any node "
               "forwards to any pod, source NATed) or Local (only pods on the receiving node, "
               "client IP kept).", enum=("Cluster", "Local")),
        int32("healthCheckNodePort", "For LoadBalancer with externalTrafficPolicy Local: the "
              "node port answering health checks."),
        boolean("publishNotReadyAddresses", "Publish endpoints of pods that are not ready."),
        obj("sessionAffinityConfig", CORE + "SessionAffinityConfig", "Settings of session "
            "affinity."),
        strings("ipFamilies", "IP families of the Service (IPv4 in the testbed).", **ATOMIC),
        string("ipFamilyPolicy", "SingleStack, PreferDualStack or RequireDualStack.",
               enum=("PreferDualStack", "RequireDualStack", "SingleStack")),
        boolean("allocateLoadBalancerNodePorts", "Whether a LoadBalancer Service gets node "
                "ports. Defaults to true."),
        string("loadBalancerClass", "The load balancer implementation to use; empty for the "
               "default (the testbed's emulated cloud)."),
        string("internalTrafficPolicy", "Cluster (the default) or Local: traffic from inside "
               "the cluster goes only to pods on the sending node.",
               enum=("Cluster", "Local")),
    ),
    typedef(
        CORE + "ServicePort",
        "One port of a Service.",
        string("name", "The port's name, a DNS label; required when there are several ports."),
        string("protocol", "TCP (the default), UDP or SCTP.", enum=PROTOCOLS),
        string("appProtocol", "The application protocol, e.g. http, as a hint."),
        int32("port", "The port on the Service's IPs.", required=True),
        int_or_string("targetPort", "The pods' port: a number, or the name of a container "
                      "port. Defaults to port."),
        int32("nodePort", "For NodePort and LoadBalancer: the port on every node, allocated "
              "from the node port range when not given."),
    ),
    typedef(
        CORE + "SessionAffinityConfig",
        "Settings of session affinity.",
        obj("clientIP", CORE + "ClientIPConfig", "Settings of ClientIP affinity."),
    ),
    typedef(
        CORE + "ClientIPConfig",
        "Settings of ClientIP session affinity.",
        int32("timeoutSeconds", "Seconds a client sticks to its pod (1 to 86400, default "
              "10800)."),
    ),
    typedef(
        CORE + "ServiceStatus",
        "The observed state of a Service.",
        obj("loadBalancer", CORE + "LoadBalancerStatus", "The load balancer's addresses."),
        objects("conditions", META_CONDITION, "Conditions of the Service.",
                **merge_list("type")),
    ),
    typedef(
        CORE + "LoadBalancerStatus",
        "The addresses of a load balancer.",
        objects("ingress", CORE + "LoadBalancerIngress", "Where the load balancer accepts "
                "traffic.", **ATOMIC),
    ),
    typedef(
        CORE + "LoadBalancerIngress",
        "One address of a load balancer.",
        string("ip", "An IP address."),
        string("hostname", "A DNS name."),
        string("ipMode", "VIP (nodes accept the address themselves) or Proxy.",
               enum=("Proxy", "VIP")),
        objects("ports", CORE + "PortStatus", "Per-port status.", **ATOMIC),
    ),
    typedef(
        CORE + "PortStatus",
        "The status of one port of a load balancer.",
        int32("port", "The port number.", required=True),
        string("protocol", "TCP, UDP or SCTP.", required=True, enum=PROTOCOLS),
        string("error", "Why the port is not served, if it is not."),
    ),
)

ENDPOINTS = (
    typedef(
        CORE + "Endpoints",
        "The legacy list of a Service's endpoints, as address/port subsets. The testbed's "
        "kube-proxy reads EndpointSlices; Endpoints are stored for clients that use them.",
        *kind_header("Endpoints", "Endpoints"),
        objects("subsets", CORE + "EndpointSubset", "Groups of addresses that share the same "
                "ports.", **ATOMIC),
        gvk=("", "v1", "Endpoints"),
    ),
    typedef(
        CORE + "EndpointSubset",
        "Addresses and the ports each of them serves.",
        objects("addresses", CORE + "EndpointAddress", "Ready addresses.", **ATOMIC),
        objects("notReadyAddresses", CORE + "EndpointAddress", "Addresses not ready yet.",
                **ATOMIC),
        objects("ports", CORE + "EndpointPort", "The ports served.", **ATOMIC),
    ),
    typedef(
        CORE + "EndpointAddress",
        "One endpoint address.",
        string("ip", "The IP address (not loopback, link-local or unspecified).",
               required=True),
        string("hostname", "The endpoint's hostname."),
        string("nodeName", "The node hosting the endpoint."),
        obj("targetRef", CORE + "ObjectReference", "The object (usually a Pod) behind the "
            "address."),
        map_type="atomic",
    ),
    typedef(
        CORE + "EndpointPort",
        "One port of an endpoint subset.",
        string("name", "The port's name; must match the Service port's name, and is required "
               "when there are several ports."),
        int32("port", "The port number.", required=True),
        string("protocol", "TCP (the default), UDP or SCTP.", enum=PROTOCOLS),
        string("appProtocol", "The application protocol, as a hint."),
        map_type="atomic",
    ),
    typedef(
        CORE + "ObjectReference",
        "A reference to an object, possibly to a part of it (fieldPath).",
        string("kind", "Kind of the object."),
        string("namespace", "Namespace of the object."),
        string("name", "Name of the object."),
        string("uid", "UID of the object."),
        string("apiVersion", "API version of the object."),
        string("resourceVersion", "The object's resourceVersion the reference was made at."),
        string("fieldPath", "A part of the object, e.g. spec.containers{web} for a "
               "container."),
        map_type="atomic",
    ),
)

NAMESPACE = (
    typedef(
        CORE + "Namespace",
        "A scope for names: most objects live in one namespace.",
        *kind_header("Namespace", "Namespace"),
        obj("spec", CORE + "NamespaceSpec", "Finalizers of the namespace."),
        obj("status", CORE + "NamespaceStatus", "Whether the namespace is Active or "
            "Terminating. Read-only to users."),
        gvk=("", "v1", "Namespace"),
    ),
    typedef(
        CORE + "NamespaceSpec",
        "The desired state of a namespace.",
        strings("finalizers", "What must finish before the namespace is removed.", **ATOMIC),
    ),
    typedef(
        CORE + "NamespaceStatus",
        "The observed state of a namespace.",
        string("phase", "Active or Terminating.", enum=("Active", "Terminating")),
        objects("conditions", CORE + "NamespaceCondition", "Conditions of the namespace.",
                **merge_list("type")),
    ),
    typedef(
        CORE + "NamespaceCondition",
        "One condition of a namespace.",
        string("type", "The condition's type.", required=True),
        string("status", "True, False or Unknown.", required=True),
        time("lastTransitionTime", "When the status last changed."),
        string("reason", "Why, in CamelCase."),
        string("message", "Why, for people."),
    ),
)

NODE = (
    typedef(
        CORE + "Node",
        "A machine pods run on; in the testbed a Mininet host with a kubelet and kube-proxy. "
        "The kubelet registers it and reports its status.",
        *kind_header("Node", "Node"),
        obj("spec", CORE + "NodeSpec", "The node's pod CIDR and scheduling settings."),
        obj("status", CORE + "NodeStatus", "Addresses, conditions and facts the kubelet "
            "reports."),
        gvk=("", "v1", "Node"),
    ),
    typedef(
        CORE + "NodeSpec",
        "The desired state of a node.",
        string("podCIDR", "The range the node's pod IPs come from."),
        strings("podCIDRs", "The node's pod ranges (one per IP family).",
                patch_strategy="merge", list_type="set"),
        string("providerID", "The node's ID at its cloud provider."),
        boolean("unschedulable", "Keep new pods off the node (kubectl cordon)."),
        objects("taints", CORE + "Taint", "Taints repelling pods that do not tolerate them.",
                **ATOMIC),
    ),
    typedef(
        CORE + "Taint",
        "A mark on a node that repels pods without a matching toleration.",
        string("key", "The taint key.", required=True),
        string("value", "The taint value."),
        string("effect", "NoSchedule, PreferNoSchedule or NoExecute.", required=True,
               enum=("NoExecute", "NoSchedule", "PreferNoSchedule")),
        time("timeAdded", "When a NoExecute taint was added."),
    ),
    typedef(
        CORE + "NodeStatus",
        "What the kubelet reports about its node.",
        string_map("capacity", "Total resources of the node (quantities)."),
        string_map("allocatable", "Resources available to pods (quantities)."),
        string("phase", "Deprecated; unset."),
        objects("conditions", CORE + "NodeCondition", "Ready and the pressure conditions, "
                "renewed by the kubelet's heartbeat.", **merge_list("type")),
        objects("addresses", CORE + "NodeAddress", "The node's addresses (InternalIP, "
                "Hostname, ...).", **merge_list("type")),
        obj("daemonEndpoints", CORE + "NodeDaemonEndpoints", "Ports of daemons on the node."),
        obj("nodeInfo", CORE + "NodeSystemInfo", "Versions and IDs of the node's software."),
        objects("images", CORE + "ContainerImage", "Images present on the node.", **ATOMIC),
    ),
    typedef(
        CORE + "NodeCondition",
        "One condition of a node.",
        string("type", "Ready, MemoryPressure, DiskPressure, PIDPressure or "
               "NetworkUnavailable.", required=True),
        string("status", "True, False or Unknown.", required=True),
        time("lastHeartbeatTime", "When the kubelet last confirmed the condition."),
        time("lastTransitionTime", "When the status last changed."),
        string("reason", "Why, in CamelCase (e.g. KubeletReady)."),
        string("message", "Why, for people."),
    ),
    typedef(
        CORE + "NodeAddress",
        "One address of a node.",
        string("type", "Hostname, InternalIP, ExternalIP, InternalDNS or ExternalDNS.",
               required=True),
        string("address", "The address.", required=True),
    ),
    typedef(
        CORE + "NodeDaemonEndpoints",
        "Ports of daemons running on a node.",
        obj("kubeletEndpoint", CORE + "DaemonEndpoint", "The kubelet's port."),
    ),
    typedef(
        CORE + "DaemonEndpoint",
        "A daemon's port.",
        int32("Port", "The port number.", required=True),
    ),
    typedef(
        CORE + "NodeSystemInfo",
        "Versions and IDs of a node's software.",
        *(string(name, text, required=True) for name, text in (
            ("machineID", "The machine ID of the node."),
            ("systemUUID", "The system UUID of the node."),
            ("bootID", "The ID of the node's current boot."),
            ("kernelVersion", "The kernel version (uname -r)."),
            ("osImage", "The operating system image."),
            ("containerRuntimeVersion", "The container runtime and its version."),
            ("kubeletVersion", "The kubelet's version."),
            ("kubeProxyVersion", "Deprecated: kube-proxy's version."),
            ("operatingSystem", "The operating system (linux)."),
            ("architecture", "The CPU architecture (amd64, ...)."),
        )),
    ),
    typedef(
        CORE + "ContainerImage",
        "An image present on a node.",
        strings("names", "Names of the image.", **ATOMIC),
        int64("sizeBytes", "Size of the image in bytes."),
    ),
)

EVENT = (
    typedef(
        CORE + "Event",
        "A report of something that happened to an object (a pod scheduled, an image "
        "pulled, a probe failed), recorded by the component that saw it. Events expire an "
        "hour after they were last seen.",
        *kind_header("Event", "Event")[:2],
        obj("metadata", META + "ObjectMeta", "Standard object metadata of the Event; its "
            "namespace is that of the object the event is about.", required=True),
        obj("involvedObject", CORE + "ObjectReference", "The object the event is about; its "
            "namespace must be the event's.", required=True),
        string("reason", "Why it happened, short and in CamelCase (e.g. Scheduled, "
               "BackOff); at most 128 characters."),
        string("message", "What happened, for people; at most 1024 characters."),
        obj("source", CORE + "EventSource", "The component that reported it."),
        time("firstTimestamp", "When the event was first seen."),
        time("lastTimestamp", "When the event was last seen."),
        int32("count", "How many times it was seen."),
        string("type", "Normal or Warning."),
        time("eventTime", "When it first happened, with microseconds (events.k8s.io "
             "style)."),
        obj("series", CORE + "EventSeries", "Repetitions of an event (events.k8s.io style)."),
        string("action", "What the reporting component did or failed to do."),
        obj("related", CORE + "ObjectReference", "A second object involved."),
        string("reportingComponent", "The controller that reported it, e.g. kubelet."),
        string("reportingInstance", "The instance of that controller, e.g. the node name."),
        gvk=("", "v1", "Event"),
    ),
    typedef(
        CORE + "EventSource",
        "The component that reported an event.",
        string("component", "The component, e.g. kubelet or default-scheduler."),
        string("host", "The node it runs on."),
    ),
    typedef(
        CORE + "EventSeries",
        "Repetitions of an event.",
        int32("count", "How many times it happened."),
        time("lastObservedTime", "When it last happened."),
    ),
)

TYPES: tuple[TypeDef, ...] = SERVICE + ENDPOINTS + NAMESPACE + NODE + EVENT
