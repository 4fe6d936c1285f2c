"""Pure: kube-proxy rule rendering, as data and text, with no system access.

Modules: `model` (service ports, endpoints, categorisation, `ProxierSettings`), `objects`
(Kubernetes Service/EndpointSlice dicts -> model), `names` (KUBE-SVC-/SEP-/... and nftables
names), `iptables` (iptables-restore input for a full or partial sync, jump rules), `restore`
(restore text parsing and upstream's normalization), `nftables` (`nft -f` input), `tracer`
(packet tracer over restore text, for tests), `casefile` (the fidelity case-file format) and
`command` (`testbed proxy render`). The running kube-proxy renders through these and applies
the text in one call elsewhere (testbed/net).
"""
