"""Acts: the nginx ingress controller that controller pods run.

    python -m testbed.ingress.controller --api http://172.16.0.2:6443 --workdir .

Informers on Ingresses, Services and EndpointSlices wake one loop that renders nginx.conf
(testbed/ingress/config.py) and, when the text changed:

1. writes it to `nginx.conf.new` and checks it with `nginx -t`;
2. a good config replaces `nginx.conf` and nginx reloads (SIGHUP to the nginx master this
   process runs in the foreground; it is started on the first good config, so the pod's port
   opens only once there is something to serve);
3. a bad config never replaces the good one. The failing line is mapped back to the Ingress
   that wrote it; that Ingress is left out and the rest is checked again, so other changes
   still load. The error is logged, written to `status.json`, and put on the Ingress in the
   annotation `ingress.testbed.io/config-error` (the API server has no Events), removed once
   the Ingress renders cleanly again. If the failing line belongs to no Ingress, the old
   configuration keeps serving unchanged.

With --publish-pods NAMESPACE/SELECTOR (the add-on passes nginx-ingress/app=nginx-ingress) the
served Ingresses' status.loadBalancer.ingress lists the nodes running ready controller pods.

nginx keeps every file under --workdir (pid, logs, temp paths) and is started with `-e` so it
never opens /var/log/nginx. Backends are pod addresses, so endpoint changes reload nginx, as
ingress-nginx did before its Lua balancer. SIGTERM ends nginx and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from testbed.apiclient.client import ApiError, Client, put_status
from testbed.controllers.common import is_ready
from testbed.ingress.config import NginxPaths, build, culprit, ingress_key, render, serves

log = logging.getLogger("testbed.ingress")

ERROR_ANNOTATION = "ingress.testbed.io/config-error"
DEBOUNCE = 0.1
RESYNC = 10.0
_LINE = re.compile(r"nginx\.conf\.new:(\d+)")


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """One nginx master run in the foreground from `paths`, reloaded by SIGHUP."""

    def __init__(self, paths: NginxPaths, binary: str | None = None):
        self.paths, self.binary = paths, binary or nginx_binary()
        self.proc: subprocess.Popen | None = None
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            Path(paths.prefix, "tmp", sub).mkdir(parents=True, exist_ok=True)

    def _argv(self, conf: str) -> list[str]:
        return [self.binary, "-p", self.paths.prefix + "/", "-c", conf, "-e", self.paths.error_log]

    def test(self, conf: str) -> tuple[bool, str]:
        result = subprocess.run([*self._argv(conf), "-t"], capture_output=True, text=True, timeout=30)
        return result.returncode == 0, (result.stderr or result.stdout).strip()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def load(self) -> str:
        if self.running():
            self.proc.send_signal(signal.SIGHUP)
            return "reloaded"
        if self.proc is not None:
            log.warning("nginx had exited with %s; starting it again", self.proc.returncode)
        self.proc = subprocess.Popen([*self._argv(self.paths.conf), "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL)
        return "started"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class IngressController:
    def __init__(self, client: Client, nginx: Nginx, ingress_class: str = "nginx",
                 default_class: bool = True, port: int = 80,
                 publish: tuple[str, str] | None = None):
        self.client, self.nginx = client, nginx
        self.publish = publish              # (namespace, label selector) of the controller pods
        self.ingress_class, self.default_class, self.port = ingress_class, default_class, port
        self.wake = threading.Event()
        self.attempted: str | None = None   # the last full rendering tried
        self.loaded: str | None = None      # the text nginx runs
        self.errors: dict[str, str] = {}    # ingress -> nginx -t message
        self.reloads = 0
        self.user = "root" if os.geteuid() == 0 else None

    def poke(self, *_args) -> None:
        self.wake.set()

    def _render(self, ingresses, services, slices, exclude=()) -> str:
        model = build(ingresses, services, slices, self.ingress_class, self.default_class, exclude)
        return render(model, self.nginx.paths, self.port, self.user)

    def sync(self, ingresses: list[dict], services: list[dict], slices: list[dict]) -> None:
        text = self._render(ingresses, services, slices)
        if text == self.attempted and self.nginx.running():
            return
        self.attempted = text
        errors: dict[str, str] = {}
        new = Path(self.nginx.paths.prefix, "nginx.conf.new")
        ok, message = False, ""
        for _ in range(len(ingresses) + 1):
            new.write_text(text)
            ok, message = self.nginx.test(str(new))
            if ok:
                break
            match = _LINE.search(message)
            bad = culprit(text, int(match.group(1))) if match else None
            if bad is None or bad in errors:
                log.error("nginx -t rejected the new configuration; the old one keeps serving:\n%s", message)
                self._report(ingresses, errors, message)
                return
            errors[bad] = message.splitlines()[0] if message else "nginx -t failed"
            log.error("nginx -t rejected Ingress %s; leaving it out: %s", bad, errors[bad])
            text = self._render(ingresses, services, slices, exclude=errors)
        if not ok:
            self._report(ingresses, errors, message)
            return
        if text != self.loaded or not self.nginx.running():
            os.replace(new, self.nginx.paths.conf)
            what = self.nginx.load()
            self.loaded = text
            self.reloads += 1
            log.info("nginx %s with a configuration of %d lines", what, text.count("\n"))
        self._report(ingresses, errors, "")

    def _report(self, ingresses: list[dict], errors: dict[str, str], general: str) -> None:
        self.errors = errors
        status = {"reloads": self.reloads, "error": general, "rejected": errors,
                  "time": time.time()}
        Path(self.nginx.paths.prefix, "status.json").write_text(json.dumps(status, indent=1) + "\n")
        for ing in ingresses:
            meta = ing["metadata"]
            key = ingress_key(ing)
            notes = meta.get("annotations") or {}
            want = errors.get(key)
            if notes.get(ERROR_ANNOTATION) == want:
                continue
            notes = {k: v for k, v in notes.items() if k != ERROR_ANNOTATION}
            if want:
                notes[ERROR_ANNOTATION] = want
            body = {k: v for k, v in ing.items() if k != "status"}
            try:
                self.client.update(dict(body, metadata=dict(meta, annotations=notes)))
            except ApiError as err:  # another replica wrote it, or it changed: next pass
                log.info("annotation on %s not written: %s", key, err)

    def publish_status(self, ingresses: list[dict], pods: list[dict]) -> None:
        """status.loadBalancer.ingress of served Ingresses = the nodes running ready controller
        pods, as ingress-nginx does without --publish-service (`kubectl get ing` ADDRESS)."""
        ips = sorted({(p.get("status") or {}).get("hostIP") for p in pods if is_ready(p)}
                     - {None, ""})
        want = {"ingress": [{"ip": ip} for ip in ips]} if ips else {}
        for ing in ingresses:
            if not serves(ing, self.ingress_class, self.default_class):
                continue
            if ((ing.get("status") or {}).get("loadBalancer") or {}) == want:
                continue
            try:
                put_status(self.client, ing, {"loadBalancer": want})
            except ApiError as err:
                log.info("status of %s/%s not written: %s", ing["metadata"].get("namespace"),
                         ing["metadata"]["name"], err)

    def run(self, stop: threading.Event, informer_cls) -> None:
        informers = [informer_cls(self.client, kind, on_add=self.poke, on_update=self.poke,
                                  on_delete=self.poke, resync=RESYNC).start()
                     for kind in ("Ingress", "Service", "EndpointSlice")]
        pods = None
        if self.publish:
            pods = informer_cls(self.client, "Pod", namespace=self.publish[0], selector=self.publish[1],
                                on_add=self.poke, on_update=self.poke, on_delete=self.poke).start()
        try:
            while not stop.is_set():
                if not all(i.has_synced() for i in informers):
                    stop.wait(0.05)
                    continue
                stop.wait(DEBOUNCE)  # let a burst of changes settle into one reload
                self.wake.clear()
                try:
                    self.sync(*(i.items() for i in informers))
                    if pods is not None and pods.has_synced():
                        self.publish_status(informers[0].items(), pods.items())
                except (OSError, subprocess.SubprocessError) as err:
                    log.warning("sync failed: %s", err)
                if not self.nginx.running():
                    self.attempted = None  # start it again next pass
                self.wake.wait(RESYNC if self.nginx.running() else 1.0)
        finally:
            for i in [*informers, *([pods] if pods is not None else [])]:
                i.stop()
            self.nginx.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.ingress.controller",
                                description="An nginx ingress controller for the testbed's pods.")
    p.add_argument("--api", required=True, help="API server: http://HOST:PORT")
    p.add_argument("--workdir", default=".", help="where nginx keeps its config, logs and temp files")
    p.add_argument("--ingress-class", default="nginx")
    p.add_argument("--no-default-class", action="store_true",
                   help="serve only Ingresses that name this class")
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--publish-pods", metavar="NAMESPACE/SELECTOR",
                   help="write the nodes of these ready controller pods into Ingress status")
    p.add_argument("--nginx", help="the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="ingress %(asctime)s %(message)s")
    from testbed.apiclient import Informer

    paths = NginxPaths(str(Path(args.workdir).resolve()))
    publish = tuple(args.publish_pods.split("/", 1)) if args.publish_pods else None
    if publish is not None and len(publish) != 2:
        p.error("--publish-pods takes NAMESPACE/SELECTOR")
    controller = IngressController(Client(args.api, component="nginx-ingress-controller"), Nginx(paths, args.nginx), args.ingress_class,
                                   not args.no_default_class, args.http_port, publish)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stop.set(), controller.wake.set()))
    log.info("watching Ingresses of class %s%s; nginx %s", args.ingress_class,
             " (the default class)" if not args.no_default_class else "", controller.nginx.binary)
    controller.run(stop, Informer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
