"""Pure: what a node decides, apart from doing it.

The kubelet's plan (kubeletplan.py: which pods to create, stop, restart and probe, applied by
agents/kubeletsync.py through a runtime), what a container runs given its image (images.py),
host-local pod IPAM (ipam.py, as the CNI plugin of that name), and the `testbed ps` view of a
node (psview.py). Nothing here runs a process, opens a socket or touches a file.
"""
