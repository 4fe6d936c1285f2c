"""`testbed proxy render`: output for good files, file:line: field errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import cli
from testbed.proxy import iptables, names, nftables
from testbed.proxy.casefile import read_case
from tests.unit.conftest import FIDELITY

DATA = Path(__file__).parent / "data" / "proxy"
FRESH = DATA / "fresh_etp_local_udp.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["proxy", "render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_render_prints_restore_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(FRESH))
    assert (code, err) == (0, "")
    settings, state = read_case(str(FRESH))
    assert out == iptables.render(state.services, state.endpoints, settings)
    assert out.startswith("*filter\n:KUBE-SERVICES - [0:0]\n")
    code, normalized, _ = run(capsys, "--normalized", str(FRESH))
    assert code == 0 and normalized == iptables.normalize(out) != out


def test_fresh_case_rules(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--mode", "iptables", str(FRESH))
    lines = out.splitlines()
    h = names.port_proto_hash("demo/dns:udp", "udp")
    local_sep = names.sep_chain("demo/dns:udp", "udp", "10.244.1.7:5353")
    assert "-A KUBE-NODEPORTS -m comment --comment demo/dns:udp -m udp -p udp --dport 30053 " \
           f"-j KUBE-EXT-{h}" in lines
    assert f"-A KUBE-EXT-{h} -j KUBE-SVL-{h}" in lines
    assert (f'-A KUBE-SVL-{h} -m comment --comment "demo/dns:udp -> 10.244.1.7:5353" '
            f"-j {local_sep}") in lines
    assert ('-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN') in lines
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in lines
    assert ('-A KUBE-SERVICES -m comment --comment "demo/web:http has no local endpoints" '
            "-m tcp -p tcp -d 10.96.0.80 --dport 80 -j DROP") in lines
    assert "KUBE-FIREWALL" not in out and "nfacct" not in out


def test_render_nftables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--mode", "nftables", str(FRESH))
    assert code == 0
    base = names.nft_service_base("demo", "dns", "udp", "udp")
    ep = names.nft_endpoint_base("demo", "dns", "udp", "udp", "10.244.1.7", 5353)
    ext, local = names.nft_external_chain(base), names.nft_local_chain(base)
    lines = out.splitlines()
    assert f"add rule ip kube-proxy {ext} goto {local}" in lines
    assert (f"add rule ip kube-proxy {local} numgen random mod 1 vmap "
            f"{{ 0 : goto {names.nft_endpoint_chain(ep)} }}") in lines
    assert f"add element ip kube-proxy service-nodeports {{ udp . 30053 : goto {ext} }}" in lines
    assert ('add element ip kube-proxy no-endpoint-services { 10.96.0.80 . tcp . 80 comment '
            '"demo/web:http" : drop }') in lines
    # nodePortAddresses empty: match every local address except localhost.
    assert ("add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 "
            "meta l4proto . th dport vmap @service-nodeports") in lines
    assert not any(" nodeport-ips " in line for line in lines)
    code, normalized, _ = run(capsys, "--mode", "nftables", "--normalized", str(FRESH))
    assert normalized == nftables.normalize(out)


@pytest.mark.parametrize("name,expected", [
    ("case1_input.yaml", "case1_expected.iptables-save"),
    ("case4_input.yaml", "case4_expected.iptables-save"),
])
def test_render_golden_through_cli(capsys, name: str, expected: str) -> None:
    code, out, _ = run(capsys, str(FIDELITY / name))
    assert code == 0 and iptables.normalize(out) == (FIDELITY / expected).read_text()


def _bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


GOOD_SLICE = """\
- kind: EndpointSlice
  metadata: {namespace: ns1, name: s, labels: {kubernetes.io/service-name: svc1}}
  endpoints:
  - addresses: [10.0.0.1]
  ports: [{name: p, port: 80}]
"""


@pytest.mark.parametrize("text,where", [
    ("harness: {}\nobjects:\n- kind: Service\n  metadata: {namespace: ns1, name: svc1}\n"
     "  spec:\n    clusterIP: 10.0.0.300\n    ports: [{port: 80}]\n",
     ':6: objects[0].spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IP address'),
    ("objects:\n- kind: Service\n  metadata: {namespace: ns1}\n  spec:\n"
     "    clusterIP: 10.0.0.3\n    ports: [{port: 80}]\n",
     ":3: objects[0].metadata.name: Required value"),
    ("objects:\n- kind: Service\n  metadata: {name: a}\n  spec:\n    clusterIP: 10.0.0.3\n",
     ":4: objects[0].spec.ports: Required value"),
    ("objects:\n- kind: Service\n  metadata: {name: a}\n  spec:\n    clusterIP: 10.0.0.3\n"
     "    ports:\n    - {port: 80, protocol: ICMP}\n",
     ':7: objects[0].spec.ports[0].protocol: Unsupported value: "ICMP": supported values: '
     '"SCTP", "TCP", "UDP"'),
    ("harness:\n  nodeName: n\n  nodeIP: 10.1\nobjects: []\n",
     ":3: harness.nodeIP: Invalid value: 10.1: must be a valid IP address"),
    ("harness:\n  localhostNodePorts: yes please\nobjects: []\n",
     ':2: harness.localhostNodePorts: Invalid value: "yes please": must be a boolean'),
    ("harness:\n  localDetector: {mode: ClusterCIDR, clusterCIDR: 10.0.0.0/33}\nobjects: []\n",
     ':2: harness.localDetector.clusterCIDR: Invalid value: "10.0.0.0/33": must be a valid CIDR value'),
    ("harness: {}\n", ":1: objects: Required value"),
    ("objects:\n" + GOOD_SLICE.replace("10.0.0.1", "10.0.0.x"),
     ':5: objects[0].endpoints[0].addresses[0]: Invalid value: "10.0.0.x": must be a valid IP address'),
    ("objects:\n" + GOOD_SLICE.replace("port: 80", "port: -1"),
     ":6: objects[0].ports[0].port: Invalid value: -1: must be between 1 and 65535, inclusive"),
    ("objects:\n- kind: Service\n  metadata: {name: a}\n  spec: {clusterIP: 10.0.0.3, ports: [{port: 80}]}\n"
     "- kind: Service\n  metadata: {name: a}\n  spec: {clusterIP: 10.0.0.4, ports: [{port: 81}]}\n",
     ':6: objects[1].metadata.name: Duplicate value: "a": Service default/a is defined twice'),
    ("objects: [\n", ":2: not valid YAML"),
    ("- just\n- a list\n", ":1: expected exactly one YAML mapping, found a list"),
])
def test_bad_input_names_file_line_field(capsys, tmp_path: Path, text: str,
                                         where: str) -> None:
    path = _bad(tmp_path, text)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == ""
    assert f"testbed: {path}{where}" in err
    assert "Traceback" not in err


def test_every_problem_is_reported_at_once(capsys, tmp_path: Path) -> None:
    path = _bad(tmp_path, "harness:\n  nodeIP: x\nobjects:\n- kind: Service\n"
                "  metadata: {name: a}\n  spec:\n    clusterIP: y\n    ports: [{port: 0}]\n")
    code, _, err = run(capsys, "--mode", "nftables", str(path))
    assert code == 2
    assert [line.split(": ")[2] for line in err.splitlines()] == [
        "harness.nodeIP", "objects[0].spec.clusterIP", "objects[0].spec.ports[0].port"]


def test_missing_file(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml: no such file" in err


def test_bad_mode_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["proxy", "render", "--mode", "ipvs", str(FRESH)])
    assert exc.value.code == 2
