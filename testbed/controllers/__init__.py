"""Pure: reconcile functions (deployments, scheduling, IP and port allocation, EndpointSlices)."""
