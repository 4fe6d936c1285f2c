"""Pure: the pod network's routing modes, decided from the Node objects.

`flannel` plans flannel's host-gw and vxlan backends (routes, the VXLAN device with its FDB
and neighbour entries, the Node annotations a node publishes, the masquerade rules);
`syncer` keeps a node's kernel matching that plan through an injected backend
(testbed/agents/flanneld.py acts); `bird` renders bird2's configuration for the bgp mode (a
node announcing its pod CIDR, the gateway router learning them). Nothing here touches the
system.
"""
