"""Acts: the Mininet cluster network, nodes, gateway router, pod sandboxes, process records."""
