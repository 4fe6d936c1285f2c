"""The nginx ingress controller: pure nginx.conf rendering (config.py) and the process pods run
(controller.py)."""
