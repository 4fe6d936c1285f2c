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

pkgs=(mininet iproute2 iptables nftables conntrack iputils-ping curl procps util-linux
      dnsmasq nginx-light gcc libc6-dev python3 python3-venv python3-pip make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services (dnsmasq, nginx) are not wanted in the root namespace: the
  # testbed runs them inside pods. policy-rc.d stops Debian starting them during install.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$made_policy" = 1 ] && rm -f "$policy"
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
