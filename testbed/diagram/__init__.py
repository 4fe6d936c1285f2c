"""Pure: a picture of the cluster, drawn the way the Kubernetes networking article draws it.
"""
