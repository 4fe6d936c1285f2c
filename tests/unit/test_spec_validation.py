"""testbed.spec.validation: the rules upstream's apimachinery and core validation word, and the
field reader's paths and lines (quantities, special IPs, label keys, env names, wildcards)."""

from __future__ import annotations

import pytest

from testbed.spec.source import Key, field_name, parse_documents
from testbed.spec.validation import (
    QUANTITY_FORMAT,
    Checker,
    check_labels,
    go_map,
    is_env_var_name,
    is_label_value,
    is_non_special_ip,
    is_qualified_name,
    is_wildcard_dns1123_subdomain,
    parse_quantity,
)

# -- quantities ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    # kept as written when already canonical, as ParseQuantity keeps them
    ("1", "1"), ("100m", "100m"), ("1Ki", "1Ki"), ("1500Mi", "1500Mi"), ("1e3", "1e3"),
    ("-1", "-1"), ("0", "0"),
    # otherwise printed canonically (mantissa and an exponent that is a multiple of 3)
    ("1.5", "1500m"), ("0.1", "100m"), ("1000m", "1"), ("1000", "1k"), ("2000000", "2M"),
    ("1024Mi", "1Gi"), ("8Ki", "8Ki"), ("0.5Gi", "512Mi"), ("0.5Ki", "512"),
    ("1.0000000001", "1000000001n"), ("0.0000000001", "1n"), ("0Ki", "0"), (".5", "500m"),
])
def test_quantities_print_as_upstream_prints_them(text, shown):
    assert str(parse_quantity(text)) == shown


@pytest.mark.parametrize(("small", "large"), [("500m", "1"), ("1Gi", "1025Mi"), ("1k", "1Ki"),
                                              ("1e3", "1001"), ("-1", "0")])
def test_quantities_compare_by_value(small, large):
    assert parse_quantity(small).value < parse_quantity(large).value


@pytest.mark.parametrize(("text", "why"), [
    ("1x", QUANTITY_FORMAT), ("", QUANTITY_FORMAT), ("abc", QUANTITY_FORMAT),
    ("1.5.5", QUANTITY_FORMAT), ("1 Gi", QUANTITY_FORMAT),
    ("1kk", "unable to parse quantity's suffix"), ("1e", "unable to parse quantity's suffix"),
    ("1e-", "unable to parse quantity's suffix"), ("1Zi", QUANTITY_FORMAT),
])
def test_bad_quantities_are_refused_in_upstreams_words(text, why):
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert str(info.value) == why


def test_quantities_are_capped_and_rounded_up_to_a_nano_unit():
    assert parse_quantity("1E").value == 10**18
    assert parse_quantity("100E").value == 2**63 - 1


# -- names and addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ip", "why"), [
    ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
    ("127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("::1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("169.254.1.1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    ("224.0.0.5", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
    ("ff02::1", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
])
def test_special_ips(ip, why):
    assert is_non_special_ip(ip) == [why]


@pytest.mark.parametrize("ip", ["10.0.0.1", "203.0.113.7", "224.0.1.1", "2001:db8::1"])
def test_ordinary_ips_are_not_special(ip):
    assert is_non_special_ip(ip) == []


@pytest.mark.parametrize("name", ["1ABC", "my.env-name", "A B", "x:y", "~"])
def test_env_var_names_are_any_printable_ascii_but_equals(name):
    assert is_env_var_name(name) == []


@pytest.mark.parametrize("name", ["A=B", "zoné", "A\tB", "\x7f"])
def test_env_var_names_refused(name):
    assert is_env_var_name(name) == ["a valid environment variable name must consist only of "
                                     "printable ASCII characters other than '='"]


def test_empty_env_var_name():
    assert is_env_var_name("") == ["environment variable name must be non-empty"]


def test_label_keys_as_content_is_label_key_words_them():
    assert is_qualified_name("a/b/c")[0].startswith("a valid label key must consist of")
    assert is_qualified_name("") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("x" * 64)[0] == "name part must be no more than 63 bytes"
    assert is_label_value("v" * 64)[0] == "must be no more than 63 bytes"
    # Go counts bytes: 32 two-byte letters are 64
    assert is_label_value("é" * 32)[0] == "must be no more than 63 bytes"


@pytest.mark.parametrize(("host", "ok"), [("*.example.com", True), ("*.*.example.com", False),
                                          ("foo*.example.com", False), ("*", False)])
def test_wildcard_hosts(host, ok):
    assert (is_wildcard_dns1123_subdomain(host) == []) is ok


# -- the field reader ------------------------------------------------------------------------------


def test_map_keys_are_named_as_field_path_key_names_them():
    assert field_name(("spec", "containers", 0, "resources", "limits", Key("cpu"))) == \
        "spec.containers[0].resources.limits[cpu]"


def test_go_map():
    assert go_map({"tier": "fe", "app": "web"}) == 'map[string]string{"app":"web", "tier":"fe"}'
    assert go_map({}) == "map[string]string{}"
    assert go_map(None) == "map[string]string(nil)"


def test_labels_are_reported_at_the_map_on_the_keys_line():
    [doc] = parse_documents("metadata:\n  labels:\n    ok: yes-ok\n    app: my app\n"
                            "    a/b/c: x\n", "m.yaml")
    ck = Checker(doc)
    check_labels(ck, ("metadata", "labels"), doc.data["metadata"]["labels"])
    assert [(p.line, p.field, p.message.split(":")[0] + ":" + p.message.split(":")[1])
            for p in ck.problems] == [
        (4, "metadata.labels", 'Invalid value: "my app"'),
        (5, "metadata.labels", 'Invalid value: "a/b/c"'),
    ]


def test_a_label_value_of_the_wrong_type_is_the_decoders_fault_at_the_key():
    [doc] = parse_documents("labels:\n  rack: 7\n", "m.yaml")
    ck = Checker(doc)
    check_labels(ck, ("labels",), doc.data["labels"])
    assert [str(p) for p in ck.problems] == ["m.yaml:2: labels.rack: Invalid value: 7: must be "
                                             "a string"]


def test_numbers_may_have_a_maximum():
    ck = Checker()
    assert ck.number({"t": 1e300}, "t", (), maximum=86400, unit=" seconds") is None
    assert [p.message for p in ck.problems] == ["Invalid value: 1e+300: must be less than or "
                                                "equal to 86400 seconds"]
    assert ck.number({"t": 86400}, "t", (), maximum=86400) == 86400.0
