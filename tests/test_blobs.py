"""Drop bytes in the store (CONTRACT.md section 11): a door stores a drop's bytes in the transaction that
records its run; a worker on any host fetches them, checked against the run's sha256, into a local file."""

from __future__ import annotations

import gc
import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import create_engine, func, insert, select, update

from processor.apply.store import runs
from processor.intake.blobs import (
    CHUNK,
    DropBytesError,
    delete_drop_bytes,
    drop_blob_chunks,
    drop_blobs,
    expire_drop_bytes,
    fetch_drop_bytes,
    has_drop_bytes,
    put_drop_bytes,
)
from processor.intake.spool import open_drop, sha256_of
from tests.bundles import CLEAN, make_bundle


def door_sha256(path) -> str:
    """The digest a door records (links never followed)."""
    opened = open_drop(path, nofollow=True)
    opened.close()
    return opened.sha256


def record(conn, run_id: str, path, tenant: str = "lincoln", status: str = "received") -> None:
    conn.execute(insert(runs).values(run_id=run_id, tenant=tenant, status=status, source="sftp",
                                     received_at="2026-12-02T06:00:00+00:00", sha256=door_sha256(path)))


def store(engine, run_id: str, path, **kw) -> None:
    with engine.begin() as conn:
        record(conn, run_id, path, **kw)
        put_drop_bytes(conn, kw.get("tenant", "lincoln"), run_id, path)


def chunk_count(engine, run_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(drop_blob_chunks)
                            .where(drop_blob_chunks.c.run_id == run_id)).scalar_one()


def test_a_zip_drop_comes_back_byte_for_byte_on_another_host(env, tmp_path):
    bundle = make_bundle(tmp_path / "door", CLEAN, as_zip=True, name="nightly")
    store(env.ctx.engine, "r1", bundle)

    dest = tmp_path / "worker" / "spool" / "nightly.zip"
    assert fetch_drop_bytes(env.ctx.engine, "r1", dest) == dest
    assert dest.read_bytes() == bundle.read_bytes()
    assert os.listdir(dest.parent) == ["nightly.zip"], "no temporary file is left behind"


def test_a_big_drop_is_kept_in_1_mib_chunks_and_read_back_in_order(env, tmp_path):
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(CHUNK) + b"middle" + os.urandom(CHUNK) + b"end")
    store(env.ctx.engine, "r1", big)
    assert chunk_count(env.ctx.engine, "r1") == 3

    dest = fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "out.zip")
    assert dest.read_bytes() == big.read_bytes()


def test_an_empty_file_is_stored_as_present_not_missing(env, tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    store(env.ctx.engine, "r1", empty)
    assert fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "out.zip").read_bytes() == b""


def test_a_folder_drop_comes_back_as_the_same_folder_with_its_odd_entries_kept_as_placeholders(env, tmp_path):
    folder = make_bundle(tmp_path / "door", CLEAN, as_zip=False, name="watched")
    (folder / ".DS_Store").write_bytes(b"finder")
    (folder / "sub").mkdir()
    (folder / "sub" / "users.csv").write_text("ignored by unpack")
    os.mkfifo(folder / "pipe.csv")
    os.symlink("/etc/passwd", folder / "link.csv")
    store(env.ctx.engine, "r1", folder)

    dest = fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "worker" / "watched")
    assert door_sha256(dest) == door_sha256(folder)
    names = sorted(os.listdir(dest))
    assert names == sorted(n for n in os.listdir(folder) if n not in (".DS_Store", "sub"))
    assert stat.S_ISFIFO(os.lstat(dest / "pipe.csv").st_mode)
    assert (dest / "link.csv").is_symlink() and os.readlink(dest / "link.csv") != "/etc/passwd", \
        "a link is re-made so that the run refuses it, never pointing where the district's pointed"


