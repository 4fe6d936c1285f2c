"""Root: Services in a running two-node cluster, in each kube-proxy mode.

One cluster per mode for the whole module (the topology is two-node.yaml with `kubeProxy:
{mode: ...}`, written to a temporary directory). Backends web-1 (w1) and web-2 (w2) run
agnhost netexec with a readiness probe that checks a file the tests remove and recreate;
udp-1 / udp-2 serve UDP only for the conntrack test; `tester` (w1) is where connections start (`client` is the external client host).
Which backend answered, and the source address it saw, is read off the kernel (SocketWatch).

Userspace mode relays every connection through kube-proxy itself, so there the backend sees
the node (not the client pod) and a Service without endpoints accepts and closes instead of
refusing, as upstream's userspace proxier did; the tests say so where they differ.
"""

from __future__ import annotations

import socket
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from testbed.emu.inspect import conntrack_table, nat_table
from testbed.emu.probes import SocketWatch, probe_http, probe_udp, tcp_sockets
from testbed.net.netns import socket_in

ROOT = Path(__file__).resolve().parents[2]
MODES = ["iptables", "nftables", "userspace"]
WEB_PORT, UDP_PORT = 8080, 8081


def topology_file(directory: Path, mode: str) -> Path:
    topo = yaml.safe_load((ROOT / "topologies" / "two-node.yaml").read_text())
    topo["name"] = f"kp-{mode[:3]}"
    topo["kubeProxy"] = {"mode": mode}
    path = directory / f"topology-{mode}.yaml"
    path.write_text(yaml.safe_dump(topo))
    return path


def pod(name: str, node: str, labels: dict, ready_file: Path | None = None) -> dict:
    container = {"name": "main", "image": "agnhost",
                 "args": ["netexec", f"--http-port={WEB_PORT}", f"--udp-port={UDP_PORT}"],
                 "ports": [{"containerPort": WEB_PORT, "protocol": "TCP"},
                           {"containerPort": UDP_PORT, "protocol": "UDP"}]}
    if ready_file is not None:
        ready_file.touch()
        container["readinessProbe"] = {"exec": {"command": ["test", "-f", str(ready_file)]},
                                       "periodSeconds": 1, "failureThreshold": 1}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": node, "containers": [container]}}


def service(name: str, selector: dict, ports: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "ports": ports, **spec}}


def tcp(port: int, target: int = WEB_PORT, name: str | None = None) -> dict:
    return {"port": port, "targetPort": target, "protocol": "TCP", **({"name": name} if name else {})}


def udp(port: int, target: int = UDP_PORT, name: str | None = None) -> dict:
    return {"port": port, "targetPort": target, "protocol": "UDP", **({"name": name} if name else {})}


WEB = {"app": "web"}


def server_side(watch: SocketWatch, client: tuple[str, int], target: int) -> tuple[str, str] | None:
    """(namespace, source IP it saw) of the new socket serving port `target` for `client`.

    SocketWatch.server_side matches the client's port first, which in userspace mode finds
    kube-proxy's accepted socket on the node; here the backend's socket on `target` counts,
    with the client's own port preferred (the proxy's connection has a port of its own)."""
    fallback = None
    for name, pid in watch.namespaces.items():
        for local, remote in tcp_sockets(pid) - watch.before[name]:
            if local[1] != target or local == client:
                continue
            if remote[1] == client[1]:
                return name, remote[0]
            fallback = fallback or (name, remote[0])
    return fallback


