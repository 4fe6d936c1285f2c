#!/usr/bin/env bash
# The README's second command: install what is missing, then lint and run the whole test suite
# (unit tests, and as root the integration tests that build real clusters).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
bash "$here/scripts/test-clients.sh"
bash "$here/scripts/test-browser.sh"
cd "$here"
.venv/bin/python -m ruff check testbed tests bench examples
set +e
.venv/bin/python -m pytest -q tests "$@"
status=$?
set -e
# pytest's 5 means no test ran at all: that must fail CI, not pass it.
[ "$status" -eq 5 ] && echo "test.sh: pytest collected no tests" >&2
exit "$status"
