"""Issue 18's targets in one table: a first load and a 1%-changed nightly of a generated district through
`rosterdrop process`, each beside the floors measured in the same run, as ratios.

    .venv/bin/python bench/pipeline_bench.py --students 50000 [300000] [--store sqlite [postgresql]]
        [--repeat K] [--latency-uploads N] [--work DIR] [--nyc]
    .venv/bin/python bench/pipeline_bench.py --table [--nyc]   # the whole table: 300k, both stores, latency

--table is --students 300000 --store sqlite postgresql (unless given): one command, one table with every
target, both engines, the floors of the same run beside each figure, machine and versions above it.
--nyc (opt-in, long: ~10 min and ~5 GB) adds the 900,000-student district (NYC scale) on SQLite: its first
load and nightly must complete within 5 GB of peak RSS.

Per repeat, on a fresh home (PostgreSQL: a scratch database created and dropped by the bench):
  first load  `rosterdrop process` of the bundle; then the store's raw write floor for the rows it stored
              (bench/floors.py write: executemany on SQLite, COPY on PostgreSQL, same columns and key);
  nightly     `rosterdrop process` of the 1%-changed bundle on that home;
  next night  `rosterdrop process` of the first bundle's files in a new zip: another 1% change (back), which
              reads the snapshot delta the nightly wrote (the steady state of a tenant's nights);
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
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine_line

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BENCH = Path(__file__).resolve().parent
TENANT = "bench"
GB = 1024


def versions() -> str:
    sqlite = subprocess.run([PY, "-c", "import sqlite3; print(sqlite3.sqlite_version)"], capture_output=True,
                            text=True).stdout.strip()
    pool = subprocess.run([PY, "-c", "import processor.vector, pyarrow as pa; "
                           "print(pa.default_memory_pool().backend_name)"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()
    return machine_line(("pandas", "pyarrow", "sqlalchemy", "psycopg"),
                        f" (Arrow memory: {pool}), SQLite {sqlite}")


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


def setup_home(home: Path, store_url: str | None, students: int = 0) -> None:
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([PY, "-m", "processor", "--home", str(home), "init", "--tenant", TENANT], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    cfg = home / "rosterdrop.toml"
    text = cfg.read_text().replace("[tenants.bench.policy]\n", "[tenants.bench.policy]\nmax_deactivated_percent = 50\n")
    if store_url:
        text = text.replace('url = "sqlite:///rosterdrop.db"', f'url = "{store_url}"')
    if students > 600000:
        # A 900k district's CSVs are ~1.2 GB unzipped: over the default 1 GiB `[limits] max_total_bytes`, which
        # an operator raises for such a district (the default refuses it as bad_bundle).
        text = text.replace("# [limits]\n# max_total_bytes = 1073741824", "[limits]\nmax_total_bytes = 4294967296")
        assert "max_total_bytes = 4294967296" in text, "rosterdrop init no longer writes the [limits] example"
    cfg.write_text(text)
    if store_url:  # init made the SQLite store; commands never create tables (a fresh database needs them)
        subprocess.run([PY, "-m", "processor", "--home", str(home), "db", "upgrade"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)


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


def one_size(n: int, args, work: Path, store: str, repeat: int | None = None, floors: bool = True) -> dict:
    first, nightly = generate(n, work)
    home = work / f"home-{n}"
    url = None
    if store == "postgresql":
        url = args.pg_url
    reps = []
    for r in range(repeat or args.repeat):
        if url:
            db = url.rsplit("/", 1)[1]
            psql(f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}")
        setup_home(home, url, n)
        store_url = url or f"sqlite:///{home / 'rosterdrop.db'}"
        rep = {"first": process(home, first, work)}
        if floors:  # (the 900k case skips it: reading 10M rows back into the floor's process is the cost)
            rep["write_floor"] = floor("write", work, store_url, TENANT, str(work))
        rep["nightly"] = process(home, nightly, work)
        rep["next"] = process(home, next_night(first), work)
        rep["read_floor_first"] = floor("read", work, str(first))
        rep["read_floor_nightly"] = floor("read", work, str(nightly))
        reps.append(rep)
        f, nt = rep["first"], rep["nightly"]
        wf = f"write floor {rep['write_floor']['wall']:.2f} s; " if floors else ""
        print(f"  {store} repeat {r + 1}: first {f['status']} {f['wall']:.2f} s (cpu {f['cpu']:.2f}, "
              f"{f['maxrss_mb']:.0f} MB), {wf}nightly {nt['status']} "
              f"{nt['wall']:.2f} s (cpu {nt['cpu']:.2f}, {nt['maxrss_mb']:.0f} MB), next night "
              f"{rep['next']['status']} {rep['next']['wall']:.2f} s (cpu {rep['next']['cpu']:.2f}, "
              f"{rep['next']['maxrss_mb']:.0f} MB); read floor {rep['read_floor_nightly']['wall']:.2f} s", flush=True)
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


def table_rows(store: str, s: dict) -> list[str]:
    """The target rows of one size on one store."""
    reps, n, out = s["reps"], f"{s['students']:,}", []
    nw = [r["nightly"]["wall"] for r in reps]
    nc = [r["nightly"]["cpu"] for r in reps]
    rf = [r["read_floor_nightly"]["wall"] for r in reps]
    rfc = [r["read_floor_nightly"]["cpu"] for r in reps]
    out.append(f"| nightly 1%, {n} students | {store} | wall {mm(nw)} s, cpu {mm(nc)} s "
               f"| read {mm(rf)} s, cpu {mm(rfc)} s | wall {mm(ratios(nw, rf), '{:.1f}x')}, "
               f"cpu {mm(ratios(nc, rfc), '{:.1f}x')} | <= 1.5x |")
    ns = [sum(r["nightly"]["stages"].values()) for r in reps]
    out.append(f"| nightly 1%, {n} students, stages only (a daemon worker has its imports done) | {store} "
               f"| {mm(ns)} s | read {mm(rf)} s | {mm(ratios(ns, rf), '{:.1f}x')} | <= 1.5x |")
    if all("next" in r for r in reps):  # results saved by an older bench have no next night
        xw, xc = [r["next"]["wall"] for r in reps], [r["next"]["cpu"] for r in reps]
        xf, xfc = [r["read_floor_first"]["wall"] for r in reps], [r["read_floor_first"]["cpu"] for r in reps]
        xs = [sum(r["next"]["stages"].values()) for r in reps]
        out.append(f"| nightly 1%, {n} students, the next night (reads the snapshot delta) | {store} | wall "
                   f"{mm(xw)} s, cpu {mm(xc)} s (stages {mm(xs)} s) | read {mm(xf)} s, cpu {mm(xfc)} s | wall "
                   f"{mm(ratios(xw, xf), '{:.1f}x')}, cpu {mm(ratios(xc, xfc), '{:.1f}x')}; stages only "
                   f"{mm(ratios(xs, xf), '{:.1f}x')} | <= 1.5x |")
    fw = [r["first"]["wall"] for r in reps]
    fc = [r["first"]["cpu"] for r in reps]
    if all("write_floor" in r for r in reps):
        ff = [r["read_floor_first"]["wall"] + r["write_floor"]["wall"] for r in reps]
        wf = [r["write_floor"]["wall"] for r in reps]
        ffc = [r["read_floor_first"]["cpu"] + r["write_floor"]["cpu"] for r in reps]
        # On PostgreSQL the server does the writing: its CPU is in neither figure, so only walls compare.
        cpu_ratio = f", cpu {mm(ratios(fc, ffc), '{:.2f}x')}" if store == "sqlite" else ""
        fs = [sum(r["first"]["stages"].values()) for r in reps]
        out.append(f"| first load, {n} students ({s['rows']:,} rows) | {store} | wall {mm(fw)} s, cpu {mm(fc)} s "
                   f"(stages {mm(fs)} s) | read + write {mm(ff)} s, cpu {mm(ffc)} s (write {mm(wf)} s, "
                   f"{reps[0]['write_floor']['engine']}) | wall {mm(ratios(fw, ff), '{:.2f}x')}{cpu_ratio}; "
                   f"stages only {mm(ratios(fs, ff), '{:.2f}x')} | <= 1.2x |")
    else:
        out.append(f"| first load, {n} students ({s['rows']:,} rows) | {store} | wall {mm(fw)} s, cpu {mm(fc)} s "
                   f"| (no write floor at this size) | | completes |")
    big = s["students"] >= 900000
    target = "<= 5 GB" if big else "<= 2 GB" if s["students"] >= 300000 else "(<= 2 GB at 300k)"
    for case in ("first", "nightly", *(["next"] if all("next" in r for r in reps) else [])):
        rss = [r[case]["maxrss_mb"] / GB for r in reps]
        gb = [r[case]["maxrss_mb"] * 2**20 / 1e9 for r in reps]
        rrss = [r["read_floor_first"]["maxrss_mb"] / GB for r in reps]
        out.append(f"| peak RSS, {n} students, {case} ({reps[0][case]['status']}) | {store} | {mm(rss)} GiB "
                   f"= {mm(gb)} GB | read floor {mm(rrss)} GiB | {mm(ratios(rss, rrss), '{:.1f}x')} | {target} |")
    return out


def print_table(results: dict) -> None:
    stores, lat, repeat = results["stores"], results.get("latency"), results["repeat"]
    print(f"\n## issue 18 targets, {repeat} repeat(s) per store: min / median")
    print("| case | store | measured | floor, same run | ratio | target |")
    print("|---|---|---|---|---|---|")
    for store, sizes in stores.items():
        for s in sizes:
            print("\n".join(table_rows(store, s)))
    if results.get("nyc"):
        print("\n".join(table_rows("sqlite", results["nyc"])))
    if lat:
        print(f"| small district, upload closed -> applied ({len(lat['nightlies'])} no-change nightlies) | sqlite "
              f"| median {lat['median']:.3f} s, p95 {lat['p95']:.3f} s (first load {lat['first']:.3f} s) | | "
              f"| <= 1 s median, <= 2 s p95 |")
    for store, sizes in stores.items():
        for s in sizes + ([results["nyc"]] if results.get("nyc") and store == "sqlite" else []):
            print_stages(store, s)


def next_night(first: Path) -> Path:
    """The first bundle's files in a new zip (other bytes, so not a duplicate): after the nightly it is the
    next night's 1% change, back to the first roster. That night reads the snapshot delta the nightly wrote
    and writes a bigger one: the steady state of a tenant's nights."""
    again = first.with_name(first.stem + "-next.zip")
    if not again.exists():
        import zipfile

        with zipfile.ZipFile(first) as src, zipfile.ZipFile(again, "w", zipfile.ZIP_DEFLATED) as out:
            for info in src.infolist():
                out.writestr(info, src.read(info))
            out.comment = b"next night"
    return again


