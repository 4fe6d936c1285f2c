"""kubectl's verbs for the testbed: `testbed apply|delete|get|describe|scale`.

format.py   pure: get tables with kubectl's columns, -o yaml/json, describe
command.py  acts: finds the running cluster's API socket, runs the verbs; run_kubectl() for the
            Mininet CLI
"""
