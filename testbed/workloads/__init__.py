"""Programs that pods run in place of container images (an agnhost-like netexec server)."""
