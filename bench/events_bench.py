"""What change events cost the apply: a first load and a 1%-changed nightly, with and without events.

    .venv/bin/python bench/events_bench.py --students 50000 [300000] [--store sqlite|postgresql]

Each variant runs the real pipeline in this process on a fresh store. "without" replaces
processor.events.record_changes (the one call the writer makes) by a no-op for that run; "with" also times
that call itself. Figures: the apply stage (seconds) both ways, the events write alone, and the ratio
events / apply. The machine is shared: the direct timing of the events write is the steadier figure.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def versions() -> str:
    import pandas
    import pyarrow
    import sqlalchemy

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n"
            f"python {platform.python_version()}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, "
            f"sqlalchemy {sqlalchemy.__version__}")


def generate(students: int, out: Path) -> tuple[Path, Path]:
    first, nightly = out / f"d{students}.zip", out / f"d{students}-nightly.zip"
    if not first.exists():
        schools = max(2, students // 2500)
        subprocess.run([sys.executable, "-m", "processor", "generate", "--out", str(first), "--schools",
                        str(schools), "--students", str(students), "--seed", "1", "--nightly", str(nightly),
                        "--changes", "1"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return first, nightly


def fresh_home(home: Path, store_url: str | None):
    from processor.apply.store import metadata, open_store
    from processor.context import Context
    from processor.home import init_home

    shutil.rmtree(home, ignore_errors=True)
    init_home(home, ["bench"])
    cfg = home / "rosterdrop.toml"
    text = cfg.read_text().replace("[tenants.bench.policy]\n", "[tenants.bench.policy]\nmax_deactivated_percent = 50\n")
    if store_url:
        text = text.replace('url = "sqlite:///rosterdrop.db"', f'url = "{store_url}"')
        engine = open_store(store_url, create=False)
        metadata.drop_all(engine)
        metadata.create_all(engine)
        engine.dispose()
    cfg.write_text(text)
    return Context.load(home)


def run_variant(home: Path, store_url: str | None, bundles: list[Path], with_events: bool) -> list[tuple]:
    from processor import events
    from processor.pipeline import process_path

    original = events.record_changes
    spent: list[float] = []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    events.record_changes = timed if with_events else (lambda *a, **k: 0)
    ctx = fresh_home(home, store_url)
    out = []
    try:
        for bundle in bundles:
            spent.clear()
            result = process_path(ctx, bundle, "bench")
            assert result.status == "applied", result.status
            with ctx.engine.connect() as conn:
                written = events.last_event_id(conn, "bench")
            out.append((result.timings.get("apply", 0.0), sum(spent), written))
    finally:
        events.record_changes = original
        ctx.engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+", default=[50000])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/rosterdrop_bench")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rosterdrop-events-bench"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(versions())
    print(f"store: {args.store}")
    url = args.pg_url if args.store == "postgresql" else None
    for n in args.students:
        first, nightly = generate(n, work)
        without = run_variant(work / f"home-{n}-without", url, [first, nightly], with_events=False)
        with_ = run_variant(work / f"home-{n}-with", url, [first, nightly], with_events=True)
        print(f"\n{n:,} students")
        last_written = 0
        for label, (apply_off, _, _), (apply_on, events_s, written) in zip(("first", "nightly"), without, with_,
                                                                           strict=True):
            count, last_written = written - last_written, written
            print(f"  {label:8s} apply without events {apply_off:7.2f} s, with {apply_on:7.2f} s "
                  f"(+{apply_on - apply_off:6.2f} s); events write alone {events_s:6.2f} s for {count:,} events "
                  f"= {events_s / apply_on:5.1%} of the apply")


if __name__ == "__main__":
    main()
