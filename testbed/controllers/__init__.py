"""Pure: reconcile functions (deployments, scheduling, IP and port allocation, EndpointSlices).

Each reads the object store (testbed.api.store), writes through it and returns the Changes it
made; the controller-manager agent only loops and logs.

common.py         pod predicates, owner references, random name suffixes, Change
deployment.py     Deployments -> Pods (rolling update, Recreate, orphan collection)
scheduler.py      pending Pods -> Nodes
ipam.py           ClusterIPs and NodePorts for Services (admitted by the API server)
endpointslice.py  Services + Pods -> EndpointSlices
"""
