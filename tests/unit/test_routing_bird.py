"""bird2 configuration for the bgp routing mode (testbed.routing.bird): what a node announces
and to whom, what the gateway router accepts and writes to its kernel, the timers on both
sides, bird's own parser accepting both files (when bird is installed), and the readers of
`birdc show protocols` and `show route`."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.routing import bird

NODE = bird.node_config("w1", IPv4Address("172.16.1.2"), IPv4Address("172.16.1.1"),
                        IPv4Network("10.244.0.0/24"))
GATEWAY = bird.gateway_config("gateway", IPv4Address("172.16.0.1"), IPv4Network("172.16.0.0/16"),
                              IPv4Network("10.244.0.0/16"))


def block(text: str, head: str) -> str:
    """The body of the block that starts with `head` (to its closing brace at column 0)."""
    start = text.index(head)
    return text[start:text.index("\n}\n", start)]


def test_a_node_announces_exactly_its_pod_cidr_to_the_gateway_in_as_64512():
    assert "router id 172.16.1.2;" in NODE
    static = block(NODE, "protocol static pod_cidr")
    assert "route 10.244.0.0/24 blackhole;" in static
    session = block(NODE, "protocol bgp uplink")
    assert "local 172.16.1.2 as 64512;" in session and "neighbor 172.16.1.1 as 64512;" in session
    assert "import none;" in session and 'export where proto = "pod_cidr";' in session
    assert "protocol kernel" not in NODE     # the node's own route to its pods is cbr0's


def test_the_gateway_takes_any_node_of_the_node_network_and_learns_only_pod_routes():
    assert "router id 172.16.0.1;" in GATEWAY
    session = block(GATEWAY, "protocol bgp nodes")
    assert "neighbor range 172.16.0.0/16 as 64512;" in session and "local as 64512;" in session
    assert "import where net ~ [ 10.244.0.0/16+ ];" in session and "export none;" in session
    kernel = block(GATEWAY, "protocol kernel")
    assert "export where source = RTS_BGP;" in kernel and "import none;" in kernel


@pytest.mark.parametrize("conf", [NODE, GATEWAY], ids=["node", "gateway"])
def test_both_sides_hold_short_timers(conf):
    session = block(conf, "protocol bgp ")
    for line in ("hold time 9;", "keepalive time 3;", "connect delay time 1;",
                 "connect retry time 2;", "error wait time 1, 5;"):
        assert line in session
    assert bird.HOLD_TIME == 3 * bird.KEEPALIVE_TIME


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
@pytest.mark.parametrize("conf", [NODE, GATEWAY], ids=["node", "gateway"])
def test_bird_parses_the_configuration(conf, tmp_path):
    path = tmp_path / "bird.conf"
    path.write_text(conf)
    result = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     19:36:21.988
kernel1    Kernel     master4    up     19:36:21.988
nodes      BGP        ---        start  19:36:21.988  Passive
nodes1     BGP        ---        up     19:36:29.574  Established
nodes2     BGP        ---        start  19:36:44.113  Idle          Error: Link down
"""

ROUTES = """BIRD 2.0.12 ready.
Table master4:
10.244.1.0/24        unicast [nodes1 19:36:29.990] * (100) [i]
\tvia 172.16.0.2 on eth0
\tType: BGP univ
\tBGP.next_hop: 172.16.0.2
10.244.2.0/24        unicast [nodes2 19:36:30.100] * (100) [i]
\tvia 172.16.0.3 on eth0 weight 1
\tvia 172.16.0.4 on eth0 weight 1
"""


def test_show_protocols_reads_as_rows_and_established_sessions():
    rows = bird.parse_protocols(PROTOCOLS)
    assert [r.name for r in rows] == ["device1", "kernel1", "nodes", "nodes1", "nodes2"]
    assert (rows[4].state, rows[4].info) == ("start", "Idle Error: Link down")
    assert bird.established(rows) == ["nodes1"]


def test_show_route_reads_as_prefix_protocol_and_next_hop():
    assert bird.parse_routes(ROUTES) == [("10.244.1.0/24", "nodes1", "172.16.0.2"),
                                         ("10.244.2.0/24", "nodes2", "172.16.0.3"),
                                         ("10.244.2.0/24", "nodes2", "172.16.0.4")]
    assert bird.parse_routes("\tvia 172.16.0.9 on eth0\n") == []      # no route above it
