"""Pure: Kubernetes objects, manifest loading and validation, the object store with watch."""
