"""Pure: validation and defaults of NetworkPolicy (networking.k8s.io/v1), as upstream's API
server gives them.

Defaults are pkg/apis/networking/v1/defaults.go's: a port's protocol is TCP; empty policyTypes
become [Ingress], plus Egress when there are egress rules. Validation follows
pkg/apis/networking/validation (ValidateNetworkPolicy, ...Spec, ...Port, ...Peer,
ValidateIPBlock) in its order and words: the pod selector and the peers' selectors as every
metav1.LabelSelector; a port's protocol TCP, UDP or SCTP (listed in that order, as upstream
lists them), its port a number (1-65535) or an IANA service name, endPort only after a numeric
port and not below it; a peer is pod and/or namespace selectors, or an ipBlock alone; an
ipBlock's cidr and excepts are CIDRs as the API server parses them without strict validation
(StrictIPCIDRValidation is off by default: leading zeros and host bits are accepted) and each
except lies strictly inside cidr; policyTypes at most two, each Ingress or Egress (duplicates
are not refused: upstream does not refuse them).

The stored object is what upstream's JSON round trip makes of it: podSelector always there
({} when left out), null fields and empty lists (all omitempty) gone. `parse_cidr` is the one
CIDR reader of a policy (the policy agent's renderer reads ipBlocks with it too). No I/O.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from testbed.api.meta import check_label_selector, check_metadata
from testbed.api.schema import field_names
from testbed.api.schema_base import NETWORKING
from testbed.spec.source import Path_
from testbed.spec.validation import Checker, is_cidr, is_port_name, is_port_number, parse_ip

POLICY_TYPES = ["Ingress", "Egress"]        # upstream's order, in its message
PORT_PROTOCOLS = ["TCP", "UDP", "SCTP"]     # upstream's order (not sorted), in its message
CIDR_MESSAGE = is_cidr("-")[0]     # the API server's words for a bad CIDR
# What each object may hold: the schema's fields (testbed/api/schema_groups.py).
SPEC_FIELDS = field_names(NETWORKING + "NetworkPolicySpec")
INGRESS_RULE_FIELDS = field_names(NETWORKING + "NetworkPolicyIngressRule")
EGRESS_RULE_FIELDS = field_names(NETWORKING + "NetworkPolicyEgressRule")
PORT_FIELDS = field_names(NETWORKING + "NetworkPolicyPort")
PEER_FIELDS = field_names(NETWORKING + "NetworkPolicyPeer")
IP_BLOCK_FIELDS = field_names(NETWORKING + "IPBlock")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_networkpolicy(ck: Checker, path: Path_, obj: dict) -> None:
    """Validate and default a NetworkPolicy in place (its spec as the API server stores it)."""
    check_metadata(ck, path, obj)
    if obj.get("spec") is None:
        obj["spec"] = {}
    p = path + ("spec",)
    spec = ck.fields(p, obj["spec"], SPEC_FIELDS)
    if spec is None:
        return
    _drop_unset(spec, ("ingress", "egress", "policyTypes"))
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}    # not omitempty upstream: an empty selector, every pod
    else:
        check_label_selector(ck, p + ("podSelector",), spec["podSelector"])
    for direction, peers, allowed in (("ingress", "from", INGRESS_RULE_FIELDS),
                                      ("egress", "to", EGRESS_RULE_FIELDS)):
        for rp, item in ck.items(spec, direction, p):
            rule = ck.fields(rp, item, allowed)
            if rule is None:
                continue
            _drop_unset(rule, ("ports", peers))
            for pp, port in ck.items(rule, "ports", rp):
                _check_port(ck, pp, port)
            for pp, peer in ck.items(rule, peers, rp):
                _check_peer(ck, pp, peer)
    _policy_types(ck, p, spec)


def _drop_unset(parent: dict, keys: tuple[str, ...]) -> None:
    """Go's JSON round trip of omitempty lists and pointers: null and [] are not written."""
    for key in keys:
        if parent.get(key) is None or parent.get(key) == []:
            parent.pop(key, None)


def _policy_types(ck: Checker, p: Path_, spec: dict) -> None:
    """SetDefaults_NetworkPolicy, then the last part of ValidateNetworkPolicySpec."""
    if "policyTypes" not in spec:
        # len(egress) != 0 (an egress of the wrong shape is refused elsewhere)
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        return
    types = ck.get(spec, "policyTypes", p, "array")
    if types is None:
        return
    if len(types) > len(POLICY_TYPES):
        # field.Invalid of &spec.PolicyTypes: the value printed as Go's json.Marshal prints it
        shown = json.dumps(types, separators=(",", ":"), default=str)
        ck.add(p + ("policyTypes",), f"Invalid value: {shown}: may not specify more than two "
                                     "policyTypes")
        return
    for tp, value in ck.items(spec, "policyTypes", p):
        if ck.is_type(tp, value, "string") and value not in POLICY_TYPES:
            ck.unsupported(tp, value, POLICY_TYPES)


