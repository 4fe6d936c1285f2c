"""Pure: kube-proxy rule rendering (chain names, iptables-restore and nft text); proxier syncs."""
