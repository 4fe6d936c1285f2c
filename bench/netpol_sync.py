#!/usr/bin/env python3
"""NetworkPolicy sync cost: from a change to its enforcement, with 1,000 pods and 200 policies,
per mode, next to the same changes with 10 pods and 2 policies measured in the same run.

For each mode and size, the policy agent's syncer (`testbed.netpol.syncer.PolicySyncer`) with
the real backend (`testbed.net.netfilter`: iptables-restore + ipset, or nft -f) programs a
throwaway network namespace held by `testbed-pause pause`, as the node `w1` of a cluster whose
pods are fed as objects through the syncer's informer handlers, as the agent's informers feed
them: P pods spread over 10 nodes and 10 namespaces (labels app, tier, version; named ports
http, metrics, postgres), Q policies of mixed shapes (pod selectors, namespace selectors, both
in one peer, ipBlocks with except, numbered, ranged and named ports, egress, default deny).
The syncer writes the rules of w1's pods (a tenth of them); its sets hold peers of every node.

Each change is timed from the informer handler's call to the end of the sync that applies it
(the agent's runner adds at most its 100 ms minimum sync period before that sync starts):

  initial     the first (full) sync: everything written
  +policy     a policy added, isolating a pod of w1 (its rules rewritten)
  pod labels  a remote pod's labels changed so that it becomes a peer of that policy (a set
              refilled, no rule touched)
  ns labels   a namespace's labels changed so that its pods become peers (a set refilled)
  -policy     that policy deleted (rules rewritten, its set destroyed)
  restart     a new syncer over the same namespace (a restarted agent): a full sync that
              adopts what is there and duplicates nothing

Columns: `resolve` and `render` are the pure steps alone, timed again on the same inputs;
`sync` is everything (resolve, render, diff, apply); `written` counts what the sync sent to the
kernel (rules, sets, set elements); `enforced` is read back from the kernel after the sync:
the pod's chain jumps to the policy's chain (`iptables -S` / `nft list chain`), the peer's
address is in the rule's set (`ipset test` / `nft get element`), and a restart leaves the same
number of chains, rules, sets and elements (before -> after). Changes are repeated --repeat
times (reverted in between, unmeasured) and the medians printed.

Run as root:  .venv/bin/python bench/netpol_sync.py [--pods 1000] [--policies 200]
              [--baseline-pods 10] [--baseline-policies 2] [--modes iptables,nftables]
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy_sync import throwaway_netns  # noqa: E402

from testbed.agents.netpol import make_backend  # noqa: E402
from testbed.net.run import run  # noqa: E402
from testbed.netpol import iptables, nftables  # noqa: E402
from testbed.netpol.model import INGRESS, resolve  # noqa: E402
from testbed.netpol.syncer import PolicySyncer  # noqa: E402

NODE = "w1"
NODES = 10
NAMESPACES = 10
APPS = 20
TIERS = ("web", "api", "db")
ADDED = "bench-added"
PROBE_TEAM = "probed"
CHANGES = ("initial", "+policy", "pod labels", "ns labels", "-policy", "restart")


# -- the cluster, as objects -----------------------------------------------------------------

def node_of(k: int) -> str:
    return f"w{k % NODES + 1}"


def namespace_name(i: int) -> str:
    return f"ns-{i:02d}"


def pod_ip(k: int) -> str:
    node, j = k % NODES, k // NODES       # the j-th pod of its node
    return str(ipaddress.IPv4Address(f"10.{100 + node}.0.0") + 256 * (j // 250) + j % 250 + 2)


def pod(k: int, extra_labels: dict | None = None) -> dict:
    app = (k // (NODES * NAMESPACES)) % APPS
    tier = TIERS[app % len(TIERS)]
    ports = [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
             {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    if tier == "db":
        ports.append({"name": "postgres", "containerPort": 5432, "protocol": "TCP"})
    labels = {"app": f"app-{app:02d}", "tier": tier, "version": f"v{k % 3 + 1}",
              "pod-template-hash": f"{app:04x}{k % 7}", **(extra_labels or {})}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": namespace_name(k // NODES % NAMESPACES),
                         "name": f"app-{app:02d}-{k:05d}", "labels": labels},
            "spec": {"nodeName": node_of(k), "containers": [{"name": "main", "ports": ports}]},
            "status": {"phase": "Running", "podIP": pod_ip(k)}}


def namespace(i: int | str, team: str | None = None) -> dict:
    name = i if isinstance(i, str) else namespace_name(i)
    labels = {"kubernetes.io/metadata.name": name}
    if not isinstance(i, str):
        labels |= {"team": team or f"team-{i % 4}", "env": "prod" if i < 6 else "staging"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _app(j: int, shift: int = 0) -> str:
    return f"app-{(j // NAMESPACES + shift) % APPS:02d}"


def policy(j: int) -> dict:
    """The j-th of the mixed policies (8 shapes, each namespace gets every shape in turn)."""
    shape = (j // NAMESPACES) % 8
    selector: dict = {"matchLabels": {"app": _app(j)}}
    spec: dict
    if shape == 0:      # ingress from pods of another app, one port
        spec = {"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": _app(j, 1)}}}],
                             "ports": [{"port": 8080}]}]}
    elif shape == 1:    # ingress from a team's namespaces, a named port
        spec = {"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"team-{j % 4}"}}}],
                             "ports": [{"port": "http"}]}]}
    elif shape == 2:    # web pods of prod namespaces (both selectors in one peer), a port range
        selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "db"]}]}
        spec = {"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                       "podSelector": {"matchLabels": {"tier": "web"}}}],
                             "ports": [{"port": 8080, "endPort": 8090}]}]}
    elif shape == 3:    # ipBlocks with an except
        spec = {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                   "except": [f"10.{100 + j % NODES}.0.0/16"]}},
                                      {"ipBlock": {"cidr": "192.168.0.0/16"}}],
                             "ports": [{"port": 443}, {"port": 8443}]}]}
    elif shape == 4:    # egress to databases (named port) and to DNS
        spec = {"policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}],
                            "ports": [{"port": "postgres"}]},
                           {"to": [{"namespaceSelector": {"matchLabels": {
                               "kubernetes.io/metadata.name": "kube-system"}}}],
                            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}]}
    elif shape == 5:    # two peers (OR), metrics scraped
        selector = {"matchLabels": {"app": _app(j)}, "matchExpressions": [
            {"key": "version", "operator": "NotIn", "values": ["v3"]}]}
        spec = {"ingress": [{"from": [{"podSelector": {"matchExpressions": [
                                          {"key": "tier", "operator": "In", "values": ["web", "api"]}]}},
                                      {"namespaceSelector": {"matchLabels": {"team": f"team-{(j + 1) % 4}"}}}],
                             "ports": [{"port": "metrics"}]}]}
    elif shape == 6:    # default deny, both directions, for one app
        spec = {"policyTypes": ["Ingress", "Egress"]}
    else:               # ingress and egress: same namespace in, the outside world out
        spec = {"ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                            "ports": [{"port": 443}]},
                           {"to": [{"podSelector": {"matchLabels": {"app": _app(j, 2)}}}]}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace_name(j % NAMESPACES), "name": f"np-{j:04d}"},
            "spec": {"podSelector": selector, **spec}}


class Scene:
    """The objects of one size, and the pods and namespace the changes touch."""

    def __init__(self, pods: int, policies: int):
        self.pods = [pod(k) for k in range(pods)]
        self.namespaces = [namespace(i) for i in range(NAMESPACES)] + [namespace("kube-system")]
        self.policies = [policy(j) for j in range(policies)]
        local = [k for k in range(pods) if node_of(k) == NODE]
        remote = [k for k in range(pods) if node_of(k) != NODE]
        if not local or len(remote) < 2:
            raise SystemExit("--pods must put a pod on w1 and two elsewhere (at least 3 pods)")
        self.local = local[0]                  # the pod the added policy isolates
        self.peer = remote[0]                  # the pod whose labels change
        self.ns_peer = remote[-1]              # a pod of the namespace whose labels change

    def added_policy(self) -> dict:
        """Isolates the local pod's app for ingress, from pods labelled role=probe anywhere and
        from every pod of namespaces labelled team=probed."""
        meta = self.pods[self.local]["metadata"]
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"namespace": meta["namespace"], "name": ADDED},
                "spec": {"podSelector": {"matchLabels": {"app": meta["labels"]["app"]}},
                         "ingress": [{"from": [
                             {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "probe"}}},
                             {"namespaceSelector": {"matchLabels": {"team": PROBE_TEAM}}}],
                             "ports": [{"port": "http"}, {"port": 9090}]}]}}

    def key(self, k: int) -> str:
        meta = self.pods[k]["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def ip(self, k: int) -> str:
        return self.pods[k]["status"]["podIP"]


# -- a backend that also keeps what it wrote ---------------------------------------------------

class Recording:
    def __init__(self, backend):
        self.backend, self.mode = backend, backend.mode
        self.writes: list[str] = []

    def restore(self, text: str) -> None:
        self.writes.append(text)
        self.backend.restore(text)

    def ipset_restore(self, text: str) -> None:
        self.writes.append(text)
        self.backend.ipset_restore(text)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def written(texts: list[str]) -> tuple[int, int, int]:
    """(rules, sets, elements) in what a sync sent: iptables-restore and ipset restore texts,
    or nft -f texts."""
    rules = sets = elements = 0
    for text in texts:
        in_chain = False
        for line in text.splitlines():
            s = line.strip()
            if line.startswith("-A "):                                     # iptables rule
                rules += 1
            elif s.startswith("create ") and iptables.TMP_SET not in s:    # ipset refilled
                sets += 1
            elif s.startswith("add ") and not s.startswith("add element") and not s.startswith("add table"):
                elements += 1                                              # ipset member
            elif s.startswith("chain "):
                in_chain = True
            elif s == "}":
                in_chain = False
            elif in_chain and s and not s.startswith("type "):            # nft rule
                rules += 1
            elif s.startswith(("set ", "flush set ")):                    # nft set (re)filled
                sets += 1 if s.startswith("flush") or "{" in s else 0
            if s.startswith(("add element", "elements = {")):
                inner = s[s.index("{") + 1:s.rindex("}")].strip()
                elements += len(inner.split(", ")) if inner else 0
    return rules, sets, elements


# -- what the kernel holds ---------------------------------------------------------------------

def census(mode: str, pid: int) -> tuple[int, int, int, int]:
    """(chains, rules, sets, elements) of the policy agent in the namespace now."""
    if mode == "iptables":
        save = run(["iptables-save", "-t", "filter"], netns=pid).stdout.splitlines()
        chains = sum(1 for x in save if x.startswith(":") and (
            iptables.is_ours(x[1:].split()[0]) or x[1:].split()[0] in iptables.TOP_CHAINS))
        rules = sum(1 for x in save if x.startswith("-A ") and (
            iptables.is_ours(x.split()[1]) or x.split()[1] in iptables.TOP_CHAINS
            or x.split()[-1] in iptables.TOP_CHAINS))
        ipsets = run(["ipset", "save"], netns=pid).stdout.splitlines()
        sets = sum(1 for x in ipsets if x.startswith(f"create {iptables.SET_PREFIX}"))
        elements = sum(1 for x in ipsets if x.startswith(f"add {iptables.SET_PREFIX}"))
        return chains, rules, sets, elements
    res = run(["nft", "-j", "list", "table", nftables.FAMILY, nftables.TABLE], netns=pid, check=False)
    if res.returncode != 0:
        return 0, 0, 0, 0
    items = json.loads(res.stdout)["nftables"]
    count = {"chain": 0, "rule": 0, "set": 0, "elements": 0}
    for item in items:
        for kind, body in item.items():
            if kind in ("chain", "rule", "set", "map"):
                count["set" if kind == "map" else kind] += 1
            if kind in ("set", "map"):
                count["elements"] += len(body.get("elem") or [])
    return count["chain"], count["rule"], count["set"], count["elements"]


def jumps_to_policy(mode: str, pid: int, pod_key: str, policy_key: str) -> bool:
    """Does the pod's ingress chain send its packets to the policy's chain?"""
    if mode == "iptables":
        res = run(["iptables", "-w", "5", "-t", "filter", "-S", iptables.pod_chain(pod_key, INGRESS)],
                  netns=pid, check=False)
        return res.returncode == 0 and f"-j {iptables.policy_chain(policy_key, INGRESS)}" in res.stdout
    res = run(["nft", "list", "chain", nftables.FAMILY, nftables.TABLE,
               nftables.pod_chain(pod_key, INGRESS)], netns=pid, check=False)
    return res.returncode == 0 and f"jump {nftables.policy_chain(policy_key, INGRESS)}" in res.stdout


def in_peer_set(mode: str, pid: int, syncer: PolicySyncer, policy_key: str, ip: str) -> bool:
    """Is `ip` in the pod set of the policy's first ingress rule (False: no such set)?"""
    planned = [p for p in (syncer.plan.policies if syncer.plan else ())
               if p.key == policy_key and p.direction == INGRESS]
    if not planned or not planned[0].rules:
        return False
    rule = planned[0].rules[0]
    if mode == "iptables":
        return run(["ipset", "test", iptables.set_name(rule, "P"), ip], netns=pid,
                   check=False).returncode == 0
    return run(["nft", "get", "element", nftables.FAMILY, nftables.TABLE,
                nftables.set_name(rule, "pods"), "{", ip, "}"], netns=pid, check=False).returncode == 0


