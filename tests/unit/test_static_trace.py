"""The static tracer (testbed.trace.static) over hand-built Worlds of the article's topology,
whose rules are rendered by the project's own renderers: kube-proxy's (testbed.proxy.iptables,
testbed.proxy.nftables) and the NetworkPolicy agent's (through its syncer into the fakes), in
both modes. Plus the walker over `nft list table` text as the kernel prints it."""

from __future__ import annotations

import pytest

from testbed.netpol import iptables as np_iptables
from testbed.netpol import nftables as np_nftables
from testbed.netpol.fakes import FakeIptables, FakeNft
from testbed.netpol.fakes import trace as fake_trace
from testbed.netpol.model import INGRESS
from testbed.netpol.syncer import PolicySyncer
from testbed.proxy import iptables, names, nftables
from testbed.proxy.model import LocalDetector, ProxierSettings
from testbed.proxy.objects import build_state
from testbed.proxy.tracer import trace as proxy_trace
from testbed.trace.netfilter import Iptables, Packet, TraceError, Walk
from testbed.trace.static import HostState, World, static_trace
from tests.unit.test_netpol_rules import namespace_object, pod_object, policy

MODES = ("iptables", "nftables")
CLUSTER_IP, EMPTY_IP = "10.3.241.152", "10.3.241.200"
NODES = {"node1": ("10.100.0.2", "10.0.1"), "node2": ("10.100.0.3", "10.0.2")}
PODS = {  # key -> (ip, node, labels)
    "default/client-1": ("10.0.1.2", "node1", {"role": "client"}),
    "default/web-a": ("10.0.1.3", "node1", {"app": "web"}),
    "default/web-b": ("10.0.2.3", "node2", {"app": "web"}),
}
VETH = {key: f"veth{i:08x}" for i, key in enumerate(PODS)}
WEB_A, WEB_B = "10.0.1.3:8080", "10.0.2.3:8080"


def _route(dst: str, dev: str, gateway: str | None = None, src: str | None = None) -> dict:
    r = {"dst": dst, "dev": dev}
    if gateway:
        r["gateway"] = gateway
    if src:
        r["prefsrc"] = src
    return r


def _objects() -> list[dict]:
    def service(name, ip, **extra):
        return {"kind": "Service", "metadata": {"namespace": "default", "name": name},
                "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 8080,
                                                     "protocol": "TCP", **extra.pop("port", {})}],
                         **extra}}

    def slice_(name, pods):
        return {"kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"namespace": "default", "name": f"{name}-1",
                             "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"addresses": [PODS[p][0]], "nodeName": PODS[p][1],
                               "conditions": {"ready": True}} for p in pods],
                "ports": [{"port": 8080, "protocol": "TCP"}]}

    return [service("service-test", CLUSTER_IP), slice_("service-test", ["default/web-a",
                                                                         "default/web-b"]),
            service("empty", EMPTY_IP), slice_("empty", []),
            service("web-np", "10.3.241.160", type="NodePort", port={"nodePort": 30080},
                    externalTrafficPolicy="Cluster"),
            slice_("web-np", ["default/web-a"])]


def _proxy_rules(mode: str, node: str, jumps: bool = True) -> str:
    node_ip, prefix = NODES[node]
    settings = ProxierSettings(node_name=node, node_ip=node_ip,
                               local_ips=(node_ip, f"{prefix}.1"),
                               local_detector=LocalDetector("ClusterCIDR", "10.0.0.0/16"),
                               service_cidrs=("10.3.240.0/20",), has_random_fully=True)
    state, issues = build_state(_objects(), "IPv4")
    assert not issues
    if mode == "nftables":
        return nftables.render(state.services, state.endpoints, settings)
    text = iptables.render(state.services, state.endpoints, settings)
    if not jumps:
        return text
    declared = {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}
    return iptables.with_jump_rules(text, [r for r in iptables.JUMP_RULES
                                           if r.args[-1] in declared])


