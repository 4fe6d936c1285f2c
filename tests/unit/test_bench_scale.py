"""bench/scale.py's pure parts: PSS from smaps_rollup, the run record's kinds, the memory
summary, the DNAT targets of a rules dump, the size arguments."""

from __future__ import annotations

import importlib.util

import pytest

from tests.unit.conftest import ROOT

_spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)

ROLLUP = """\
55d1c9e4c000-7ffd3b5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               11020 kB
Pss:                4321 kB
Pss_Dirty:          3000 kB
Pss_Anon:           2900 kB
Shared_Clean:       7000 kB
"""


def test_pss_is_the_pss_line_not_pss_dirty_or_rss():
    assert scale.parse_pss(ROLLUP) == 4321


def test_pss_missing_is_an_error():
    with pytest.raises(ValueError, match="no Pss"):
        scale.parse_pss("Rss: 10 kB\nPss_Anon: 5 kB\n")


@pytest.mark.parametrize("what, kind", [
    ("pod default/scale-abc pause", ("pause", "")),
    ("pod default/scale-abc container main", ("container", "")),
    ("pod kube-system/kube-dns-x container dnsmasq", ("container", "")),
    ("kubelet on w3", ("kubelet", "w3")),
    ("kube-proxy on w12", ("kube-proxy", "w12")),
    ("apiserver on master", ("apiserver", "master")),
    ("worker w1", ("host", "w1")),
    ("gateway gw", ("host", "gw")),
    ("the agents' zygote", ("zygote", "")),
    ("something else entirely", ("other", "")),
])
def test_kind_of(what, kind):
    assert scale.kind_of(what) == kind


def test_memory_summary_counts_workers_agents_only_per_worker():
    entries = [("apiserver on master", 20000), ("kubelet on w1", 10000), ("kubelet on w2", 12000),
               ("kube-proxy on w1", 8000), ("netpol on w2", 6000), ("pod d/a pause", 100),
               ("pod d/a container main", 300), ("worker w1", 50), ("the agents' zygote", 4000)]
    got = scale.memory_summary(entries, {"w1", "w2"})
    assert got["total"] == 60450
    assert got["by_kind"]["kubelet"] == 22000
    assert got["by_kind"]["pause"] == 100
    assert got["agents"] == 20000 + 22000 + 8000 + 6000 + 4000
    assert got["worker_agents"] == {"kubelet": 22000, "kube-proxy": 8000, "netpol": 6000}
    assert got["per_worker"] == 36000 / 2


def test_dnat_targets_iptables_and_nftables():
    iptables = """\
-A KUBE-SEP-AAAA -s 10.244.0.5/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-AAAA -p tcp -m tcp -j DNAT --to-destination 10.244.0.5:9376
-A KUBE-SEP-BBBB -p tcp -m tcp -j DNAT --to-destination 10.244.1.7:9376
-A KUBE-SEP-CCCC -p udp -m udp -j DNAT --to-destination 10.244.1.9:53
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m tcp --dport 9376 -j KUBE-SVC-XXXX
"""
    assert scale.dnat_targets(iptables, 9376) == {"10.244.0.5", "10.244.1.7"}
    nft = """\
\tchain endpoint-ABCD-default/scale/tcp/__10.244.2.3/9376 {
\t\tip saddr 10.244.2.3 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 10.244.2.3:9376
\t}
"""
    assert scale.dnat_targets(nft, 9376) == {"10.244.2.3"}
    assert scale.dnat_targets(nft, 93) == set()


def test_slice_addresses_ready_and_count():
    slices = [{"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                             {"addresses": ["10.0.0.2"], "conditions": {"ready": False}}]},
              {"endpoints": [{"addresses": ["10.0.0.3"]}]}, {"endpoints": None}]
    assert scale.slice_addresses(slices) == ({"10.0.0.1", "10.0.0.3"}, 3)


def test_parse_sizes():
    assert scale.parse_sizes("10, 50,100", "--workers") == [10, 50, 100]
    for bad in ("10,x", "0", "", "5,,6", "-3"):
        with pytest.raises(ValueError, match="--workers"):
            scale.parse_sizes(bad, "--workers")


def test_cpu_ticks_after_a_command_name_with_spaces_and_parentheses():
    stat = "1234 (python (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 70 5 6 20 0 3 0 999"
    assert scale.parse_cpu_ticks(stat) == 250 + 70 + 5 + 6


def test_cpu_summary_by_kind():
    assert scale.cpu_summary([("kubelet on w1", 1.5), ("kubelet on w2", 2.0),
                              ("pod d/a pause", 0.1)]) == {"kubelet": 3.5, "pause": 0.1}
