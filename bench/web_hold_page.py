"""How long the hold page takes to cut one page out of a big changes.csv (a 300k-row mass withdrawal).

    .venv/bin/python bench/web_hold_page.py [ROWS]

The hold page reads the run's changes.csv (written by the report) with the csv module and keeps only the
requested page, so memory stays flat; the time grows with the file, page 1 or the last page alike.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from processor.report.csvfiles import changes_csv
from processor.web import queries


class _Ctx:
    def __init__(self, home: Path) -> None:
        self.home = home

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    print(f"python {platform.python_version()} pandas {pd.__version__} on {platform.machine()} "
          f"({platform.processor() or platform.system()})")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        folder = home / "reports" / "r1"
        folder.mkdir(parents=True)
        frame = pd.DataFrame({"entity": "people", "sourced_id": [f"stu-{i:07d}" for i in range(rows)],
                              "action": "deactivated", "label": [f"Student {i}" for i in range(rows)],
                              "fields": "status"})
        (folder / "changes.csv").write_bytes(changes_csv(frame))
        ctx = _Ctx(home)
        for page in (1, rows // 25):
            start = time.perf_counter()
            got, total = queries.changes_page(ctx, "r1", page, size=25)
            took = time.perf_counter() - start
            assert total == rows and len(got) == 25
            print(f"changes.csv of {rows:,} rows: page {page:,} in {took * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