def print_stages(store: str, s: dict) -> None:
    reps = s["reps"]
    print(f"\nstages, {s['students']:,} students, {store} (s, min / median; ratio to the same run's read floor, "
          "median):")
    cases = [("first", "read_floor_first"), ("nightly", "read_floor_nightly")]
    if all("next" in r for r in reps):
        cases.append(("next", "read_floor_first"))
    for case, floor_key in cases:
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
    if "write_floor" in reps[0]:
        wt = reps[0]["write_floor"]["tables"]
        print("  write floor per table (s, first repeat): " + ", ".join(f"{t} {v['rows']:,} rows {v['wall']:.2f}"
                                                                      for t, v in wt.items()))


def saved_results(saved: dict) -> dict:
    """A results file of this version, or of the one before (one store per file)."""
    if "stores" in saved:
        return saved
    return {"stores": {saved["store"]: saved["sizes"]}, "latency": saved["latency"], "repeat": saved["repeat"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], nargs="+")
    ap.add_argument("--table", action="store_true",
                    help="the whole table: --students 300000 --store sqlite postgresql unless given")
    ap.add_argument("--nyc", action="store_true",
                    help="also the 900,000-student district on SQLite, one repeat (long: ~10 min, ~5 GB)")
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
        print_table(saved_results(saved))
        return
    students = args.students or ([300000] if args.table else [50000])
    stores = args.store or (["sqlite", "postgresql"] if args.table else ["sqlite"])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = versions()
    if "postgresql" in stores:
        machine += ", " + subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc",
                                          "SELECT version()"], capture_output=True, text=True
                                         ).stdout.strip().split(" on ")[0]
    command = f"command: {' '.join(sys.argv)}"
    print(machine + "\n" + command, flush=True)
    results: dict = {"stores": {}, "repeat": args.repeat, "latency": None, "nyc": None}
    saved = work / f"results-{'-'.join(stores)}-{'-'.join(map(str, students))}{'-nyc' if args.nyc else ''}.json"

    def save() -> None:  # after every case: a long run that fails late keeps what it measured
        saved.write_text(json.dumps({"versions": machine, "command": command, **results}))

    if args.nyc:  # first: the longest case, and the one a loaded machine must not push past the session
        print("\n900,000 students, sqlite (one repeat, no write floor):", flush=True)
        results["nyc"] = one_size(900000, args, work, "sqlite", repeat=1, floors=False)
        save()
    for store in stores:
        for n in students:
            print(f"\n{n:,} students, {store}:", flush=True)
            results["stores"].setdefault(store, []).append(one_size(n, args, work, store))
            save()
    results["latency"] = latency(args.latency_uploads, work)
    save()
    print_table(results)
    print(f"\n(figures saved in {saved}: --table-from prints this table again)")


if __name__ == "__main__":
    main()
