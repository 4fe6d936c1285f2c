"""Pure: Kubernetes objects, manifest loading and validation, the object store with watch.

validation.py  the Checker (typed field reads, k8s-worded problems) and the name rules
meta.py        ObjectMeta, labels, label selectors (validation, matching, parsing)
pods.py, services.py, workloads.py, endpointslices.py, ingress.py   one kind (or two) each
manifests.py   load_manifests / check_object / validate_object and the table of kinds
store.py       the in-memory object store with resourceVersions and watch
patchverbs.py  PATCH (patch.py: JSON and merge patches; strategic.py: strategic merge patch),
               the scale subresource, and managedFields on every write (managedfields.py:
               server-side apply, over shapes.py, typed.py and fieldpath.py)
"""
