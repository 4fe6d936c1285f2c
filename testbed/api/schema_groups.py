"""Pure: the schema of the kinds of the named groups: Deployment (apps/v1), Scale
(autoscaling/v1), EndpointSlice (discovery.k8s.io/v1), Ingress and NetworkPolicy
(networking.k8s.io/v1) and Lease (coordination.k8s.io/v1), under upstream's definition names.

Spec fields are those the testbed serves and validates (workloads.py, endpointslices.py,
ingress.py, netpol.py take their allowed field sets from here). Patch and list metadata are upstream's.
No I/O.
"""

from __future__ import annotations

from testbed.api.schema_base import (
    APPS,
    ATOMIC,
    AUTOSCALING,
    COORDINATION,
    CORE,
    DISCOVERY,
    META,
    NETWORKING,
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

DEPLOYMENT = (
    typedef(
        APPS + "Deployment",
        "Keeps a number of identical pods running from a template, replacing them gradually "
        "(or all at once) when the template changes.",
        *kind_header("Deployment", "Deployment"),
        obj("spec", APPS + "DeploymentSpec", "The pods wanted and how they are replaced.",
            required=True),
        obj("status", APPS + "DeploymentStatus", "How many pods exist, are updated and are "
            "ready. Read-only to users."),
        gvk=("apps", "v1", "Deployment"),
    ),
    typedef(
        APPS + "DeploymentSpec",
        "The desired state of a Deployment.",
        int32("replicas", "How many pods to run. Defaults to 1."),
        obj("selector", META + "LabelSelector", "Which pods belong to the Deployment; must "
            "match the template's labels and cannot change.", required=True),
        obj("template", CORE + "PodTemplateSpec", "The pods to create. A change starts a "
            "rollout.", required=True),
        obj("strategy", APPS + "DeploymentStrategy", "How old pods are replaced by new ones.",
            patch_strategy="retainKeys"),
        int32("minReadySeconds", "Seconds a new pod must be ready before it counts as "
              "available. Defaults to 0."),
        int32("revisionHistoryLimit", "How many old revisions to keep. Defaults to 10."),
        boolean("paused", "Stop rolling out template changes while true."),
        int32("progressDeadlineSeconds", "Seconds a rollout may go without progress before it "
              "is reported as failed. Defaults to 600."),
    ),
    typedef(
        APPS + "DeploymentStrategy",
        "How a Deployment replaces its pods.",
        string("type", "RollingUpdate (the default: a few at a time) or Recreate (all old pods "
               "go before new ones come).", enum=("Recreate", "RollingUpdate")),
        obj("rollingUpdate", APPS + "RollingUpdateDeployment", "Limits of a rolling update; "
            "only with type RollingUpdate."),
    ),
    typedef(
        APPS + "RollingUpdateDeployment",
        "How fast a rolling update goes.",
        int_or_string("maxUnavailable", "How many pods may be unavailable during the update: "
                      "a number or a percentage of replicas (rounded down). Defaults to 25%."),
        int_or_string("maxSurge", "How many pods may exist above replicas during the update: "
                      "a number or a percentage (rounded up). Defaults to 25%."),
    ),
    typedef(
        APPS + "DeploymentStatus",
        "The observed state of a Deployment.",
        int64("observedGeneration", "The generation the controller last acted on."),
        int32("replicas", "Pods of the Deployment (not terminating)."),
        int32("updatedReplicas", "Pods with the current template."),
        int32("readyReplicas", "Pods that are ready."),
        int32("availableReplicas", "Pods ready for at least minReadySeconds."),
        int32("unavailableReplicas", "Pods still needed to reach replicas available pods."),
        int32("terminatingReplicas", "Pods that are terminating."),
        objects("conditions", APPS + "DeploymentCondition", "Available and Progressing.",
                **merge_list("type")),
        int32("collisionCount", "Count of hash collisions of the pod template."),
    ),
    typedef(
        APPS + "DeploymentCondition",
        "One condition of a Deployment.",
        string("type", "Available, Progressing or ReplicaFailure."),
        string("status", "True, False or Unknown."),
        time("lastUpdateTime", "When the condition was last updated."),
        time("lastTransitionTime", "When the status last changed."),
        string("reason", "Why, in CamelCase."),
        string("message", "Why, for people."),
    ),
)

SCALE = (
    typedef(
        AUTOSCALING + "Scale",
        "The replica count of a scalable object (deployments/scale), as kubectl scale reads "
        "and writes it.",
        *kind_header("Scale", "scaled object"),
        obj("spec", AUTOSCALING + "ScaleSpec", "The desired replica count."),
        obj("status", AUTOSCALING + "ScaleStatus", "The current replica count. Read-only."),
        gvk=("autoscaling", "v1", "Scale"),
    ),
    typedef(
        AUTOSCALING + "ScaleSpec",
        "The desired size of a scalable object.",
        int32("replicas", "The number of replicas wanted."),
    ),
    typedef(
        AUTOSCALING + "ScaleStatus",
        "The current size of a scalable object.",
        int32("replicas", "The number of replicas now.", required=True),
        string("selector", "The label selector of its pods, as a string (e.g. app=web)."),
    ),
)

ENDPOINT_SLICE = (
    typedef(
        DISCOVERY + "EndpointSlice",
        "A set of endpoints (pod addresses with readiness) of a Service, with the ports they "
        "serve. The EndpointSlice controller writes one per Service; kube-proxy programs "
        "the nodes from them.",
        *kind_header("EndpointSlice", "EndpointSlice"),
        string("addressType", "The kind of every address: IPv4, IPv6 or FQDN.", required=True,
               enum=("FQDN", "IPv4", "IPv6")),
        objects("endpoints", DISCOVERY + "Endpoint", "The endpoints; at most 1000.", **ATOMIC),
        objects("ports", DISCOVERY + "EndpointPort", "The ports every endpoint serves; at most "
                "100.", **ATOMIC),
        gvk=("discovery.k8s.io", "v1", "EndpointSlice"),
    ),
    typedef(
        DISCOVERY + "Endpoint",
        "One endpoint: the addresses of one backend (a pod) and its state.",
        strings("addresses", "The endpoint's addresses (1 to 100), of the slice's "
                "addressType.", required=True, list_type="set"),
        obj("conditions", DISCOVERY + "EndpointConditions", "Whether the endpoint is ready, "
            "serving, terminating."),
        string("hostname", "The endpoint's hostname, for DNS."),
        obj("targetRef", CORE + "ObjectReference", "The pod behind the endpoint."),
        string_map("deprecatedTopology", "Deprecated topology labels; use nodeName and zone."),
        string("nodeName", "The node the endpoint runs on."),
        string("zone", "The zone the endpoint is in."),
        obj("hints", DISCOVERY + "EndpointHints", "Topology-aware routing hints."),
    ),
    typedef(
        DISCOVERY + "EndpointConditions",
        "The state of an endpoint. Unset means unknown (treated as ready).",
        boolean("ready", "Ready to receive traffic: serving and not terminating."),
        boolean("serving", "Passing its readiness checks, even while terminating."),
        boolean("terminating", "Being deleted."),
    ),
    typedef(
        DISCOVERY + "EndpointHints",
        "Where an endpoint should be used from.",
        objects("forZones", DISCOVERY + "ForZone", "Zones that should use it.", **ATOMIC),
        objects("forNodes", DISCOVERY + "ForNode", "Nodes that should use it.", **ATOMIC),
    ),
    typedef(
        DISCOVERY + "ForZone",
        "A zone, in a hint.",
        string("name", "The zone's name.", required=True),
    ),
    typedef(
        DISCOVERY + "ForNode",
        "A node, in a hint.",
        string("name", "The node's name.", required=True),
    ),
    typedef(
        DISCOVERY + "EndpointPort",
        "A port the endpoints of a slice serve.",
        string("name", "The port's name, matching the Service port's; \"\" when unnamed."),
        string("protocol", "TCP (the default), UDP or SCTP.", enum=PROTOCOLS),
        int32("port", "The port number; unset means every port."),
        string("appProtocol", "The application protocol, as a hint."),
        map_type="atomic",
    ),
)

INGRESS = (
    typedef(
        NETWORKING + "Ingress",
        "HTTP routing from outside the cluster to Services, by host and path; the testbed's "
        "nginx ingress controller serves it.",
        *kind_header("Ingress", "Ingress"),
        obj("spec", NETWORKING + "IngressSpec", "The routing rules."),
        obj("status", NETWORKING + "IngressStatus", "The address the Ingress is served at. "
            "Read-only to users."),
        gvk=("networking.k8s.io", "v1", "Ingress"),
    ),
    typedef(
        NETWORKING + "IngressSpec",
        "The routing rules of an Ingress.",
        string("ingressClassName", "The IngressClass (controller) that serves it."),
        obj("defaultBackend", NETWORKING + "IngressBackend", "Where requests no rule matches "
            "go."),
        objects("tls", NETWORKING + "IngressTLS", "TLS settings per host set.", **ATOMIC),
        objects("rules", NETWORKING + "IngressRule", "Host rules, tried in order; a rule "
                "without host matches every host.", **ATOMIC),
    ),
    typedef(
        NETWORKING + "IngressBackend",
        "Where matching requests go: a Service port, or another resource.",
        obj("service", NETWORKING + "IngressServiceBackend", "A Service port."),
        obj("resource", CORE + "TypedLocalObjectReference", "Another object (not served by "
            "the testbed's controller)."),
    ),
    typedef(
        NETWORKING + "IngressServiceBackend",
        "A Service port as a backend.",
        string("name", "The Service's name, in the Ingress's namespace.", required=True),
        obj("port", NETWORKING + "ServiceBackendPort", "The Service port, by number or name."),
    ),
    typedef(
        NETWORKING + "ServiceBackendPort",
        "A Service port, by name or by number (one of them).",
        string("name", "The port's name."),
        int32("number", "The port's number."),
        map_type="atomic",
    ),
    typedef(
        NETWORKING + "IngressRule",
        "Routing for one host.",
        string("host", "The host name (a wildcard like *.example.com matches one label); "
               "empty matches every host."),
        obj("http", NETWORKING + "HTTPIngressRuleValue", "The paths of the host."),
    ),
    typedef(
        NETWORKING + "HTTPIngressRuleValue",
        "HTTP paths and their backends.",
        objects("paths", NETWORKING + "HTTPIngressPath", "The paths, longest match first.",
                required=True, **ATOMIC),
    ),
    typedef(
        NETWORKING + "HTTPIngressPath",
        "A path and its backend.",
        string("path", "The path to match; must start with \"/\"."),
        string("pathType", "Exact, Prefix (whole path elements) or ImplementationSpecific.",
               required=True, enum=("Exact", "ImplementationSpecific", "Prefix")),
        obj("backend", NETWORKING + "IngressBackend", "Where matching requests go.",
            required=True),
    ),
    typedef(
        NETWORKING + "IngressTLS",
        "TLS for a set of hosts.",
        strings("hosts", "The hosts the certificate covers.", **ATOMIC),
        string("secretName", "The Secret holding the certificate and key."),
    ),
    typedef(
        NETWORKING + "IngressStatus",
        "The observed state of an Ingress.",
        obj("loadBalancer", NETWORKING + "IngressLoadBalancerStatus", "Where it is served."),
    ),
    typedef(
        NETWORKING + "IngressLoadBalancerStatus",
        "The addresses an Ingress is served at.",
        objects("ingress", NETWORKING + "IngressLoadBalancerIngress", "The addresses.",
                **ATOMIC),
    ),
    typedef(
        NETWORKING + "IngressLoadBalancerIngress",
        "One address an Ingress is served at.",
        string("ip", "An IP address."),
        string("hostname", "A DNS name."),
        objects("ports", NETWORKING + "IngressPortStatus", "Per-port status.", **ATOMIC),
    ),
    typedef(
        NETWORKING + "IngressPortStatus",
        "The status of one port of an Ingress address.",
        int32("port", "The port number.", required=True),
        string("protocol", "TCP, UDP or SCTP.", required=True, enum=PROTOCOLS),
        string("error", "Why the port is not served, if it is not."),
    ),
    typedef(
        CORE + "TypedLocalObjectReference",
        "A reference to an object of a given kind in the same namespace.",
        string("apiGroup", "The object's API group; empty for the core group."),
        string("kind", "The object's kind.", required=True),
        string("name", "The object's name.", required=True),
        map_type="atomic",
    ),
)

NETWORK_POLICY = (
    typedef(
        NETWORKING + "NetworkPolicy",
        "Which traffic may reach (ingress) and leave (egress) the pods it selects; the "
        "testbed's policy agent on every worker enforces it.",
        *kind_header("NetworkPolicy", "NetworkPolicy"),
        obj("spec", NETWORKING + "NetworkPolicySpec", "The selected pods and the traffic "
            "allowed to and from them."),
        gvk=("networking.k8s.io", "v1", "NetworkPolicy"),
    ),
    typedef(
        NETWORKING + "NetworkPolicySpec",
        "The pods a NetworkPolicy selects and the traffic it allows them.",
        obj("podSelector", META + "LabelSelector", "The pods of the policy's namespace it "
            "applies to; empty selects every pod there."),
        objects("ingress", NETWORKING + "NetworkPolicyIngressRule", "Traffic allowed to the "
                "selected pods; none (with Ingress among policyTypes) isolates them for "
                "ingress.", **ATOMIC),
        objects("egress", NETWORKING + "NetworkPolicyEgressRule", "Traffic allowed from the "
                "selected pods; none (with Egress among policyTypes) isolates them for "
                "egress.", **ATOMIC),
        strings("policyTypes", "Ingress, Egress or both: the directions the policy isolates. "
                "Defaults to Ingress, plus Egress when egress rules are given.", **ATOMIC),
    ),
    typedef(
        NETWORKING + "NetworkPolicyIngressRule",
        "Traffic allowed to the selected pods: from any of the peers to any of the ports.",
        objects("ports", NETWORKING + "NetworkPolicyPort", "The ports; none means every "
                "port.", **ATOMIC),
        objects("from", NETWORKING + "NetworkPolicyPeer", "The sources; none means every "
                "source.", **ATOMIC),
    ),
    typedef(
        NETWORKING + "NetworkPolicyEgressRule",
        "Traffic allowed from the selected pods: to any of the peers on any of the ports.",
        objects("ports", NETWORKING + "NetworkPolicyPort", "The destination ports; none means "
                "every port.", **ATOMIC),
        objects("to", NETWORKING + "NetworkPolicyPeer", "The destinations; none means every "
                "destination.", **ATOMIC),
    ),
    typedef(
        NETWORKING + "NetworkPolicyPort",
        "A port (or a range of ports) and protocol traffic must match.",
        string("protocol", "TCP (the default), UDP or SCTP.", enum=PROTOCOLS),
        int_or_string("port", "A port number or a named container port; unset matches every "
                      "port."),
        int32("endPort", "The last port of a range starting at port (a number); at least "
              "port."),
    ),
    typedef(
        NETWORKING + "NetworkPolicyPeer",
        "Pods (by pod and namespace selectors, which both must match when both are given) or "
        "an IP block.",
        obj("podSelector", META + "LabelSelector", "Pods, in the policy's namespace unless a "
            "namespaceSelector is given too; empty selects every pod."),
        obj("namespaceSelector", META + "LabelSelector", "Namespaces, by their labels; empty "
            "selects every namespace."),
        obj("ipBlock", NETWORKING + "IPBlock", "A CIDR, less exceptions; not with the "
            "selectors."),
    ),
    typedef(
        NETWORKING + "IPBlock",
        "A CIDR (such as 192.168.1.0/24 or 2001:db8::/64) and the CIDRs inside it excluded "
        "from it.",
        string("cidr", "The block.", required=True),
        strings("except", "CIDRs within cidr that are not part of the block.", **ATOMIC),
    ),
)

LEASE = (
    typedef(
        COORDINATION + "Lease",
        "A lease held by one holder and renewed periodically; kubelets renew their node's "
        "Lease in kube-node-lease as a heartbeat.",
        *kind_header("Lease", "Lease"),
        obj("spec", COORDINATION + "LeaseSpec", "The holder and the times."),
        gvk=("coordination.k8s.io", "v1", "Lease"),
    ),
    typedef(
        COORDINATION + "LeaseSpec",
        "Who holds a lease and until when.",
        string("holderIdentity", "The current holder."),
        int32("leaseDurationSeconds", "Seconds after renewTime the lease is held; must be "
              "greater than 0."),
        time("acquireTime", "When the current holder acquired the lease."),
        time("renewTime", "When the holder last renewed the lease."),
        int32("leaseTransitions", "How many times the lease changed holders; at least 0."),
        string("strategy", "How a coordinated leader election picks a holder: "
               "OldestEmulationVersion.", enum=("OldestEmulationVersion",)),
        string("preferredHolder", "The holder the strategy would like; only with strategy."),
    ),
)

TYPES: tuple[TypeDef, ...] = (DEPLOYMENT + SCALE + ENDPOINT_SLICE + INGRESS + NETWORK_POLICY
                              + LEASE)
