"""The layers hold: no module imports from a layer above its own, and pure code stays pure.

README's layer table, as data. Packages are ranked from the bottom up; a module may import
from its own package and from lower ranks only, wherever the import statement sits (at the top
or inside a function: a late import is still a dependency). A module is pure when its package
is one of PURE_PACKAGES or its docstring begins with "Pure"; a pure module must not import,
directly or through any testbed module it imports (package `__init__`s included, since Python
runs them), one of ACTING_MODULES. The check reads the source (ast), so it sees every import
whether or not a test would reach it, and names the chain that leads to a forbidden module.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "testbed"

# Bottom up. Each entry is one rank; packages in one rank may not import each other either.
LAYERS: list[tuple[str, ...]] = [
    ("spec",),          # pure: YAML with limits, the field reader and name rules, topology
    ("api",),           # pure: the API's kinds, validation, store, allocators, patches, tables
    ("controllers",),   # pure: deployments, scheduling, EndpointSlices, load balancers
    ("node",),          # pure: the kubelet's plan, images and commands, pod IPAM, the ps view
    ("checks",),        # pure: the checks every command makes on manifests before applying them
    ("proxy",),         # pure: kube-proxy's rules, trackers, proxier, packet tracer
    ("netpol",),        # pure: NetworkPolicy semantics, iptables+ipset and nftables rules, syncer
    ("routing",),       # pure: routing modes: flannel's host-gw/vxlan plan and syncer, bird configs
    ("trace",),         # pure: a connection's path (hops, chains, rewrites), its text, static trace
    ("diagram",),       # pure: the cluster's picture as Graphviz DOT, with a trace over it
    ("net",),           # acts: commands, sockets and netlink in namespaces, netfilter, wire protocols
    ("cni",),           # real CNI plugins: configuration lists and results (pure), the cache, the chains
    ("apiclient",),     # acts: the API client, informers, event recorder
    ("dns", "ingress"),  # programs of the add-ons, over pure records and configuration
    ("kubectl",),       # acts: the kubectl-like verbs over a client
    ("emu",),           # acts: Mininet network, pods, control plane, run directory, CLI
    ("agents",),        # acts: apiserver, kubelet, kube-proxy, cloud
    ("scenario",),      # scenario spec (pure), probes' dispatch, steps, runner, reports
    ("workloads",),     # programs pods run in place of images
    ("experiment",),    # the public Python API (`from testbed import Cluster`)
    ("pytest_plugin",),  # its pytest fixture
    ("cli",),           # `testbed`: the subcommands' parsers, errors and exit codes
    ("__main__", "__init__"),   # python -m testbed; the package's lazy `Cluster`
]
PURE_PACKAGES = {"spec", "api", "controllers", "node", "checks", "proxy", "netpol", "routing",
                 "trace", "diagram"}
ACTING_MODULES = {"subprocess", "socket", "pyroute2", "mininet", "ctypes", "threading"}


def rank_of(unit: str) -> int:
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"testbed.{unit} is in no layer of LAYERS: add it")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = modules()


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: testbed.api.store -> api, testbed.cli -> cli."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), str(MODULES[module]))


def resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports(module: str) -> tuple[tuple[str, int], ...]:
    """Every module `module` imports, with its line: testbed modules by their full name (a
    name imported from a package that is itself a module counts as that module), others by
    their top-level name."""
    out = []
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, node)
            out.append((base, node.lineno))
            out += [(f"{base}.{alias.name}", node.lineno) for alias in node.names
                    if f"{base}.{alias.name}" in MODULES]
    return tuple(out)


def deps_of(module: str) -> list[str]:
    """The testbed modules importing `module` runs: what it imports, and each one's package
    __init__s (importing testbed.a.b runs testbed/__init__ and testbed/a/__init__)."""
    out = []
    for name, _ in imports(module):
        if not name.startswith("testbed"):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix != module:
                out.append(prefix)
    return out


def is_pure(module: str) -> bool:
    if unit_of(module) in PURE_PACKAGES:
        return True
    doc = ast.get_docstring(tree(module)) or ""
    return doc.startswith("Pure")


def acting_chain(module: str) -> list[str] | None:
    """The chain of imports from `module` to an acting module, or None."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(module, [module])]
    while stack:
        current, chain = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, line in imports(current):
            top = name.split(".")[0]
            if top in ACTING_MODULES:
                return chain + [f"{name} (line {line} of {current})"]
        for dep in deps_of(current):
            if dep != "testbed" and dep not in seen:   # testbed/__init__ is lazy: checked alone
                stack.append((dep, chain + [dep]))
    return None


