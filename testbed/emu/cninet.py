"""Acts: real CNI plugins as the pod network (podnet.PodNetwork over testbed/cni), run for the
kubelet the way containerd's CRI runs them.

Per pod sandbox: a container ID of its own, from the pod's uid and its pause process's pid
(cni.invoke.container_id: a sandbox made again gets a new one, as with CRI), CNI_NETNS
its pause process's namespace, CNI_ARGS as the kubelet and containerd pass them (IgnoreUnknown,
K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID), the pod's hostPort
ports as the portMappings capability argument, and, on the kubenet chain, a system pod's
(kube-system) address as the `ips` capability argument: the highest one host-local has not
handed out, as the built-in network gives system pods addresses from the top, so that both
networks give every pod the same address (workloads get .2, .3, ... as in the articles'
pictures; host-local's round-robin then goes on from there). A pod joins the node's networks
(spec.cniconf.node_networks): containerd's loopback network on "lo", then the user's list, or the
kubenet chain, on "eth0"; the result of the last one gives the pod's address and the host end
of its link (`Attachment.host_veth`; gateway 0.0.0.0 when the result names none).

* ADD: each network in order. When one fails, every network is deleted again while the
  sandbox still lives (containerd tears the network down after a failed setup), so nothing is
  left: no veth, no address in host-local's store, no cache entry. SandboxNetworkError then
  carries the plugin's own words.
* DEL: the runtime (emu/pods.py) calls `delete` after the pod's containers ended and before its
  sandbox goes, with the sandbox's pid, so that the plugins find the pod's namespace. A DEL
  that fails is kept, its cache entry too (cni/cache.py), and retried by `retry_pending`, which
  the kubelet's sync loop calls, after a back-off doubling from DEL_RETRY to DEL_RETRY_MAX
  seconds, until it succeeds. Retries run with an empty CNI_NETNS (the specification lets a DEL
  go without one, and plugins then clean up what is outside the pod): the sandbox is gone by
  then, and its pid may be another process's.
* After a kubelet restart, `adopt` finds a running pod's attachment in the cache (the kubelet
  then CHECKs it with `check`, where the list has CHECK: 0.4.0 on, not disableCheck), and
  `collect` deletes the cached attachments of pods no longer there, as libcni's GCNetworkList
  does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from testbed.api.podstatus import next_backoff
from testbed.cni import cache
from testbed.cni.invoke import (
    Cni,
    CniError,
    Exec,
    RuntimeConf,
    container_id,
    netns_path,
    pod_args,
    run_plugin,
)
from testbed.cni.result import ResultError, host_interface, parse_result, pod_address
from testbed.emu.podnet import (
    SYSTEM_NAMESPACE_PREFIX,
    Attachment,
    BridgeNetwork,
    NodeRef,
    PodNetwork,
    PodSide,
    SandboxNetworkError,
)
from testbed.emu.rundir import cni_cache_directory, cni_ipam_directory
from testbed.spec.cniconf import (
    POD_IFNAME,
    ConfList,
    Network,
    conflist_from_json,
    ips_store,
    load_conflist,
    node_networks,
)
from testbed.spec.topology import cni_path

log = logging.getLogger("cni")

DEL_RETRY = 1.0        # seconds before a failed DEL is tried again, doubling each time
DEL_RETRY_MAX = 60.0
NO_GATEWAY = IPv4Address("0.0.0.0")
NETNS_PID = re.compile(r"/proc/(\d+)/ns/net")


def make_pod_network(run_dir: Path, plugin: str, conf: str | None = None, bin_dir: str | None = None,
                     mtu: int = 1500, *, enter_node: bool = False) -> PodNetwork:
    """The pod network a podNetwork names: the built-in bridge (podnet.BridgeNetwork), or, for
    plugin cni, real CNI plugins over the list at `conf` (read here; SpecError names its
    problems), or the kubenet chain without one. `enter_node`: see `CniNetwork`."""
    if plugin != "cni":
        return BridgeNetwork(mtu=mtu)
    return CniNetwork(run_dir, load_conflist(conf) if conf else None, bin_dir, mtu,
                      enter_node=enter_node)


@dataclass
class Sandbox:
    """What DEL and CHECK need of one pod's attachments (the same parameters as its ADD)."""

    pod: str
    container_id: str
    pid: int | None
    args: tuple[tuple[str, str], ...]
    capability_args: dict

    def runtime_conf(self, ifname: str, netns: str) -> RuntimeConf:
        return RuntimeConf(self.container_id, netns, ifname, self.args, self.capability_args)


