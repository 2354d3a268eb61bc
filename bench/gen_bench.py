"""How fast `rosterdrop generate` writes a district (and its nightly), and how much memory it takes.

    .venv/bin/python bench/gen_bench.py [STUDENTS...]      # default 50000 300000

Each size runs in a fresh process (so peak RSS is that size's own), with 120 schools for 300k students and
proportionally fewer below, and a 1% nightly. Prints wall and CPU seconds, peak RSS, zip sizes and rows per
file, with machine, Python and library versions. Outputs go to a temporary folder and are deleted.
Target: 300,000 students (~3.2M rows per bundle) well under a minute on 2 cores, under ~2-3 GB RSS.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from processor.generate import generate_bundles
out, students, schools = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
summary = generate_bundles(out / "base.zip", schools=schools, students=students, seed=1,
                           nightly=out / "nightly.zip", changes=1.0)
usage = resource.getrusage(resource.RUSAGE_SELF)
summary.update(wall=time.perf_counter() - t, cpu=usage.ru_utime + usage.ru_stime, peak_rss_kb=usage.ru_maxrss)
print(json.dumps(summary))
"""


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv[1:]] or [50_000, 300_000]
    print(f"machine: {_machine()}; load average {os.getloadavg()[0]:.2f}")
    print(f"python {platform.python_version()}; " + ", ".join(
        f"{p} {version(p)}" for p in ("numpy", "pyarrow")))
    for students in sizes:
        schools = max(3, round(120 * students / 300_000))
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-c", CHILD, folder, str(students), str(schools)],
                                  check=True, capture_output=True, text=True)
        s = json.loads(done.stdout)
        rows = sum(s["rows"].values())
        print(f"\n{students:,} students, {schools} schools, with a 1% nightly:")
        print(f"  wall {s['wall']:.1f} s, CPU {s['cpu']:.1f} s (both bundles), "
              f"peak RSS {s['peak_rss_kb'] / 1024:.0f} MB")
        print(f"  base zip {s['zip_bytes'] / 1e6:.1f} MB, nightly zip {s['nightly_zip_bytes'] / 1e6:.1f} MB, "
              f"{rows:,} rows per bundle")
        print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in s["rows"].items()))
        print("  nightly changes: " + ", ".join(f"{k} {v:,}" for k, v in s["changes"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
