"""Acts: long-running processes of the emulated cluster (API server, kubelet, kube-proxy, ...)."""