def _netpol(mode: str, node: str, policies: list[dict]) -> tuple[object, dict[str, str]]:
    """The NetworkPolicy agent's rules on `node`, as the World's dump fields."""
    fake = FakeIptables() if mode == "iptables" else FakeNft()
    syncer = PolicySyncer(fake, node)
    syncer.namespace_changes.on_add(namespace_object("default"))
    for key, (ip, pod_node, labels) in PODS.items():
        syncer.pod_changes.on_add(pod_object(key, ip, pod_node, labels,
                                             ports=[{"name": "http", "containerPort": 8080}]))
    for obj in policies:
        syncer.policy_changes.on_add(obj)
    assert syncer.sync().ok
    if mode == "nftables":
        text = next(t for t in reversed(fake.restores) if "table ip kube-netpol {" in t)
        return fake, {"nft_netpol": text}
    lines = ["*filter"]
    lines += [f":{c} - [0:0]" for c in fake.chains_ if c not in ("FORWARD", "INPUT", "OUTPUT")]
    for chain, rules in fake.chains_.items():
        for rule in rules:     # the agent's jumps go first, as its ensure_first keeps them
            lines.append(f"-I {chain} 1 {rule}" if chain in ("FORWARD", "INPUT")
                         else f"-A {chain} {rule}")
    sets = []
    for name, s in fake.sets.items():
        sets.append(f"create {name} {s.type} family inet hashsize 1024 maxelem 65536")
        sets += [f"add {name} {m}" for m in sorted(s.members)]
    return fake, {"iptables_save": "\n".join(lines + ["COMMIT"]) + "\n",
                  "ipset_save": "\n".join(sets) + "\n"}


def world(mode: str, policies: list[dict] = ()) -> tuple[World, dict]:
    hosts: dict[str, HostState] = {}
    fakes = {}
    for node, (ip, prefix) in NODES.items():
        fake, dumps = _netpol(mode, node, list(policies))
        fakes[node] = fake
        proxy = _proxy_rules(mode, node)
        ipt = proxy + dumps.get("iptables_save", "") if mode == "iptables" else ""
        hosts[node] = HostState(
            node, "worker", {"lo": ("127.0.0.1/8",), f"{node}-eth0": (f"{ip}/24",),
                             "cbr0": (f"{prefix}.1/24",)},
            (_route("default", f"{node}-eth0", "10.100.0.1"),
             _route(f"{prefix}.0/24", "cbr0", src=f"{prefix}.1"),
             _route("10.100.0.0/24", f"{node}-eth0", src=ip)),
            bridge="cbr0", proxy_mode=mode, netpol_mode=mode,
            pod_veths={k: (p[0], VETH[k]) for k, p in PODS.items() if p[1] == node},
            iptables_save=ipt, ipset_save=dumps.get("ipset_save", ""),
            nft_proxy=proxy if mode == "nftables" else "",
            nft_netpol=dumps.get("nft_netpol", ""))
    hosts["gateway"] = HostState(
        "gateway", "gateway", {"br-nodes": ("10.100.0.1/24",), "br-clients": ("203.0.113.1/24",)},
        (_route("10.0.1.0/24", "br-nodes", "10.100.0.2"),
         _route("10.0.2.0/24", "br-nodes", "10.100.0.3"),
         _route("10.100.0.0/24", "br-nodes", src="10.100.0.1"),
         _route("203.0.113.0/24", "br-clients", src="203.0.113.1")))
    hosts["client"] = HostState("client", "client", {"client-eth0": ("203.0.113.2/24",)},
                                (_route("default", "client-eth0", "203.0.113.1"),
                                 _route("203.0.113.0/24", "client-eth0", src="203.0.113.2")))
    for key, (ip, node, _) in PODS.items():
        prefix = NODES[node][1]
        hosts[key] = HostState(key, "pod", {"lo": ("127.0.0.1/8",), "eth0": (f"{ip}/24",)},
                               (_route("default", "eth0", f"{prefix}.1"),
                                _route(f"{prefix}.0/24", "eth0", src=ip)), node=node)
    return World(hosts), fakes


