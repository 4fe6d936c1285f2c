"""`python3 -m testbed` is the `testbed` command."""

from testbed.cli import main

raise SystemExit(main())
