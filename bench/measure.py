"""Run one command as the only child of this small process and write that child's own figures as JSON.

    python bench/measure.py OUT.json -- COMMAND [ARGS...]

Why a wrapper: on Linux a child's ru_maxrss starts from its parent's resident size at fork (the copied
address space counts until exec), so a bench parent that has itself loaded data would inflate every child's
peak. This process imports nothing heavy, so the peak it reports (RUSAGE_CHILDREN) is the command's own.
CPU seconds are the child's user + sys (all its threads); wall is from just before the spawn to its exit.
The command's stdout and stderr pass through.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    out, cmd = sys.argv[1], sys.argv[3:]
    start = time.perf_counter()
    code = subprocess.call(cmd)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"rc": code, "wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime,
                   "cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
