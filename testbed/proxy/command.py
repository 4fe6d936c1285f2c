"""The `testbed proxy render` subcommand: print what kube-proxy would write for a case file.

Reads a file in the fidelity `caseN_input.yaml` format (`harness:` + `objects:`), renders one
first, full sync (with any `existingNATChains` present, as after a failed partial restore) and
prints the iptables-restore input or the `nft -f` input; `--normalized` prints upstream's sorted
form instead, the one the golden files are in. Pure apart from reading the file and printing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from testbed.proxy import iptables, nftables
from testbed.proxy.casefile import read_case


def register(subparsers: argparse._SubParsersAction) -> None:
    proxy = subparsers.add_parser("proxy", help="kube-proxy rules without a cluster")
    sub = proxy.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND")
    sub.required = True
    render = sub.add_parser(
        "render", help="print the rules kube-proxy would write for a case file",
        description="Print the iptables-restore (or nft -f) input of a first full sync for the "
                    "Services and EndpointSlices in FILE, under the settings in its harness.")
    render.add_argument("--mode", choices=("iptables", "nftables"), default="iptables",
                        help="proxier mode (default: iptables)")
    render.add_argument("--normalized", action="store_true",
                        help="print upstream's normalized (sorted) form, as the golden files")
    render.add_argument("file", metavar="FILE.yaml", help="a case file: harness: + objects:")
    render.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    settings, state = read_case(args.file)  # SpecError -> file:line: field: reason, exit 2
    settings = replace(settings, full_sync=True)
    if args.mode == "nftables":
        text = nftables.render(state.services, state.endpoints, settings)
        if args.normalized:
            text = nftables.normalize(text)
    else:
        text = iptables.render(state.services, state.endpoints, settings)
        if args.normalized:
            text = iptables.normalize(text)
    sys.stdout.write(text)
    return 0
