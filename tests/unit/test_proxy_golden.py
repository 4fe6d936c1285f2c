"""Golden cases: our render, normalized, equals upstream's expected output byte for byte."""

from __future__ import annotations

import pytest

from testbed.proxy import names
from testbed.proxy.casefile import read_case
from testbed.proxy.iptables import normalize, render
from tests.unit.conftest import FIDELITY


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_iptables_golden_case(case: int) -> None:
    settings, state = read_case(str(FIDELITY / f"case{case}_input.yaml"))
    got = normalize(render(state.services, state.endpoints, settings))
    assert got == (FIDELITY / f"case{case}_expected.iptables-save").read_text()


def test_normalize_is_idempotent_on_expected() -> None:
    for case in (1, 2, 3, 4):
        text = (FIDELITY / f"case{case}_expected.iptables-save").read_text()
        assert normalize(text) == text


@pytest.mark.parametrize("text,chain", [
    ("ns1/svc1:p80tcp", "XPGD46QRK7WJZT7O"),
    ("ns2/svc2:p8080tcp", "2VJB64SDSIJUP5T6"),
    ("ns4/svc4:p8082tcp", "EBDQOQU5SJFXRIL3"),
])
def test_service_chain_hash(text: str, chain: str) -> None:
    spn, proto = text[:-3], text[-3:]
    assert names.svc_chain(spn, proto) == "KUBE-SVC-" + chain
    assert names.ext_chain(spn, proto) == "KUBE-EXT-" + chain


@pytest.mark.parametrize("spn,ep,chain", [
    ("ns1/svc1:p80", "10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
    ("ns5/svc5:p80", "10.180.0.3:80", "I77PXRDZVX7PMWMN"),
    ("ns3/svc3:p8081", "203.0.113.4:8081", "RUVVH7YV3PHQBDOS"),
    ("ns1/svc1:p80", "10.0.0.0:80", "DKGQUZGBKLTPAR56"),
])
def test_endpoint_chain_hash(spn: str, ep: str, chain: str) -> None:
    assert names.sep_chain(spn, "TCP", ep) == "KUBE-SEP-" + chain


def test_nft_names() -> None:
    base = names.nft_service_base("ns1", "svc1", "TCP", "p80")
    assert names.nft_service_chain(base) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    ep = names.nft_endpoint_base("ns5", "svc5", "tcp", "p80", "10.180.0.3", 80)
    assert names.nft_affinity_set(ep) == "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
    v6 = names.nft_endpoint_base("ns", "s", "tcp", "", "fd00::1", 80)
    assert v6 == "ns/s/tcp/__fd00..1/80"
    assert len(names.nft_service_chain("x" * 400)) <= 256


def test_ipv6_endpoint_is_bracketed() -> None:
    assert names.join_host_port("fd00::1", 80) == "[fd00::1]:80"


def test_nftables_golden_case() -> None:
    from testbed.proxy import nftables

    settings, state = read_case(str(FIDELITY / "nftables_case1_input.yaml"))
    got = nftables.normalize(nftables.render(state.services, state.endpoints, settings))
    assert got == (FIDELITY / "nftables_case1_expected.sorted.nft").read_text()
    raw = (FIDELITY / "nftables_case1_expected.nft").read_text()
    assert nftables.normalize(raw) == (FIDELITY / "nftables_case1_expected.sorted.nft").read_text()


def test_nftables_render_declares_before_use() -> None:
    """nft -f evaluates in order: sets and chains must come before rules and elements."""
    from testbed.proxy import nftables

    settings, state = read_case(str(FIDELITY / "nftables_case1_input.yaml"))
    lines = nftables.render(state.services, state.endpoints, settings).splitlines()
    kinds = [line.split(" ")[1] for line in lines]
    last_decl = max(i for i, k in enumerate(kinds) if k in ("table", "set", "map", "chain"))
    first_use = min(i for i, k in enumerate(kinds) if k in ("rule", "element"))
    assert last_decl < first_use
    assert all(line.startswith("add ") for line in lines)  # one command per line


def test_nftables_replace_table_prefix() -> None:
    from testbed.proxy import nftables

    settings, state = read_case(str(FIDELITY / "nftables_case1_input.yaml"))
    text = nftables.render(state.services, state.endpoints, settings, replace_table=True)
    assert text.splitlines()[:2] == ["add table ip kube-proxy", "delete table ip kube-proxy"]
