"""Acts: argv-only command runner, namespaces, links, routes, iptables/nft apply."""
