"""Upstream's packet-flow rows (packet_flows.yaml) traced through our rendered iptables rules."""

from __future__ import annotations

import pytest

from testbed.proxy.casefile import load_case
from testbed.proxy.iptables import render
from testbed.proxy.tracer import trace
from testbed.spec.source import read_one
from tests.unit.conftest import FIDELITY

FLOWS = FIDELITY / "packet_flows.yaml"

# Rows we cannot check honestly, with the reason. Empty: every row is traced.
SKIPPED: dict[str, str] = {}


def _rows() -> list[tuple[int, int, str]]:
    doc = read_one(FLOWS)
    return [(i, j, f"{setup['name']}: {flow['name']}")
            for i, setup in enumerate(doc.data["setups"])
            for j, flow in enumerate(setup["flows"])]


@pytest.fixture(scope="module")
def flows_doc():
    return read_one(FLOWS)


@pytest.mark.parametrize("setup_index,flow_index,label", _rows(),
                         ids=[r[2] for r in _rows()])
def test_packet_flow(flows_doc, setup_index: int, flow_index: int, label: str) -> None:
    if label in SKIPPED:
        pytest.skip(SKIPPED[label])
    setup = flows_doc.data["setups"][setup_index]
    settings, state = load_case(flows_doc, harness_overrides=setup.get("harnessOverrides"),
                                objects_path=("setups", setup_index, "objects"))
    text = render(state.services, state.endpoints, settings)
    flow = setup["flows"][flow_index]
    got = trace(text, settings.all_local_ips(), flow["sourceIP"], flow.get("protocol", "TCP"),
                flow["destIP"], flow["destPort"])
    assert (got.output, got.masq) == (flow["output"], flow.get("masq", False)), \
        "\n".join(got.matched)


def test_all_twenty_rows_present() -> None:
    assert len(_rows()) == 20
