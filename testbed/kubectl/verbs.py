"""Acts: kubectl's verbs `apply|delete|get|describe|scale` over a given API client.

`run_kubectl(argv, client, out)` runs them for the Mininet CLI; `testbed apply ...` reaches
them through testbed.emu.kubectl_command, which finds the running cluster's API server (its
Unix socket in the run directory, so the host never joins the emulated network).

Exit codes as kubectl's: 0 done, 1 the server refused or an object is missing, 2 bad input
(manifests are loaded and validated first: file:line: field problems, and nothing applied).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from testbed.api.manifests import load_manifests
from testbed.api.meta import object_key
from testbed.api.resources import Resource, UnknownResource, lookup, resource_for
from testbed.apiclient.client import ApiError, Client
from testbed.checks import check_manifests, report_warnings
from testbed.kubectl.format import Section, describe, format_objects, format_table
from testbed.spec.source import SpecError
from testbed.spec.topology import Topology

VERBS = ("apply", "delete", "get", "describe", "scale")


# -- arguments -------------------------------------------------------------------------------------

def _namespace_args(p: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    if all_namespaces:
        p.add_argument("-A", "--all-namespaces", action="store_true",
                       help="every namespace")


def add_verbs(sub: argparse._SubParsersAction, common: argparse.ArgumentParser | None) -> \
        dict[str, argparse.ArgumentParser]:
    parents = [common] if common is not None else []
    out = {}
    p = out["apply"] = sub.add_parser("apply", parents=parents, help="create or update objects "
                                      "from manifests (all or nothing)")
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE")
    p = out["delete"] = sub.add_parser("delete", parents=parents,
                                       help="delete the objects of manifests, or KIND NAME")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE")
    p.add_argument("kind", nargs="?")
    p.add_argument("names", nargs="*")
    p.add_argument("--grace-period", type=int, default=None)
    _namespace_args(p)
    p = out["get"] = sub.add_parser("get", parents=parents, help="list objects the way kubectl "
                                    "does")
    p.add_argument("kind", help="pods, deployments, services, endpointslices, ingresses, nodes, "
                                "namespaces (or their short names)")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["wide", "yaml", "json"])
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web")
    _namespace_args(p, all_namespaces=True)
    p = out["describe"] = sub.add_parser("describe", parents=parents,
                                         help="show one object in detail")
    p.add_argument("kind")
    p.add_argument("name")
    _namespace_args(p)
    p = out["scale"] = sub.add_parser("scale", parents=parents,
                                      help="set a Deployment's replicas")
    p.add_argument("kind", help="deployment (or deployment/NAME)")
    p.add_argument("name", nargs="?")
    p.add_argument("--replicas", type=int, required=True)
    _namespace_args(p)
    return out


class UsageError(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    """For run_kubectl: usage errors raise instead of exiting the Mininet CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


def run_kubectl(argv: list[str], client: Client, out: TextIO, err: TextIO | None = None,
                topology: Topology | None = None,
                node_sections: Callable[[str], Sequence[Section]] | None = None) -> int:
    """`get pods -A`, `apply -f x.yaml`, ... on `client`; output to `out`. The exit code.
    `topology` is the cluster's, which manifests are checked against before they are sent;
    `node_sections(node)` the blocks `describe node` adds (the node's kube-proxy)."""
    err = err or out
    parser = _QuietParser(prog="kubectl", add_help=False)
    add_verbs(parser.add_subparsers(dest="verb", parser_class=_QuietParser), None)
    try:
        args = parser.parse_args(argv)
    except UsageError as bad:
        print(bad, file=err)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    args.topology, args.warning_prefix = topology, "warning: "
    args.node_sections = node_sections
    if args.verb is None:
        print("usage: apply|delete|get|describe|scale ...", file=err)
        return 2
    try:
        return execute(args, client, out, err)
    except SpecError as bad:
        for problem in bad.problems:
            print(f"error: {problem}", file=err)
        return 2


# -- the verbs -------------------------------------------------------------------------------------

def _where(r: Resource, obj_or_name: dict | str) -> str:
    """deployment.apps/web: how kubectl names an object in its messages."""
    name = obj_or_name if isinstance(obj_or_name, str) else obj_or_name["metadata"]["name"]
    return f"{r.kind.lower()}{'.' + r.group if r.group else ''}/{name}"


