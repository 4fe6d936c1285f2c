#!/usr/bin/env bash
# Installs everything the testbed needs, idempotently: distribution packages, then a virtual
# environment on the distribution's python3 (which sees Mininet's module) holding the pinned
# Python dependencies and the project itself. Safe to run again; quick when nothing is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo make demo / sudo make test)" >&2
  exit 2
fi

# What the testbed runs, as "command-or-file:package". A package is installed only when its
# command is missing, so an existing equivalent (nginx-light for nginx, say) is left alone.
# containernetworking-plugins are the real CNI plugins (podNetwork: {plugin: cni}); bird2 is
# the BGP daemon of routing: bgp, started only inside the testbed's nodes and gateway.
# dnsmasq-base and nginx bring the programs without starting services in the root namespace
# (policy-rc.d below keeps Debian from starting nginx's): the testbed runs them inside pods.
needs=(
  mnexec:mininet ip:iproute2 iptables:iptables nft:nftables conntrack:conntrack ipset:ipset
  ping:iputils-ping curl:curl nsenter:util-linux sysctl:procps dig:bind9-dnsutils
  dnsmasq:dnsmasq-base nginx:nginx cc:gcc /usr/include/stdio.h:libc6-dev
  python3:python3 /usr/lib/python3/dist-packages/mininet/net.py:mininet dot:graphviz
  /usr/lib/cni/bridge:containernetworking-plugins bird:bird2 tcpdump:tcpdump
)
missing=()
for need in "${needs[@]}"; do
  what=${need%%:*} pkg=${need#*:}
  if [[ $what == /* ]]; then [ -e "$what" ] && continue
  else command -v "$what" >/dev/null 2>&1 && continue
  fi
  missing+=("$pkg")
done
# The testbed needs Python 3.11 (Debian 12, Ubuntu 24.04); Ubuntu 22.04's 3.10 is too old.
if command -v python3 >/dev/null 2>&1 && ! /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install.sh: the distribution's python3 is $(/usr/bin/python3 -V 2>&1 | cut -d' ' -f2); the testbed needs 3.11 or later (Debian 12, Ubuntu 24.04)" >&2
  exit 2
fi
# venv with pip must work for the distribution's python3 (python3-venv on Debian and Ubuntu).
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT  # removed even when apt-get fails
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bird2's package enables bird.service, which would start a BGP daemon in the machine's own
# namespace at the next boot; the testbed runs bird only inside its nodes and gateway.
# (--root=/ works whether or not systemd runs, as in containers.)
if [ -e /etc/systemd/system/multi-user.target.wants/bird.service ] && command -v systemctl >/dev/null; then
  systemctl --root=/ disable bird.service >/dev/null 2>&1 || true
fi

# br_netfilter makes bridged pod traffic pass through iptables (Services, hairpin).
modprobe br_netfilter 2>/dev/null || true

stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ] || [ "$here/requirements.txt" -nt "$stamp" ] || [ "$here/setup.cfg" -nt "$stamp" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  # --upgrade: the distribution's older python3-pyroute2, if present, would otherwise satisfy pip.
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade -r "$here/requirements.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$here"
  touch "$stamp"
fi

# `sudo python3 my_experiment.py` with the distribution's python3 finds the testbed (its
# examples run that way, as Mininet's do): one .pth line naming this checkout in that
# interpreter's site directory. testbed/__init__.py then puts .venv's pinned packages first.
site=$(/usr/bin/python3 -c 'import site; print(site.getsitepackages()[0])')
pth="$site/k8s-net-testbed.pth"
if [ "$(cat "$pth" 2>/dev/null)" != "$here" ]; then
  mkdir -p "$site"
  printf '%s\n' "$here" > "$pth"
fi