def hosts(t: dict, key: str = "hops") -> list[str]:
    return [h["host"] for h in t[key]]


def hop(t: dict, host: str, key: str = "hops") -> dict:
    return next(h for h in t[key] if h["host"] == host)


def nat_chains(t: dict, host: str) -> list[str]:
    """The chains of kube-proxy's DNAT path at `host`, in the order hit."""
    chains = hop(t, host)["chains"]
    return [c for c in chains if c.startswith("nat/") or c.startswith("kube-proxy/")
            and not c.startswith(("kube-proxy/filter-", "kube-proxy/firewall-"))]


def expected_dnat_chains(mode: str, ip: str) -> list[str]:
    spn = "default/service-test"
    if mode == "iptables":
        return ["nat/PREROUTING", "nat/KUBE-SERVICES", f"nat/{names.svc_chain(spn, 'tcp')}",
                f"nat/{names.sep_chain(spn, 'tcp', f'{ip}:8080')}"]
    base = names.nft_service_base("default", "service-test", "tcp", "")
    ep = names.nft_endpoint_base("default", "service-test", "tcp", "", ip, 8080)
    return ["kube-proxy/nat-prerouting", "kube-proxy/services",
            f"kube-proxy/{names.nft_service_chain(base)}",
            f"kube-proxy/{names.nft_endpoint_chain(ep)}"]


@pytest.mark.parametrize("mode", MODES)
def test_cluster_ip_to_an_endpoint_on_the_other_node(mode):
    w, _ = world(mode)
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.2.3")
    assert t["mode"] == "static" and t["verdict"] == "delivered" and t["cause"] is None
    assert t["endpoint"] == "default/web-b"
    assert t["endpoints"] == [WEB_A, WEB_B]
    assert hosts(t) == ["default/client-1", "node1", "gateway", "node2", "default/web-b"]
    assert nat_chains(t, "node1")[:4] == expected_dnat_chains(mode, "10.0.2.3")
    assert hop(t, "node1")["nat"] == [{"type": "dnat", "from": f"{CLUSTER_IP}:80", "to": WEB_B}]
    # the source is kept: no masquerade for pod traffic to a ClusterIP
    assert hop(t, "node2")["packet"] == {"src": "10.0.1.2", "dst": WEB_B}
    assert hop(t, "default/web-b")["packet"] == {"src": "10.0.1.2", "dst": WEB_B}
    assert hop(t, "node1")["route"] == "10.0.2.3 via 10.100.0.1 dev node1-eth0 src 10.100.0.2"
    assert hop(t, "node1")["bridgePort"] == {"in": VETH["default/client-1"], "out": None}
    assert hop(t, "node2")["bridgePort"] == {"in": None, "out": VETH["default/web-b"]}
    assert hop(t, "node2")["in"] == "node2-eth0" and hop(t, "node2")["out"] == "cbr0"
    assert [h["verdict"] for h in t["hops"]] == [None, None, None, None, "accept"]
    # node2 has no DNAT to do: back in the base chain after the services chain, whose policy
    # then accepts it (named again, as nft's trace names it)
    if mode == "iptables":
        assert hop(t, "node2")["chains"][:3] == ["nat/PREROUTING", "nat/KUBE-SERVICES",
                                                 "nat/PREROUTING"]
        assert {"chain": "nat/PREROUTING", "rule": "-P PREROUTING ACCEPT",
                "verdict": "accept"} in hop(t, "node2")["rules"]
    else:
        i = hop(t, "node2")["chains"].index("kube-proxy/nat-prerouting")
        assert hop(t, "node2")["chains"][i:i + 3] == [
            "kube-proxy/nat-prerouting", "kube-proxy/services", "kube-proxy/nat-prerouting"]
    # the reply comes back the same way, un-DNATed where it was DNATed
    assert hosts(t, "reply") == list(reversed(hosts(t)))
    assert hop(t, "node1", "reply")["nat"] == [
        {"type": "un-dnat", "from": WEB_B, "to": f"{CLUSTER_IP}:80"}]
    assert not any(c.startswith("nat/") for h in t["reply"] for c in h["chains"])


