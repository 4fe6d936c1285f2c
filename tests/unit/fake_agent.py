"""A stand-in agent for the zygote's tests: `main(argv)` reports how it was started.

    main(["report", FILE])  writes {pid, ppid, sid, argv, cwd, netns, sigint, sigterm, sigchld,
                            stdin} as JSON to FILE, prints a line (to its log) and returns 0
    main(["exit", N])       returns N
    main(["raise"])         raises RuntimeError
    main(["usage"])         exits through SystemExit("a message"), as argparse's errors do
    main(["wait", FILE])    writes FILE, then sleeps until signalled
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "report":
        print(f"fake agent {os.getpid()} reporting", flush=True)
        with open(argv[1], "w") as out:
            json.dump({"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "argv": argv,
                       "sys_argv": sys.argv, "cwd": os.getcwd(),
                       "netns": os.stat("/proc/self/ns/net").st_ino,
                       "sigint": str(signal.getsignal(signal.SIGINT)),
                       "sigterm": str(signal.getsignal(signal.SIGTERM)),
                       "sigchld": str(signal.getsignal(signal.SIGCHLD)),
                       "stdin": sys.stdin.read()}, out)
        return 0
    if what == "exit":
        return int(argv[1])
    if what == "raise":
        raise RuntimeError("the fake agent failed")
    if what == "usage":
        raise SystemExit("fake_agent: error: a bad option")
    if what == "wait":
        open(argv[1], "w").close()
        while True:
            time.sleep(1)
    return 3
