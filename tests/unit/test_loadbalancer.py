"""The emulated cloud: pool allocation, loadBalancerIP, exhaustion, gateway route plans; and the
cloud agent's reconcile loop over a fake API client and a fake gateway."""

from __future__ import annotations

from testbed.agents.cloud import CloudController
from testbed.controllers.loadbalancer import (
    PoolAllocator,
    plan_routes,
    route_changes,
    wants_load_balancer,
)


def test_lowest_free_first_and_stable() -> None:
    alloc = PoolAllocator(["198.51.100.0/29"])
    assert [str(a) for a in alloc.addresses] == [f"198.51.100.{i}" for i in range(1, 7)]
    first = alloc.ensure(("default", "a"))
    assert first.ip == "198.51.100.1"
    assert [e.reason for e in first.events] == ["EnsuredLoadBalancer"]
    assert alloc.ensure(("default", "b")).ip == "198.51.100.2"
    again = alloc.ensure(("default", "a"))
    assert again.ip == "198.51.100.1" and again.events == ()
    assert alloc.release(("default", "a")) == "198.51.100.1"
    assert alloc.release(("default", "a")) is None  # already gone is fine
    assert alloc.ensure(("default", "c")).ip == "198.51.100.1"


def test_load_balancer_ip_in_pool_is_honoured() -> None:
    alloc = PoolAllocator(["198.51.100.0/28"])
    assert alloc.ensure(("default", "a"), "198.51.100.9").ip == "198.51.100.9"
    taken = alloc.ensure(("default", "b"), "198.51.100.9")
    assert taken.ip is None
    assert "already allocated to default/a" in taken.events[-1].message
    # Changing loadBalancerIP to another free pool address moves the Service there.
    moved = alloc.ensure(("default", "a"), "198.51.100.10")
    assert moved.ip == "198.51.100.10" and alloc.owner("198.51.100.9") is None


def test_load_balancer_ip_outside_pool_is_ignored_with_a_warning() -> None:
    alloc = PoolAllocator(["198.51.100.0/28"])
    got = alloc.ensure(("web", "a"), "10.1.2.3")
    assert got.ip == "198.51.100.1"
    warning = got.events[0]
    assert warning.type == "Warning" and warning.reason == "LoadBalancerIPIgnored"
    assert "10.1.2.3 is not in the pool (198.51.100.0/28)" in warning.message


def test_exhausted_pool_leaves_the_service_pending() -> None:
    alloc = PoolAllocator(["198.51.100.0/30"])  # .1 and .2
    assert alloc.ensure(("d", "a")).ip and alloc.ensure(("d", "b")).ip
    pending = alloc.ensure(("d", "c"))
    assert pending.ip is None
    assert pending.events[0].reason == "SyncLoadBalancerFailed"
    assert "no addresses left in pool 198.51.100.0/30" in pending.events[0].message
    alloc.release(("d", "a"))
    assert alloc.ensure(("d", "c")).ip == "198.51.100.1"


def test_restore_and_single_addresses() -> None:
    alloc = PoolAllocator(["198.51.100.7/32", "198.51.100.8/31"])
    assert [str(a) for a in alloc.addresses] == ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
    assert alloc.restore(("d", "a"), "198.51.100.8")
    assert not alloc.restore(("d", "b"), "198.51.100.8")  # someone else's
    assert not alloc.restore(("d", "b"), "203.0.113.1")   # not in the pool
    assert alloc.ensure(("d", "b")).ip == "198.51.100.7"


def svc(name: str, kind: str = "LoadBalancer", etp: str = "Cluster", ip: str | None = None,
        lb_ip: str | None = None, created: str = "2024-01-01T00:00:00Z", **spec) -> dict:
    out = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                        "resourceVersion": "1"},
           "spec": {"type": kind, "externalTrafficPolicy": etp, "ports": [{"port": 80}], **spec},
           "status": {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}}}
    if lb_ip:
        out["spec"]["loadBalancerIP"] = lb_ip
    return out


def test_wants_load_balancer() -> None:
    assert wants_load_balancer(svc("a"))
    assert not wants_load_balancer(svc("a", kind="NodePort"))
    assert not wants_load_balancer(svc("a", loadBalancerClass="example.com/other"))


NODES = {"w1": "172.16.1.2", "w2": "172.16.2.2"}


