"""Issue 18's targets in one table: a first load and a 1%-changed nightly of a generated district through
`rosterdrop process`, each beside the floors measured in the same run, as ratios.

    .venv/bin/python bench/pipeline_bench.py --students 50000 [300000] [--store sqlite|postgresql]
        [--repeat K] [--latency-uploads N] [--work DIR]

Per repeat, on a fresh home (PostgreSQL: a scratch database created and dropped by the bench):
  first load  `rosterdrop process` of the bundle; then the store's raw write floor for the rows it stored
              (bench/floors.py write: executemany on SQLite, COPY on PostgreSQL, same columns and key);
  nightly     `rosterdrop process` of the 1%-changed bundle on that home;
  read floor  unzip + pyarrow.csv.read_csv of every member of each bundle (bench/floors.py read).
Every one of those runs in its own process started by bench/measure.py (a small wrapper: peak RSS, user+sys
CPU seconds and wall are that child's alone, never inherited from this parent, which loads no data).
Then the small-district latency (upload closed -> applied) through a real daemon (bench/latency_bench.py).

Prints min and median over the K repeats of every figure and ratio. The machine this runs on is shared and
noisy: compare the ratios and the CPU seconds, not absolute seconds across runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BENCH = Path(__file__).resolve().parent
TENANT = "bench"
GB = 1024


def versions() -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ""
    try:
        load = ", load average " + open("/proc/loadavg").read().split()[0]
    except OSError:
        pass
    sqlite = subprocess.run([PY, "-c", "import sqlite3; print(sqlite3.sqlite_version)"], capture_output=True,
                            text=True).stdout.strip()
    libs = ", ".join(f"{n} {version(n)}" for n in ("pandas", "pyarrow", "sqlalchemy", "psycopg"))
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}{load}\n"
            f"python {platform.python_version()}, {libs}, SQLite {sqlite}")


def measured(cmd: list[str], work: Path, capture: bool = True) -> tuple[dict, str]:
    """cmd in its own process under measure.py: (its rusage figures, its stdout)."""
    figures = work / "measure.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # (a deployed daemon has its bytecode cached: compiling the package at every start is not its time)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        subprocess.run([PY, str(BENCH / "measure.py"), str(figures), "--", *cmd], cwd=ROOT, env=env,
                       stdout=out if capture else subprocess.DEVNULL, stderr=err, check=True)
        fig = json.loads(figures.read_text())
        out.seek(0)
        err.seek(0)
        if fig["rc"] not in (0, 3):
            raise SystemExit(f"{' '.join(cmd[:4])}... failed ({fig['rc']}): {err.read()[-2000:]}")
        return fig, out.read() if capture else ""


def generate(students: int, out: Path) -> tuple[Path, Path]:
    first, nightly = out / f"d{students}.zip", out / f"d{students}-nightly.zip"
    if not first.exists() or not nightly.exists():
        schools = max(2, students // 2500)
        subprocess.run([PY, "-m", "processor", "generate", "--out", str(first), "--schools", str(schools),
                        "--students", str(students), "--seed", "1", "--nightly", str(nightly), "--changes", "1"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return first, nightly


def psql(*sql: str) -> None:
    cmd = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q"]
    for s in sql:
        cmd += ["-c", s]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def setup_home(home: Path, store_url: str | None) -> None:
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([PY, "-m", "processor", "--home", str(home), "init", "--tenant", TENANT], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    cfg = home / "rosterdrop.toml"
    text = cfg.read_text().replace("[tenants.bench.policy]\n", "[tenants.bench.policy]\nmax_deactivated_percent = 50\n")
    if store_url:
        text = text.replace('url = "sqlite:///rosterdrop.db"', f'url = "{store_url}"')
    cfg.write_text(text)


def process(home: Path, bundle: Path, work: Path) -> dict:
    fig, out = measured([PY, "-m", "processor", "--home", str(home), "process", str(bundle), "--tenant", TENANT,
                         "--json"], work)
    result = json.loads(out)
    fig["status"] = result["status"]
    fig["stages"] = result.get("timings", {})
    fig["counts"] = result.get("counts", {})
    return fig


def floor(kind: str, work: Path, *args: str) -> dict:
    fig, out = measured([PY, str(BENCH / "floors.py"), kind, *args], work)
    inner = json.loads(out)
    # The floor is the timed part (no interpreter start, no imports): the strictest comparison.
    return {**inner, "process_wall": fig["wall"], "maxrss_mb": fig["maxrss_mb"]}


def ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def mm(values: list[float], fmt: str = "{:.2f}") -> str:
    """min / median"""
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


def one_size(n: int, args, work: Path) -> dict:
    first, nightly = generate(n, work)
    home = work / f"home-{n}"
    url = None
    if args.store == "postgresql":
        url = args.pg_url
    reps = []
    for r in range(args.repeat):
        if url:
            db = url.rsplit("/", 1)[1]
            psql(f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}")
        setup_home(home, url)
        store = url or f"sqlite:///{home / 'rosterdrop.db'}"
        rep = {"first": process(home, first, work)}
        rep["write_floor"] = floor("write", work, store, TENANT, str(work))
        rep["nightly"] = process(home, nightly, work)
        rep["read_floor_first"] = floor("read", work, str(first))
        rep["read_floor_nightly"] = floor("read", work, str(nightly))
        reps.append(rep)
        f, nt = rep["first"], rep["nightly"]
        print(f"  repeat {r + 1}: first {f['status']} {f['wall']:.2f} s (cpu {f['cpu']:.2f}, "
              f"{f['maxrss_mb']:.0f} MB), write floor {rep['write_floor']['wall']:.2f} s; nightly {nt['status']} "
              f"{nt['wall']:.2f} s (cpu {nt['cpu']:.2f}, {nt['maxrss_mb']:.0f} MB); read floor "
              f"{rep['read_floor_nightly']['wall']:.2f} s", flush=True)
    if url:
        psql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")
    return {"students": n, "rows": reps[0]["read_floor_first"]["rows"],
            "zip_mb": first.stat().st_size / 1e6, "reps": reps}


def latency(uploads: int, work: Path) -> dict | None:
    if not uploads:
        return None
    out = work / "latency.json"
    subprocess.run([PY, str(BENCH / "latency_bench.py"), "--uploads", str(uploads), "--size-mb", "0",
                    "--json-out", str(out)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def print_table(store: str, sizes: list[dict], lat: dict | None, repeat: int) -> None:
    print(f"\n## issue 18 targets, store {store}, {repeat} repeat(s): min / median")
    print("| case | measured | floor, same run | ratio | target |")
    print("|---|---|---|---|---|")
    for s in sizes:
        reps, n = s["reps"], f"{s['students']:,}"
        nw = [r["nightly"]["wall"] for r in reps]
        nc = [r["nightly"]["cpu"] for r in reps]
        rf = [r["read_floor_nightly"]["wall"] for r in reps]
        rfc = [r["read_floor_nightly"]["cpu"] for r in reps]
        print(f"| nightly 1%, {n} students | wall {mm(nw)} s, cpu {mm(nc)} s | read {mm(rf)} s, cpu {mm(rfc)} s "
              f"| wall {mm(ratios(nw, rf), '{:.1f}x')}, "
              f"cpu {mm(ratios(nc, rfc), '{:.1f}x')} | <= 1.5x |")
        ns = [sum(r["nightly"]["stages"].values()) for r in reps]
        print(f"| nightly 1%, {n} students, stages only (a daemon worker has its imports done) | {mm(ns)} s "
              f"| read {mm(rf)} s | {mm(ratios(ns, rf), '{:.1f}x')} | <= 1.5x |")
        fw = [r["first"]["wall"] for r in reps]
        fc = [r["first"]["cpu"] for r in reps]
        ff = [r["read_floor_first"]["wall"] + r["write_floor"]["wall"] for r in reps]
        wf = [r["write_floor"]["wall"] for r in reps]
        ffc = [r["read_floor_first"]["cpu"] + r["write_floor"]["cpu"] for r in reps]
        # On PostgreSQL the server does the writing: its CPU is in neither figure, so only walls compare.
        cpu_ratio = f", cpu {mm(ratios(fc, ffc), '{:.2f}x')}" if store == "sqlite" else ""
        print(f"| first load, {n} students ({s['rows']:,} rows) | wall {mm(fw)} s, cpu {mm(fc)} s "
              f"| read + write {mm(ff)} s, cpu {mm(ffc)} s (write {mm(wf)} s, {reps[0]['write_floor']['engine']}) "
              f"| wall {mm(ratios(fw, ff), '{:.2f}x')}{cpu_ratio} | <= 1.2x |")
        rss = [max(r["first"]["maxrss_mb"], r["nightly"]["maxrss_mb"]) / GB for r in reps]
        rrss = [r["read_floor_first"]["maxrss_mb"] / GB for r in reps]
        target = "<= 2 GB at 300k" if s["students"] >= 300000 else "(<= 2 GB at 300k)"
        print(f"| peak RSS, {n} students (first, nightly) | {mm(rss, '{:.2f}')} GiB | read floor {mm(rrss)} GiB "
              f"| {mm(ratios(rss, rrss), '{:.1f}x')} | {target} |")
    if lat:
        print(f"| small district, upload closed -> applied ({len(lat['nightlies'])} no-change nightlies) "
              f"| median {lat['median']:.3f} s, p95 {lat['p95']:.3f} s (first load {lat['first']:.3f} s) | | "
              f"| <= 1 s median, <= 2 s p95 |")
    for s in sizes:
        reps = s["reps"]
        print(f"\nstages, {s['students']:,} students (s, min / median; ratio to the same run's read floor, median):")
        for case, floor_key in (("first", "read_floor_first"), ("nightly", "read_floor_nightly")):
            stages = list(reps[0][case]["stages"])
            rf = [r[floor_key]["wall"] for r in reps]
            parts = []
            for st in stages:
                v = [r[case]["stages"].get(st, 0.0) for r in reps]
                ratio = statistics.median(ratios(v, rf))
                parts.append(f"{st} {mm(v)} ({ratio:.2f}x)")
            rest = [r[case]["wall"] - sum(r[case]["stages"].values()) for r in reps]
            parts.append(f"outside stages (start-up, imports, commit) {mm(rest)}")
            print(f"  {case:8s} " + "; ".join(parts))
        changes = {e: f"+{v['created']} ~{v['updated']} -{v['deactivated']}"
                   for e, v in reps[0]["nightly"]["counts"].items() if isinstance(v, dict) and "created" in v}
        print(f"  nightly changes: {changes}")
        wt = reps[0]["write_floor"]["tables"]
        print("  write floor per table (s, first repeat): " + ", ".join(f"{t} {v['rows']:,} rows {v['wall']:.2f}"
                                                                      for t, v in wt.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+", default=[50000])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/rosterdrop_bench",
                    help="a scratch database: the bench drops and creates it")
    ap.add_argument("--repeat", type=int, default=3, metavar="K")
    ap.add_argument("--latency-uploads", type=int, default=11, metavar="N",
                    help="uploads for the latency case (0: skip it)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rosterdrop-bench"))
    ap.add_argument("--table-from", metavar="FILE", help="print the table of a saved run (results-*.json) again")
    args = ap.parse_args()
    if args.table_from:
        saved = json.loads(Path(args.table_from).read_text())
        print(saved["versions"] + "\n" + saved["command"])
        print_table(saved["store"], saved["sizes"], saved["latency"], saved["repeat"])
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = versions()
    command = f"store: {args.store}; command: {' '.join(sys.argv)}"
    print(machine + "\n" + command, flush=True)
    sizes = []
    for n in args.students:
        print(f"\n{n:,} students:", flush=True)
        sizes.append(one_size(n, args, work))
    lat = latency(args.latency_uploads, work)
    saved = work / f"results-{args.store}-{'-'.join(map(str, args.students))}.json"
    saved.write_text(json.dumps({"versions": machine, "command": command, "store": args.store, "sizes": sizes,
                                 "latency": lat, "repeat": args.repeat}))
    print_table(args.store, sizes, lat, args.repeat)
    print(f"\n(figures saved in {saved}: --table-from prints this table again)")


if __name__ == "__main__":
    main()
