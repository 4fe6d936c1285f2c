"""Pure: the field checker every object validator reports through, and Kubernetes name rules.

`Checker` walks one document (or a bare dict), reads typed fields, and records problems worded
the way the Kubernetes API server words them (`Required value`, `Invalid value: 70000: ...`,
`Unsupported value: ...`, `Duplicate value: ...`, `unknown field "x"`). The `is_*` functions
mirror k8s.io/apimachinery/pkg/util/validation: they return a list of messages, empty if fine.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

from testbed.spec.source import Document, Path_, Problem, field_name

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_WILDCARD_DNS1123_SUBDOMAIN = r"\*\." + _DNS1123_SUBDOMAIN


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _size(value: str) -> int:
    """len() as Go counts a string: bytes of UTF-8."""
    return len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if _size(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _full(_DNS1123_LABEL, value):
        if _full(_DNS1123_SUBDOMAIN, value):
            # as upstream: a valid subdomain that is no label can only hold dots
            errs.append("must not contain dots")
        else:
            errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                        "characters or '-', and must start and end with an alphanumeric "
                        "character (e.g. 'my-name',  or '123-abc', regex used for validation "
                        f"is '{_DNS1123_LABEL}')")
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """Service names: a DNS label that starts with a letter."""
    errs = []
    if _size(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _full(_DNS1035_LABEL, value):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or "
                    "'-', start with an alphabetic character, and end with an alphanumeric "
                    "character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
                    f"'{_DNS1035_LABEL}')")
    return errs


def is_dns1123_subdomain(value: str, size_unit: str = "characters") -> list[str]:
    errs = []
    if _size(value) > 253:
        errs.append(f"must be no more than 253 {size_unit}")
    if not _full(_DNS1123_SUBDOMAIN, value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is "
                    f"'{_DNS1123_SUBDOMAIN}')")
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    """A wildcard host, '*.' and a DNS subdomain (RFC 1034 4.3.3), as IsWildcardDNS1123Subdomain."""
    errs = []
    if _size(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _full(_WILDCARD_DNS1123_SUBDOMAIN, value):
        errs.append("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                    "subdomain, which must consist of lower case alphanumeric characters, '-' or "
                    "'.' and end with an alphanumeric character (e.g. '*.example.com', regex "
                    f"used for validation is '{_WILDCARD_DNS1123_SUBDOMAIN}')")
    return errs


_QUALIFIED_NAME_RULE = ("must consist of alphanumeric characters, '-', '_' or '.', and must "
                        "start and end with an alphanumeric character (e.g. 'MyName',  or "
                        "'my.name',  or '123-abc', regex used for validation is "
                        f"'{_QUALIFIED_NAME}')")


def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key: optional DNS-subdomain prefix, '/', and a name part, as
    apimachinery's content.IsLabelKey (what IsQualifiedName is since 1.35) words it: sizes in
    bytes, and an empty name part both empty and not matching."""
    parts = value.split("/")
    if len(parts) > 2:
        return [f"a valid label key {_QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix "
                "and '/' (e.g. 'example.com/MyName')"]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in is_dns1123_subdomain(parts[0], "bytes"))
    if not name:
        errs.append("name part must be non-empty")
    elif _size(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _full(_QUALIFIED_NAME, name):
        errs.append("name part " + _QUALIFIED_NAME_RULE)
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if _size(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not _full(_LABEL_VALUE, value):
        errs.append("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                    f"validation is '{_LABEL_VALUE}')")
    return errs


def is_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME, as k8s IsValidPortName."""
    errs = []
    if len(value) < 1 or len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _full("[-a-z0-9]+", value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_env_var_name(value: str) -> list[str]:
    """As IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation, GA): any printable ASCII
    but '='."""
    errs = []
    if not value:
        errs.append("environment variable name must be non-empty")
    if any(not " " <= c <= "~" or c == "=" for c in value):
        errs.append("a valid environment variable name must consist only of printable ASCII "
                    "characters other than '='")
    return errs


def is_port_number(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def parse_ip(text: Any) -> str | None:
    """Go ParseIPSloppy + String(): "10.180.00.001" -> "10.180.0.1"; None if not an IP."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() for p in parts):
        nums = [int(p, 10) for p in parts]
        return ".".join(map(str, nums)) if all(n <= 255 for n in nums) else None
    if ":" not in text:
        return None
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


def is_ipv4(value: str) -> list[str]:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_ip(value: str) -> list[str]:
    """IPv4 or IPv6, as k8s IsValidIP."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_non_special_ip(value: str) -> list[str]:
    """ValidateNonSpecialIP: what may not be an endpoint or an external IP (unspecified,
    loopback, link-local, link-local multicast), in upstream's words."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address"]
    errs = []
    if ip.is_unspecified:
        errs.append(f"may not be unspecified ({value})")
    if ip.is_loopback:
        errs.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if ip.is_link_local:
        errs.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    packed = ip.packed
    if (ip.version == 4 and packed[:3] == bytes([224, 0, 0])) or (
            ip.version == 6 and packed[0] == 0xFF and packed[1] & 0x0F == 0x02):
        errs.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return errs


def is_cidr(value: str) -> list[str]:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    if "/" not in value:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


# -- resource quantities ----------------------------------------------------------------------------

QUANTITY_FORMAT = ("quantities must match the regular expression "
                   "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
                     "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_QUANTITY = re.compile(r"([+-]?)0*([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[-+]?[0-9]*)")
_NANO = Fraction(1, 10**9)
_MAX_QUANTITY = Fraction(2**63 - 1)


class Quantity:
    """A resource.Quantity as apimachinery parses it ("500m", "1.5Gi", "1e3"): its exact
    value (rounded up to a nano unit, capped at 2^63-1, as upstream) and its canonical string
    (`str()`, what the API server prints in messages)."""

    def __init__(self, value: Fraction, fmt: str, text: str | None = None):
        self.value, self.format, self._text = value, fmt, text

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        value, fmt = self.value, self.format
        if value == 0:
            return "0"
        if fmt == "BinarySI" and (-1024 < value < 1024 or value.denominator != 1):
            fmt = "DecimalSI"
        if fmt == "BinarySI":
            mantissa, exponent = int(value), 0
            while mantissa % 1024 == 0 and exponent < 60:
                mantissa, exponent = mantissa // 1024, exponent + 10
            suffix = {0: "", **{e: s for s, e in _BINARY_SUFFIXES.items()}}[exponent]
            return f"{mantissa}{suffix}"
        # the value as mantissa * 10^exponent, exponent a multiple of 3 (AsCanonicalBytes)
        exponent = 0
        while value.denominator != 1:
            value, exponent = value * 10, exponent - 1
        mantissa = int(value)
        while mantissa % 10 == 0:
            mantissa, exponent = mantissa // 10, exponent + 1
        while exponent % 3:
            mantissa, exponent = mantissa * 10, exponent - 1
        if fmt == "DecimalExponent":
            return f"{mantissa}" + (f"e{exponent}" if exponent else "")
        suffix = {e: s for s, e in _DECIMAL_SUFFIXES.items()}.get(exponent, "")
        return f"{mantissa}{suffix}"


def parse_quantity(text: str) -> Quantity:
    """ParseQuantity; ValueError with upstream's message when `text` is no quantity."""
    if text == "0":
        return Quantity(Fraction(0), "DecimalSI", text)
    match = _QUANTITY.fullmatch(text)
    if not text or match is None:
        raise ValueError(QUANTITY_FORMAT)
    sign, num, denom, suffix = match.group(1), match.group(2), match.group(3) or "", match.group(4)
    if suffix in _DECIMAL_SUFFIXES:
        base, exponent, fmt = 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    elif suffix in _BINARY_SUFFIXES:
        base, exponent, fmt = 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    elif len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?[0-9]+", suffix[1:]):
        base, exponent, fmt = 10, int(suffix[1:]), "DecimalExponent"
    else:
        raise ValueError("unable to parse quantity's suffix")
    digits = num + denom
    amount = Fraction(int(digits or "0"), 10 ** len(denom))
    amount *= Fraction(base) ** exponent
    if amount and amount % _NANO:                  # rounded up (away from zero) to 1n
        amount = (amount // _NANO + 1) * _NANO
    amount = min(amount, _MAX_QUANTITY)
    if fmt == "BinarySI" and 0 < amount < 1:
        fmt = "DecimalSI"
    value = -amount if sign == "-" else amount
    # upstream keeps the text as written when it is already canonical
    num = num or "0"
    shifted, scale = num + denom, exponent - len(denom)
    kept = None
    if fmt == "BinarySI":
        if not denom and 15 - len(num) - int(exponent * 3 / 10) - 1 >= 0 \
                and exponent % 10 == 0 and int(shifted) & 7:
            kept = text
    elif len(shifted) <= 18 and scale >= -9 and not scale % 3 \
            and not shifted.endswith("000") and shifted[0] != "0":
        kept = text
    return Quantity(value, fmt, kept)


def fmt(value: Any) -> str:
    """A value the way k8s field errors print it: strings quoted (printable non-ASCII kept, as
    Go's %q keeps it), numbers bare."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=not value.isprintable())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True)


def go_map(labels: dict | None) -> str:
    """A map[string]string as Go's %#v prints it (keys sorted), as field errors print maps."""
    if labels is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(
        f"{fmt(str(k))}:{fmt(str(v))}" for k, v in sorted(labels.items(), key=lambda kv: str(kv[0]))) + "}"


MAX_INT32 = 2**31 - 1   # what Kubernetes' int32 fields (replicas, counts) hold

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "boolean": (bool,), "object": (dict,),
    "array": (list,), "number": (int, float),
}
_ARTICLE = {"string": "a string", "integer": "an integer", "boolean": "a boolean",
            "object": "an object", "array": "a list", "number": "a number"}


class Checker:
    """Records problems against one document. Paths are absolute within the document.

    The one field reader of every input the testbed takes: Kubernetes objects, topology and
    scenario files, kube-proxy case files. Every fault is worded as the API server words it
    (`Required value`, `Invalid value: V: why`, `Unsupported value`, `Duplicate value`,
    `Forbidden`, `unknown field "x"`), at the field's path and line. Subclasses may collect
    problems elsewhere by overriding `add` (the proxy's change trackers keep bare paths).
    """

    _line_path: Path_ | None = None     # line_of(): where the next problems are written

    def __init__(self, doc: Document | None = None, file: str = "<object>"):
        self.doc = doc
        self.file = doc.file if doc is not None else file
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str) -> None:
        where = path if self._line_path is None else self._line_path
        line = self.doc.line(where) if self.doc is not None else None
        self.problems.append(Problem(self.file, line, field_name(path), message))

    @contextmanager
    def line_of(self, path: Path_) -> Iterator[None]:
        """Problems added meanwhile take their line from `path`, a more precise place than
        their field: upstream reports a bad label at the map (`metadata.labels`), the line
        is the key's."""
        before, self._line_path = self._line_path, path
        try:
            yield
        finally:
            self._line_path = before

    def required(self, path: Path_, detail: str = "") -> None:
        self.add(path, "Required value" + (f": {detail}" if detail else ""))

    def invalid(self, path: Path_, value: Any, detail: str) -> None:
        self.add(path, f"Invalid value: {fmt(value)}: {detail}")

    def unsupported(self, path: Path_, value: Any, supported: list[str]) -> None:
        self.add(path, f"Unsupported value: {fmt(value)}: supported values: "
                       + ", ".join(fmt(s) for s in supported))

    def duplicate(self, path: Path_, value: Any, detail: str = "") -> None:
        self.add(path, f"Duplicate value: {fmt(value)}" + (f": {detail}" if detail else ""))

    def forbidden(self, path: Path_, detail: str) -> None:
        self.add(path, f"Forbidden: {detail}")

    def names(self, path: Path_, value: str, errors: list[str]) -> bool:
        for err in errors:
            self.invalid(path, value, err)
        return not errors

    # -- typed reads ---------------------------------------------------------------------------

    def is_type(self, path: Path_, value: Any, kind: str) -> bool:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            self.invalid(path, value, f"must be {_ARTICLE[kind]}")
        return ok

    def get(self, obj: dict, key: str, path: Path_, kind: str, required: bool = False) -> Any:
        """obj[key] if present and of `kind`; None otherwise (with a problem when it matters)."""
        if key not in obj or obj[key] is None:
            if required:
                self.required(path + (key,))
            return None
        value = obj[key]
        if not self.is_type(path + (key,), value, kind):
            return None
        if required and kind == "string" and value == "":
            self.required(path + (key,))
            return None
        return value

    def fields(self, path: Path_, value: Any, allowed: set[str] | frozenset[str]) -> dict | None:
        """`value` as a mapping; unknown keys are reported the way strict decoding does."""
        if not self.is_type(path, value, "object"):
            return None
        for key in value:
            if key not in allowed:
                self.add(path + (key,), f'unknown field "{key}"')
        return value

    def obj(self, parent: dict, key: str, path: Path_, allowed: set[str] | frozenset[str],
            required: bool = False) -> dict | None:
        if parent.get(key) is None:
            if required:
                self.required(path + (key,))
            return None
        return self.fields(path + (key,), parent[key], allowed)

    def items(self, parent: dict, key: str, path: Path_,
              required: bool = False) -> list[tuple[Path_, Any]]:
        """(path, item) for each item of the list parent[key]."""
        value = self.get(parent, key, path, "array", required)
        if required and value == []:
            self.required(path + (key,))
        return [(path + (key, i), item) for i, item in enumerate(value or [])]

    def string_list(self, parent: dict, key: str, path: Path_) -> list[str]:
        out = []
        for p, item in self.items(parent, key, path):
            if self.is_type(p, item, "string"):
                out.append(item)
        return out

    def port(self, parent: dict, key: str, path: Path_, required: bool = False) -> int | None:
        value = self.get(parent, key, path, "integer", required)
        if value is not None and not self.names(path + (key,), value, is_port_number(value)):
            return None
        return value

    def positive(self, parent: dict, key: str, path: Path_, minimum: int = 1) -> int | None:
        value = self.get(parent, key, path, "integer")
        if value is not None and value < minimum:
            self.invalid(path + (key,), value, f"must be greater than or equal to {minimum}")
            return None
        return value

    def enum(self, parent: dict, key: str, path: Path_, supported: list[str],
             default: str | None = None) -> str | None:
        """A string from `supported`; fills `default` in when absent."""
        value = self.get(parent, key, path, "string")
        if value is None:
            if default is not None and parent.get(key) is None:
                parent[key] = default
                return default
            return None
        if value not in supported:
            self.unsupported(path + (key,), value, supported)
            return None
        return value

    def number(self, parent: dict, key: str, path: Path_, minimum: float = 0,
               default: float | None = None, above: bool = False,
               maximum: float | None = None, unit: str = "") -> float | None:
        """A finite number >= `minimum` (> with `above`) and <= `maximum`, e.g. seconds;
        `default` when absent. `unit` follows the maximum in its message (" seconds (a day)")."""
        if parent.get(key) is None:
            return default
        value = self.get(parent, key, path, "number")
        if value is None:
            return None
        if not math.isfinite(value):
            self.invalid(path + (key,), value, "must be a finite number")
            return None
        if value < minimum or (above and value == minimum):
            self.invalid(path + (key,), value, ("must be greater than " if above else
                                                "must be greater than or equal to ")
                         + f"{minimum:g}")
            return None
        if maximum is not None and value > maximum:
            self.invalid(path + (key,), value, f"must be less than or equal to {maximum:g}{unit}")
            return None
        return float(value)

    def integer(self, parent: dict, key: str, path: Path_, low: int, high: int | None = None,
                default: int | None = None, required: bool = False) -> int | None:
        """A whole number from `low` to `high` (None: no more than an int32 holds), inclusive;
        `default` when absent."""
        if parent.get(key) is None and not required:
            return default
        value = self.get(parent, key, path, "integer", required)
        if value is None:
            return None
        if high is not None and not low <= value <= high:
            self.invalid(path + (key,), value, f"must be between {low} and {high}, inclusive")
            return None
        if value < low:
            self.invalid(path + (key,), value, f"must be greater than or equal to {low}")
            return None
        if value > MAX_INT32:
            self.invalid(path + (key,), value, f"must be less than or equal to {MAX_INT32}")
            return None
        return value

    def string(self, parent: dict, key: str, path: Path_, required: bool = False,
               default: str | None = None) -> str | None:
        """A string (non-empty when required); `default` when absent."""
        if parent.get(key) is None and not required:
            return default
        return self.get(parent, key, path, "string", required)

    def selector(self, parent: dict, key: str, path: Path_, required: bool = False) -> str | None:
        """A label selector string ("app=web,tier!=db"), parsed as the API server parses
        `?labelSelector=`; refused with upstream's parser's words."""
        from testbed.spec.labels import SelectorError, parse_labels  # labels imports this module

        text = self.string(parent, key, path, required)
        if text is None:
            return None
        try:
            parse_labels(text)
        except SelectorError as err:
            self.invalid(path + (key,), text, str(err))
            return None
        return text


def check_labels(ck: Checker, path: Path_, labels: Any) -> dict[str, str]:
    """ValidateLabels: a bad key or value is reported at the map's path, as upstream does,
    on the line of its key."""
    if labels is None:
        return {}
    if not ck.is_type(path, labels, "object"):
        return {}
    for key, value in labels.items():
        with ck.line_of(path + (key,)):
            ck.names(path, key, is_qualified_name(str(key)))
        # a value of the wrong type is the decoder's fault, at the key
        if ck.is_type(path + (key,), value, "string"):
            with ck.line_of(path + (key,)):
                ck.names(path, value, is_label_value(value))
    return labels