@dataclass
class PendingDelete:
    """A DEL that failed, to be tried again at `due`."""

    node: NodeRef
    network: Network
    rt: RuntimeConf
    due: float
    delay: float
    error: str = ""


class CniNetwork:
    """podnet.PodNetwork over real CNI plugins."""

    pause_wires = False      # the plugins set up eth0; the pause process only holds the namespace
    delete_in_netns = True   # DEL runs while the pod's namespace exists

    def __init__(self, run_dir: Path, conf: ConfList | None = None, bin_dir: str | None = None,
                 mtu: int = 1500, *, plugin_dirs: Sequence[str] | None = None,
                 execute: Exec = run_plugin, clock: Callable[[], float] = time.monotonic,
                 enter_node: bool = False):
        """`conf`: the user's list (None: the kubenet chain); plugins are looked up in
        `bin_dir` first, then in Debian's directory (`plugin_dirs` replaces both). The kubelet
        runs inside its node's namespace, and the plugins with it; with `enter_node` (a process
        outside the nodes, as emu/podlab.py's) each plugin is started inside its node's
        (`execute` is then also given `netns`, the node's pid, as run_plugin takes it)."""
        self.run_dir = Path(run_dir)
        self.conf = conf
        self.mtu = mtu
        self.plugin_dirs = list(plugin_dirs) if plugin_dirs is not None else list(cni_path(bin_dir))
        self.execute = execute
        self.enter_node = enter_node
        self.clock = clock
        self.sandboxes: dict[str, Sandbox] = {}      # pod key -> its attachments' parameters
        self.pending: list[PendingDelete] = []
        self._cni: dict[str, Cni] = {}
        self._networks: dict[str, tuple[Network, ...]] = {}
        # While a restarted kubelet adopts (until `collect`): per node, the sandboxes its cache
        # entries describe, by (namespace, name), each taken out once adopted or deleted.
        self._unadopted: dict[str, dict[tuple[str, str], Sandbox]] = {}

    def cni(self, node: NodeRef) -> Cni:
        if node.name not in self._cni:
            execute = functools.partial(self.execute, netns=node.pid) if self.enter_node \
                else self.execute
            self._cni[node.name] = Cni(self.plugin_dirs, cni_cache_directory(self.run_dir, node.name),
                                       execute=execute)
        return self._cni[node.name]

    def networks(self, node: NodeRef) -> tuple[Network, ...]:
        """The node's networks (spec.cniconf.node_networks), made once per node."""
        if node.name not in self._networks:
            self._networks[node.name] = node_networks(
                self.conf, str(node.pod_cidr), self.mtu, str(cni_ipam_directory(self.run_dir, node.name)))
        return self._networks[node.name]

    # -- ADD --------------------------------------------------------------------------------------

    def add(self, node: NodeRef, pod: str, uid: str, sandbox_pid: int) -> Attachment:
        return self.add_many(node, [(pod, uid, sandbox_pid)])[0]

    def add_many(self, node: NodeRef, pods: list[tuple[str, str, int]],
                 pod_side: PodSide | None = None,
                 port_mappings: Mapping[str, list[dict]] | None = None) -> list[Attachment]:
        """ADD each pod (pod, uid, sandbox pid) in turn; when one fails, the ones before it are
        deleted too, so that the caller, which ends their sandboxes, leaves nothing behind.
        `pod_side` is not used: the plugins configure the pod's side themselves."""
        done: list[Attachment] = []
        try:
            for pod, uid, pid in pods:
                done.append(self._add(node, pod, uid, pid, list((port_mappings or {}).get(pod) or [])))
        except BaseException:
            for attachment in done:
                self.delete(node, attachment, sandbox_pid=self.sandboxes[attachment.pod].pid)
            raise
        return done

    def _add(self, node: NodeRef, pod: str, uid: str, pid: int, mappings: list[dict]) -> Attachment:
        namespace, name = pod.split("/", 1)
        networks = self.networks(node)
        caps: dict = {"portMappings": mappings} if mappings else {}
        top = self._top_free(node, networks[-1].conf) if pod.startswith(SYSTEM_NAMESPACE_PREFIX) else None
        if top is not None:
            caps["ips"] = [top]
        sandbox_id = container_id(uid, pid)
        sandbox = Sandbox(pod, sandbox_id, pid, pod_args(namespace, name, uid, sandbox_id),
                          caps)
        netns = netns_path(pid)
        cni = self.cni(node)
        # The same sandbox ID again (the pod's uid and a pause pid reused): a DEL still owed for the
        # last one would undo this ADD when it succeeds later. It goes first, or nothing does.
        owed = [p for p in self.pending if p.rt.container_id == sandbox.container_id]
        for item in owed:
            item.due = 0.0
        if owed:
            self.retry_pending()
        if any(item in self.pending for item in owed):
            raise SandboxNetworkError(sandbox.container_id, "the network of its previous "
                                      f"sandbox is still being deleted: {owed[0].error}")
        try:
            result = None
            for network in networks:
                result = cni.add(network.conf, sandbox.runtime_conf(network.ifname, netns))
            attachment = self._attachment(pod, networks[-1].conf, result)
        except (CniError, ResultError, cache.CacheError, OSError) as err:
            log.warning("pod %s: %s; deleting its network again", pod, err)
            self._delete(node, sandbox, netns)
            raise SandboxNetworkError(sandbox.container_id, err) from err
        self.sandboxes[pod] = sandbox
        return attachment

    def _top_free(self, node: NodeRef, conf: ConfList) -> str | None:
        """For a system pod: the highest address of the pod CIDR that host-local has not handed
        out (its store names each taken address), as the `ips` capability argument, so that
        workloads get .2, .3, ... as on the built-in network and in the article. Only for a list
        whose plugin declares the `ips` capability and delegates to host-local (the kubenet
        chain does; a user's list may), else None: the plugin's addresses are its own."""
        store = ips_store(conf)
        if store is None:
            return None
        try:
            taken = {name for name in os.listdir(store)}
        except FileNotFoundError:
            taken = set()
        cidr = node.pod_cidr
        for value in range(int(cidr.broadcast_address) - 1, int(cidr.network_address) + 1, -1):
            if str(IPv4Address(value)) not in taken:
                return f"{IPv4Address(value)}/{cidr.prefixlen}"
        return None

    @staticmethod
    def _attachment(pod: str, conf: ConfList, data: dict | None) -> Attachment:
        result = parse_result(data)
        address = pod_address(result)
        if address is None:
            raise ResultError(f'network "{conf.name}" gave the pod no IPv4 address on an '
                              "interface inside it")
        return Attachment(pod, address.ip, address.prefixlen, address.gateway or NO_GATEWAY,
                          host_interface(result) or "")

    # -- DEL --------------------------------------------------------------------------------------

    def delete(self, node: NodeRef, attachment: Attachment, sandbox_pid: int | None = None) -> None:
        """DEL every network of the pod, in the namespace of `sandbox_pid` (None: the sandbox
        is gone, CNI_NETNS is left empty). A failure is kept for `retry_pending`; nothing is
        raised (the pod goes either way, as a kubelet's pod does)."""
        sandbox = self.sandboxes.pop(attachment.pod, None) or self._from_cache(node, attachment.pod)
        if sandbox is None:
            log.warning("pod %s: no CNI attachment known; nothing to delete", attachment.pod)
            return
        self._delete(node, sandbox, netns_path(sandbox_pid) if sandbox_pid else "")

    def _delete(self, node: NodeRef, sandbox: Sandbox, netns: str) -> None:
        """DEL each network in the order they were added (as containerd's teardown does),
        every one tried whatever became of the others."""
        cni = self.cni(node)
        for network in self.networks(node):
            rt = sandbox.runtime_conf(network.ifname, netns)
            try:
                cni.delete(network.conf, rt)
            except (CniError, cache.CacheError, OSError) as err:
                self._defer(node, network, dataclasses.replace(rt, netns=""), err)

    def _defer(self, node: NodeRef, network: Network, rt: RuntimeConf, err: Exception) -> None:
        log.warning("pod %s: %s; trying again in %gs",
                    dict(rt.args).get("K8S_POD_NAME", rt.container_id), err, DEL_RETRY)
        cni = self.cni(node)
        try:   # an ADD that failed left no entry: one without a result keeps the DEL owed
            if cache.read_entry(cni.cache_dir, network.conf.name, rt.container_id, rt.ifname) is None:
                cni.remember(network.conf, rt, None)
        except (cache.CacheError, OSError) as cache_err:
            log.warning("cannot keep the cache entry of a pending DEL: %s", cache_err)
        self.pending.append(PendingDelete(node, network, rt, self.clock() + DEL_RETRY, DEL_RETRY,
                                          str(err)))

    def retry_pending(self) -> int:
        """Try the DELs that are due again; the number still pending after it."""
        now = self.clock()
        for item in list(self.pending):
            if item.due > now:
                continue
            try:
                self.cni(item.node).delete(item.network.conf, item.rt)
            except (CniError, cache.CacheError, OSError) as err:
                item.delay = next_backoff(item.delay, base=DEL_RETRY, cap=DEL_RETRY_MAX)
                item.due = now + item.delay
                item.error = str(err)
                log.warning("DEL of %s on %s failed again: %s; next try in %gs",
                            item.rt.container_id[:12], item.network.ifname, err, item.delay)
                continue
            self.pending.remove(item)
            log.info("DEL of %s on %s done", item.rt.container_id[:12], item.network.ifname)
        return len(self.pending)

    def collect(self, node: NodeRef) -> None:
        """DEL the cached attachments on `node` of pods this network no longer knows (those a
        restarted kubelet did not adopt), with their cached configuration, as pending DELs.
        Adoption is over then: what it read of the cache is dropped."""
        self._unadopted.pop(node.name, None)
        keep = {s.container_id for s in self.sandboxes.values()}
        owed = {(p.rt.container_id, p.network.conf.name, p.rt.ifname) for p in self.pending}
        for entry in cache.entries(self.cni(node).cache_dir):
            if entry.container_id in keep or (entry.container_id, entry.network, entry.ifname) in owed:
                continue
            rt = RuntimeConf(entry.container_id, "", entry.ifname, entry.cni_args, entry.capability_args)
            self.pending.append(PendingDelete(node, Network(conflist_from_json(entry.config), entry.ifname),
                                              rt, self.clock(), DEL_RETRY))
        self.retry_pending()

    # -- CHECK, adoption ---------------------------------------------------------------------------

    def check(self, node: NodeRef, attachment: Attachment, sandbox_pid: int) -> list[str]:
        """CHECK every network that has it (0.4.0 on, not disableCheck); the plugins' errors."""
        sandbox = self.sandboxes.get(attachment.pod)
        if sandbox is None:
            return [f"no CNI attachment is known for {attachment.pod}"]
        problems = []
        for network in self.networks(node):
            if not network.conf.has_check:
                continue
            try:
                self.cni(node).check(network.conf, sandbox.runtime_conf(network.ifname,
                                                                        netns_path(sandbox_pid)))
            except (CniError, OSError) as err:
                problems.append(str(err))
        return problems

    def adopt(self, node: NodeRef, attachment: Attachment) -> None:
        """A pod a previous kubelet attached: its parameters, from its cache entry (the node's
        entries are read once, for every pod adopted before `collect`)."""
        if node.name not in self._unadopted:
            self._unadopted[node.name] = self._cached_sandboxes(node)
        sandbox = self._unadopted[node.name].pop(_pod_key(attachment.pod), None)
        if sandbox is not None:
            self.sandboxes[attachment.pod] = sandbox

    def _from_cache(self, node: NodeRef, pod: str) -> Sandbox | None:
        """A pod's sandbox from its cache entry: from what adoption read, while it lasts."""
        unadopted = self._unadopted.get(node.name)
        if unadopted is not None:
            return unadopted.pop(_pod_key(pod), None)
        return self._cached_sandboxes(node).get(_pod_key(pod))

    def _cached_sandboxes(self, node: NodeRef) -> dict[tuple[str, str], Sandbox]:
        """The sandboxes the node's cache entries on eth0 describe, by (namespace, name); of
        several for one pod, the first entry's."""
        out: dict[tuple[str, str], Sandbox] = {}
        for entry in cache.entries(self.cni(node).cache_dir):
            if entry.ifname != POD_IFNAME:
                continue
            args = dict(entry.cni_args)
            key = (args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", ""))
            if key in out:
                continue
            found = NETNS_PID.fullmatch(entry.netns)
            out[key] = Sandbox(f"{key[0]}/{key[1]}", entry.container_id,
                               int(found.group(1)) if found else None, entry.cni_args,
                               entry.capability_args)
        return out


def _pod_key(pod: str) -> tuple[str, str]:
    """"namespace/name" as (namespace, name)."""
    namespace, name = pod.split("/", 1)
    return namespace, name