def _check_port(ck: Checker, pp: Path_, item: Any) -> None:
    """SetDefaults_NetworkPolicyPort and ValidateNetworkPolicyPort."""
    port = ck.fields(pp, item, PORT_FIELDS)
    if port is None:
        return
    _drop_unset(port, ("port", "endPort"))
    ck.enum(port, "protocol", pp, PORT_PROTOCOLS, default="TCP")
    value = port.get("port")
    end = ck.get(port, "endPort", pp, "integer")
    ep = pp + ("endPort",)
    if value is None:
        if end is not None:
            ck.invalid(ep, end, "may not be specified when `port` is not specified")
    elif type(value) is int:
        ck.names(pp + ("port",), value, is_port_number(value))
        if end is not None:
            if end < value:
                ck.invalid(ep, end, "must be greater than or equal to `port`")
            ck.names(ep, end, is_port_number(end))
    elif isinstance(value, str):
        if end is not None:
            ck.invalid(ep, end, "may not be specified when `port` is non-numeric")
        ck.names(pp + ("port",), value, is_port_name(value))
    else:
        ck.invalid(pp + ("port",), value, "must be an integer or a port name")


def _check_peer(ck: Checker, pp: Path_, item: Any) -> None:
    """ValidateNetworkPolicyPeer: pod and/or namespace selectors, or an ipBlock alone."""
    peer = ck.fields(pp, item, PEER_FIELDS)
    if peer is None:
        return
    _drop_unset(peer, ("podSelector", "namespaceSelector", "ipBlock"))
    for key in ("podSelector", "namespaceSelector"):
        if key in peer:
            check_label_selector(ck, pp + (key,), peer[key])
    if "ipBlock" in peer:
        _check_ip_block(ck, pp + ("ipBlock",), peer["ipBlock"])
    count = sum(key in peer for key in ("podSelector", "namespaceSelector", "ipBlock"))
    if count == 0:
        ck.required(pp, "must specify a peer")
    elif count > 1 and "ipBlock" in peer:
        ck.forbidden(pp, "may not specify both ipBlock and another peer")


def _check_ip_block(ck: Checker, bp: Path_, item: Any) -> None:
    """ValidateIPBlock (no CIDRs of an older version are let through: the testbed's updates
    validate the whole object, and a stored policy passed these checks)."""
    block = ck.fields(bp, item, IP_BLOCK_FIELDS)
    if block is None:
        return
    _drop_unset(block, ("except",))
    cidr = ck.get(block, "cidr", bp, "string")
    if cidr is None and block.get("cidr") is not None:
        return   # of the wrong type: reported
    if not cidr:
        ck.required(bp + ("cidr",))
        return
    outer = parse_cidr(cidr)
    if outer is None:
        ck.invalid(bp + ("cidr",), cidr, CIDR_MESSAGE)
        return
    for ep, text in ck.items(block, "except", bp):
        if not ck.is_type(ep, text, "string"):
            continue
        inner = parse_cidr(text)
        if inner is None:
            ck.invalid(ep, text, CIDR_MESSAGE)
        elif not strictly_within(inner, outer):
            ck.invalid(ep, text, "must be a strict subset of `cidr`")


def parse_cidr(text: Any) -> Network | None:
    """A CIDR as k8s.io/utils/net ParseCIDRSloppy reads it, masked to its network (the API
    server's non-strict reading: "010.0.0.1/08" is 10.0.0.0/8); None when it is not one."""
    if not isinstance(text, str):
        return None
    address, slash, bits = text.partition("/")
    if not slash or not (bits.isascii() and bits.isdigit()):
        return None
    if ":" in address:
        if "%" in address:   # Python takes a scope; Go's parser does not
            return None
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(address)
        except ValueError:
            return None
    else:
        sloppy = parse_ip(address)
        if sloppy is None:
            return None
        ip = ipaddress.IPv4Address(sloppy)
    prefix = int(bits)
    if prefix > ip.max_prefixlen:
        return None
    return ipaddress.ip_network((ip, prefix), strict=False)


def strictly_within(inner: Network, outer: Network) -> bool:
    """Upstream's test of an except: cidr contains its address and has a shorter prefix."""
    return inner.version == outer.version and inner.network_address in outer \
        and outer.prefixlen < inner.prefixlen
