"""Pure: NetworkPolicy enforcement's decisions: semantics, plans, iptables+ipset and nftables
rules, and the syncer that applies them through an injected backend (the agent,
testbed/agents/netpol.py, is what acts)."""