def test_a_folder_bigger_than_a_chunk_comes_back_whole(env, tmp_path):
    folder = make_bundle(tmp_path / "door", CLEAN, as_zip=False, name="watched")
    rows = "".join(f"x{i},active,,true,s1,student,s{i},,Kid,{i},,,,,,,03,\n" for i in range(40000))
    (folder / "users.csv").write_text(CLEAN["users.csv"] + rows)
    assert (folder / "users.csv").stat().st_size > 2 * CHUNK
    store(env.ctx.engine, "r1", folder)
    assert chunk_count(env.ctx.engine, "r1") >= 3

    dest = fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "worker" / "watched")
    assert (dest / "users.csv").read_bytes() == (folder / "users.csv").read_bytes()
    assert door_sha256(dest) == door_sha256(folder)


def test_bytes_stored_under_another_tenant_than_the_run_are_refused(env, tmp_path):
    bundle = make_bundle(tmp_path, CLEAN, as_zip=True, name="d")
    with env.ctx.engine.begin() as conn:
        record(conn, "r1", bundle, tenant="lincoln")
        put_drop_bytes(conn, "roosevelt", "r1", bundle)
    with pytest.raises(DropBytesError, match="run r1: the stored bytes belong to another tenant"):
        fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "x.zip")


def test_bytes_stored_in_a_transaction_that_rolls_back_are_not_stored(env, tmp_path):
    bundle = make_bundle(tmp_path, CLEAN, as_zip=True, name="d")
    with pytest.raises(RuntimeError):
        with env.ctx.engine.begin() as conn:
            record(conn, "r1", bundle)
            put_drop_bytes(conn, "lincoln", "r1", bundle)
            raise RuntimeError("the door's transaction failed")
    with env.ctx.engine.connect() as conn:
        assert not has_drop_bytes(conn, "r1")
    assert chunk_count(env.ctx.engine, "r1") == 0


def test_bytes_that_differ_from_the_recorded_sha256_are_refused_and_nothing_is_left(env, tmp_path):
    bundle = make_bundle(tmp_path, CLEAN, as_zip=True, name="d")
    store(env.ctx.engine, "r1", bundle)
    with env.ctx.engine.begin() as conn:
        conn.execute(update(drop_blob_chunks).where(drop_blob_chunks.c.run_id == "r1")
                     .values(data=b"not the district's bytes"))
    out = tmp_path / "worker"
    with pytest.raises(DropBytesError, match=r"run r1: the stored bytes have sha256 \w+, the run recorded"):
        fetch_drop_bytes(env.ctx.engine, "r1", out / "d.zip")
    assert os.listdir(out) == []


