"""The kubelet's Node registration tries a conflicting write again (agents/kubelet.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from testbed.agents.kubelet import NODE_STATUS_UPDATE_RETRY, Kubelet
from testbed.apiclient.client import ApiError


def kubelet_failing(codes: list[int]):
    calls = []

    def attempt():
        calls.append(1)
        if codes:
            code = codes.pop(0)
            raise ApiError(code, "Conflict" if code == 409 else "InternalError", f"HTTP {code}")

    return SimpleNamespace(name="w1", _register_node=attempt), calls


def test_a_conflict_is_tried_again_on_the_object_as_it_now_is():
    fake, calls = kubelet_failing([409, 409])
    Kubelet.register_node(fake)
    assert len(calls) == 3


def test_other_errors_and_endless_conflicts_are_raised():
    fake, calls = kubelet_failing([500])
    with pytest.raises(ApiError):
        Kubelet.register_node(fake)
    assert len(calls) == 1
    fake, calls = kubelet_failing([409] * 10)
    with pytest.raises(ApiError):
        Kubelet.register_node(fake)
    assert len(calls) == NODE_STATUS_UPDATE_RETRY