@pytest.mark.parametrize("mode", MODES)
def test_the_default_endpoint_is_the_first_the_rules_list(mode):
    w, _ = world(mode)
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp")
    assert t["endpoint"] == "default/web-a" and t["endpoints"] == [WEB_A, WEB_B]
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint=WEB_B)
    assert t["endpoint"] == "default/web-b"


@pytest.mark.parametrize("mode", MODES)
def test_cluster_ip_to_an_endpoint_on_the_same_node(mode):
    w, _ = world(mode)
    t = static_trace(w, "client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.1.3")
    assert t["from"] == "default/client-1"          # a default-namespace pod by its name
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/web-a"
    assert hosts(t) == ["default/client-1", "node1", "default/web-a"]     # no gateway hop
    assert nat_chains(t, "node1")[:4] == expected_dnat_chains(mode, "10.0.1.3")
    assert hop(t, "node1")["bridgePort"] == {"in": VETH["default/client-1"],
                                             "out": VETH["default/web-a"]}
    assert hop(t, "node1")["in"] == hop(t, "node1")["out"] == "cbr0"
    assert hop(t, "default/web-a")["packet"]["src"] == "10.0.1.2"
    # the reply is bridged back on node1, whose conntrack un-DNATs it
    assert hosts(t, "reply") == ["default/web-a", "node1", "default/client-1"]
    assert hop(t, "node1", "reply")["nat"][0]["type"] == "un-dnat"


@pytest.mark.parametrize("mode", MODES)
def test_a_service_without_endpoints_is_rejected(mode):
    w, _ = world(mode)
    t = static_trace(w, "default/client-1", EMPTY_IP, 80, "tcp")
    assert t["verdict"] == "rejected" and t["endpoint"] is None and t["endpoints"] == []
    assert hosts(t) == ["default/client-1", "node1"]
    cause = t["cause"]
    assert cause["host"] == "node1" and cause["verdict"] == "reject"
    assert [h["verdict"] for h in t["hops"]] == [None, "reject"]
    if mode == "iptables":
        assert cause["chain"] == "filter/KUBE-SERVICES"
        assert cause["rule"].startswith("-A KUBE-SERVICES ") and "-j REJECT" in cause["rule"]
        assert "has no endpoints" in cause["rule"] and f"-d {EMPTY_IP}" in cause["rule"]
    else:
        assert cause["chain"] == "kube-proxy/reject-chain" and cause["rule"] == "reject"
        assert "kube-proxy/service-endpoints-check" in hop(t, "node1")["chains"]
    assert t["reply"] == []


@pytest.mark.parametrize("mode", MODES)
def test_node_port_from_a_client_is_masqueraded(mode):
    w, _ = world(mode)
    t = static_trace(w, "client", "10.100.0.3", 30080, "tcp")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/web-a"
    assert t["endpoints"] == [WEB_A]
    assert hosts(t) == ["client", "gateway", "node2", "gateway", "node1", "default/web-a"]
    assert hop(t, "node2")["nat"] == [
        {"type": "dnat", "from": "10.100.0.3:30080", "to": WEB_A},
        {"type": "masquerade", "from": "203.0.113.2", "to": "10.100.0.3"}]
    assert hop(t, "default/web-a")["packet"] == {"src": "10.100.0.3", "dst": WEB_A}
    if mode == "iptables":
        assert {"nat/KUBE-NODEPORTS", "nat/KUBE-MARK-MASQ", "nat/KUBE-POSTROUTING"} <= \
            set(hop(t, "node2")["chains"])
    else:
        assert {"kube-proxy/mark-for-masquerade", "kube-proxy/masquerading"} <= \
            set(hop(t, "node2")["chains"])
    reply = t["reply"]
    # the reply to node2's address goes straight over the node LAN, then back by the gateway
    assert hosts(t, "reply") == ["default/web-a", "node1", "node2", "gateway", "client"]
    assert hop(t, "node1", "reply")["route"] == "10.100.0.3 dev node1-eth0 src 10.100.0.2"
    assert hop(t, "node2", "reply")["nat"] == [
        {"type": "un-snat", "from": "10.100.0.3", "to": "203.0.113.2"},
        {"type": "un-dnat", "from": WEB_A, "to": "10.100.0.3:30080"}]
    assert reply[-1]["packet"] == {"src": "10.100.0.3:30080", "dst": "203.0.113.2"}


