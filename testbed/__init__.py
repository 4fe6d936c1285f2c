"""An emulated multi-node Kubernetes cluster on Mininet, for seeing and testing Kubernetes networking."""

__version__ = "0.1.0"
