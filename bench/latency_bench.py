"""Daemon latency and SFTP throughput, against a real `rosterdrop serve` on a fresh home.

    .venv/bin/python bench/latency_bench.py [--uploads 20] [--size-mb 100] [--keep DIR]

Latency: a small district (sample_drops/clean, zipped; each upload made unique by a zip comment so it is
not a duplicate) is uploaded with paramiko N times, one after the other. Measured from the moment the
client closes the file to the run's `finished_at` (status applied) in the store. The first upload is a
first load (every row created); the others are nightlies with no change, the common case.

Throughput: a file of --size-mb random bytes uploaded with paramiko (`put`) and with OpenSSH `sftp`
(key auth). The time includes the server's work on close (fsync, sha256, move into the spool, run insert),
which the client waits for. The file is not a bundle, so its run is rejected; that is not timed.

Prints figures only; nothing is asserted. Target: latency under 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

from machine import machine_line

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TENANT = "bench"
PASSWORD = "bench-password-1"


def versions() -> str:
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip() or "no OpenSSH client"
    return machine_line(("paramiko", "apscheduler", "watchdog", "sqlalchemy", "pandas", "pyarrow"), f", {ssh}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_zip(comment: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((ROOT / "sample_drops" / "clean").iterdir()):
            zf.write(f, f.name)
        zf.comment = comment.encode()
    return buf.getvalue()


def setup_home(home: Path, key: Path) -> None:
    from processor.context import Context
    from processor.home import init_home
    from processor.intake.auth import add_key, set_password

    init_home(home, [TENANT])
    cfg = home / "rosterdrop.toml"  # the report email is part of a run: give it a recipient
    cfg.write_text(cfg.read_text().replace("report_to = []", 'report_to = ["it@bench.example"]'))
    ctx = Context.load(home)
    set_password(ctx.engine, TENANT, PASSWORD)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_key(ctx.engine, TENANT, key.with_suffix(".pub"))
    ctx.engine.dispose()


def start_daemon(home: Path, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([PY, "-m", "processor", "serve", "--home", str(home)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"),
                            env={**os.environ, "ROSTERDROP_SFTP__PORT": str(port)}, start_new_session=True)
    deadline = time.monotonic() + 30
    while "serving" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the daemon did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.05)
    time.sleep(2)  # let the worker processes finish importing: the first upload should not pay for it
    return proc


def finished(engine, name: str, timeout: float = 60) -> tuple[str, float]:
    from sqlalchemy import select

    from processor.apply.store import runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(select(runs.c.status, runs.c.finished_at).where(runs.c.original_name == name)).first()
        if row is not None and row.finished_at:
            return row.status, datetime.fromisoformat(row.finished_at).timestamp()
        time.sleep(0.01)
    raise SystemExit(f"{name}: no finished run after {timeout} s")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * p / 100) - 1)]


def latency(port: int, engine, uploads: int) -> dict:
    import paramiko

    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=TENANT, password=PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(t)
    lat, close = [], []
    statuses = set()
    try:
        for i in range(uploads):
            name = f"nightly-{i:03d}.zip"
            data = clean_zip(f"bench upload {i}")
            f = sftp.open(name, "wb")
            f.write(data)
            f.flush()
            t0 = time.time()
            f.close()  # returns once the server has spooled and recorded the drop
            close.append(time.time() - t0)
            status, done = finished(engine, name)
            statuses.add(status)
            lat.append(done - t0)
    finally:
        t.close()
    rest = lat[1:] or lat
    print(f"\nlatency, upload close -> run applied, small district ({len(clean_zip('x')) // 1024} KiB zip: "
          f"59 users, 89 enrollments), {uploads} sequential uploads, statuses {sorted(statuses)}:")
    print(f"  first load (all rows created): {lat[0]:.3f} s")
    print(f"  nightlies (no change):         median {pct(rest, 50):.3f} s, p95 {pct(rest, 95):.3f} s, "
          f"max {max(rest):.3f} s")
    print(f"  all {uploads} uploads:              median {pct(lat, 50):.3f} s, p95 {pct(lat, 95):.3f} s")
    print(f"  of which the client's close (spool + record on the server): median {pct(close, 50) * 1000:.0f} ms")
    return {"first": lat[0], "nightlies": rest, "median": pct(rest, 50), "p95": pct(rest, 95),
            "statuses": sorted(statuses)}


def throughput(port: int, key: Path, size_mb: int, tmp: Path) -> None:
    import paramiko

    big = tmp / "big.bin"
    with big.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    size = big.stat().st_size
    print(f"\nSFTP upload of {size_mb} MiB (random bytes, over loopback; includes the server's close work):")
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=TENANT, password=PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(t)
    try:
        start = time.perf_counter()
        sftp.put(str(big), "big-paramiko.bin", confirm=False)
        took = time.perf_counter() - start
    finally:
        t.close()
    print(f"  paramiko {paramiko.__version__} put:  {took:.2f} s, {size / took / 2**20:.1f} MiB/s")
    opts = ["-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]
    start = time.perf_counter()
    r = subprocess.run(["sftp", "-b", "-", "-P", str(port), *opts, f"{TENANT}@127.0.0.1"],
                       input=f"put {big} big-openssh.bin\n", capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if r.returncode:
        print(f"  OpenSSH sftp failed: {r.stderr.strip()}")
    else:
        print(f"  OpenSSH sftp put:        {took:.2f} s, {size / took / 2**20:.1f} MiB/s "
              "(includes connecting and key auth)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="keep the home here instead of a temporary folder")
    ap.add_argument("--json-out", type=Path, help="also write the latency figures here as JSON (pipeline_bench)")
    args = ap.parse_args()
    print(versions())
    tmp = Path(tempfile.mkdtemp(prefix="rosterdrop-latency-"))
    home = args.keep or tmp / "home"
    key = tmp / "id_ed25519"
    setup_home(home, key)
    port = free_port()
    proc = start_daemon(home, port, tmp / "daemon.log")
    try:
        from processor.apply.store import open_store

        engine = open_store("sqlite:///" + str(home / "rosterdrop.db"))
        workers = os.cpu_count()
        print(f"daemon: `rosterdrop serve`, SQLite store, {workers} workers, report emails as .eml files")
        figures = latency(port, engine, args.uploads)
        if args.json_out:
            args.json_out.write_text(json.dumps(figures))
        if args.size_mb:
            throughput(port, key, args.size_mb, tmp)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