@pytest.mark.parametrize("mode", MODES)
def test_hairpin_is_masqueraded_to_the_bridge_address(mode):
    w, _ = world(mode)
    t = static_trace(w, "default/web-a", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.1.3")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/web-a"
    assert hosts(t) == ["default/web-a", "node1", "default/web-a"]
    assert hop(t, "node1")["bridgePort"] == {"in": VETH["default/web-a"],
                                             "out": VETH["default/web-a"]}
    assert hop(t, "node1")["nat"][1] == {"type": "masquerade", "from": "10.0.1.3",
                                         "to": "10.0.1.1"}
    masq_chain = "nat/KUBE-MARK-MASQ" if mode == "iptables" else "kube-proxy/mark-for-masquerade"
    assert masq_chain in hop(t, "node1")["chains"]
    # without the hairpin the same connection from another pod is not masqueraded
    other = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.1.3")
    assert [n["type"] for n in hop(other, "node1")["nat"]] == ["dnat"]


DENY_WEB = policy("default", "deny-web", {"podSelector": {"matchLabels": {"app": "web"}},
                                          "policyTypes": ["Ingress"]})
ALLOW_CLIENTS = policy("default", "allow-clients", {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                 "ports": [{"port": "http"}]}]})


@pytest.mark.parametrize("mode", MODES)
def test_a_network_policy_drop_names_the_pod_chain(mode):
    w, fakes = world(mode, [DENY_WEB])
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.2.3")
    assert t["verdict"] == "dropped" and t["endpoint"] == "default/web-b"
    assert hosts(t) == ["default/client-1", "node1", "gateway", "node2"]
    cause = t["cause"]
    assert cause["host"] == "node2" and cause["verdict"] == "drop"
    if mode == "iptables":
        assert cause["chain"] == f"filter/{np_iptables.pod_chain('default/web-b', INGRESS)}"
        assert cause["rule"].endswith("-j DROP")
    else:
        assert cause["chain"] == f"kube-netpol/{np_nftables.pod_chain('default/web-b', INGRESS)}"
        assert "drop" in cause["rule"]
    # the agent's own fake kernel says the same
    assert fake_trace(fakes["node2"], "FORWARD", "10.0.1.2", "10.0.2.3", "TCP", 8080) == "DROP"
    # a policy letting clients in on the named port: delivered, through the policy's chain
    w, fakes = world(mode, [ALLOW_CLIENTS])
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.2.3")
    assert t["verdict"] == "delivered"
    policy_chain = (f"filter/{np_iptables.policy_chain('default/allow-clients', INGRESS)}"
                    if mode == "iptables" else
                    f"kube-netpol/{np_nftables.policy_chain('default/allow-clients', INGRESS)}")
    assert policy_chain in hop(t, "node2")["chains"]
    assert fake_trace(fakes["node2"], "FORWARD", "10.0.1.2", "10.0.2.3", "TCP", 8080) == "ACCEPT"
    # ... and no other pod
    t = static_trace(w, "default/web-a", "10.0.2.3", 8080, "tcp")
    assert t["verdict"] == "dropped" and t["cause"]["host"] == "node2"


def test_endpoints_agree_with_the_upstream_style_tracer():
    """The iptables-mode endpoints are those proxy.tracer (statistic = every branch) finds."""
    w, _ = world("iptables")
    text = _proxy_rules("iptables", "node1", jumps=False)
    for dst, port in ((CLUSTER_IP, 80), ("10.100.0.2", 30080)):
        t = static_trace(w, "default/client-1", dst, port, "tcp")
        old = proxy_trace(text, ["10.100.0.2", "10.0.1.1"], "10.0.1.2", "TCP", dst, port)
        assert t["endpoints"] == list(old.outputs)


