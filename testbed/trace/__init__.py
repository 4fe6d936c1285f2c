"""Pure: a connection's path through the cluster, as `testbed trace` reports it.

A trace is one connection (tcp, udp) or echo (icmp) from a source to a target, followed hop by
hop: the hosts it crossed (pods, nodes, the gateway, clients) in order, at each the interface
in and out, the bridge port, the route taken, the netfilter chains and rules hit with their
verdicts, and the rewrites made (DNAT, SNAT, masquerade, and the reply's un-NAT). The live
trace (testbed.emu.tracing) reads it from the kernel of every namespace the packets cross;
the static trace (testbed.trace.static) works it out from the rules alone, sending nothing.

Both give the same JSON form (Trace.to_json):

    {"mode": "live" | "static", "from": "default/client-1", "to": "service-test:80",
     "protocol": "tcp" | "udp" | "icmp",
     "source": "10.0.1.2:45678", "destination": "10.3.241.152:80",
     "verdict": "delivered" | "dropped" | "rejected",
     "cause": null | {"host": "node1", "chain": "filter/KUBE-SERVICES",
                      "rule": "-A KUBE-SERVICES ... -j REJECT ...", "verdict": "reject"},
     "endpoint": "default/service-test-6b5f7-abcde" | null,
     "conntrack": ["node1: tcp 6 117 TIME_WAIT src=10.0.1.2 dst=10.3.241.152 ..."],
     "hops": [HOP, ...], "reply": [HOP, ...]}

    HOP = {"host": "node1", "kind": "pod" | "worker" | "master" | "gateway" | "client" |
                                       "proxy",
           "in": "cbr0" | null, "out": "node1-eth0" | null,
           "bridgePort": {"in": "veth1a2b3c4d", "out": null} | null,
           "route": "10.0.2.3 via 10.100.0.1 dev node1-eth0 src 10.100.0.2" | null,
           "packet": {"src": "10.0.1.2:45678", "dst": "10.3.241.152:80"},   # as it came in
           "chains": ["nat/PREROUTING", "nat/KUBE-SERVICES", "nat/KUBE-SVC-...", ...],
           "rules": [{"chain": "nat/KUBE-SERVICES", "rule": "-A KUBE-SERVICES ...",
                      "verdict": "jump KUBE-SVC-..."}, ...],
           "nat": [{"type": "dnat" | "snat" | "masquerade" | "redirect" | "un-dnat" |
                             "un-snat",
                    "from": "10.3.241.152:80", "to": "10.0.2.3:8080"}, ...],
           "verdict": null | "accept" | "drop" | "reject"}

Chains are "TABLE/CHAIN": iptables' tables by their names (nat, filter, mangle, raw), an
nftables table by its name (kube-proxy/services, kube-netpol/forward). Rules are shown as
`iptables -S` shows them, or as `nft list` shows an nftables rule.
"""
