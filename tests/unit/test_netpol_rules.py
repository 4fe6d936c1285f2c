"""The NetworkPolicy renderers, in both modes, against upstream's semantics.

Each case builds policies over a cluster of two nodes (namespaces x, y, z; pods a, b, c in
each, spread over the nodes), renders every node's rules through the syncer into a fake
kernel, and walks connections through them with the tracer: a connection passes when the
source node's FORWARD (the source pod's egress) and the destination node's FORWARD (the
destination pod's ingress) both let it through. The verdicts must equal both what the case
says and what `model.allows` (the semantics spelled out) says. A seeded random search then
compares rendered rules with `allows` over many generated policies.
"""

from __future__ import annotations

import random

import pytest

from testbed.netpol import iptables, model, nftables
from testbed.netpol.fakes import FakeIptables, FakeNft, trace
from testbed.netpol.model import parse_policy
from testbed.netpol.syncer import PolicySyncer

NODES = {"w1": "10.244.1", "w2": "10.244.2"}
PLACEMENT = {"x/a": "w1", "x/b": "w2", "x/c": "w1", "y/a": "w2", "y/b": "w1", "y/c": "w2",
             "z/a": "w1", "z/b": "w2", "z/c": "w1"}
MODES = ("iptables", "nftables")


def pod_object(key: str, ip: str, node: str, labels: dict | None = None, ports=None) -> dict:
    ns, name = key.split("/")
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {"pod": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports if ports is not None else [
                {"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"},
                {"name": "serve-81-tcp", "containerPort": 81, "protocol": "TCP"},
                {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
                {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"}]}]},
            "status": {"podIP": ip, "phase": "Running"}}


def namespace_object(name: str, labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "labels": {"ns": name, "kubernetes.io/metadata.name": name,
                                                  **(labels or {})}}}


def policy(ns: str, name: str, spec: dict) -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


class Cluster:
    """Objects, and a syncer with a fake kernel per node and mode."""

    def __init__(self, mode: str):
        self.mode = mode
        self.pods: dict[str, dict] = {}
        self.namespaces = {n: namespace_object(n) for n in "xyz"}
        self.policies: dict[str, dict] = {}
        counters = {n: 10 for n in NODES}
        for key, node in PLACEMENT.items():
            counters[node] += 1
            self.pods[key] = pod_object(key, f"{NODES[node]}.{counters[node]}", node)
        self.kernels = {n: FakeIptables() if mode == "iptables" else FakeNft() for n in NODES}
        self.syncers = {n: PolicySyncer(self.kernels[n], n) for n in NODES}

    def ip(self, key: str) -> str:
        return self.pods[key]["status"]["podIP"] if key in self.pods else key

    def sync(self) -> None:
        for s in self.syncers.values():
            for obj in self.namespaces.values():
                s.namespace_changes.on_add(obj)
            for obj in self.pods.values():
                s.pod_changes.on_add(obj)
            known = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in self.policies.values()}
            for key in list(s.policies):
                if key not in known:
                    s.policy_changes.on_delete({"metadata": dict(zip(("namespace", "name"), key.split("/"), strict=True))})
            for obj in self.policies.values():
                s.policy_changes.on_add(obj)
            result = s.sync()
            assert result.ok, result.error

    def add(self, *objs: dict) -> None:
        for obj in objs:
            self.policies[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = obj
        self.sync()

    def passes(self, src: str, dst: str, protocol: str = "TCP", port: int = 80) -> bool:
        """Does a new connection get through the source node's and destination node's rules?"""
        src_ip, dst_ip = self.ip(src), self.ip(dst)
        nodes = [PLACEMENT[k] for k in (src, dst) if k in PLACEMENT]
        for node in dict.fromkeys(nodes):
            hook = "FORWARD"
            if trace(self.kernels[node], hook, src_ip, dst_ip, protocol, port) == "DROP":
                return False
        return True

    def reference(self, src: str, dst: str, protocol: str = "TCP", port: int = 80) -> bool:
        infos = {k: model.pod_info(o) for k, o in self.pods.items()}
        namespaces = dict(model.namespace_labels(o) for o in self.namespaces.values())
        policies = [parse_policy(o) for o in self.policies.values()]
        return model.allows(policies, namespaces, infos.get(src, src), infos.get(dst, dst),
                            protocol, port)

    def matrix(self, protocol: str = "TCP", port: int = 80) -> dict[tuple[str, str], bool]:
        return {(s, d): self.passes(s, d, protocol, port) for s in PLACEMENT for d in PLACEMENT
                if s != d}


def expect(c: Cluster, default: bool, exceptions=(), protocol: str = "TCP", port: int = 80) -> None:
    """Upstream's NewReachability(default) with Expect(from, to, !default) for each exception
    (`x/*`: a namespace, `*`: anyone), compared cell by cell with the rules and the reference."""
    def hits(pattern: str, key: str) -> bool:
        return pattern == "*" or pattern == key or (pattern.endswith("/*") and key.startswith(pattern[:-1]))

    wrong = []
    for (s, d), got in c.matrix(protocol, port).items():
        want = default
        for src_pattern, dst_pattern, *value in exceptions:   # in order, as Expect calls
            if hits(src_pattern, s) and hits(dst_pattern, d):
                want = value[0] if value else not default
        ref = c.reference(s, d, protocol, port)
        if got != want or ref != want:
            wrong.append(f"{s} -> {d}: rules {got}, reference {ref}, expected {want}")
    assert not wrong, f"{c.mode} {protocol}/{port}:\n" + "\n".join(wrong)


@pytest.fixture(params=MODES)
def cluster(request) -> Cluster:
    c = Cluster(request.param)
    c.sync()
    return c


# -- upstream's semantics, rule by rule ------------------------------------------------------------

def test_no_policy_everything_open(cluster):
    expect(cluster, True)


def test_default_deny_ingress_isolates_only_its_namespace(cluster):
    cluster.add(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    expect(cluster, True, [("*", "x/*")])


def test_default_deny_egress(cluster):
    cluster.add(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Egress"]}))
    expect(cluster, True, [("x/*", "*")])


def test_policy_types_default_ingress_only_without_egress_rules(cluster):
    # no policyTypes, no egress: Ingress only, so x's egress stays open
    cluster.add(policy("x", "deny", {"podSelector": {}}))
    expect(cluster, True, [("*", "x/*")])


def test_policy_types_default_includes_egress_when_egress_rules_exist(cluster):
    cluster.add(policy("x", "p", {"podSelector": {"matchLabels": {"pod": "a"}},
                                  "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    # x/a: ingress isolated with no rules (deny all), egress only to x/b
    expect(cluster, True, [("*", "x/a"), ("x/a", "*"), ("x/a", "x/b", True)])


def test_pod_selector_allows_same_namespace_peer(cluster):
    cluster.add(policy("x", "a-from-b", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    expect(cluster, True, [("*", "x/a"), ("x/b", "x/a", True)])


def test_union_of_policies(cluster):
    peer = {"podSelector": {"matchLabels": {"pod": "b"}}}
    cluster.add(policy("x", "p1", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [peer]}]}),
                policy("x", "p2", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}))
    expect(cluster, True, [("*", "x/a"), ("x/b", "x/a", True), ("x/c", "x/a", True)])


def test_namespace_selector_alone_means_every_pod_of_those_namespaces(cluster):
    cluster.add(policy("x", "from-y", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    expect(cluster, True, [("*", "x/a"), ("y/*", "x/a", True)])


def test_pod_and_namespace_selectors_in_one_peer_and(cluster):
    cluster.add(policy("x", "and", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "ns", "operator": "NotIn", "values": ["x"]}]},
            "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    expect(cluster, True, [("*", "x/a"), ("y/b", "x/a", True), ("z/b", "x/a", True)])


def test_pod_or_namespace_selectors_in_two_peers_or(cluster):
    cluster.add(policy("x", "or", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
            {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    expect(cluster, True, [("x/c", "x/a")])


def test_egress_and_ingress_must_both_allow(cluster):
    cluster.add(policy("x", "a-out", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                                      "egress": [{"to": [{"namespaceSelector": {}}]}]}),
                policy("y", "b-in", {"podSelector": {"matchLabels": {"pod": "b"}},
                                     "ingress": [{"from": [{"podSelector": {}}]}]}))
    # x/a may send anywhere, but y/b takes only its own namespace
    assert not cluster.passes("x/a", "y/b")
    assert cluster.passes("y/a", "y/b") and cluster.passes("x/a", "y/a")
    expect(cluster, True, [("x/*", "y/b"), ("z/*", "y/b")])


def test_ports_numbers_ranges_protocols(cluster):
    cluster.add(policy("x", "ports", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": 81}, {"protocol": "UDP", "port": 80, "endPort": 90}]}]}))
    expect(cluster, True, [("*", "x/a")], "TCP", 80)
    expect(cluster, True, [], "TCP", 81)
    expect(cluster, True, [], "UDP", 85)
    expect(cluster, True, [("*", "x/a")], "UDP", 91)
    expect(cluster, True, [("*", "x/a")], "SCTP", 81)


def test_port_without_number_is_every_port_of_the_protocol(cluster):
    cluster.add(policy("x", "udp", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}))
    expect(cluster, True, [("*", "x/*")], "TCP", 80)
    expect(cluster, True, [], "UDP", 4000)


def test_named_port_resolves_on_the_destination_pod(cluster):
    cluster.pods["x/a"]["spec"]["containers"][0]["ports"] = [
        {"name": "web", "containerPort": 8080, "protocol": "TCP"}]
    cluster.pods["y/a"]["spec"]["containers"][0]["ports"] = [
        {"name": "web", "containerPort": 9090, "protocol": "TCP"}]
    cluster.add(policy("x", "named-in", {"podSelector": {}, "ingress": [{"ports": [{"port": "web"}]}]}),
                policy("z", "named-out", {"podSelector": {}, "policyTypes": ["Egress"],
                                          "egress": [{"ports": [{"port": "web"}]}]}))
    expect(cluster, True, [("*", "x/*"), ("z/*", "*")], "TCP", 80)
    expect(cluster, True, [("*", "x/b"), ("*", "x/c"), ("z/*", "*"), ("z/*", "x/a", True)], "TCP", 8080)
    expect(cluster, True, [("*", "x/*"), ("z/*", "*"), ("z/*", "y/a", True)], "TCP", 9090)


def test_ip_block_with_except(cluster):
    cluster.add(policy("x", "block", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}]}]}))
    # w2's pods are the except; w1's pods are in
    expect(cluster, True, [("*", "x/a"), ("x/c", "x/a", True), ("y/b", "x/a", True),
                           ("z/a", "x/a", True), ("z/c", "x/a", True)])


def test_ip_blocks_are_read_as_the_api_server_reads_them(cluster):
    # the API server accepts Go's sloppy forms (leading zeros, host bits): so must the agent
    cluster.add(policy("x", "sloppy", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "010.244.000.1/16", "except": ["10.244.02.9/24"]}}]}]}))
    expect(cluster, True, [("*", "x/a"), ("x/c", "x/a", True), ("y/b", "x/a", True),
                           ("z/a", "x/a", True), ("z/c", "x/a", True)])
    assert parse_policy(cluster.policies["x/sloppy"]).ingress[0].peers[0] == model.Peer(
        cidr="10.244.0.0/16", excepts=("10.244.2.0/24",))


