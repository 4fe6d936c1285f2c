#!/usr/bin/env bash
# The README's first command: install what is missing, then run the default tour scenario.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
exec "$here/.venv/bin/python" -m testbed run "$@"
