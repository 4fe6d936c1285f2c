"""Cluster DNS: records from Services and EndpointSlices (pure) and the server process."""