def test_ip_blocks_of_one_rule_are_each_their_own_except(cluster):
    # merging the two naively with nomatch would wrongly drop w2's pods
    cluster.add(policy("x", "blocks", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.2.0/24"]}},
                              {"ipBlock": {"cidr": "10.244.0.0/16"}}]}]}))
    expect(cluster, True)


def test_an_ip_block_of_everything(cluster):
    # hash:net refuses a /0: the iptables mode writes its two halves
    cluster.add(policy("x", "anywhere", {"podSelector": {}, "policyTypes": ["Egress"],
                                         "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                                         "except": ["10.244.2.0/24"]}}]}]}),
                policy("y", "anywhere", {"podSelector": {}, "ingress": [
                    {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}))
    expect(cluster, True, [("x/*", "x/b"), ("x/*", "y/a"), ("x/*", "y/c"), ("x/*", "z/b")])
    assert cluster.passes("x/a", "8.8.8.8") and cluster.passes("203.0.113.9", "y/a")


def test_a_pod_leaving_its_address_to_a_successor(cluster):
    old = pod_object("x/old", cluster.ip("x/a"), "w1", {"pod": "old"})
    old["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    cluster.pods["x/old"] = old
    # only pod a is isolated; the terminating pod on its address must not take its place
    cluster.add(policy("x", "a-from-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert cluster.passes("x/b", "x/a") and not cluster.passes("x/c", "x/a")
    plan = cluster.syncers["w1"].plan
    assert [p.pod.key for p in plan.protected] == ["x/a"] and plan.warnings == ()
    # nor may it lend its labels to its successor as a peer: x/c, on a pod b's old address
    leaving = pod_object("x/leaving-b", cluster.ip("x/c"), PLACEMENT["x/c"], {"pod": "b"})
    leaving["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    cluster.pods["x/leaving-b"] = leaving
    cluster.sync()
    assert not cluster.passes("x/c", "x/a")
    del cluster.pods["x/leaving-b"]
    # two living pods on one address: one is chosen, and the plan says so
    cluster.pods["x/twin"] = pod_object("x/twin", cluster.ip("x/a"), "w1", {"pod": "a"})
    cluster.sync()
    plan = cluster.syncers["w1"].plan
    assert len([p for p in plan.protected if p.pod.ip == cluster.ip("x/a")]) == 1
    assert plan.warnings and cluster.ip("x/a") in plan.warnings[0]


def test_long_names_stay_within_nftables_limits():
    ns, name = "n" * 63, "p" * 253
    rule = model.PlannedRule(f"{ns}/{name}", "Ingress", 0, model.PeerSets(False), ())
    names = [nftables.pod_chain(f"{ns}/{name}", "Ingress"), nftables.pod_chain(f"{ns}/{name}x", "Ingress"),
             nftables.policy_chain(f"{ns}/{name}", "Egress"), nftables.set_name(rule, "pods"),
             nftables.set_name(rule, "port", 3)]
    assert all(len(n) <= nftables.NAME_MAX for n in names) and len(set(names)) == len(names)
    assert nftables.pod_chain("x/a", "Ingress") == "pod-ingress-x/a"      # short ones as they are


@pytest.mark.parametrize("mode", MODES)
def test_the_longest_names_apply(mode):
    ns, name = "n" * 63, "p" * 253
    kernel = FakeIptables() if mode == "iptables" else FakeNft()
    s = PolicySyncer(kernel, "w1")
    s.namespace_changes.on_add(namespace_object(ns))
    s.pod_changes.on_add(pod_object(f"{ns}/{name}", "10.244.1.11", "w1"))
    s.policy_changes.on_add(policy(ns, name, {"podSelector": {}, "egress": [{}], "ingress": [
        {"from": [{"podSelector": {}}], "ports": [{"port": "serve-80-tcp"}]}]}))
    result = s.sync()
    assert result.ok, result.error
    assert trace(kernel, "FORWARD", "10.9.9.9", "10.244.1.11") == "DROP"


def test_ip_block_egress_to_an_address_that_is_no_pod(cluster):
    cluster.add(policy("x", "out", {"podSelector": {}, "policyTypes": ["Egress"],
                                    "egress": [{"to": [{"ipBlock": {"cidr": "172.16.0.0/24"}}]}]}))
    assert cluster.passes("x/a", "172.16.0.9")
    assert not cluster.passes("x/a", "172.16.1.9")
    assert not cluster.passes("x/a", "y/a")


def test_host_network_pods_are_not_isolated_nor_peers(cluster):
    pod = pod_object("x/h", "10.0.0.5", "w1", {"pod": "a"})
    pod["spec"]["hostNetwork"] = True
    cluster.pods["x/h"] = pod
    cluster.add(policy("x", "deny", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    info = model.pod_info(pod)
    plan = model.resolve([parse_policy(o) for o in cluster.policies.values()],
                         [info], {}, "w1")
    assert plan.protected == ()
    assert "10.0.0.5" not in cluster.kernels["w1"].restores[-1] if cluster.mode == "iptables" else True


def test_a_host_network_pod_is_only_an_address_to_policies():
    policies = [parse_policy(policy("x", "from-a", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}))]
    host = model.pod_info(pod_object("y/a", "10.0.0.5", "w1"))
    host = model.PodInfo(host.namespace, host.name, host.ip, host.node, host.labels,
                         host.named_ports, host_network=True)
    pod = model.pod_info(pod_object("y/a", "10.244.2.5", "w2"))
    target = model.pod_info(pod_object("x/b", "10.244.1.5", "w1"))
    namespaces = {n: namespace_object(n)["metadata"]["labels"] for n in "xy"}
    assert model.allows(policies, namespaces, pod, target)
    assert not model.allows(policies, namespaces, host, target)   # its labels do not count
    # and as a destination, a host-network pod is not isolated, nor a pod peer of egress
    assert model.allows(policies, namespaces, target, host)
    out = [parse_policy(policy("x", "to-a", {"podSelector": {}, "policyTypes": ["Egress"],
                                             "egress": [{"to": [{"namespaceSelector": {},
                                                                 "podSelector": {"matchLabels": {"pod": "a"}}}]}]}))]
    assert model.allows(out, namespaces, target, pod)
    assert not model.allows(out, namespaces, target, host)


def test_pods_without_an_address_or_on_the_hosts_are_left_out_of_the_plan():
    deny = parse_policy(policy("x", "deny", {"podSelector": {}}))
    pending = model.pod_info(pod_object("x/pending", "", "w1"))
    host = [model.PodInfo("x", f"h{i}", "172.16.1.2", "w1", (("pod", "a"),), (), True)
            for i in range(2)]
    running = model.pod_info(pod_object("x/a", "10.244.1.11", "w1"))
    plan = model.resolve([deny], [pending, *host, running], {}, "w1")
    assert [p.pod.key for p in plan.protected] == ["x/a"]
    assert plan.warnings == ()          # host-network pods share their node's address: no clash


def test_only_named_container_ports_are_named_ports():
    obj = pod_object("x/a", "10.244.1.5", "w1", ports=[
        {"containerPort": 80, "protocol": "TCP"}, {"name": "web", "containerPort": 8080}])
    assert model.pod_info(obj).named_ports == (("web", "TCP", 8080),)


def test_an_egress_named_port_with_selector_and_block_peers_reaches_both(cluster):
    # x/a may send to its own namespace's b pods, or to anything in w1's pod range, on the
    # named port serve-81-tcp; z/a (on w1) is reached through the block, y/b (w1) too
    cluster.add(policy("x", "out", {"podSelector": {"matchLabels": {"pod": "a"}},
                                    "policyTypes": ["Egress"],
                                    "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                                                       {"ipBlock": {"cidr": "10.244.1.0/24"}}],
                                                "ports": [{"port": "serve-81-tcp"}]}]}))
    assert cluster.passes("x/a", "x/b", "TCP", 81)
    assert cluster.passes("x/a", "z/a", "TCP", 81) and cluster.passes("x/a", "y/b", "TCP", 81)
    assert not cluster.passes("x/a", "y/a", "TCP", 81)         # w2, not a b of x
    assert not cluster.passes("x/a", "z/a", "TCP", 80)
    expect(cluster, True, [("x/a", "*")], "TCP", 80)


def test_empty_from_list_and_empty_rule_allow_everyone(cluster):
    cluster.add(policy("x", "all", {"podSelector": {}, "ingress": [{}]}),
                policy("y", "all", {"podSelector": {}, "ingress": [{"from": [], "ports": []}]}))
    expect(cluster, True)


def test_finished_pods_are_forgotten(cluster):
    cluster.pods["y/b"]["status"]["phase"] = "Succeeded"
    cluster.add(policy("x", "from-b", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert model.pod_info(cluster.pods["y/b"]) is None
    assert not cluster.passes("y/b", "x/a")    # its address left the set
    assert cluster.passes("z/b", "x/a")


def test_the_input_hook_polices_egress_to_the_node_itself(cluster):
    cluster.add(policy("x", "deny-out", {"podSelector": {}, "policyTypes": ["Egress"]}))
    kernel = cluster.kernels["w1"]
    assert trace(kernel, "INPUT", cluster.ip("x/a"), "10.244.1.1") == "DROP"
    assert trace(kernel, "INPUT", cluster.ip("y/b"), "10.244.1.1") == "ACCEPT"


# -- generated cases against the reference ---------------------------------------------------------

def _random_selector(rng: random.Random, values) -> dict:
    choice = rng.random()
    if choice < 0.25:
        return {}
    if choice < 0.6:
        return {"matchLabels": {"pod" if "a" in values else "ns": rng.choice(values)}}
    op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
    key = "pod" if "a" in values else "ns"
    expr = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = rng.sample(values, rng.randint(1, 2))
    return {"matchExpressions": [expr]}


def _random_peer(rng: random.Random) -> dict:
    kind = rng.random()
    if kind < 0.3:
        return {"podSelector": _random_selector(rng, ["a", "b", "c"])}
    if kind < 0.55:
        return {"namespaceSelector": _random_selector(rng, ["x", "y", "z"])}
    if kind < 0.8:
        return {"podSelector": _random_selector(rng, ["a", "b", "c"]),
                "namespaceSelector": _random_selector(rng, ["x", "y", "z"])}
    block = {"cidr": rng.choice(["10.244.0.0/16", "10.244.1.0/24", "10.244.2.0/25", "10.244.1.12/32",
                                 "0.0.0.0/0"])}
    if rng.random() < 0.5:
        block["except"] = [rng.choice(["10.244.1.12/32", "10.244.2.0/26", "10.244.1.0/28"])]
        if not all(_within(e, block["cidr"]) for e in block["except"]):
            block.pop("except")
    return {"ipBlock": block}


def _within(inner: str, outer: str) -> bool:
    import ipaddress
    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a != b and a.subnet_of(b)


def _random_rule(rng: random.Random, peers_key: str) -> dict:
    rule: dict = {}
    if rng.random() < 0.8:
        rule[peers_key] = [_random_peer(rng) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.5:
        ports = []
        for _ in range(rng.randint(1, 2)):
            kind = rng.random()
            proto = rng.choice(["TCP", "UDP"])
            if kind < 0.4:
                ports.append({"protocol": proto, "port": rng.choice([80, 81])})
            elif kind < 0.6:
                ports.append({"protocol": proto, "port": 80, "endPort": 81})
            elif kind < 0.8:
                ports.append({"protocol": proto, "port": f"serve-{rng.choice([80, 81])}-{proto.lower()}"})
            else:
                ports.append({"protocol": proto})
        rule["ports"] = ports
    return rule


def _random_policy(rng: random.Random, i: int) -> dict:
    spec: dict = {"podSelector": _random_selector(rng, ["a", "b", "c"])}
    types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"], None])
    if types:
        spec["policyTypes"] = types
    if rng.random() < 0.7:
        spec["ingress"] = [_random_rule(rng, "from") for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.6:
        spec["egress"] = [_random_rule(rng, "to") for _ in range(rng.randint(0, 2))]
    return policy(rng.choice("xyz"), f"p{i}", spec)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(12))
def test_generated_policies_match_the_reference(mode, seed):
    rng = random.Random(seed)
    c = Cluster(mode)
    c.add(*(_random_policy(rng, i) for i in range(rng.randint(1, 4))))
    wrong = []
    for protocol, port in (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)):
        for s in PLACEMENT:
            for d in PLACEMENT:
                if s != d and c.passes(s, d, protocol, port) != c.reference(s, d, protocol, port):
                    wrong.append(f"{s} -> {d} {protocol}/{port}: rules {c.passes(s, d, protocol, port)}")
    assert not wrong, f"policies {list(c.policies.values())}:\n" + "\n".join(wrong[:10])


# -- the text itself ---------------------------------------------------------------------------------

def test_iptables_text_layout_and_names():
    c = Cluster("iptables")
    c.add(policy("x", "a-from-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                                "ports": [{"port": 80}]}]}))
    kernel = c.kernels["w1"]
    pod = iptables.pod_chain("x/a", "Ingress")
    pol = iptables.policy_chain("x/a-from-b", "Ingress")
    assert len(pod) <= 28 and len(pol) <= 28
    assert kernel.chains_["FORWARD"][0] == f"-j {iptables.FORWARD_CHAIN}"
    assert kernel.chains_["INPUT"][0] == f"-j {iptables.INPUT_CHAIN}"
    assert f'-d {c.ip("x/a")}/32 -m comment --comment "x/a ingress" -j {pod}' in kernel.chains_[iptables.FORWARD_CHAIN]
    assert kernel.chains_[pod][-1].endswith("-j DROP")
    (rule,) = kernel.chains_[pol]
    (name,) = [n for n in kernel.sets if n.startswith("KUBE-NP-P-")]
    assert f"-m set --match-set {name} src -p tcp -m tcp --dport 80" in rule
    assert kernel.sets[name].members == {c.ip("x/b")}
    # w2 holds no pod x/a selects: nothing but the top chains
    assert set(c.kernels["w2"].chains_) == {"FORWARD", "INPUT", "OUTPUT", *iptables.TOP_CHAINS}


def test_nftables_text_is_one_table_with_readable_names():
    c = Cluster("nftables")
    c.add(policy("x", "a-from-b", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    table = c.kernels["w1"].table
    assert table.hooks == {"forward": "forward", "input": "input"}
    assert "pod-ingress-x/a" in table.chains and "policy-ingress-x/a-from-b" in table.chains
    assert table.sets["rule-x/a-from-b/ingress/0/pods"].members == {c.ip("x/b")}
    assert table.sets["ingress-pods"].members == {f"{c.ip('x/a')} : jump pod-ingress-x/a"}
    text = c.kernels["w1"].restores[-1]
    assert text.startswith("add table ip kube-netpol\ndelete table ip kube-netpol\n")


def test_ip_block_networks_are_exact():
    peer = model.Peer(cidr="10.0.0.0/8", excepts=("10.1.0.0/16", "10.1.2.0/24", "11.0.0.0/8"))
    nets = model.block_networks(peer)
    import ipaddress
    covered = ipaddress.ip_network("10.1.0.0/16")
    assert all(not n.overlaps(covered) for n in nets)
    assert sum(n.num_addresses for n in nets) == 2 ** 24 - 2 ** 16
    assert nftables.set_name(model.PlannedRule("x/p", "Ingress", 2, model.PeerSets(False), ()), "nets") \
        == "rule-x/p/ingress/2/nets"