# -- the run -----------------------------------------------------------------------------------

def make_syncer(mode: str, pid: int) -> PolicySyncer:
    return PolicySyncer(Recording(make_backend(mode, pid)), NODE)


def feed(syncer: PolicySyncer, scene: Scene) -> None:
    for obj in scene.namespaces:
        syncer.namespace_changes.on_add(obj)
    for obj in scene.pods:
        syncer.pod_changes.on_add(obj)
    for obj in scene.policies:
        syncer.policy_changes.on_add(obj)


def pure_steps(syncer: PolicySyncer) -> tuple[float, float]:
    """The resolve and render of the syncer's current objects, timed alone."""
    t0 = time.perf_counter()
    plan = resolve(list(syncer.policies.values()), list(syncer.pods.values()),
                   dict(syncer.namespaces), syncer.node)
    t1 = time.perf_counter()
    (nftables if syncer.backend.mode == "nftables" else iptables).render(plan)
    return t1 - t0, time.perf_counter() - t1


def timed(syncer: PolicySyncer, change) -> dict:
    """Run the handler call `change`, then the sync; the figures of that sync."""
    syncer.backend.writes.clear()
    start = time.perf_counter()
    change()
    result = syncer.sync()
    took = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"sync failed: {result.error}")
    resolve_s, render_s = pure_steps(syncer)
    return {"sync": took, "resolve": resolve_s, "render": render_s,
            "written": written(syncer.backend.writes), "full": result.full, "rules": result.rules,
            "sets": result.sets, "protected": result.protected}


