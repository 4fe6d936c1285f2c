#!/usr/bin/env bash
# Installs Debian's chromium for the tests that render the HTML report and the cluster diagram
# headless (issue 13), idempotently: nothing happens when a Chromium is already on PATH. The
# tests run it as `unshare --net -- chromium --headless ...`, with no network at all, which
# shows that a report needs nothing from outside and keeps the browser off the machine's
# network. Where the distribution has no chromium package, those tests skip with the reason.
set -euo pipefail
# Any Chromium build on PATH will do (tests/chromium.py looks for these names in this order);
# GitHub's Ubuntu runners have one without a package.
for name in chromium chromium-browser google-chrome; do
  found=$(command -v "$name" 2>/dev/null) || continue
  [[ $found == /snap/* ]] || exit 0
done
if [ "$(id -u)" -ne 0 ]; then
  echo "test-browser.sh: chromium is missing and installing it needs root; the browser tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
versions() { apt-cache show chromium 2>/dev/null | sed -n 's/^Version: //p'; }
available=$(versions)
if [ -z "$available" ]; then
  apt-get update -qq
  available=$(versions)
fi
# Ubuntu's chromium package only installs the snap, which cannot run in the tests' namespaces.
if [ -z "$available" ] || [[ $available == *snap* ]]; then
  echo "test-browser.sh: the distribution has no chromium package (only a snap, or none); the browser tests will skip" >&2
  exit 0
fi
echo "test-browser.sh: installing chromium"
apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version >/dev/null