@pytest.mark.parametrize("mode", MODES)
def test_icmp_to_a_pod_and_udp_to_nothing(mode):
    w, _ = world(mode)
    t = static_trace(w, "client", "10.0.2.3", None, "icmp")
    assert t["verdict"] == "delivered" and t["endpoint"] == "default/web-b"
    assert hosts(t) == ["client", "gateway", "node2", "default/web-b"]
    assert t["endpoints"] == [] and t["destination"] == "10.0.2.3"
    t = static_trace(w, "client", "198.51.100.77", 53, "udp")
    assert t["verdict"] == "dropped" and "no route" in t["cause"]["rule"]


def test_a_route_whose_device_has_no_address_takes_a_source_that_is_not_loopback():
    """The master under vxlan: flannel.1 holds no address (no pod CIDR of its own)."""
    w, _ = world("iptables")
    w.hosts["master"] = HostState(
        "master", "master", {"lo": ("127.0.0.1/8",), "flannel.1": (), "master-eth0": ("10.100.0.10/24",)},
        (_route("10.0.2.0/24", "flannel.1", "10.0.2.0"),
         _route("10.100.0.0/24", "master-eth0", src="10.100.0.10")))
    t = static_trace(w, "master", "10.0.2.3", None, "icmp")
    assert t["source"] == "10.100.0.10"
    assert t["hops"][0]["route"].endswith("dev flannel.1 src 10.100.0.10")


def test_bad_input_is_a_trace_error():
    w, _ = world("iptables")
    with pytest.raises(TraceError, match="no such host or pod"):
        static_trace(w, "default/nobody", CLUSTER_IP, 80, "tcp")
    with pytest.raises(TraceError, match="not an IPv4 address"):
        static_trace(w, "client", "10.3.241", 80, "tcp")
    with pytest.raises(TraceError, match="protocol"):
        static_trace(w, "client", CLUSTER_IP, 80, "sctp-ish")
    ipt = Iptables("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m foo --bar 1 -j DROP\nCOMMIT\n")
    with pytest.raises(TraceError, match="--bar"):
        ipt.walk_chain("filter", "FORWARD", Packet("10.0.0.1", "10.0.0.2", "tcp", None, 80),
                       Walk())


# `nft list table` output as nft 1.0.6 prints it (cut from a testbed cluster in nftables mode):
# elements wrapped over lines, `meta mark set meta mark | 0x00004000`, `tcp dport` in a
# concatenation, counters and comments.
KERNEL_PROXY = """table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		comment "Active ClusterIPs"
		elements = { 10.3.240.1, 10.3.240.10,
			10.3.241.152 }
	}

	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to services with no endpoints"
		elements = { 10.3.241.200 . tcp . 80 comment "default/empty" : goto reject-chain }
	}

	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.3.240.10 . tcp . 53 : goto service-NWBZK7IH-kube-system/kube-dns/tcp/dns-tcp,
			10.3.241.152 . tcp . 80 : goto service-EAFHE2E3-default/service-test/tcp/ }
	}

	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state new jump service-endpoints-check
	}

	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}

	chain masquerading {
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
		masquerade fully-random
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}

	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}

	chain reject-chain {
		comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
		reject
	}

	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}

	chain service-endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}

	chain service-EAFHE2E3-default/service-test/tcp/ {
		ip daddr 10.3.241.152 ip saddr != 10.0.0.0/16 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-4XBB5FBA-default/service-test/tcp/__10.0.1.3/8080, 1 : goto endpoint-5GFLDEPE-default/service-test/tcp/__10.0.2.3/8080 }
	}

	chain endpoint-4XBB5FBA-default/service-test/tcp/__10.0.1.3/8080 {
		ip saddr 10.0.1.3 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.0.1.3:8080
	}

	chain endpoint-5GFLDEPE-default/service-test/tcp/__10.0.2.3/8080 {
		ip saddr 10.0.2.3 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.0.2.3:8080
	}
}
"""
KERNEL_NETPOL = """table ip kube-netpol {
	comment "NetworkPolicy rules of node node1"
	map ingress-pods {
		type ipv4_addr : verdict
		elements = { 10.0.1.3 : jump pod-ingress-default/web-a }
	}

	set rule-default/allow/ingress/0/pods {
		type ipv4_addr
		elements = { 10.0.1.2, 10.0.2.2 }
	}

	set rule-default/allow/ingress/0/port-0 {
		type ipv4_addr . inet_proto . inet_service
		elements = { 10.0.1.3 . tcp . 8080 }
	}

	chain forward {
		type filter hook forward priority filter - 5; policy accept;
		ct state established,related accept
		ip daddr vmap @ingress-pods
	}

	chain pod-ingress-default/web-a {
		meta mark set meta mark & 0xfffeffff
		jump policy-ingress-default/allow
		meta mark & 0x00010000 == 0x00010000 return
		counter packets 0 bytes 0 drop comment "default/web-a: ingress not allowed by its NetworkPolicies"
	}

	chain policy-ingress-default/allow {
		ip saddr @rule-default/allow/ingress/0/pods ip daddr . meta l4proto . tcp dport @rule-default/allow/ingress/0/port-0 meta mark set meta mark | 0x00010000
	}
}
"""


