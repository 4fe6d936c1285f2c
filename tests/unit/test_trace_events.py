"""The live tracer's pure parts: `nft monitor trace` lines into passes (real output of a
REJECT, whose verdict line comes after the ICMP error it sent), rule handles into `iptables -S`
lines, the trace step's checks, and the walk-through text."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.scenario.trace_step import TraceExpect, differences, judge
from testbed.trace import events
from testbed.trace.ruleset import handles, iptables_texts
from testbed.trace.text import render_text

DATA = Path(__file__).parent / "data" / "trace"
TABLE = "testbed-trace-31537"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_a_rejected_connection_keeps_its_reject_rule_though_the_icmp_error_came_between():
    passes = events.passes(lines("node1-reject.txt"), TABLE)
    assert [p.direction for p in passes] == ["request", "related"]
    request, related = passes
    assert request.iif == "cbr0" and request.first.address("d") == "10.3.241.0:80"
    assert request.chains(TABLE)[:2] == ["nat/PREROUTING", "nat/KUBE-SERVICES"]
    assert request.chains(TABLE)[-1] == "filter/KUBE-SERVICES"
    final = request.final()
    assert final is not None and final.where == "filter/KUBE-SERVICES" and final.verdict == "drop"
    assert "reject" in final.rule and final.handle is not None
    assert related.first.fields["icmp type"] == "destination-unreachable"
    assert related.oif == "cbr0" and related.final() is None


def test_canaries_are_counted_and_never_make_a_pass():
    text = lines("node1-reject.txt")
    assert events.canaries(text, TABLE) == 2
    assert all(p.direction != "canary" for p in events.passes(text, TABLE))
    assert events.canaries(text, "testbed-trace-1") == 0   # another tracer's table


def test_a_jump_enters_its_chain_even_when_no_rule_there_matches():
    text = [
        'trace id 1 ip t-1 pre packet: iif "cbr0" ip saddr 10.0.1.2 ip daddr 10.3.0.9 tcp sport 5 tcp dport 80',
        'trace id 1 ip t-1 pre rule ip dscp 0x2b comment "request" (verdict continue)',
        'trace id 1 ip nat PREROUTING rule counter packets 1 bytes 60 jump KUBE-SERVICES # handle 7 (verdict jump KUBE-SERVICES)',
        "trace id 1 ip nat PREROUTING policy accept meta mark 0x00010000",
        'trace id 2 ip filter INPUT packet: iif "cbr0" ip saddr 10.0.1.2 ip daddr 10.3.0.9',
        "trace id 2 ip filter INPUT policy accept",
    ]
    (p,) = events.passes(text, "t-1")
    assert p.chains("t-1") == ["nat/PREROUTING", "nat/KUBE-SERVICES", "nat/PREROUTING", "filter/INPUT"]
    assert p.local_in and p.final() is None
    assert p.hits[0].rule == "jump KUBE-SERVICES" and p.hits[0].handle == 7
    assert p.hits[1].policy and p.hits[1].verdict == "accept"     # the packet's meta mark left out


def test_handles_map_to_iptables_lines_in_order():
    listing = (DATA / "node1-filter.nft").read_text()
    save = (DATA / "node1-filter.S").read_text()
    texts = iptables_texts(listing, save)
    reject = [t for t in texts.values() if "-j REJECT" in t]
    assert reject and all(t.startswith("-A KUBE-SERVICES ") for t in reject)
    order = handles(listing)["FORWARD"]
    forward = [texts[("FORWARD", h)] for h in order]
    assert forward[0] == "-A FORWARD -j KUBE-NWPLCY-FORWARD"     # the policy jump goes first
    # a chain whose listings disagree (it changed between them) names no rule at all
    assert not any(c == "FORWARD" for c, _ in iptables_texts(listing, save.replace(
        "-A FORWARD -j KUBE-NWPLCY-FORWARD\n", "")))


def _trace(**over):
    t = {"mode": "live", "from": "default/client-1", "to": "echo-2", "protocol": "tcp",
         "source": "10.0.1.2:4000", "destination": "10.3.0.9:80", "verdict": "delivered",
         "cause": None, "endpoint": "default/echo-2", "conntrack": [],
         "hops": [
             {"host": "default/client-1", "kind": "pod", "in": None, "out": "eth0", "chains": [],
              "rules": [], "nat": [], "packet": {"src": "10.0.1.2:4000", "dst": "10.3.0.9:80"}},
             {"host": "node1", "kind": "worker", "in": "cbr0", "out": "node1-eth0",
              "chains": ["nat/PREROUTING", "nat/KUBE-SERVICES", "nat/KUBE-SVC-X", "nat/KUBE-SEP-Y",
                         "filter/FORWARD"], "rules": [],
              "nat": [{"type": "dnat", "from": "10.3.0.9:80", "to": "10.0.2.3:8080"}],
              "packet": {"src": "10.0.1.2:4000", "dst": "10.3.0.9:80"}},
             {"host": "gateway", "kind": "gateway", "in": "br", "out": "br", "chains": [],
              "rules": [], "nat": [], "packet": {"src": "10.0.1.2:4000", "dst": "10.0.2.3:8080"}},
             {"host": "default/echo-2", "kind": "pod", "in": "eth0", "out": None, "chains": [],
              "rules": [], "nat": [], "packet": {"src": "10.0.1.2:4000", "dst": "10.0.2.3:8080"}}],
         "reply": []}
    t.update(over)
    return t


@pytest.mark.parametrize("expect, wrong", [
    (TraceExpect(verdict="delivered"), []),
    (TraceExpect(verdict="dropped"), ["verdict delivered, not dropped"]),
    (TraceExpect(hosts=("client-1", "node1", "gateway", "echo-*")), []),
    (TraceExpect(hosts=("client-1", "node1", "echo-*")), ["passed"]),
    (TraceExpect(chains=("KUBE-SERVICES", "nat/KUBE-SVC-*", "KUBE-SEP-*")), []),
    (TraceExpect(chains=("KUBE-SEP-*", "KUBE-SVC-*")), ["KUBE-SVC-* was hit, but out of order"]),
    (TraceExpect(chains=("KUBE-MARK-MASQ",)), ["KUBE-MARK-MASQ was not hit"]),
    (TraceExpect(chains=("nat/KUBE-SEP-*",), chain="nat/KUBE-SERVICES"), []),   # anywhere
    (TraceExpect(chain="filter/KUBE-SERVICES"), ["filter/KUBE-SERVICES was not hit"]),
    (TraceExpect(dnat="10.0.2.3:8080"), []),
    (TraceExpect(dnat="10.0.2.3"), []),
    (TraceExpect(dnat="echo-2"), []),
    (TraceExpect(dnat="echo-1"), ["DNAT to 10.0.2.3:8080, not echo-1"]),
    (TraceExpect(source_ip="kept"), []),
    (TraceExpect(source_ip="client-1"), []),
    (TraceExpect(source_ip="node1"), ["the endpoint saw 10.0.1.2, not 10.100.0.2"]),
    (TraceExpect(source_ip="masqueraded"), ["the endpoint saw the client's own address 10.0.1.2"]),
])
def test_the_trace_step_judges_each_expectation(expect, wrong):
    found = judge(expect, _trace(), {"client-1": "10.0.1.2", "node1": "10.100.0.2"},
                  {"10.0.2.3": "default/echo-2"})
    assert [w[:len(x)] for w, x in zip(found, wrong, strict=False)] == wrong and len(found) == len(wrong)


def test_a_masqueraded_source_is_not_kept():
    t = _trace()
    t["hops"][-1]["packet"] = {"src": "10.100.0.2:999", "dst": "10.0.2.3:8080"}
    assert judge(TraceExpect(source_ip="kept"), t) == ["the endpoint saw 10.100.0.2, not 10.0.1.2"]
    assert judge(TraceExpect(source_ip="masqueraded"), t) == []
    for hop in t["hops"]:
        hop["packet"] = None          # no hop saw it: neither kept nor masqueraded holds
    assert judge(TraceExpect(source_ip="masqueraded"), t) == ["no hop shows the address the endpoint saw"]
    assert judge(TraceExpect(source_ip="kept"), t) == ["no hop shows the address the endpoint saw"]


def test_static_and_live_differences():
    live = _trace()
    static = _trace(mode="static", endpoints=["10.0.1.3:8080", "10.0.2.3:8080"])
    assert differences(live, static) == []
    other = _trace(mode="static", endpoints=["10.0.1.3:8080"], verdict="rejected")
    found = differences(live, other)
    assert any(f.startswith("static verdict rejected") for f in found)
    assert any(f.startswith("live DNAT to 10.0.2.3:8080") for f in found)
    fewer = _trace(mode="static")
    fewer["hops"] = fewer["hops"][:2] + fewer["hops"][3:]
    assert any(f.startswith("static hosts") for f in differences(live, fewer))


def test_the_walk_through_reads_one_hop_per_line():
    text = render_text(_trace())
    assert text.splitlines()[0] == ("default/client-1 -> echo-2 (10.3.0.9:80), tcp from "
                                    "10.0.1.2:4000: delivered to default/echo-2")
    assert "  2. node1" in text and "DNAT 10.3.0.9:80 -> 10.0.2.3:8080" in text
    rejected = _trace(verdict="rejected", cause={"host": "node1", "chain": "filter/KUBE-SERVICES",
                                                 "rule": "-A KUBE-SERVICES -j REJECT", "verdict": "reject"})
    assert "rejected at node1 in filter/KUBE-SERVICES: -A KUBE-SERVICES -j REJECT" in render_text(rejected)
    dropped = _trace(verdict="dropped")
    dropped["hops"][1]["verdict"] = "drop"
    dropped["hops"][1]["rules"] = [{"chain": "nat/KUBE-MARK-MASQ", "verdict": "continue",
                                    "rule": "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"}]
    text = render_text(dropped)
    assert "  2. node1" in text and "DROPPED" in text
    assert "-j MARK --set-xmark 0x4000/0x4000" in text     # the masquerade mark is shown


def test_a_trace_step_is_read_and_its_bad_fields_named(tmp_path):
    from testbed.scenario.spec import load_scenario
    from testbed.spec.source import SpecError

    topo = Path(__file__).resolve().parents[2] / "topologies" / "article.yaml"
    good = tmp_path / "good.yaml"
    good.write_text(f"name: t\ntopology: {topo}\nsteps:\n"
                    "  - trace: {from: client-1, to: echo-2, port: 80}\n"
                    "    expect: {verdict: delivered, hosts: [client-1, node1], chain: KUBE-SEP-*,"
                    " dnat: echo-2, sourceIP: kept, static: agree}\n")
    step = load_scenario(good).steps[0]
    assert step.name == "trace tcp client-1 -> echo-2:80"
    assert step.action.expect.chain == "KUBE-SEP-*" and step.action.expect.static
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: t\ntopology: {topo}\nsteps:\n"
                   "  - trace: {from: client-1, to: echo-2, protocol: icmp, port: 80, colour: red}\n"
                   "    expect: {verdict: lost, static: maybe}\n"
                   "  - trace: {from: client-1, to: 'echo-2:99999'}\n"
                   "  - trace: {from: client, to: {service: echo-2, nodePort: 80, node: node1},"
                   " port: 80}\n"
                   "  - trace: {from: client, to: {service: echo-2, loadBalancer: 80}, protocol: icmp}\n")
    with pytest.raises(SpecError) as err:
        load_scenario(bad)
    text = "\n".join(str(p) for p in err.value.problems)
    assert "bad.yaml:4" in text and "colour" in text
    assert "an icmp trace takes no port" in text
    assert 'steps[0].expect.verdict: Unsupported value: "lost"' in text
    assert 'steps[0].expect.static: Unsupported value: "maybe"' in text
    assert "steps[1].trace.to: Invalid value: \"echo-2:99999\": the port after ':' must be" in text
    assert "steps[2].trace.port: Forbidden: a Service target names its port itself" in text
    assert "steps[3].trace.to: Forbidden: a Service target is for tcp, udp or http probes" in text


def test_a_dnat_rule_names_its_target_when_conntrack_has_no_entry():
    text = [
        'trace id 1 ip t-1 pre packet: iif "cbr0" ip saddr 10.0.1.2 ip daddr 10.3.0.9 tcp sport 5 tcp dport 80',
        'trace id 1 ip t-1 pre rule ip dscp 0x2b comment "request" (verdict continue)',
        "trace id 1 ip nat KUBE-SEP-X rule meta l4proto tcp counter packets 0 bytes 0 dnat to 10.0.2.3:8080 # handle 9 (verdict accept)",
        "trace id 1 ip kube-proxy endpoint-Y rule meta l4proto tcp dnat ip to 10.0.2.4:8080 (verdict accept)",
    ]
    (p,) = events.passes(text, "t-1")
    assert events.dnat_target(p) == "10.0.2.3:8080"
    p.hits = p.hits[1:]
    assert events.dnat_target(p) == "10.0.2.4:8080"
    p.hits = []
    assert events.dnat_target(p) is None


def test_conntrack_lines_give_both_tuples():
    tcp = ("tcp      6 119 TIME_WAIT src=10.0.1.2 dst=10.3.241.152 sport=48829 dport=80 "
           "src=10.0.1.3 dst=10.0.1.2 sport=8080 dport=48829 [ASSURED] mark=2 use=1")
    assert events.conntrack_tuples(tcp) == [("10.0.1.2", "10.3.241.152", "48829", "80"),
                                            ("10.0.1.3", "10.0.1.2", "8080", "48829")]
    icmp = ("icmp     1 29 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=5 src=10.0.2.2 "
            "dst=10.0.1.2 type=0 code=0 id=5 mark=0 use=1")
    assert events.conntrack_tuples(icmp)[1] == ("10.0.2.2", "10.0.1.2", None, None)
    assert events.conntrack_tuples("conntrack v1.4.7 (conntrack-tools): 0 flow entries") is None