class Env:
    """The cluster of one mode and what the tests need from it."""

    def __init__(self, cluster, mode: str, ready_dir: Path):
        self.cluster, self.mode, self.ready_dir = cluster, mode, ready_dir

    def pid(self, name: str) -> int:
        if name in self.cluster.network.hosts:
            return self.cluster.network.pid(name)
        return self.cluster.find_pod(name).pid

    def ip(self, svc: str) -> IPv4Address:
        ip = self.cluster.service_ip(svc)
        assert ip is not None, f"service {svc} has no ClusterIP"
        return ip

    def namespaces(self) -> dict[str, int]:
        ns = {p.name: p.pid for p in self.cluster.all_pods() if p.pid}
        ns.update({h.name: h.pid for h in self.cluster.network.hosts.values()})
        return ns

    def connect(self, src: str, ip: IPv4Address, port: int, target: int = WEB_PORT,
                timeout: float = 1.0) -> tuple[str, str | None, str | None]:
        """("ok", served_by, source IP seen) or (error, None, None) for one TCP connection."""
        watch = SocketWatch(self.namespaces())
        sock = socket_in(self.pid(src))
        sock.settimeout(timeout)
        try:
            sock.connect((str(ip), port))
            client = sock.getsockname()
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                seen = server_side(watch, client, target)
                if seen:
                    return "ok", seen[0], seen[1]
                time.sleep(0.005)
            return "ok", None, None
        except ConnectionRefusedError:
            return "refused", None, None
        except TimeoutError:
            return "timeout", None, None
        except OSError as err:
            return err.strerror or str(err), None, None
        finally:
            sock.close()

    def served_by(self, src: str, svc: str, port: int = 80, tries: int = 16) -> dict[str, int]:
        """How many of `tries` connections each backend took (or how they failed)."""
        counts: dict[str, int] = {}
        for _ in range(tries):
            result, who, _ = self.connect(src, self.ip(svc), port)
            key = who if result == "ok" else result
            counts[key or "?"] = counts.get(key or "?", 0) + 1
        return counts

    def http(self, src: str, ip: IPv4Address, port: int, path: str = "/hostname", timeout: float = 1):
        return probe_http(self.pid(src), ip, port, path, "x", {}, timeout, SocketWatch({}))

    def set_ready(self, name: str, ready: bool) -> None:
        f = self.ready_dir / name
        f.touch() if ready else f.unlink(missing_ok=True)