def _kernel_world() -> World:
    w, _ = world("nftables")
    for node in NODES:
        w.hosts[node].nft_proxy = KERNEL_PROXY
        w.hosts[node].nft_netpol = KERNEL_NETPOL if node == "node1" else ""
    return w


def test_nft_listing_as_the_kernel_prints_it():
    w = _kernel_world()
    t = static_trace(w, "default/client-1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.1.3")
    assert t["verdict"] == "delivered" and t["endpoints"] == [WEB_A, WEB_B]
    assert nat_chains(t, "node1")[:4] == [
        "kube-proxy/nat-prerouting", "kube-proxy/services",
        "kube-proxy/service-EAFHE2E3-default/service-test/tcp/",
        "kube-proxy/endpoint-4XBB5FBA-default/service-test/tcp/__10.0.1.3/8080"]
    assert {"kube-netpol/pod-ingress-default/web-a",
            "kube-netpol/policy-ingress-default/allow"} <= set(hop(t, "node1")["chains"])
    # from a pod the policy does not name: dropped by the pod's chain, with its rule's text
    t = static_trace(w, "default/web-a", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.1.3")
    assert t["verdict"] == "dropped"
    assert t["cause"]["chain"] == "kube-netpol/pod-ingress-default/web-a"
    assert t["cause"]["rule"].startswith("drop comment \"default/web-a: ingress not allowed")  # no counters
    # to the Service without endpoints: the reject chain
    t = static_trace(w, "default/client-1", EMPTY_IP, 80, "tcp")
    assert t["verdict"] == "rejected" and t["cause"]["chain"] == "kube-proxy/reject-chain"
    # from outside the cluster CIDR: marked, and masqueraded on the way out
    t = static_trace(w, "node1", CLUSTER_IP, 80, "tcp", prefer_endpoint="10.0.2.3")
    assert [n["type"] for n in hop(t, "node1")["nat"]] == ["dnat", "masquerade"]


def test_redirect_goes_to_the_address_the_packet_came_in_on():
    ipt = Iptables("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.3.0.5/32 -p tcp -m tcp "
                   "--dport 80 -j REDIRECT --to-ports 40000\nCOMMIT\n")
    walk = Walk(in_address="10.0.1.1")
    pkt = Packet("10.0.1.2", "10.3.0.5", "tcp", None, 80)
    assert ipt.walk_chain("nat", "PREROUTING", pkt, walk) == "accept"
    assert (pkt.dst, pkt.dport) == ("10.0.1.1", 40000)
    assert walk.nat == [{"type": "redirect", "from": "10.3.0.5:80", "to": "10.0.1.1:40000"}]
