"""Acts: `kubectl exec`, `attach` and `port-forward` against the API server.

Upstream the API server proxies pods/exec, pods/attach and pods/portforward to the kubelet,
whose streaming server runs them through the container runtime. Here the API server serves
them itself (there is no kubelet HTTP server to proxy to) through a `PodRuntime`:

    server.py         the request: checks, protocol negotiation, the upgrade (the entry point)
    protocol.py       pure: options, protocol names and versions, pod checks, error-stream Status
    channels.py       a remotecommand session's streams over SPDY or WebSocket, alike
    remotecommand.py  exec and attach: a Process's descriptors <-> the streams, then the Status
    portforward.py    port-forward: SPDY stream pairs (also tunnelled in WebSocket), WS channels
    runtime.py        the PodRuntime seam, `spawn` (pipes or a pty), LocalRuntime (tests' fake)
    emulated.py       the emulated cluster's runtime: pods found through the kubelets' state

Wire protocols live in testbed/net (websocket.py, spdy.py).
"""
