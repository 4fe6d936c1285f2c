"""Programs that pods run in place of container images: agnhost (netexec, serve-hostname, connect, pause)."""
