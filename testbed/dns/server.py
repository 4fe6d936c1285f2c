"""Acts: the cluster DNS server, the program the DNS pod runs.

    python -m testbed.dns.server --api ADDRESS [--domain cluster.local] [--port 53] [--workdir DIR]

Watches Services, EndpointSlices and Pods through informers (testbed.apiclient), turns them into
records (testbed.dns.records, pure) and dnsmasq files (testbed.dns.dnsmasq, pure), and keeps a
dnsmasq child in the foreground serving them on every address of the pod, UDP and TCP.

Handlers only record the object and flag a change; one sync, about 100 ms after the first
change of a burst, renders everything and applies it: the hosts file is replaced atomically
(dnsmasq rereads it through inotify), and dnsmasq is restarted only when its configuration text
changes (SRV, CNAME, PTR-only records; dnsmasq reads those only at start; see
testbed.dns.dnsmasq). A dnsmasq that dies is started again, with a growing delay. SIGTERM or
SIGINT ends dnsmasq and then the server, exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from testbed.api.meta import object_key
from testbed.dns.dnsmasq import Rendered, Settings, argv, render
from testbed.dns.records import DEFAULT_DOMAIN, build_records
from testbed.net.run import ns_prefix

log = logging.getLogger("testbed.dns")

KINDS = ("Service", "EndpointSlice", "Pod")
DEBOUNCE = 0.1
TICK = 0.1
SYNC_TIMEOUT = 10.0
# A hosts file written while dnsmasq starts may land before its inotify watch exists: once the
# child has run this long, such a file is written again so that dnsmasq sees it.
SETTLE = 0.5
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 5.0


class DnsmasqError(RuntimeError):
    pass


class Dnsmasq:
    """One dnsmasq child and the two files it reads. `netns`: a pid whose network namespace
    dnsmasq runs in (tests); None in the DNS pod, where the server already is in the pod."""

    def __init__(self, settings: Settings, netns: int | None = None):
        self.settings = settings
        self.netns = netns
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self._config: str | None = None
        self._hosts: str | None = None
        self._hosts_written_at = 0.0
        self._delay = RESTART_DELAY
        self._next_start = 0.0
        Path(settings.hosts_dir).mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def apply(self, rendered: Rendered) -> str:
        """Write what changed; restart dnsmasq when its config changed. Says what it did."""
        did = "unchanged"
        if rendered.hosts != self._hosts:
            self._write(self.settings.hosts_path, rendered.hosts)
            self._hosts = rendered.hosts
            self._hosts_written_at = time.monotonic()
            did = "reloaded"
        if rendered.config != self._config or not self.alive():
            self._write(self.settings.conf_path, rendered.config)
            self._config = rendered.config
            did = "restarted" if self.proc is not None else "started"
            self._restart()
        return did

    def tend(self) -> None:
        """Called every tick: restart a dead dnsmasq; re-send a hosts file dnsmasq may have missed."""
        now = time.monotonic()
        if self._config is None:
            return
        if not self.alive():
            if now >= self._next_start:
                code = self.proc.returncode if self.proc else None
                log.warning("dnsmasq exited with %s; starting it again", code)
                self._restart()
                self._next_start = now + self._delay
                self._delay = min(self._delay * 2, RESTART_DELAY_MAX)
            return
        if now - self.started_at > 10 * RESTART_DELAY_MAX:
            self._delay = RESTART_DELAY
        if self._hosts is not None and self.started_at <= self._hosts_written_at < self.started_at + SETTLE \
                and now - self.started_at > SETTLE:
            self._write(self.settings.hosts_path, self._hosts)
            self._hosts_written_at = now

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _restart(self) -> None:
        self.stop()
        command = ns_prefix(self.netns) + argv(self.settings)
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as err:
            raise DnsmasqError(f"start dnsmasq with {self.settings.conf_path}") from err
        self.started_at = time.monotonic()
        self.restarts += 1
        log.info("dnsmasq started, pid %d", self.proc.pid)

    def _write(self, path: str, text: str) -> None:
        # Written outside the hosts directory, then renamed in: dnsmasq sees one whole file.
        target = Path(path)
        tmp = Path(self.settings.workdir, f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


class ClusterDns:
    """Informers feed a record of objects; `sync` renders them and applies them to dnsmasq.

    `informer` is testbed.apiclient.informer.Informer or a fake with its signature."""

    def __init__(self, client, settings: Settings, informer: Callable, *,
                 netns: int | None = None, debounce: float = DEBOUNCE,
                 dnsmasq: Dnsmasq | None = None):
        self.client = client
        self.settings = settings
        self.informer = informer
        self.debounce = debounce
        self.dnsmasq = dnsmasq or Dnsmasq(settings, netns=netns)
        self.objects: dict[str, dict[tuple[str, str], dict]] = {kind: {} for kind in KINDS}
        self.informers: list = []
        self._lock = threading.Lock()
        self._changed = threading.Event()

    # Handlers record, sync acts.
    def on_add(self, kind: str, obj: dict) -> None:
        with self._lock:
            self.objects[kind][object_key(obj)] = obj
        self._changed.set()

    def on_update(self, kind: str, old: dict, new: dict) -> None:
        with self._lock:
            self.objects[kind].pop(object_key(old), None)
            self.objects[kind][object_key(new)] = new
        self._changed.set()

    def on_delete(self, kind: str, obj: dict) -> None:
        with self._lock:
            self.objects[kind].pop(object_key(obj), None)
        self._changed.set()

    def start(self, sync_timeout: float = SYNC_TIMEOUT, stop: threading.Event | None = None) -> None:
        for kind in KINDS:
            self.informers.append(self.informer(
                self.client, kind,
                on_add=lambda obj, k=kind: self.on_add(k, obj),
                on_update=lambda old, new, k=kind: self.on_update(k, old, new),
                on_delete=lambda obj, k=kind: self.on_delete(k, obj)))
        for inf in self.informers:
            inf.start()
        deadline = time.monotonic() + sync_timeout
        stop = stop or threading.Event()
        while not all(inf.has_synced() for inf in self.informers) and time.monotonic() < deadline:
            if stop.wait(0.02):
                return
        if not all(inf.has_synced() for inf in self.informers):
            log.warning("informers not synced after %.0f s; serving what is known", sync_timeout)
        self.sync()

    def sync(self) -> str:
        self._changed.clear()
        with self._lock:
            services = list(self.objects["Service"].values())
            slices = list(self.objects["EndpointSlice"].values())
            pods = list(self.objects["Pod"].values())
        records = build_records(services, slices, pods, domain=self.settings.domain)
        did = self.dnsmasq.apply(render(records, self.settings))
        if did != "unchanged":
            log.info("sync: %d names, %d SRV, %d CNAME; dnsmasq %s", len(records.addresses)
                     + len(records.pods), len(records.srvs), len(records.cnames), did)
        return did

    def run(self, stop: threading.Event) -> None:
        """Start, then sync on changes until `stop` is set; always ends dnsmasq and informers."""
        try:
            self.start(stop=stop)
            while not stop.is_set():
                if self._changed.wait(TICK):
                    stop.wait(self.debounce)  # let the rest of a burst arrive
                    self.sync()
                self.dnsmasq.tend()
        finally:
            self.close()

    def close(self) -> None:
        self.dnsmasq.stop()  # first: the informers may take a moment to let go of their watches
        for inf in self.informers:
            try:
                inf.stop()
            except Exception:  # noqa: BLE001 - one failing informer must not keep the others
                log.exception("stopping an informer")
        self.informers = []


def _api(address: str):
    """The real API client and informer (testbed.apiclient), imported only when serving."""
    from testbed.apiclient import Client, Informer

    return Client(address, component="kube-dns"), Informer


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.dns.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="API server: http://HOST:PORT or unix:///PATH")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--workdir", default="dns", help="dnsmasq's files (default ./dns)")
    parser.add_argument("--log-queries", action="store_true")
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="dns-server: %(message)s")
    workdir = Path(opts.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # A container's PATH may lack /usr/sbin, where Debian puts dnsmasq.
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    settings = Settings(workdir=str(workdir), domain=opts.domain, port=opts.port,
                        log_queries=opts.log_queries, binary=binary)
    client, informer = _api(opts.api)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ClusterDns(client, settings, informer).run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
