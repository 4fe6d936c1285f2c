"""testbed.spec.names: kernel-safe interface names; the DNS-1123 rules topology names follow."""

from __future__ import annotations

import pytest

from testbed.spec.names import IFNAMSIZ, ifname
from testbed.spec.validation import is_dns1123_label, is_dns1123_subdomain

# Names in topology files are checked with the API server's rules (testbed/spec/validation.py,
# through the Checker); these pin the rules themselves.


@pytest.mark.parametrize("value", ["a", "w1", "pod-a", "0", "a" * 63, "1-2-3", "a-b"])
def test_valid_labels(value):
    assert is_dns1123_label(value) == []


def test_label_length_error():
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize("value", ["", "A", "Pod", "-a", "a-", "a_b", "a b", "ä", "\na", "a..b"])
def test_label_character_errors(value):
    [why] = is_dns1123_label(value)
    assert why.startswith("a lowercase RFC 1123 label must consist of lower case alphanumeric")


@pytest.mark.parametrize("value", ["a.b", "master.local", "1.2.3.4"])
def test_a_subdomain_that_is_no_label_has_dots(value):
    # apimachinery's IsDNS1123Label since 1.27: a valid subdomain can only fail by its dots
    assert is_dns1123_label(value) == ["must not contain dots"]


@pytest.mark.parametrize("check", [is_dns1123_label, is_dns1123_subdomain])
def test_trailing_newline_is_not_a_valid_name(check):
    assert check("w1\n") != []


@pytest.mark.parametrize("value", ["a", "a.b", "my-svc.default.svc", "x" * 63 + "." + "y" * 63,
                                   "1.2.3.4"])
def test_valid_subdomains(value):
    assert is_dns1123_subdomain(value) == []


def test_subdomain_length_error():
    assert is_dns1123_subdomain("a" * 254)[0] == "must be no more than 253 characters"


def test_subdomain_of_exactly_253_is_fine():
    value = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(value) == 253
    assert is_dns1123_subdomain(value) == []


@pytest.mark.parametrize("value", ["", "A.b", ".a", "a.", "a..b", "a_b.c", "-a.b", "a-.b"])
def test_subdomain_character_errors(value):
    [why] = is_dns1123_subdomain(value)
    assert why.startswith("a lowercase RFC 1123 subdomain")


@pytest.mark.parametrize(("base", "suffix", "expected"), [
    ("w1", "-eth0", "w1-eth0"),
    ("gw", "-eth12", "gw-eth12"),
    ("abcdefghij", "-eth0", "abcdefghij-eth0"),  # exactly 15: kept as is
    ("cbr0", "", "cbr0"),
])
def test_short_names_are_kept_readable(base, suffix, expected):
    assert ifname(base, suffix) == expected


@pytest.mark.parametrize(("base", "suffix"), [
    ("abcdefghijk", "-eth0"),                # 16
    ("averyveryverylongnodename", "-eth0"),
    ("averyveryverylongnodename", "-eth123"),
    ("x" * 100, ""),
    ("gateway-router-1", "-eth9"),
])
def test_long_names_fit_and_keep_the_suffix(base, suffix):
    name = ifname(base, suffix)
    assert len(name) == IFNAMSIZ == 15
    assert name.endswith(suffix)
    assert "_" in name
    assert name.startswith(base[:3])


def test_long_name_is_stable():
    # a known value, so a change of the hashing scheme is noticed (interfaces of running
    # clusters are cleaned up by these names)
    assert ifname("averyveryverylongnodename", "-eth0") == "ave_4c950d-eth0"


def test_two_long_names_with_one_prefix_do_not_collide():
    a = ifname("worker-node-number-1", "-eth0")
    b = ifname("worker-node-number-2", "-eth0")
    assert a != b
    assert a[:4] == b[:4] == "wor_"


def test_long_names_that_differ_only_past_the_kept_prefix_differ():
    names = {ifname(f"very-long-worker-name-{i}", "-eth0") for i in range(5)}
    assert len(names) == 5
    assert all(len(n) == IFNAMSIZ for n in names)


def test_known_colliding_pair_does_not_collide():
    assert ifname("very-long-worker-name-5", "-eth0") != ifname("very-long-worker-name-105", "-eth0")


def test_same_long_base_different_suffixes_differ():
    assert ifname("gateway-router-node", "-eth1") != ifname("gateway-router-node", "-eth2")