def slice_(service: str, node: str, ready: bool = True) -> dict:
    return {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.244.0.9"], "nodeName": node, "conditions": {"ready": ready}}]}


def test_route_plans_multipath_and_local() -> None:
    assigned = {"198.51.100.1": svc("a"), "198.51.100.2": svc("b", etp="Local"),
                "198.51.100.3": svc("c", etp="Local")}
    plan = plan_routes(assigned, NODES, [slice_("b", "w2"), slice_("c", "w1", ready=False)])
    assert plan == {"198.51.100.1": ("172.16.1.2", "172.16.2.2"),
                    "198.51.100.2": ("172.16.2.2",),
                    "198.51.100.3": ("172.16.1.2", "172.16.2.2")}  # no ready endpoint: every node
    replace, delete = route_changes(plan, {"198.51.100.1": ("172.16.1.2", "172.16.2.2"),
                                           "198.51.100.9": ("172.16.1.2",)})
    assert replace == {"198.51.100.2": ("172.16.2.2",), "198.51.100.3": ("172.16.1.2", "172.16.2.2")}
    assert delete == ["198.51.100.9"]


# -- the agent's loop over fakes ----------------------------------------------------------------

class FakeClient:
    def __init__(self, services: list[dict]):
        self.services = {s["metadata"]["name"]: s for s in services}
        self.writes: list[tuple[str, str]] = []
        self.events: dict[str, dict] = {}

    def update_status(self, obj: dict) -> dict:
        self.services[obj["metadata"]["name"]]["status"] = obj["status"]
        self.writes.append(("status", obj["metadata"]["name"]))
        return obj

    def update(self, obj: dict) -> dict:
        if obj["kind"] == "Event":
            self.events[obj["metadata"]["name"]] = obj
            return obj
        self.services[obj["metadata"]["name"]]["metadata"] = obj["metadata"]
        self.writes.append(("update", obj["metadata"]["name"]))
        return obj

    def create(self, obj: dict) -> dict:
        assert obj["kind"] == "Event"
        self.events[obj["metadata"]["name"]] = obj
        return obj

    def warnings(self, name: str) -> list[str]:
        return [e["message"] for e in self.events.values()
                if e["involvedObject"]["name"] == name and e["type"] == "Warning"]


class FakeRoutes:
    def __init__(self):
        self.table: dict[str, tuple[str, ...]] = {"198.51.100.5": ("172.16.1.2",)}  # stale

    def current(self):
        return dict(self.table)

    def replace(self, ip, hops):
        self.table[ip] = hops

    def delete(self, ip):
        self.table.pop(ip, None)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


NODE_OBJS = [{"metadata": {"name": n}, "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, a in NODES.items()]


def test_agent_delays_status_programs_routes_and_releases() -> None:
    clock = Clock()
    client = FakeClient([svc("a"), svc("np", kind="NodePort")])
    routes = FakeRoutes()
    cloud = CloudController(client, PoolAllocator(["198.51.100.0/30"]), routes, delay=0.5, clock=clock)
    wait = cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert wait == 0.5 and client.writes == []          # asynchronous: nothing yet
    assert routes.table == {}                            # the stale route is gone
    clock.now += 0.6
    assert cloud.reconcile(list(client.services.values()), NODE_OBJS, []) is None
    assert client.services["a"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.1"
    assert routes.table == {"198.51.100.1": ("172.16.1.2", "172.16.2.2")}
    # Two more: the pool (2 addresses) runs out, the third stays pending with a warning.
    client.services["b"] = svc("b", created="2024-01-02T00:00:00Z")
    client.services["c"] = svc("c", created="2024-01-03T00:00:00Z")
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    clock.now += 0.6
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert client.services["b"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.2"
    assert client.services["c"]["status"]["loadBalancer"] == {}
    (warning,) = client.warnings("c")                    # recorded as an Event on the Service
    assert "no addresses left" in warning
    # Deleting a frees its address and route; c gets it and loses its warning.
    del client.services["a"]
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert client.services["c"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.1"
    assert client.writes.count(("update", "c")) == 0     # events, not annotations
    ensured = [e for e in client.events.values() if e["involvedObject"]["name"] == "c"
               and e["reason"] == "EnsuredLoadBalancer"]
    assert ensured and ensured[0]["source"] == {"component": "service-controller"}
    assert set(routes.table) == {"198.51.100.1", "198.51.100.2"}
    # Turning b into a NodePort Service clears its status and route.
    client.services["b"]["spec"]["type"] = "NodePort"
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert client.services["b"]["status"]["loadBalancer"] == {}
    assert set(routes.table) == {"198.51.100.1"}


def test_agent_restart_keeps_addresses() -> None:
    clock = Clock()
    client = FakeClient([svc("a", ip="198.51.100.2"), svc("b", created="2024-02-01T00:00:00Z")])
    routes = FakeRoutes()
    cloud = CloudController(client, PoolAllocator(["198.51.100.0/29"]), routes, delay=0.5, clock=clock)
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert ("status", "a") not in client.writes          # already right: no write
    assert "198.51.100.2" in routes.table
    clock.now += 1
    cloud.reconcile(list(client.services.values()), NODE_OBJS, [])
    assert client.services["b"]["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.1"
