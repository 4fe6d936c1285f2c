"""The iptables-restore input the iptables backend really sends (net/netfilter.py, pure part)."""

from __future__ import annotations

from testbed.net.netfilter import failing_line, with_whole_table_cache


def section(table: str, rules: int, chains: int = 0) -> list[str]:
    """KUBE-SERVICES with `rules` rules, then `chains` more chains declared, empty."""
    return [f"*{table}", ":KUBE-SERVICES - [0:0]",
            *(f"-A KUBE-SERVICES -d 10.96.0.{i % 250} -j ACCEPT" for i in range(rules)),
            *(f":KUBE-SVC-{i:016d} - [0:0]" for i in range(chains)), "COMMIT"]


def test_sections_declaring_many_chains_get_the_whole_table_hint_others_do_not():
    # a partial sync's nat section: KUBE-SERVICES whole (long), a few chains: no hint
    text = "\n".join(section("filter", 3, chains=2) + section("nat", 200, chains=20)
                     + section("mangle", 500, chains=3)) + "\n"
    out = with_whole_table_cache(text, min_chains=10)
    lines = out.splitlines()
    assert lines[:2] == ["*filter", ":KUBE-SERVICES - [0:0]"]
    nat = lines.index("*nat")
    assert lines[nat + 1] == "-S" and lines.count("-S") == 1
    assert out.replace("-S\n", "") == text
    assert with_whole_table_cache(text, min_chains=21) == text
    assert with_whole_table_cache("", min_chains=0) == ""


def test_failing_line_points_into_the_text_as_sent():
    text = with_whole_table_cache("\n".join(section("nat", 20, chains=20)) + "\n", min_chains=10)
    assert failing_line(text, "iptables-restore: line 4 failed") == \
        "line 4: -A KUBE-SERVICES -d 10.96.0.0 -j ACCEPT"  # after "*nat", "-S", ":KUBE-SERVICES"


def test_the_hint_goes_after_jump_rules_into_built_in_chains():
    # after "-S", iptables-nft 1.8.9 will not create a built-in chain a fresh table lacks
    lines = section("nat", 20, chains=20)
    lines[2:2] = ["-I PREROUTING 1 -j KUBE-SERVICES", "-I OUTPUT 1 -j KUBE-SERVICES"]
    out = with_whole_table_cache("\n".join(lines) + "\n", min_chains=10).splitlines()
    assert out[:5] == ["*nat", ":KUBE-SERVICES - [0:0]", "-I PREROUTING 1 -j KUBE-SERVICES",
                       "-I OUTPUT 1 -j KUBE-SERVICES", "-S"]


def test_jump_rules_follow_their_targets_declarations():
    from testbed.proxy.iptables import JUMP_RULES, with_jump_rules

    text = "\n".join(["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                      ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                      ":KUBE-PROXY-FIREWALL - [0:0]", ":KUBE-FIREWALL - [0:0]",
                      ":KUBE-SEP-X - [0:0]", "-A KUBE-FORWARD -j ACCEPT", "COMMIT",
                      "*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                      ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
                      ":KUBE-SVC-X - [0:0]", "COMMIT", ""])
    out = with_jump_rules(text, JUMP_RULES).splitlines()
    assert out[7:9] == ['-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment '
                        '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
                        '-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment '
                        '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES']
    assert out[7 + 11] == ":KUBE-SEP-X - [0:0]"  # the 11 filter jumps, then the rest
    nat = out.index("*nat")
    # after the last target declared, KUBE-POSTROUTING, and before the rest
    assert [ln.split()[1] for ln in out[nat + 4:nat + 7]] == ["OUTPUT", "PREROUTING",
                                                              "POSTROUTING"]
    assert out[nat + 7] == ":KUBE-MARK-MASQ - [0:0]"
