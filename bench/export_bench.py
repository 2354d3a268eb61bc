"""`roster export` of a big tenant in each form: wall, CPU, peak RSS (each its own process) and bytes out.

    .venv/bin/python bench/export_bench.py HOME [--tenant bench]

HOME is a home with a loaded tenant, e.g. the one pipeline_bench.py leaves in $TMPDIR/rosterdrop-bench/home-N.
Output goes to a temporary file (its size is printed), not a pipe, so the consumer's speed is not measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("home")
    ap.add_argument("--tenant", default="bench")
    args = ap.parse_args()
    forms = {"--json (whole document)": ["--json"], "--format jsonl": ["--format", "jsonl"],
             "--format csv --entity enrollments": ["--format", "csv", "--entity", "enrollments"]}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in forms.items():
            out, figures = Path(tmp) / "out", Path(tmp) / "figures.json"
            with out.open("wb") as f:
                subprocess.run([sys.executable, str(BENCH / "measure.py"), str(figures), "--", sys.executable, "-m",
                                "processor", "--home", args.home, "roster", "export", "--tenant", args.tenant,
                                *extra], stdout=f, check=True, cwd=ROOT)
            fig = json.loads(figures.read_text())
            print(f"{label:36s} rc {fig['rc']}  wall {fig['wall']:6.2f} s  cpu {fig['cpu']:6.2f} s  "
                  f"peak RSS {fig['maxrss_mb']:6.0f} MB  {out.stat().st_size / 1e6:7.1f} MB out")


if __name__ == "__main__":
    main()