def eventually(check, timeout: float = 15.0, interval: float = 0.1):
    """Call `check` until it returns something true; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"still {value!r} after {timeout:g}s"
            return value
        time.sleep(interval)


@pytest.fixture(scope="module", params=MODES)
def env(request, tmp_path_factory):
    from testbed.emu.cluster import Cluster
    from testbed.spec.topology import load_topology

    mode = request.param
    tmp = tmp_path_factory.mktemp(f"kp-{mode}")
    ready = tmp / "ready"
    ready.mkdir()
    cluster = Cluster(load_topology(topology_file(tmp, mode))).up()
    try:
        objs = [
            pod("web-1", "w1", {**WEB, "slot": "1"}, ready / "web-1"),
            pod("web-2", "w2", {**WEB, "slot": "2"}, ready / "web-2"),
            pod("tester", "w1", {"app": "tester"}),
            pod("udp-1", "w1", {"app": "udp"}),
            pod("udp-2", "w2", {"app": "udp"}),
            service("web", WEB, [tcp(80)]),
            service("dual", WEB, [tcp(5000, name="tcp"), udp(5000, name="udp")]),
            service("sticky", WEB, [tcp(80)], sessionAffinity="ClientIP"),
            service("empty", {"app": "nothing"}, [tcp(80)]),
            service("udp", {"app": "udp"}, [udp(53)]),
            service("np", WEB, [tcp(80)], type="NodePort"),
            service("lb-local", {**WEB, "slot": "1"}, [tcp(80)], type="LoadBalancer",
                    externalTrafficPolicy="Local"),
        ]
        cluster.apply(objs)
        cluster.wait_ready(objs, timeout=60)
        e = Env(cluster, mode, ready)
        eventually(lambda: set(e.served_by("tester", "web")) == {"web-1", "web-2"})
        yield e
    finally:
        cluster.down()


# ------------------------------------------------------------------ ClusterIP basics


@pytest.mark.parametrize("src", ["tester", "w1", "w2"])
def test_cluster_ip_reaches_every_ready_backend_on_both_workers(env, src):
    counts = eventually(lambda: (c := env.served_by(src, "web", tries=24))
                        and set(c) == {"web-1", "web-2"} and c)
    assert sum(counts.values()) == 24


def test_backend_sees_the_client_pod_ip(env):
    client = env.cluster.find_pod("tester")
    seen = set()
    for _ in range(8):
        result, who, source = env.connect("tester", env.ip("web"), 80)
        assert result == "ok"
        seen.add((who, source))
    sources = {s for _, s in seen}
    if env.mode == "userspace":
        # the proxy process opens the backend connection: the node's address, not the pod's
        assert str(client.ip) not in sources
        assert sources <= {"10.244.0.1", "172.16.1.2"}, seen
    else:
        assert sources == {str(client.ip)}, seen
    # and the server's own account agrees
    body = env.http("tester", env.ip("web"), 80, "/clientip").body
    assert (body.split(":")[0] == str(client.ip)) == (env.mode != "userspace"), body


def test_hairpin_a_pod_reaches_itself_through_its_service(env):
    counts = eventually(lambda: (c := env.served_by("web-1", "web", tries=16)) and "web-1" in c and c)
    assert set(counts) <= {"web-1", "web-2"}, counts


def test_service_without_endpoints_refuses_at_once(env):
    for src in ("tester", "w2"):
        start = time.monotonic()
        if env.mode == "userspace":
            # upstream's userspace proxy accepts, finds no endpoint and closes at once
            result = env.http(src, env.ip("empty"), 80, timeout=3)
            assert not result.reachable and "timed out" not in result.text, result.text
        else:
            sock = socket_in(env.pid(src))
            sock.settimeout(3)
            with pytest.raises(ConnectionRefusedError):
                sock.connect((str(env.ip("empty")), 80))
            sock.close()
        took = time.monotonic() - start
        assert took < 0.5, f"from {src}: failed only after {took:.2f}s"


# ------------------------------------------------------------------ affinity, protocols


def test_client_ip_affinity_sticks_and_turning_it_off_spreads(env):
    client = env.cluster.client
    counts = env.served_by("tester", "sticky", tries=12)
    assert len(counts) == 1 and set(counts) <= {"web-1", "web-2"}, counts
    assert set(env.served_by("w2", "sticky", tries=6)) <= {"web-1", "web-2"}
    svc = client.get("Service", "default", "sticky")
    svc["spec"]["sessionAffinity"] = "None"
    svc["spec"].pop("sessionAffinityConfig", None)
    client.update(svc)
    try:
        eventually(lambda: set(env.served_by("tester", "sticky", tries=16)) == {"web-1", "web-2"})
    finally:
        svc = client.get("Service", "default", "sticky")
        svc["spec"]["sessionAffinity"] = "ClientIP"
        client.update(svc)


def test_tcp_and_udp_on_the_same_port_are_programmed_separately(env):
    ip = env.ip("dual")
    http = env.http("tester", ip, 5000)
    assert http.status == 200 and http.body in ("web-1", "web-2"), http.text
    reply = probe_udp(env.pid("tester"), ip, 5000, "hostname", 2)
    assert reply.reachable and reply.reply in ("web-1", "web-2"), reply.text
    rules = nat_table(env.pid("w1"), env.mode)
    names = ("default/dual/tcp/tcp", "default/dual/udp/udp") if env.mode == "nftables" \
        else ("default/dual:tcp", "default/dual:udp")
    assert all(name in rules for name in names), rules
    # deleting the UDP port leaves TCP alone
    svc = env.cluster.client.get("Service", "default", "dual")
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["protocol"] == "TCP"]
    env.cluster.client.update(svc)
    eventually(lambda: not probe_udp(env.pid("tester"), ip, 5000, "hostname", 0.3).reachable)
    assert env.http("tester", ip, 5000).status == 200


def test_udp_backend_going_away_flushes_conntrack(env):
    ip = env.ip("udp")
    sock = socket_in(env.pid("tester"), kind=socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        sock.connect((str(ip), 53))  # one source port: one conntrack entry for every datagram
        sock.send(b"hostname")
        first = sock.recv(100).decode()
        assert first in ("udp-1", "udp-2")
        if env.mode != "userspace":
            entries = conntrack_table(env.pid("w1"), "udp", str(ip))
            assert str(env.cluster.find_pod(first).ip) in entries, entries
        env.cluster.client.delete("Pod", "default", first)
        other = {"udp-1": "udp-2", "udp-2": "udp-1"}[first]
        # Quiet until the backend is dead: without the flush, the entry would now send every
        # datagram of this socket to a dead address for as long as they keep coming.
        eventually(lambda: env.cluster.find_pod(first) is None)

        def next_reply() -> str | None:
            sock.send(b"hostname")
            try:
                sock.settimeout(0.5)
                return sock.recv(100).decode()
            except (TimeoutError, ConnectionRefusedError):
                return None

        assert eventually(next_reply, timeout=3) == other
        if env.mode != "userspace":
            entries = conntrack_table(env.pid("w1"), "udp", str(ip))
            assert str(env.cluster.find_pod(other).ip) in entries, entries
    finally:
        sock.close()


# ------------------------------------------------------------------ changes


def test_readiness_failure_takes_the_endpoint_out(env):
    env.set_ready("web-2", False)
    try:
        eventually(lambda: set(env.served_by("tester", "web", tries=12)) == {"web-1"})
        assert set(env.served_by("w2", "web", tries=8)) == {"web-1"}
    finally:
        env.set_ready("web-2", True)
    eventually(lambda: set(env.served_by("tester", "web", tries=16)) == {"web-1", "web-2"})


def test_deleted_service_stops_answering_others_keep_working_recreated_works(env):
    client = env.cluster.client
    client.create(service("temp", WEB, [tcp(80)]))
    ip = env.ip("temp")
    eventually(lambda: env.connect("tester", ip, 80)[0] == "ok")
    client.delete("Service", "default", "temp")
    eventually(lambda: env.connect("tester", ip, 80, timeout=0.5)[0] != "ok")
    assert set(env.served_by("tester", "web", tries=8)) <= {"web-1", "web-2"}
    assert env.http("tester", env.ip("dual"), 5000).status == 200
    client.create(service("temp", WEB, [tcp(80)]))
    try:
        eventually(lambda: env.connect("tester", env.ip("temp"), 80)[0] == "ok")
    finally:
        client.delete("Service", "default", "temp")


# ------------------------------------------------------------------ from outside


def test_node_port_answers_external_clients_on_every_node(env):
    svc = env.cluster.client.get("Service", "default", "np")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    for node in ("w1", "w2"):
        address = env.cluster.network.hosts[node].address
        seen = set()
        for _ in range(12):
            result = env.http("client", address, node_port)
            assert result.status == 200, f"{node}:{node_port}: {result.text}"
            seen.add(result.body)
        assert seen <= {"web-1", "web-2"}


def test_health_check_node_port_says_where_local_endpoints_are(env):
    import json

    svc = env.cluster.client.get("Service", "default", "lb-local")
    port = svc["spec"]["healthCheckNodePort"]
    w1, w2 = (env.cluster.network.hosts[n].address for n in ("w1", "w2"))
    here = eventually(lambda: (r := env.http("client", w1, port, "/")).status == 200 and r)
    assert json.loads(here.body) == {"service": {"namespace": "default", "name": "lb-local"},
                                     "localEndpoints": 1, "serviceProxyHealthy": True}
    there = env.http("client", w2, port, "/")
    assert there.status == 503 and json.loads(there.body)["localEndpoints"] == 0
    healthz = env.http("client", w2, 10256, "/healthz")
    assert healthz.status == 200 and '"nodeEligible": true' in healthz.body


# ------------------------------------------------------------------ kube-proxy's death


def test_killing_kube_proxy_and_restart_catching_up(env):
    cp, client = env.cluster.cp, env.cluster.client
    cp.kill("kube-proxy", "w1")
    try:
        counts = env.served_by("tester", "web", tries=8)
        if env.mode == "userspace":  # the article's single point of failure
            assert set(counts) == {"refused"}, counts
        else:
            assert set(counts) <= {"web-1", "web-2"}, counts
        client.create(service("late", WEB, [tcp(80)]))
        late = env.ip("late")
        time.sleep(0.5)
        assert env.connect("tester", late, 80, timeout=0.5)[0] != "ok"
    finally:
        cp.restart("kube-proxy", "w1")
    eventually(lambda: env.connect("tester", late, 80)[0] == "ok")
    eventually(lambda: set(env.served_by("tester", "web", tries=16)) == {"web-1", "web-2"})
    client.delete("Service", "default", "late")
