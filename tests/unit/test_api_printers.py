"""The API server's printers (pure): upstream's columns per kind, and each row's cells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.api.printers import PRINTERS, format_selector, parse_time, printer_for
from testbed.kubectl.format import format_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(kind: str, obj: dict, wide: bool = True) -> dict[str, object]:
    """Column name -> cell (wide columns included unless `wide` is False)."""
    p = printer_for(kind)
    return {c.name: cell for c, cell in zip(p.columns, p.row(obj, NOW), strict=True)
            if wide or c.priority == 0}


def names(kind: str, wide: bool) -> list[str]:
    return [c.name for c in printer_for(kind).columns if wide or c.priority == 0]


@pytest.mark.parametrize("kind,plain,wide_only", [
    ("Pod", ["Name", "Ready", "Status", "Restarts", "Age"],
     ["IP", "Node", "Nominated Node", "Readiness Gates"]),
    ("Service", ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    ("Endpoints", ["Name", "Endpoints", "Age"], []),
    ("Event", ["Last Seen", "Type", "Reason", "Object", "Message"],
     ["Subobject", "Source", "First Seen", "Count", "Name"]),
    ("Lease", ["Name", "Holder", "Age"], []),
    ("Namespace", ["Name", "Status", "Age"], []),
    ("Node", ["Name", "Status", "Roles", "Age", "Version"],
     ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]),
    ("Deployment", ["Name", "Ready", "Up-to-date", "Available", "Age"],
     ["Containers", "Images", "Selector"]),
    ("EndpointSlice", ["Name", "AddressType", "Ports", "Endpoints", "Age"], []),
    ("Ingress", ["Name", "Class", "Hosts", "Address", "Ports", "Age"], []),
    ("NetworkPolicy", ["Name", "Pod-Selector", "Age"], []),
])
def test_columns_are_upstreams(kind: str, plain: list[str], wide_only: list[str]) -> None:
    assert names(kind, wide=False) == plain
    assert [n for n in names(kind, wide=True) if n not in plain or n == "Name" and
            kind == "Event"] == wide_only
    first = printer_for(kind).columns[0]
    if kind != "Event":
        assert (first.name, first.format) == ("Name", "name")
    assert all(c.description for c in printer_for(kind).columns)


def test_event_columns_interleave_as_upstream() -> None:
    assert names("Event", wide=True) == ["Last Seen", "Type", "Reason", "Object", "Subobject",
                                         "Source", "Message", "First Seen", "Count", "Name"]


def test_pod_row_wide_and_restarts() -> None:
    pod = {"metadata": {"name": "web-1", "creationTimestamp": ago(timedelta(minutes=5))},
           "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}],
                    "readinessGates": [{"conditionType": "x/ok"}]},
           "status": {"phase": "Running", "podIP": "10.244.1.2", "nominatedNodeName": "n2",
                      "conditions": [{"type": "x/ok", "status": "True"}],
                      "containerStatuses": [
                          {"name": "a", "ready": True, "restartCount": 2,
                           "state": {"running": {}}, "lastState": {"terminated": {
                               "finishedAt": ago(timedelta(minutes=3))}}},
                          {"name": "b", "ready": True, "restartCount": 0,
                           "state": {"running": {}}}]}}
    assert row("Pod", pod) == {"Name": "web-1", "Ready": "2/2", "Status": "Running",
                               "Restarts": "2 (3m ago)", "Age": "5m", "IP": "10.244.1.2",
                               "Node": "n1", "Nominated Node": "n2", "Readiness Gates": "1/1"}
    bare = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    assert row("Pod", bare) == {"Name": "p", "Ready": "0/1", "Status": "Pending",
                                "Restarts": "0", "Age": "<unknown>", "IP": "<none>",
                                "Node": "<none>", "Nominated Node": "<none>",
                                "Readiness Gates": "<none>"}


def test_pod_status_words() -> None:
    def status(**kw: object) -> object:
        pod = {"metadata": {"name": "p", **kw.pop("meta", {})},  # type: ignore[dict-item]
               "spec": {"containers": [{"name": "a"}]}, "status": kw}
        return row("Pod", pod)["Status"]

    assert status(phase="Running", containerStatuses=[
        {"name": "a", "state": {"terminated": {"exitCode": 3}}}]) == "ExitCode:3"
    assert status(phase="Running", containerStatuses=[
        {"name": "a", "state": {"terminated": {"signal": 9}}}]) == "Signal:9"
    assert status(phase="Running", meta={"deletionTimestamp": ago(timedelta(0))}) == \
        "Terminating"
    # a finished Pod that is being deleted keeps its phase
    assert status(phase="Succeeded", meta={"deletionTimestamp": ago(timedelta(0))}) == \
        "Succeeded"
    done = {"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Failed"}}
    assert PRINTERS["Pod"].conditions(done) == [  # type: ignore[misc]
        {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def test_service_endpoints_and_slices() -> None:
    svc = {"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "clusterIP": "10.96.0.9", "selector": {"b": "2", "a": "1"},
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}
    assert row("Service", svc) == {"Name": "lb", "Type": "LoadBalancer",
                                   "Cluster-IP": "10.96.0.9", "External-IP": "203.0.113.9",
                                   "Port(s)": "80:30080/TCP", "Age": "<unknown>",
                                   "Selector": "a=1,b=2"}
    ep = {"metadata": {"name": "web"}, "subsets": [
        {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 4)],
         "ports": [{"port": 80}, {"port": 81}]}]}
    assert row("Endpoints", ep)["Endpoints"] == \
        "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more..."
    assert row("Endpoints", {"metadata": {"name": "none"}})["Endpoints"] == "<none>"
    assert row("Endpoints", {"metadata": {"name": "v6"}, "subsets": [{
        "addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]})["Endpoints"] == \
        "[fd00::1]:80"
    slices = {"metadata": {"name": "s"}, "addressType": "IPv4",
              "ports": [{"port": 1}, {"name": "x"}, {}, {"port": 4}], "endpoints": []}
    assert row("EndpointSlice", slices)["Ports"] == "1,x,* + 1 more..."
    assert row("EndpointSlice", slices)["Endpoints"] == "<unset>"


def test_deployment_cells_are_numbers_where_upstreams_are() -> None:
    dep = {"metadata": {"name": "web"}, "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["b", "a"]}]},
        "template": {"spec": {"containers": [{"name": "c", "image": "i:1"},
                                             {"name": "d", "image": "j:2"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    cells = row("Deployment", dep)
    assert cells == {"Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2,
                     "Age": "<unknown>", "Containers": "c,d", "Images": "i:1,j:2",
                     "Selector": "app=web,env in (a,b)"}
    assert isinstance(cells["Up-to-date"], int) and not isinstance(cells["Ready"], int)


def test_event_row() -> None:
    ev = {"metadata": {"name": "web-1.17c"}, "type": "Warning", "reason": "BackOff",
          "message": " Back-off restarting failed container \n",
          "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{c}"},
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": ago(timedelta(minutes=10)), "lastTimestamp": ago(timedelta(
              seconds=30)), "count": 7}
    assert row("Event", ev) == {
        "Last Seen": "30s", "Type": "Warning", "Reason": "BackOff", "Object": "pod/web-1",
        "Subobject": "spec.containers{c}", "Source": "kubelet, n1",
        "Message": "Back-off restarting failed container", "First Seen": "10m", "Count": 7,
        "Name": "web-1.17c"}
    # events.k8s.io-style: eventTime, a series, reportingController, no count
    new = {"metadata": {"name": "e"}, "eventTime": "2024-05-01T10:59:59.123456Z",
           "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:00.000000Z"},
           "reportingComponent": "default-scheduler", "involvedObject": {"kind": "Node"}}
    cells = row("Event", new)
    assert (cells["Last Seen"], cells["First Seen"], cells["Count"], cells["Object"],
            cells["Source"]) == ("60s", "60m", 4, "node", "default-scheduler")
    assert row("Event", {"metadata": {"name": "once"}})["Count"] == 1


def test_node_namespace_lease_ingress() -> None:
    node = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": "",
                                                  "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "172.16.0.3"}],
                       "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": ""}}}
    cells = row("Node", node)
    assert (cells["Status"], cells["Roles"], cells["Internal-IP"], cells["External-IP"],
            cells["OS-Image"]) == ("Ready,SchedulingDisabled", "edge,worker", "172.16.0.3",
                                   "<none>", "<unknown>")
    assert row("Namespace", {"metadata": {"name": "x"}, "status": {"phase": "Terminating"}})[
        "Status"] == "Terminating"
    assert row("Lease", {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})[
        "Holder"] == "n1"
    assert row("Lease", {"metadata": {"name": "free"}, "spec": {}})["Holder"] == ""
    ing = {"metadata": {"name": "i"}, "spec": {"rules": [{"host": f"h{i}"} for i in range(5)],
                                               "tls": [{}]}}
    cells = row("Ingress", ing)
    assert (cells["Hosts"], cells["Class"], cells["Ports"]) == ("h0,h1,h2 + 2 more...",
                                                                "<none>", "80, 443")


def test_unknown_kinds_get_the_default_columns() -> None:
    p = printer_for("ConfigMap")
    assert [c.name for c in p.columns] == ["Name", "Created At"]
    assert p.row({"metadata": {"name": "c", "creationTimestamp": "2024-05-01T11:00:00Z"}},
                 NOW) == ["c", "2024-05-01T11:00:00Z"]


def test_times_and_selectors() -> None:
    assert parse_time("2024-05-01T11:00:00.5Z") == datetime(2024, 5, 1, 11, 0, 0, 500000,
                                                           tzinfo=UTC)
    assert parse_time("yesterday") is None and parse_time(None) is None
    assert format_selector({"matchExpressions": [{"key": "a", "operator": "Exists"},
                                                 {"key": "b", "operator": "DoesNotExist"}]}) \
        == "a,!b"
    assert format_selector(None) == "<none>"


def test_testbed_get_prints_the_new_kinds_from_the_same_rows() -> None:
    ev = {"metadata": {"name": "e", "namespace": "default"}, "type": "Normal",
          "reason": "Pulled", "message": "ok", "involvedObject": {"kind": "Pod", "name": "p"},
          "lastTimestamp": ago(timedelta(seconds=5))}
    assert format_table("Event", [ev], NOW) == (
        "LAST SEEN   TYPE     REASON   OBJECT   MESSAGE\n"
        "5s          Normal   Pulled   pod/p    ok\n")
    lease = {"metadata": {"name": "n1", "namespace": "kube-node-lease",
                          "creationTimestamp": ago(timedelta(hours=2))},
             "spec": {"holderIdentity": "n1"}}
    assert format_table("Lease", [lease], NOW, all_namespaces=True) == (
        "NAMESPACE         NAME   HOLDER   AGE\n"
        "kube-node-lease   n1     n1       120m\n")
