"""Fresh cases derived from rule_structure.md: specific rules for specific Service shapes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml

from testbed.proxy import names
from testbed.proxy.casefile import load_case
from testbed.proxy.iptables import render
from testbed.proxy.model import ProxierSettings
from testbed.proxy.objects import ProxyState
from testbed.proxy.tracer import trace
from testbed.spec.source import parse_documents

LOCAL_IPS = ["192.168.0.2", "192.168.1.2", "192.168.99.11"]


def svc(ns: str, name: str, ip: str, ports: list[dict[str, Any]], **spec: Any) -> dict:
    status = spec.pop("status", None)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"clusterIP": ip, "ports": ports, **spec}}
    if status:
        obj["status"] = status
    return obj


def eps(ns: str, service: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
        name: str | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": name or f"{service}-1",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def case(objects: list[dict], **harness: Any) -> tuple[ProxierSettings, ProxyState]:
    text = yaml.safe_dump({"harness": {"localIPs": LOCAL_IPS, **harness}, "objects": objects})
    return load_case(parse_documents(text, "fresh.yaml")[0])


def rules(objects: list[dict], **harness: Any) -> tuple[str, list[str]]:
    settings, state = case(objects, **harness)
    text = render(state.services, state.endpoints, settings)
    return text, text.splitlines()


P80 = [{"name": "p80", "port": 80, "protocol": "TCP"}]
S1 = "ns1/svc1:p80"
H1 = names.port_proto_hash(S1, "tcp")  # XPGD46QRK7WJZT7O


def test_etp_local_nodeport_with_local_endpoint() -> None:
    text, lines = rules([
        svc("ns1", "svc1", "172.30.0.41",
            [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
            type="NodePort", externalTrafficPolicy="Local"),
        eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]},
                            {"addresses": ["10.180.2.1"], "nodeName": "test-node"}], P80),
    ])
    sep_local = names.sep_chain(S1, "tcp", "10.180.2.1:80")
    assert sep_local == "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"  # rule_structure.md section 4
    assert f"-A KUBE-EXT-{H1} -j KUBE-SVL-{H1}" in lines
    assert (f'-A KUBE-SVL-{H1} -m comment --comment "{S1} -> 10.180.2.1:80" -j {sep_local}'
            in lines)
    assert f":KUBE-SVL-{H1} - [0:0]" in lines and f":KUBE-SVC-{H1} - [0:0]" in lines
    # The Cluster chain still has both endpoints (ClusterIP and short-circuited traffic).
    assert sum(line.startswith(f"-A KUBE-SVC-{H1} -m comment --comment \"{S1} ->")
               for line in lines) == 2
    assert not any("masquerade traffic for" in line for line in lines)
    assert "has no local endpoints" not in text
    # External client to the NodePort: only the local endpoint, source kept.
    got = trace(text, LOCAL_IPS, "203.0.113.2", "TCP", "192.168.0.2", 3001)
    assert (got.output, got.masq) == ("10.180.2.1:80", False)
    # The node itself: masqueraded, and may reach every endpoint.
    got = trace(text, LOCAL_IPS, "192.168.0.2", "TCP", "192.168.0.2", 3001)
    assert (got.output, got.masq) == ("10.180.0.1:80, 10.180.2.1:80", True)


def test_internal_traffic_policy_local() -> None:
    objects = [
        svc("ns1", "svc1", "172.30.1.1", [{"name": "", "port": 80, "protocol": "TCP"}],
            internalTrafficPolicy="Local"),
        eps("ns1", "svc1", [{"addresses": ["10.0.1.1"], "nodeName": "node0"},
                            {"addresses": ["10.0.1.2"], "nodeName": "test-node"}],
            [{"name": "", "port": 80, "protocol": "TCP"}]),
    ]
    text, lines = rules(objects)
    h = names.port_proto_hash("ns1/svc1", "tcp")
    assert (f'-A KUBE-SERVICES -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp '
            f"-d 172.30.1.1 --dport 80 -j KUBE-SVL-{h}") in lines
    assert (f'-A KUBE-SVL-{h} -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp '
            f"-d 172.30.1.1 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ") in lines
    assert f"KUBE-SVC-{h}" not in text  # not externally accessible: no Cluster chain
    seps = [line for line in lines if line.startswith(":KUBE-SEP-")]
    assert seps == [f":{names.sep_chain('ns1/svc1', 'tcp', '10.0.1.2:80')} - [0:0]"]
    assert trace(text, LOCAL_IPS, "10.0.0.2", "TCP", "172.30.1.1", 80).output == "10.0.1.2:80"

    # No local endpoint: a DROP in filter KUBE-SERVICES (rule_structure.md, derived example).
    objects[1]["endpoints"][1]["nodeName"] = "node1"
    text, lines = rules(objects)
    assert ('-A KUBE-SERVICES -m comment --comment "ns1/svc1 has no local endpoints" '
            "-m tcp -p tcp -d 172.30.1.1 --dport 80 -j DROP") in lines
    assert ":KUBE-SEP-" not in text


def test_session_affinity_three_endpoints() -> None:
    """rule_structure.md section 4, "3 endpoints + ClientIP affinity" (derived), verbatim."""
    _, lines = rules([
        svc("demo", "web", "172.30.0.50",
            [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            sessionAffinity="ClientIP"),
        eps("demo", "web", [{"addresses": [ip]} for ip in
                            ("10.244.2.3", "10.244.1.2", "10.244.1.10")],
            [{"name": "http", "port": 8080, "protocol": "TCP"}]),
    ])
    svc_rules = [line for line in lines if line.startswith("-A KUBE-SVC-XRY76EGRC3BSCIIJ ")]
    assert svc_rules == [
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http cluster IP" -m tcp -p tcp -d 172.30.0.50 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.1.10:8080" -m recent --name KUBE-SEP-SI62D7XAGVO2CP3X --rcheck --seconds 10800 --reap -j KUBE-SEP-SI62D7XAGVO2CP3X',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.1.2:8080" -m recent --name KUBE-SEP-PPQSH3RHU5NVL3F3 --rcheck --seconds 10800 --reap -j KUBE-SEP-PPQSH3RHU5NVL3F3',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.2.3:8080" -m recent --name KUBE-SEP-SMAQ7WGGJMBEH3UG --rcheck --seconds 10800 --reap -j KUBE-SEP-SMAQ7WGGJMBEH3UG',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.1.10:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SI62D7XAGVO2CP3X',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.1.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-PPQSH3RHU5NVL3F3',
        '-A KUBE-SVC-XRY76EGRC3BSCIIJ -m comment --comment "demo/web:http -> 10.244.2.3:8080" -j KUBE-SEP-SMAQ7WGGJMBEH3UG',
    ]
    assert ("-A KUBE-SEP-SI62D7XAGVO2CP3X -m comment --comment demo/web:http -m recent --name "
            "KUBE-SEP-SI62D7XAGVO2CP3X --set -m tcp -p tcp -j DNAT --to-destination "
            "10.244.1.10:8080") in lines


def test_affinity_timeout_from_config() -> None:
    _, lines = rules([
        svc("ns1", "svc1", "172.30.0.41", P80, sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80),
    ])
    assert any("--rcheck --seconds 60 --reap" in line for line in lines)


def test_terminating_only_endpoints_are_used() -> None:
    _, lines = rules([
        svc("ns1", "svc1", "172.30.0.41", P80),
        eps("ns1", "svc1", [
            {"addresses": ["10.0.0.1"],
             "conditions": {"ready": False, "serving": True, "terminating": True}},
            {"addresses": ["10.0.0.2"],
             "conditions": {"ready": False, "serving": False, "terminating": True}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
        ], P80),
    ])
    assert [line for line in lines if line.startswith(f"-A KUBE-SVC-{H1} ") and "->" in line] \
        == [f'-A KUBE-SVC-{H1} -m comment --comment "{S1} -> 10.0.0.1:80" '
            f"-j {names.sep_chain(S1, 'tcp', '10.0.0.1:80')}"]


def test_ready_endpoints_win_over_terminating() -> None:
    _, lines = rules([
        svc("ns1", "svc1", "172.30.0.41", P80),
        eps("ns1", "svc1", [
            {"addresses": ["10.0.0.1"],
             "conditions": {"ready": False, "serving": True, "terminating": True}},
            {"addresses": ["10.0.0.2"]},
        ], P80),
    ])
    assert sum(line.startswith(":KUBE-SEP-") for line in lines) == 1
    assert any("-j DNAT --to-destination 10.0.0.2:80" in line for line in lines)


def test_etp_local_falls_back_to_local_terminating_endpoint() -> None:
    text, lines = rules([
        svc("ns1", "svc1", "172.30.0.41",
            [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
            type="NodePort", externalTrafficPolicy="Local"),
        eps("ns1", "svc1", [
            {"addresses": ["10.0.1.1"], "nodeName": "node2"},
            {"addresses": ["10.0.1.2"], "nodeName": "test-node",
             "conditions": {"ready": False, "serving": True, "terminating": True}},
        ], P80),
    ])
    # Cluster traffic uses the ready remote endpoint, Local traffic the terminating local one,
    # and both SEP chains exist (the union of the two).
    assert trace(text, LOCAL_IPS, "10.0.0.9", "TCP", "172.30.0.41", 80).output == "10.0.1.1:80"
    assert trace(text, LOCAL_IPS, "203.0.113.2", "TCP", "192.168.0.2", 3001).output \
        == "10.0.1.2:80"
    assert sum(line.startswith(":KUBE-SEP-") for line in lines) == 2


def test_udp_service() -> None:
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    text, lines = rules([svc("kube-system", "kube-dns", "10.96.0.10", ports),
                         eps("kube-system", "kube-dns", [{"addresses": ["10.244.1.5"]}], ports)])
    h = names.port_proto_hash("kube-system/kube-dns:dns", "udp")
    assert ('-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns cluster IP" '
            f"-m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-SVC-{h}") in lines
    assert any(line.endswith("-m udp -p udp -j DNAT --to-destination 10.244.1.5:53")
               for line in lines)
    assert trace(text, LOCAL_IPS, "10.0.0.2", "UDP", "10.96.0.10", 53).output == "10.244.1.5:53"
    assert trace(text, LOCAL_IPS, "10.0.0.2", "TCP", "10.96.0.10", 53).output == ""


def test_no_endpoints_rejects_everywhere() -> None:
    text, lines = rules([svc("ns1", "svc1", "172.30.0.41",
                             [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
                             type="LoadBalancer", externalIPs=["192.168.99.11"],
                             status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})])
    rejects = [line for line in lines if line.endswith("-j REJECT")]
    assert len(rejects) == 4  # cluster IP, external IP, LB IP, NodePort
    assert all(f'"{S1} has no endpoints"' in line for line in rejects)
    assert "*nat" in text and ":KUBE-SVC-" not in text and ":KUBE-EXT-" not in text


def test_settings_variants() -> None:
    objects = [svc("ns1", "svc1", "172.30.0.41",
                   [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
                   type="NodePort"),
               eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80)]
    _, lines = rules(objects, masqueradeAll=True)
    assert (f'-A KUBE-SVC-{H1} -m comment --comment "{S1} cluster IP" -m tcp -p tcp '
            "-d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ") in lines
    _, lines = rules(objects, localDetector={"mode": "None"})
    assert not any(line.startswith(f"-A KUBE-SVC-{H1}") and "MARK-MASQ" in line
                   for line in lines)
    text, lines = rules(objects, localhostNodePorts=False, hasRandomFully=True)
    assert ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this '
            'must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 '
            "-j KUBE-NODEPORTS") in lines
    assert "KUBE-FIREWALL" not in text and "127.0.0.0/8 --dport 3001" not in text
    assert any(line.endswith("-j MASQUERADE --random-fully") for line in lines)
    _, lines = rules(objects, nodePortAddresses=["192.168.0.0/24", "127.0.0.0/8", "fd00::/64"])
    tail = [line for line in lines if "must be the last rule" in line]
    assert [line.split(" -d ")[1] for line in tail] == [
        "127.0.0.1 -j KUBE-NODEPORTS", "192.168.0.2 -j KUBE-NODEPORTS"]
    text, lines = rules(objects, conntrackTCPLiberal=True, nfacctCounters={})
    assert "--ctstate INVALID" not in text and "nfacct" not in text
    _, lines = rules(objects, masqueradeMark="0x00004000")
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in lines


def test_large_cluster_mode_drops_endpoint_comments() -> None:
    objects = [svc("ns1", "svc1", "172.30.0.41", P80),
               eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80)]
    _, lines = rules(objects, largeClusterMode=True)
    sep = names.sep_chain(S1, "tcp", "10.180.0.1:80")
    assert f"-A KUBE-SVC-{H1} -j {sep}" in lines
    assert f"-A {sep} -s 10.180.0.1 -j KUBE-MARK-MASQ" in lines
    assert f"-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80" in lines


def test_orphans_duplicates_and_sloppy_ips() -> None:
    settings, state = case([
        svc("ns1", "svc1", "172.30.000.041", P80),
        eps("ns1", "svc1", [{"addresses": ["10.0.0.1"],
                             "conditions": {"terminating": True, "ready": False}}], P80, "a"),
        eps("ns1", "svc1", [{"addresses": ["10.000.0.01"]}], P80, "b"),
        eps("ns1", "svc1", [{"addresses": ["10.0.0.9"]}],
            [{"name": "other", "port": 80, "protocol": "TCP"}], "c"),  # no such port
        eps("ns9", "gone", [{"addresses": ["10.0.0.7"]}], P80),  # no such service
    ])
    (port,) = state.services
    assert port.cluster_ip == "172.30.0.41"
    (ep,) = state.endpoints[port.name]
    assert (str(ep), ep.ready, ep.terminating) == ("10.0.0.1:80", True, False)


def test_headless_and_external_name_are_skipped() -> None:
    _, state = case([svc("ns1", "a", "None", P80),
                     {"kind": "Service", "metadata": {"namespace": "ns1", "name": "b"},
                      "spec": {"type": "ExternalName", "externalName": "x.example"}}])
    assert state.services == ()


def test_stale_chains_deleted_but_not_foreign_ones() -> None:
    objects = [svc("ns1", "svc1", "172.30.0.41", P80),
               eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80)]
    text, lines = rules(objects, existingNATChains=[
        f"KUBE-SVC-{H1}", "KUBE-SEP-AAAAAAAAAAAAAAAA", "KUBE-XLB-OLD", "MY-CHAIN"])
    assert "-X KUBE-SEP-AAAAAAAAAAAAAAAA" in lines
    assert ":KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]" in lines
    assert f"-X KUBE-SVC-{H1}" not in lines
    assert "MY-CHAIN" not in text and "KUBE-XLB-OLD" not in text


def test_partial_sync_writes_only_changed_services() -> None:
    objects = [svc("ns1", "svc1", "172.30.0.41", P80),
               eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80),
               svc("ns2", "svc2", "172.30.0.42", P80),
               eps("ns2", "svc2", [{"addresses": ["10.180.0.2"]}], P80)]
    settings, state = case(objects)
    h2 = names.port_proto_hash("ns2/svc2:p80", "tcp")
    existing = (f"KUBE-SVC-{H1}", f"KUBE-SVC-{h2}", names.sep_chain(S1, "tcp", "10.180.0.1:80"),
                names.sep_chain("ns2/svc2:p80", "tcp", "10.180.0.2:80"),
                "KUBE-SEP-STALESTALESTALE")
    settings = replace(settings, full_sync=False, existing_nat_chains=existing)
    text = render(state.services, state.endpoints, settings, changed={("ns2", "svc2")})
    lines = text.splitlines()
    assert f":KUBE-SVC-{h2} - [0:0]" in lines and f":KUBE-SVC-{H1} - [0:0]" not in lines
    assert not any(line.startswith(f"-A KUBE-SVC-{H1}") for line in lines)
    # Top-level chains stay complete, and unchanged chains are not mistaken for stale ones.
    assert sum(line.startswith("-A KUBE-SERVICES ") for line in lines) == 3
    assert [line for line in lines if line.startswith("-X")] == ["-X KUBE-SEP-STALESTALESTALE"]
    # Without `changed`, or with full_sync, it is a full sync.
    full = render(state.services, state.endpoints, replace(settings, full_sync=True),
                  changed={("ns2", "svc2")})
    assert f":KUBE-SVC-{H1} - [0:0]" in full.splitlines()
    assert render(state.services, state.endpoints, settings) == full


def test_partial_sync_from_previous_writes_the_top_level_chains_whole() -> None:
    """render_sync's decision: with what the last sync left (`previous`), a partial sync
    renders only the changed service's chains, but writes every top-level chain whole, even
    when no service's share of them changed, as upstream's syncProxyRules does (so that a
    chain someone flushed is repaired whatever kube-proxy remembers)."""
    from testbed.proxy.iptables import FILTER_TOP, NAT_TOP, render_sync

    objects = [svc("ns1", "svc1", "172.30.0.41", P80),
               eps("ns1", "svc1", [{"addresses": ["10.180.0.1"]}], P80),
               svc("ns2", "svc2", "172.30.0.42", P80),
               eps("ns2", "svc2", [{"addresses": ["10.180.0.2"]}], P80)]
    settings, state = case(objects)
    first = render_sync(state.services, state.endpoints, settings)
    partial = replace(settings, full_sync=False)
    for changed in ({("ns2", "svc2")}, set()):  # a change with the same rules; nothing at all
        again = render_sync(state.services, state.endpoints, partial, changed, first.applied)
        lines = again.text.splitlines()
        declared = {(table, line[1:].split()[0]) for table, line in _sections(lines)
                    if line.startswith(":")}
        # KUBE-FIREWALL too: the harness has localhost NodePorts
        assert declared == {("filter", c) for c in (*FILTER_TOP, "KUBE-FIREWALL")} | \
            {("nat", c) for c in NAT_TOP} == set(first.applied.top)
        for table, chain in declared:  # each with the very lines the full sync wrote
            assert [x for t, x in _sections(lines) if t == table and x.startswith(f"-A {chain} ")] \
                == list(first.applied.top[(table, chain)])
        assert sum(line.startswith("-A KUBE-SERVICES ") for line in lines) == 3
        assert again.applied == first.applied


def _sections(lines: list[str]) -> list[tuple[str, str]]:
    """(table, line) for each line of restore text."""
    out, table = [], ""
    for line in lines:
        if line.startswith("*"):
            table = line[1:]
        out.append((table, line))
    return out