def test_every_testbed_import_names_a_module_that_exists():
    """The checks read source, so a stale import (of a module moved away) must be caught here:
    it would otherwise pass them and fail only when run."""
    missing = [f"{module}: line {line}: {name}" for module in MODULES
               for name, line in imports(module)
               if name.startswith("testbed") and name not in MODULES]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_every_package_has_a_layer():
    for module in MODULES:
        rank_of(unit_of(module))


def upward_imports(module: str) -> list[str]:
    """The imports of `module` from its own layer (another package) or above, described."""
    mine = rank_of(unit_of(module))
    wrong = []
    for name, line in imports(module):
        if not name.startswith("testbed."):
            continue
        unit = unit_of(name)
        if unit != unit_of(module) and rank_of(unit) >= mine:
            wrong.append(f"line {line}: {name} (layer {rank_of(unit)}, {unit}; "
                         f"{module} is in layer {mine}, {unit_of(module)})")
    return wrong


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_higher_layer(module):
    wrong = upward_imports(module)
    assert not wrong, f"{module} imports from its own layer or above:\n" + "\n".join(wrong)


PURE = [m for m in sorted(MODULES) if is_pure(m)]


ACTING_CALLS = {"kill", "killpg", "system", "popen", "fork", "forkpty", "setns", "unshare",
                "execv", "execve", "execvp", "execvpe", "execl", "execlp", "spawnv", "spawnvp",
                "posix_spawn", "posix_spawnp"}


def acting_calls(module: str) -> list[str]:
    """os.kill(...), os.system(...) and their kind: acting without importing an acting module."""
    return [f"line {node.lineno}: os.{node.func.attr}" for node in ast.walk(tree(module))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
            and node.func.attr in ACTING_CALLS]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_act_on_nothing(module):
    chain = acting_chain(module)
    assert chain is None, f"pure {module} imports an acting module: " + " -> ".join(chain)
    calls = acting_calls(module)
    assert not calls, f"pure {module} acts: " + ", ".join(calls)


def test_the_checks_see_what_they_should(tmp_path, monkeypatch):
    """The test's own premises: known pure modules are found pure, and planted faults are seen:
    a late import from a higher layer, and an acting module reached through a package."""
    assert {"testbed.spec.source", "testbed.api.store", "testbed.proxy.proxier"} <= set(PURE)
    assert "testbed.scenario.spec" in PURE and "testbed.emu.cluster" not in PURE
    assert rank_of("spec") < rank_of("api") < rank_of("emu") < rank_of("scenario")
    planted = tmp_path / "planted.py"
    planted.write_text('"""Pure: planted."""\n\nimport os\n\n\ndef f():\n'
                       '    from testbed.emu import cluster\n'
                       '    from testbed.net import netns\n    os.kill(1, 0)\n    return cluster, netns\n')
    monkeypatch.setitem(MODULES, "testbed.api.planted", planted)
    tree.cache_clear()
    imports.cache_clear()
    try:
        assert [w.split(" (")[0] for w in upward_imports("testbed.api.planted")] == [
            "line 7: testbed.emu", "line 7: testbed.emu.cluster",
            "line 8: testbed.net", "line 8: testbed.net.netns"]
        assert acting_calls("testbed.api.planted") == ["line 9: os.kill"]
        chain = acting_chain("testbed.api.planted")
        assert chain is not None and chain[0] == "testbed.api.planted"
        assert chain[-1].split(" ")[0] in {"subprocess", "socket", "pyroute2", "ctypes", "threading",
                                           "mininet"} or "mininet" in chain[-1]
    finally:
        tree.cache_clear()
        imports.cache_clear()
