"""The iptables-restore input the iptables backend really sends (net/netfilter.py, pure part)."""

from __future__ import annotations

from testbed.net.netfilter import failing_line, with_whole_table_cache


def section(table: str, rules: int) -> list[str]:
    return [f"*{table}", ":KUBE-SERVICES - [0:0]",
            *(f"-A KUBE-SERVICES -d 10.96.0.{i % 250} -j ACCEPT" for i in range(rules)), "COMMIT"]


def test_long_sections_get_the_whole_table_hint_short_ones_do_not():
    text = "\n".join(section("filter", 3) + section("nat", 20)) + "\n"
    out = with_whole_table_cache(text, min_lines=10)
    lines = out.splitlines()
    assert lines[:2] == ["*filter", ":KUBE-SERVICES - [0:0]"]
    nat = lines.index("*nat")
    assert lines[nat + 1] == "-S" and lines.count("-S") == 1
    assert out.replace("-S\n", "") == text
    assert with_whole_table_cache(text, min_lines=1000) == text
    assert with_whole_table_cache("", min_lines=0) == ""


def test_failing_line_points_into_the_text_as_sent():
    text = with_whole_table_cache("\n".join(section("nat", 20)) + "\n", min_lines=10)
    assert failing_line(text, "iptables-restore: line 4 failed") == \
        "line 4: -A KUBE-SERVICES -d 10.96.0.0 -j ACCEPT"  # after "*nat", "-S", ":KUBE-SERVICES"