def bench(mode: str, pods: int, policies: int, repeat: int) -> dict:
    """{change: figures (medians over the repeats)}, plus the kernel census."""
    scene = Scene(pods, policies)
    added = scene.added_policy()
    added_key = f"{added['metadata']['namespace']}/{ADDED}"
    local_key = scene.key(scene.local)
    peer_ip, ns_peer_ip = scene.ip(scene.peer), scene.ip(scene.ns_peer)
    labelled = copy.deepcopy(scene.pods[scene.peer])
    labelled["metadata"]["labels"]["role"] = "probe"
    ns_index = scene.ns_peer // NODES % NAMESPACES
    probed_ns, plain_ns = namespace(ns_index, PROBE_TEAM), namespace(ns_index)
    runs: dict[str, list[dict]] = {c: [] for c in CHANGES}
    out: dict = {}
    with throwaway_netns(f"nps-{mode[:3]}-{pods}") as pid:
        syncer = make_syncer(mode, pid)
        feed(syncer, scene)
        row = timed(syncer, lambda: None)
        row["enforced"] = row["protected"] > 0 and census(mode, pid)[1] > 0
        runs["initial"].append(row)
        out["census"] = census(mode, pid)
        out["protected"] = row["protected"]
        for _ in range(repeat):
            before = jumps_to_policy(mode, pid, local_key, added_key)
            row = timed(syncer, lambda: syncer.policy_changes.on_add(added))
            row["enforced"] = not before and jumps_to_policy(mode, pid, local_key, added_key)
            runs["+policy"].append(row)

            before = in_peer_set(mode, pid, syncer, added_key, peer_ip)
            row = timed(syncer, lambda: syncer.pod_changes.on_update(scene.pods[scene.peer], labelled))
            row["enforced"] = not before and in_peer_set(mode, pid, syncer, added_key, peer_ip)
            runs["pod labels"].append(row)

            before = in_peer_set(mode, pid, syncer, added_key, ns_peer_ip)
            row = timed(syncer, lambda: syncer.namespace_changes.on_update(plain_ns, probed_ns))
            row["enforced"] = not before and in_peer_set(mode, pid, syncer, added_key, ns_peer_ip)
            runs["ns labels"].append(row)

            row = timed(syncer, lambda: syncer.policy_changes.on_delete(added))
            row["enforced"] = not jumps_to_policy(mode, pid, local_key, added_key)
            runs["-policy"].append(row)

            # back to the start, unmeasured
            syncer.pod_changes.on_update(labelled, scene.pods[scene.peer])
            syncer.namespace_changes.on_update(probed_ns, plain_ns)
            if not syncer.sync().ok:
                raise RuntimeError("reverting the changes failed")
        for _ in range(repeat):
            kept = census(mode, pid)
            restarted = make_syncer(mode, pid)
            row = timed(restarted, lambda: feed(restarted, scene))    # noqa: B023
            after = census(mode, pid)
            row["enforced"] = kept == after
            row["census"] = (kept, after)
            runs["restart"].append(row)
        for change, rows in runs.items():
            merged = {k: statistics.median(r[k] for r in rows) for k in ("sync", "resolve", "render")}
            merged |= {k: rows[-1][k] for k in ("written", "full", "rules", "sets")}
            merged["enforced"] = all(r["enforced"] for r in rows)
            merged["census"] = rows[-1].get("census")
            out[change] = merged
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--policies", type=int, default=200)
    p.add_argument("--baseline-pods", type=int, default=10)
    p.add_argument("--baseline-policies", type=int, default=2)
    p.add_argument("--modes", default="iptables,nftables")
    p.add_argument("--repeat", type=int, default=5, help="each change N times; medians printed")
    args = p.parse_args()
    big = f"{args.pods} pods / {args.policies} policies"
    small = f"{args.baseline_pods} pods / {args.baseline_policies} policies"
    results = {}
    for mode in args.modes.split(","):
        base = bench(mode, args.baseline_pods, args.baseline_policies, args.repeat)
        full = bench(mode, args.pods, args.policies, args.repeat)
        results[mode] = (base, full)
        c = full["census"]
        print(f"{mode}, {big}: node {NODE} isolates {full['protected']} of its pods with "
              f"{c[1]} rules in {c[0]} chains and {c[2]} sets of {c[3]} elements "
              f"(baseline {small}: {base['census'][1]} rules, {base['census'][2]} sets, "
              f"{base['census'][3]} elements)", flush=True)
    print()
    print(f"| mode | change | baseline sync ms ({small}) | resolve ms | render ms | sync ms "
          f"({big}) | sync / baseline | written: rules / sets / elements | enforced |")
    print("|---" * 9 + "|")
    for mode, (base, full) in results.items():
        for change in CHANGES:
            r, b = full[change], base[change]
            rules, sets, elements = r["written"]
            what = "full" if r["full"] else ("rules" if r["rules"] else "sets only")
            check = "yes" if r["enforced"] else "NO"
            if change == "restart" and r["census"]:
                (_, kr, ks, ke), (_, ar, as_, ae) = r["census"]
                check += f" ({kr}/{ks}/{ke} -> {ar}/{as_}/{ae})"
            print(f"| {mode} | {change} | {ms(b['sync'])} | {ms(r['resolve'])} | {ms(r['render'])} | "
                  f"{ms(r['sync'])} | {r['sync'] / b['sync']:.1f} | {rules} / {sets} / {elements} "
                  f"({what}) | {check} |", flush=True)
    failed = [(m, c) for m, (b, f) in results.items() for c in CHANGES
              if not (f[c]["enforced"] and b[c]["enforced"])]
    if failed:
        print("not enforced: " + ", ".join(f"{m} {c}" for m, c in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