def test_a_missing_chunk_is_named(env, tmp_path):
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(2 * CHUNK + 10))
    store(env.ctx.engine, "r1", big)
    with env.ctx.engine.begin() as conn:
        conn.execute(drop_blob_chunks.delete().where(drop_blob_chunks.c.run_id == "r1", drop_blob_chunks.c.seq == 1))
    with pytest.raises(DropBytesError, match="run r1: the store holds 1 of the drop's 3 chunks"):
        fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_a_fetch_stopped_midway_leaves_its_connection_fit_for_the_next_one(env, tmp_path):
    """A refused fetch stops reading its chunks part-way (a gap in the sequence): the chunks' cursor (on
    PostgreSQL a server-side one) is closed before the connection goes back to the pool, so the next fetches
    on the same engine work."""
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(5 * CHUNK + 10))
    store(env.ctx.engine, "r1", big)
    store(env.ctx.engine, "r2", big)
    with env.ctx.engine.begin() as conn:
        conn.execute(drop_blob_chunks.delete().where(drop_blob_chunks.c.run_id == "r1", drop_blob_chunks.c.seq == 1))
    for _ in range(3):
        with pytest.raises(DropBytesError, match="run r1: the store holds 1 of the drop's 6 chunks"):
            fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "out.zip")
        assert sha256_of(fetch_drop_bytes(env.ctx.engine, "r2", tmp_path / "r2.zip")) == sha256_of(big)
    if not env.store_url:
        return
    # PostgreSQL: the cursor is closed by the fetch itself, not when its frame is let go. Kept alive here by
    # the refusal's traceback until the one connection of this engine is in another transaction, a late
    # close would send CLOSE into that transaction and abort it.
    engine = create_engine(env.store_url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(DropBytesError) as refused:
            fetch_drop_bytes(engine, "r1", tmp_path / "out.zip")
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar_one() == 0
            del refused
            gc.collect()
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


def test_fetching_a_run_without_stored_bytes_says_so(env, tmp_path):
    with pytest.raises(DropBytesError, match="run nope: the store holds no bytes for this drop"):
        fetch_drop_bytes(env.ctx.engine, "nope", tmp_path / "x.zip")


def test_deleted_bytes_are_gone_and_other_runs_keep_theirs(env, tmp_path):
    a = make_bundle(tmp_path, CLEAN, as_zip=True, name="a")
    store(env.ctx.engine, "r1", a)
    store(env.ctx.engine, "r2", a, tenant="roosevelt")
    with env.ctx.engine.begin() as conn:
        delete_drop_bytes(conn, "r1")
    with pytest.raises(DropBytesError):
        fetch_drop_bytes(env.ctx.engine, "r1", tmp_path / "x.zip")
    assert chunk_count(env.ctx.engine, "r1") == 0
    assert fetch_drop_bytes(env.ctx.engine, "r2", tmp_path / "y.zip").read_bytes() == a.read_bytes()


def test_retention_expires_old_finished_drops_and_keeps_unfinished_and_held_ones(env, tmp_path):
    a = make_bundle(tmp_path, CLEAN, as_zip=True, name="a")
    statuses = {"old-applied": "applied", "old-rejected": "rejected", "old-held": "held",
                "old-received": "received", "old-processing": "processing", "new-applied": "applied"}
    for run_id, status in statuses.items():
        store(env.ctx.engine, run_id, a, status=status)
    now = time.time()
    with env.ctx.engine.begin() as conn:
        conn.execute(update(drop_blobs).where(drop_blobs.c.run_id.like("old-%")).values(stored_at=now - 40 * 86400))
        assert expire_drop_bytes(conn, now - 30 * 86400) == 2
    with env.ctx.engine.connect() as conn:
        left = sorted(r.run_id for r in conn.execute(select(drop_blobs.c.run_id)))
        chunks_left = sorted({r.run_id for r in conn.execute(select(drop_blob_chunks.c.run_id))})
    assert left == chunks_left == ["new-applied", "old-held", "old-processing", "old-received"]


# The child stores and fetches a big drop and prints its peak memory: RSS for PostgreSQL (where scale-out
# keeps drops), Python allocations for both engines (SQLite's own page cache, 256 MiB by the store's
# pragmas, holds pages of whatever is written, drops included, and is not a copy made by this module).
MEASURE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    from pathlib import Path
    from sqlalchemy import insert
    from processor.apply.store import open_store, runs
    from processor.intake.blobs import fetch_drop_bytes, put_drop_bytes
    from processor.intake.spool import open_drop, sha256_of

    url, big, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    engine = open_store(url, create=False)
    small = big.with_name("small.zip"); small.write_bytes(b"warm up" * 1000)
    def put(run_id, path):
        with engine.begin() as conn:
            conn.execute(insert(runs).values(run_id=run_id, tenant="lincoln", status="received", source="sftp",
                                             received_at="2026-12-02T06:00:00+00:00", sha256=sha256_of(path)))
            put_drop_bytes(conn, "lincoln", run_id, path)
    put("warm", small); fetch_drop_bytes(engine, "warm", out.with_name("warm.zip"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    put("big", big)
    put_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    fetch_drop_bytes(engine, "big", out)
    fetch_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_growth": (rss1 - rss0) * 1024, "put_peak": put_peak, "fetch_peak": fetch_peak}))
""")


def test_a_64_mib_drop_goes_in_and_out_with_a_few_mib_of_memory(env, tmp_path):
    big = tmp_path / "big.zip"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(CHUNK))
    url = env.ctx.engine.url.render_as_string(hide_password=False)
    env.ctx.engine.dispose()
    out = tmp_path / "worker" / "big.zip"
    done = subprocess.run([sys.executable, "-c", MEASURE, url, str(big), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert sha256_of(out) == sha256_of(big)
    mib = 1 << 20
    assert figures["put_peak"] < 8 * mib, figures
    assert figures["fetch_peak"] < 8 * mib, figures
    if env.store_url:  # PostgreSQL: the whole process, driver included
        assert figures["rss_growth"] < 24 * mib, figures