def execute(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    verb = getattr(args, "verb", None) or args.command
    try:
        return VERB_FUNCS[verb](args, client, out, err)
    except UnknownResource as bad:
        print(f"error: {bad}", file=err)
        return 1
    except ApiError as bad:
        print(f"Error from server ({bad.reason or bad.code}): {bad.message}", file=err)
        return 1
    except OSError as bad:
        print(f"error: cannot reach the API server at {client.address}: {bad}", file=err)
        return 1


def cmd_apply(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    # The checks `testbed run` makes (testbed.checks), against the cluster's
    # topology when it is known; SpecError: exit 2, nothing applied.
    checked = check_manifests(args.filename, getattr(args, "topology", None), which=shutil.which)
    checked.raise_if_problems()
    report_warnings(checked.warnings, err, getattr(args, "warning_prefix", "testbed: warning: "))
    objects = checked.objects
    for action, obj in client.apply_results(objects):
        print(f"{_where(resource_for(obj['kind']), obj)} {action}", file=out)
    return 0


def cmd_delete(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    targets: list[tuple[Resource, str, str]] = []
    if args.filename:
        if args.kind:
            print("error: give either -f FILE or KIND NAME, not both", file=err)
            return 2
        for obj in load_manifests(args.filename):
            targets.append((resource_for(obj["kind"]), *object_key(obj)))
    elif args.kind and args.names:
        r = lookup(args.kind)
        targets = [(r, args.namespace or "default", name) for name in args.names]
    else:
        print("error: give -f FILE or KIND NAME", file=err)
        return 2
    code = 0
    for r, ns, name in reversed(targets):  # dependents (Pods, Services) before Namespaces
        if client.delete(r.kind, ns, name, args.grace_period) is None:
            print(f'Error from server (NotFound): {r.qualified} "{name}" not found', file=err)
            code = 1
        else:
            print(f'{r.kind.lower()}{"." + r.group if r.group else ""} "{name}" deleted',
                  file=out)
    return code


def cmd_get(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    r = lookup(args.kind)
    ns = None if (args.all_namespaces or not r.namespaced) else (args.namespace or "default")
    if args.name:
        obj = client.get(r.kind, ns or args.namespace or "default", args.name)
        if obj is None:
            print(f'Error from server (NotFound): {r.qualified} "{args.name}" not found',
                  file=err)
            return 1
        objects = [obj]
    else:
        objects, _ = client.list(r.kind, ns, args.selector)
    if not objects:
        where = f" in {ns} namespace" if ns is not None else ""
        print(f"No resources found{where}.", file=err)
        return 0
    if args.output in ("yaml", "json"):
        out.write(format_objects(objects, args.output, single=bool(args.name)))
        return 0
    out.write(format_table(r.kind, objects, datetime.now(UTC), wide=args.output == "wide",
                           all_namespaces=bool(args.all_namespaces and r.namespaced)))
    return 0


def cmd_describe(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    r = lookup(args.kind)
    ns = args.namespace or "default"
    obj = client.get(r.kind, ns, args.name)
    if obj is None:
        print(f'Error from server (NotFound): {r.qualified} "{args.name}" not found', file=err)
        return 1
    slices = None
    if r.kind == "Service":
        slices, _ = client.list("EndpointSlice", ns, f"kubernetes.io/service-name={args.name}")
    meta = obj.get("metadata") or {}
    # kubectl's Events().Search: the events whose involved object is this one (by kind, name,
    # namespace and uid); none for a NetworkPolicy, whose describer shows none.
    events = None
    if r.kind != "NetworkPolicy":
        selector = (f"involvedObject.kind={r.kind},involvedObject.name={args.name},"
                    f"involvedObject.namespace={ns if r.namespaced else ''},"
                    f"involvedObject.uid={meta.get('uid', '')}")
        try:
            events, _ = client.list("Event", ns if r.namespaced else None, fields=selector)
        except ApiError:
            events = None
    # the testbed's own blocks for a Node (its kube-proxy), when the caller knows the cluster
    node_sections = getattr(args, "node_sections", None)
    sections = node_sections(args.name) if r.kind == "Node" and node_sections else ()
    out.write(describe(obj, slices, events, sections=sections))
    return 0


def cmd_scale(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    kind, _, name = args.kind.partition("/")
    name = name or args.name
    r = lookup(kind)
    if r.kind != "Deployment" or not name:
        print("error: scale takes deployment NAME (or deployment/NAME)", file=err)
        return 2
    client.scale(r.kind, args.namespace or "default", name, args.replicas)
    print(f"{_where(r, name)} scaled", file=out)
    return 0


VERB_FUNCS = {"apply": cmd_apply, "delete": cmd_delete, "get": cmd_get,
              "describe": cmd_describe, "scale": cmd_scale}
