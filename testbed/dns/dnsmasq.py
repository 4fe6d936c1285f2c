"""Pure: dnsmasq configuration for the cluster DNS, rendered from testbed.dns.records.

Two files, because dnsmasq reloads only one kind of data while running:

- the hosts file (`<workdir>/hosts.d/cluster`, read through `hostsdir=`) holds every A/AAAA
  record and the PTRs that go with them. dnsmasq watches a hosts directory with inotify and
  rereads a new or changed file by itself (man dnsmasq, --hostsdir), dropping the old file's
  records; the server replaces the file atomically (write beside it, rename into the
  directory), so dnsmasq never reads half a file. Service, endpoint and pod churn is therefore
  applied without a restart and without a signal (a SIGHUP sent while dnsmasq is still starting
  would kill it: SIGHUP's default action).
- the configuration file holds `srv-host=`, `cname=` and `ptr-record=`: dnsmasq reads these only
  at start ("SIGHUP does NOT re-read the configuration file"), so the server restarts dnsmasq
  when this file's text changes, which happens only when the set of named ports, ExternalName
  Services or headless SRV targets changes. A restart leaves the port closed for a few
  milliseconds (UDP queries get ICMP port unreachable, TCP a reset: fast failures), and a query
  already queued on the old socket is lost: that client retries after its timeout.

A hosts line gives both an A record and, if it is the first line for its address, the PTR
(man dnsmasq, --host-record: "the same rule as is used reading hosts-files"). So the hosts file
lists, first, each address with the name its PTR must give (ClusterIP -> Service, headless
endpoint IP -> endpoint name), then the other A records, then the pod records. Consequences:
one PTR per address, and a pod IP that no Service names gets a PTR to its pod record (CoreDNS
gives none); a PTR whose name has no A record becomes a `ptr-record=` line instead.

Negative answers: there is no upstream DNS (the emulated network is sealed), so `no-resolv`,
`no-hosts`, `local=/<domain>/` and `local=/#/` make dnsmasq answer every name it does not hold
with NXDOMAIN at once, inside the cluster domain, in in-addr.arpa and outside alike (without
`local=/#/` dnsmasq answers REFUSED for outside names, which glibc turns into "temporary
failure" rather than "unknown name").

dnsmasq runs as root (`user=root`): it runs inside the DNS pod, whose private workdir may not be
readable by the `dnsmasq` user it would otherwise switch to. `local-service` is not set (only
Debian's init script sets it), so queries from other nodes' pod subnets are answered.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from testbed.dns.records import DEFAULT_DOMAIN, PtrRecord, Records

DEFAULT_PORT = 53
# Kubernetes' CoreDNS answers with TTL 5 by default; pods' glibc resolvers do not cache anyway.
DEFAULT_TTL = 5
HOSTS_FILE = "cluster"

# What may appear in a configuration line: lower-case DNS names (underscore for SRV labels).
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,252})$")


@dataclass(frozen=True)
class Settings:
    workdir: str
    domain: str = DEFAULT_DOMAIN
    port: int = DEFAULT_PORT
    ttl: int = DEFAULT_TTL
    log_queries: bool = False
    binary: str = "dnsmasq"

    @property
    def conf_path(self) -> str:
        return str(PurePosixPath(self.workdir, "dnsmasq.conf"))

    @property
    def hosts_dir(self) -> str:
        return str(PurePosixPath(self.workdir, "hosts.d"))

    @property
    def hosts_path(self) -> str:
        return str(PurePosixPath(self.hosts_dir, HOSTS_FILE))

    @property
    def pid_path(self) -> str:
        return str(PurePosixPath(self.workdir, "dnsmasq.pid"))

    @property
    def lease_path(self) -> str:
        return str(PurePosixPath(self.workdir, "dnsmasq.leases"))


@dataclass(frozen=True)
class Rendered:
    """The two files: `config` needs a dnsmasq restart when it changes, `hosts` does not."""

    config: str
    hosts: str


def argv(settings: Settings) -> list[str]:
    """The dnsmasq command line: in the foreground, everything else in the config file."""
    return [settings.binary, "--keep-in-foreground", f"--conf-file={settings.conf_path}"]


def render(records: Records, settings: Settings) -> Rendered:
    hosts, ptr_only = _hosts(records)
    return Rendered(config=render_config(records, settings, ptr_only), hosts=hosts)


def render_config(records: Records, settings: Settings,
                  ptr_only: list[PtrRecord] | None = None) -> str:
    """dnsmasq's configuration; `ptr_only` is `_hosts(records)[1]` when the caller has it."""
    domain = _name(settings.domain.strip(".").lower())
    for value in (settings.port, settings.ttl):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"dnsmasq setting {value!r} is not a non-negative integer")
    lines = [
        "# Cluster DNS, rendered by testbed.dns.dnsmasq: dnsmasq reads this file only at start.",
        "# A and PTR records are in the hosts directory, which dnsmasq rereads by itself.",
        "no-resolv",
        "no-hosts",
        "no-poll",
        "user=root",
        f"port={settings.port}",
        f"pid-file={_path(settings.pid_path)}",
        f"dhcp-leasefile={_path(settings.lease_path)}",
        f"hostsdir={_path(settings.hosts_dir)}",
        f"local-ttl={settings.ttl}",
        "cache-size=0",
        f"local=/{domain}/",
        "local=/#/",
        "log-facility=-",
    ]
    if settings.log_queries:
        lines.append("log-queries")
    for srv in records.srvs:
        lines.append(f"srv-host={_name(srv.name)},{_name(srv.target)},{_u16(srv.port)},"
                     f"{_u16(srv.priority)},{_u16(srv.weight)}")
    for cname in records.cnames:
        lines.append(f"cname={_name(cname.name)},{_name(cname.target)}")
    for ptr in _hosts(records)[1] if ptr_only is None else ptr_only:
        lines.append(f"ptr-record={_reverse(ptr.address)},{_name(ptr.name)}")
    return "\n".join(lines) + "\n"


def render_hosts(records: Records) -> str:
    return _hosts(records)[0]


def _hosts(records: Records) -> tuple[str, list[PtrRecord]]:
    """The hosts file text, and the PTRs it cannot carry (their name has no A record)."""
    have = {(a.name, _ip(a.address)) for a in records.addresses}
    lines: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    ptr_done: set[str] = set()
    ptr_only: list[PtrRecord] = []
    for ptr in records.ptrs:
        ip = _ip(ptr.address)
        if ip in ptr_done:
            continue  # one PTR per address: dnsmasq takes the first hosts line for it
        if (ptr.name, ip) not in have:
            ptr_only.append(ptr)
            ptr_done.add(ip)
            continue
        ptr_done.add(ip)
        lines.append((ip, ptr.name))
    for record in (*records.addresses, *records.pods):
        lines.append((_ip(record.address), record.name))
    out = ["# Cluster DNS A/AAAA records, rendered by testbed.dns.dnsmasq; the first line for an",
           "# address gives its PTR."]
    for ip, name in lines:
        if (ip, name) not in seen:
            seen.add((ip, name))
            out.append(f"{ip} {_name(name)}")
    return "\n".join(out) + "\n", ptr_only


def _name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"refusing to write DNS name {name!r} into dnsmasq configuration")
    return name


def _path(path: str) -> str:
    if any(ch in path for ch in "\n\r\0"):
        raise ValueError(f"refusing path {path!r} in dnsmasq configuration")
    return path


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _reverse(text: str) -> str:
    return ipaddress.ip_address(text).reverse_pointer


def _u16(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 65536:
        raise ValueError(f"{value!r} is not a 16-bit number for an SRV record")
    return value
