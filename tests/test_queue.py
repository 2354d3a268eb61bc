"""The procrastinate backend's queue (processor/queue.py) against a real PostgreSQL and Procrastinate.

The runs table is the queue of record; a Procrastinate job is only a per-tenant wake-up. These tests
record drops the way the doors do (pipeline.receive: the run, its bytes and the wake-up in one
transaction) and run the real job, in this process or in a real worker process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from processor import queue
from processor.apply.store import outbox, runs
from processor.cli import main
from processor.context import Context
from processor.daemon.local_queue import TRANSIENT_RETRIES
from processor.home import init_home
from processor.intake.blobs import has_drop_bytes
from processor.pipeline import receive
from tests.bundles import CLEAN, USERS, make_bundle, with_changes
from tests.conftest import PG_URL, write_config
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def empty_database() -> None:
    """Drop everything, Procrastinate's objects (types, functions) included."""
    from processor.apply.store import open_store

    engine = open_store(PG_URL, create=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture
def home(tmp_path) -> Path:
    """A home on the PostgreSQL store with [queue] backend = "procrastinate", after `rosterdrop db upgrade`."""
    if not PG_URL:
        pytest.skip("needs PostgreSQL and Procrastinate: set ROSTERDROP_TEST_PG_URL (CI sets it)")
    empty_database()
    home = tmp_path / "home"
    init_home(home, ["lincoln", "roosevelt"])
    write_config(home, {"lincoln": {}, "roosevelt": {}}, PG_URL)
    with (home / "rosterdrop.toml").open("a") as f:
        f.write('\n[queue]\nbackend = "procrastinate"\n')
    assert main(["--home", str(home), "db", "upgrade"]) == 0
    yield home
    empty_database()  # later tests' reset_store() expects a database without Procrastinate's tables


@pytest.fixture
def ctx(home) -> Context:
    c = Context.load(home)
    yield c
    c.engine.dispose()


def drop_of_users(tmp_path: Path, n: int) -> Path:
    """A clean bundle whose users.csv differs per n (so no two are duplicates)."""
    users = USERS.replace("Tara,Martin", f"Tara{n},Martin")
    return make_bundle(tmp_path / "drops", with_changes(CLEAN, users_csv=users), name=f"drop{n}")


def jobs(ctx: Context, tenant: str = "lincoln") -> list[tuple[str, str]]:
    with ctx.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT status::text, queueing_lock FROM procrastinate_jobs WHERE lock = :l ORDER BY id"),
            {"l": f"tenant:{tenant}"})]


def run_rows(ctx: Context, tenant: str = "lincoln") -> list[dict]:
    with ctx.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(runs).where(runs.c.tenant == tenant)
                                              .order_by(runs.c.received_at)).mappings()]


def run_worker_until_idle(ctx: Context) -> None:
    """A real Procrastinate worker in this process that stops when no job is left."""
    queue.run_worker(ctx, wait=False, name="test-worker")


# ---------------------------------------------------------------- the wake-up


def test_a_drop_is_recorded_with_its_bytes_and_one_wake_up_that_later_drops_of_the_tenant_share(ctx, tmp_path):
    first = receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    second = receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="watch", move=True)
    other = receive(ctx, drop_of_users(tmp_path, 3), "roosevelt", source="watch", move=True)
    # The second drop's defer hit the queueing lock (AlreadyEnqueued) and its row is there all the same.
    assert [r["run_id"] for r in run_rows(ctx)] == [first.run_id, second.run_id]
    assert [r["status"] for r in run_rows(ctx)] == ["received", "received"]
    assert jobs(ctx) == [("todo", "wake:lincoln")]
    assert jobs(ctx, "roosevelt") == [("todo", "wake:roosevelt")]
    with ctx.engine.connect() as conn:
        assert all(has_drop_bytes(conn, d.run_id) for d in (first, second, other))


def test_an_already_enqueued_wake_up_rolls_back_nothing_of_the_callers_transaction(ctx):
    with ctx.engine.begin() as conn:
        assert queue.ring(conn, "lincoln") is True
        conn.execute(text("CREATE TABLE marker (x int)"))
        assert queue.ring(conn, "lincoln") is False  # the savepoint rolled back, not the transaction
        conn.execute(text("INSERT INTO marker VALUES (1)"))
    with ctx.engine.begin() as conn:
        assert conn.execute(text("SELECT x FROM marker")).scalar() == 1
        conn.execute(text("DROP TABLE marker"))
    assert jobs(ctx) == [("todo", "wake:lincoln")]


# ---------------------------------------------------------------- the job


def test_a_worker_applies_a_tenants_drops_in_arrival_order_and_each_tenant_once(ctx, tmp_path):
    recorded = [receive(ctx, drop_of_users(tmp_path, n), "lincoln", source="watch", move=True) for n in range(3)]
    receive(ctx, drop_of_users(tmp_path, 9), "roosevelt", source="watch", move=True)
    run_worker_until_idle(ctx)
    rows = run_rows(ctx)
    assert [r["status"] for r in rows] == ["applied"] * 3
    assert [r["run_id"] for r in sorted(rows, key=lambda r: r["finished_at"])] == [d.run_id for d in recorded]
    assert [r["status"] for r in run_rows(ctx, "roosevelt")] == ["applied"]
    assert jobs(ctx) == [] and jobs(ctx, "roosevelt") == []  # succeeded jobs are deleted
    from processor.apply.export import export_roster

    teacher = [p for p in export_roster(ctx.engine, "lincoln", False)["people"] if p["sourced_id"] == "u1"]
    assert teacher[0]["given_name"] == "Tara2"  # the last drop's roster


def test_a_drop_recorded_after_the_job_saw_no_more_drops_still_gets_processed(ctx, tmp_path, monkeypatch):
    """A running job holds no queueing lock: a drop recorded while it finishes rings a wake-up of its own."""
    receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    late: list = []
    real_next_run = queue.next_run

    def next_run(engine, tenant, now=None):
        row = real_next_run(engine, tenant, now)
        if row is None and not late:  # the job is about to end: a door records a drop right now
            late.append(receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="sftp", move=True))
            assert jobs(ctx) == [("doing", "wake:lincoln"), ("todo", "wake:lincoln")]
        return row

    monkeypatch.setattr(queue, "next_run", next_run)
    run_worker_until_idle(ctx)
    assert [r["status"] for r in run_rows(ctx)] == ["applied", "applied"]
    assert late and run_rows(ctx)[1]["run_id"] == late[0].run_id


def test_a_busy_store_is_retried_with_backoff_first_in_line_then_the_run_fails(ctx, tmp_path, monkeypatch):
    import processor.pipeline

    drop = receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    later = receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="watch", move=True)

    real_process_drop = processor.pipeline.process_drop

    def busy(ctx_, d, *args, **kwargs):  # the store fails this one run
        if d.run_id == drop.run_id:
            raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
        return real_process_drop(ctx_, d, *args, **kwargs)

    monkeypatch.setattr(processor.pipeline, "process_drop", busy)
    before = time.time()
    assert queue.process_tenant(ctx, "lincoln") == 0
    first = run_rows(ctx)[0]
    assert (first["status"], first["attempts"]) == ("received", 1)
    assert before + 4 < first["next_attempt_at"] < time.time() + 6  # 5 s, then 10 s, 20 s, ...
    # While it waits, the tenant's later drop waits behind it (arrival order), and the sweep does not ring it.
    assert queue.next_run(ctx.engine, "lincoln") is None
    assert "lincoln" not in queue.tenants_to_ring(ctx.engine)
    for attempt in range(2, TRANSIENT_RETRIES + 2):
        with ctx.engine.begin() as conn:  # the backoff is over
            conn.execute(update(runs).where(runs.c.run_id == drop.run_id).values(next_attempt_at=time.time() - 1))
        queue.process_tenant(ctx, "lincoln")
        if attempt <= TRANSIENT_RETRIES:
            assert run_rows(ctx)[0]["attempts"] == attempt
    rows = {r["run_id"]: r for r in run_rows(ctx)}
    assert rows[drop.run_id]["status"] == "failed"
    assert rows[later.run_id]["status"] == "applied"  # the job went on with the next drop
    with ctx.engine.connect() as conn:
        kinds = conn.execute(select(outbox.c.kind).where(outbox.c.tenant == "lincoln")).scalars().all()
    assert "run_failed" in kinds


def test_a_run_left_processing_by_a_dead_worker_is_tried_once_more_then_failed(ctx, tmp_path):
    died_once = receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    with ctx.engine.begin() as conn:  # what a worker killed mid-run leaves: `processing`, nothing applied
        conn.execute(update(runs).where(runs.c.run_id == died_once.run_id).values(status="processing"))
    queue.process_tenant(ctx, "lincoln")
    row = run_rows(ctx)[0]
    assert (row["status"], row["worker_deaths"]) == ("applied", 1)

    died_twice = receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="watch", move=True)
    with ctx.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == died_twice.run_id)
                     .values(status="processing", worker_deaths=1))
    queue.process_tenant(ctx, "lincoln")
    row = run_rows(ctx)[1]
    assert (row["status"], row["worker_deaths"]) == ("failed", 2)
    assert json.loads(row["result"])["issues"][0]["code"] == "internal_error"


def test_a_worker_on_another_host_processes_the_drop_from_the_store_alone(ctx, home, tmp_path):
    drop = receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    other = tmp_path / "other-host"
    init_home(other, ["lincoln", "roosevelt"])
    (other / "rosterdrop.toml").write_text((home / "rosterdrop.toml").read_text())
    import shutil

    shutil.rmtree(drop.path.parent)  # nothing of the door's home is at hand
    worker_ctx = Context.load(other)
    try:
        run_worker_until_idle(worker_ctx)
    finally:
        worker_ctx.engine.dispose()
    assert [r["status"] for r in run_rows(ctx)] == ["applied"]
    assert (other / "archive" / "lincoln" / drop.run_id).is_dir()


def test_retention_deletes_the_stored_bytes_of_old_finished_drops_and_keeps_waiting_ones(ctx, tmp_path):
    from processor.daemon import apply_retention

    done = receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    run_worker_until_idle(ctx)
    waiting = receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="watch", move=True)
    days = ctx.config.daemon.retention_days
    assert apply_retention(ctx, now=time.time() + days * 86400 + 60) >= 1
    with ctx.engine.connect() as conn:
        assert not has_drop_bytes(conn, done.run_id)
        assert has_drop_bytes(conn, waiting.run_id)  # still to be processed


# ---------------------------------------------------------------- the sweep


def test_the_sweep_rings_tenants_with_due_runs_and_no_job_and_leaves_the_rest(ctx, tmp_path):
    receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    receive(ctx, drop_of_users(tmp_path, 2), "roosevelt", source="watch", move=True)
    with ctx.engine.begin() as conn:  # lost wake-ups (e.g. drops recorded under the local backend)
        conn.execute(text("DELETE FROM procrastinate_jobs"))
        conn.execute(update(runs).where(runs.c.tenant == "roosevelt").values(next_attempt_at=time.time() + 60))
    assert queue.sweep(ctx) == {"stalled": 0, "rung": 1}
    assert jobs(ctx) == [("todo", "wake:lincoln")] and jobs(ctx, "roosevelt") == []
    assert queue.sweep(ctx) == {"stalled": 0, "rung": 0}  # a waiting job is enough
    assert queue.sweep(ctx, now=time.time() + 120)["rung"] == 1  # roosevelt's backoff is over


def _stall(ctx: Context, tenant: str) -> None:
    """What a worker killed with -9 leaves: its job `doing`, its heartbeat an hour old."""
    with ctx.engine.begin() as conn:
        worker = conn.execute(text("INSERT INTO procrastinate_workers (last_heartbeat) VALUES "
                                   "(now() - interval '1 hour') RETURNING id")).scalar()
        conn.execute(text("UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w WHERE lock = :l"),
                     {"w": worker, "l": f"tenant:{tenant}"})


def test_the_sweep_runs_again_the_job_of_a_worker_whose_heartbeat_stopped(ctx, tmp_path):
    receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    _stall(ctx, "lincoln")
    assert jobs(ctx) == [("doing", "wake:lincoln")]
    assert queue.sweep(ctx)["stalled"] == 1
    assert jobs(ctx) == [("todo", "wake:lincoln")]
    run_worker_until_idle(ctx)
    assert [r["status"] for r in run_rows(ctx)] == ["applied"]


def test_a_stalled_job_is_ended_when_a_newer_wake_up_of_its_tenant_already_waits(ctx, tmp_path):
    receive(ctx, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    _stall(ctx, "lincoln")
    receive(ctx, drop_of_users(tmp_path, 2), "lincoln", source="watch", move=True)  # rings a second job
    assert queue.sweep(ctx)["stalled"] == 1
    assert jobs(ctx) == [("aborted", "wake:lincoln"), ("todo", "wake:lincoln")]
    run_worker_until_idle(ctx)
    assert [r["status"] for r in run_rows(ctx)] == ["applied", "applied"]


# ---------------------------------------------------------------- scheduled jobs once across hosts


def _claim_slots(url: str, out: str, slots: list[float], barrier) -> None:
    from processor.apply.store import open_store

    engine = open_store(url, create=False)
    for now in slots:
        barrier.wait()  # both processes fire the same slot at the same moment
        with queue.once_across_hosts(engine, "weekly-digest", 60.0, now=now) as ours:
            if ours:
                fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.write(fd, f"{os.getpid()} {int(now)}\n".encode())
                os.close(fd)
                time.sleep(0.05)
    engine.dispose()


def test_a_scheduled_job_runs_once_per_slot_across_two_processes(ctx, tmp_path):
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(2)
    out = str(tmp_path / "ran")
    base = 1_800_000_000.0
    slots = [base + 60 * i for i in range(6)]
    procs = [mp.Process(target=_claim_slots, args=(PG_URL, out, slots, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    ran = [line.split() for line in Path(out).read_text().splitlines()]
    assert sorted(int(s) for _, s in ran) == [int(s) for s in slots]  # each slot exactly once
    with ctx.engine.connect() as conn:
        assert conn.execute(text("SELECT slot FROM scheduled_claims WHERE name = 'weekly-digest'")).scalar() == \
            int(slots[-1] // 60)


def test_a_host_local_job_runs_on_every_host_and_a_shared_one_once(ctx):
    from apscheduler.triggers.interval import IntervalTrigger

    from processor.daemon.procrastinate_queue import ProcrastinateQueue
    from processor.daemon.scheduled import ScheduledJob

    q = ProcrastinateQueue(ctx, 1, burst=False)
    shared = ScheduledJob("webhooks", IntervalTrigger(seconds=30), lambda: None)
    local = ScheduledJob("retry-hand-overs", IntervalTrigger(seconds=60), lambda: None, local=True)
    outcomes = []
    for _ in range(2):  # two hosts' timers, in the same slot
        for job in (shared, local):
            with q.once(job) as ours:
                outcomes.append((job.name, ours))
    assert outcomes == [("webhooks", True), ("retry-hand-overs", True), ("webhooks", False),
                        ("retry-hand-overs", True)]


# ---------------------------------------------------------------- configuration and commands


def test_procrastinate_needs_a_postgresql_store(tmp_path, capsys):
    home = tmp_path / "home"
    init_home(home, ["lincoln"])
    with (home / "rosterdrop.toml").open("a") as f:
        f.write('\n[queue]\nbackend = "procrastinate"\n')
    assert main(["--home", str(home), "status"]) == 1
    err = capsys.readouterr().err.strip()
    assert "queue.backend" in err and "PostgreSQL" in err and len(err.splitlines()) == 1


def test_serve_and_worker_refuse_a_store_without_the_procrastinate_schema(ctx, capsys):
    with ctx.engine.begin() as conn:
        conn.execute(text("DELETE FROM queue_schema"))
    assert main(["--home", str(ctx.home), "worker", "--processes", "1"]) == 1
    assert "rosterdrop db upgrade" in capsys.readouterr().err


def test_worker_needs_the_procrastinate_backend(tmp_path, capsys):
    home = tmp_path / "home"
    init_home(home, ["lincoln"])
    assert main(["--home", str(home), "worker"]) == 1
    assert 'backend = "procrastinate"' in capsys.readouterr().err


def test_db_upgrade_applies_procrastinate_schema_once(ctx, capsys):
    assert main(["--home", str(ctx.home), "db", "upgrade", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["procrastinate"] == {"from": queue.procrastinate_version(), "to": queue.procrastinate_version()}


def test_the_worker_command_processes_drops_and_a_sigterm_lets_it_finish(ctx, tmp_path):
    for n in range(3):
        receive(ctx, drop_of_users(tmp_path, n), "lincoln" if n % 2 else "roosevelt", source="watch", move=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "processor", "--home", str(ctx.home), "worker",
                             "--processes", "2"], env=env, stderr=log, stdout=log)
    try:
        wait_for(lambda: all(r["status"] == "applied" for t in ("lincoln", "roosevelt") for r in run_rows(ctx, t)),
                 timeout=90, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text_ = (tmp_path / "worker.log").read_text()
    assert "working for 2 tenants with 2 workers" in text_ and "stopped" in text_


def test_serve_burst_with_procrastinate_drains_the_inboxes_and_exits(ctx, tmp_path):
    bundle = drop_of_users(tmp_path, 1)
    bundle.rename(ctx.path("inbox", "lincoln", "nightly.zip"))
    assert main(["--home", str(ctx.home), "serve", "--burst"]) == 0
    assert [r["status"] for r in run_rows(ctx)] == ["applied"]
    assert queue.backlog(ctx) == (0, 0)


def test_the_local_backend_never_touches_procrastinate(tmp_path, monkeypatch):
    home = tmp_path / "home"
    init_home(home, ["lincoln"])
    c = Context.load(home)

    def no_ring(conn, tenant):  # pragma: no cover - the assertion is that it is never called
        raise AssertionError("rang a wake-up with the local backend")

    monkeypatch.setattr(queue, "ring", no_ring)
    drop = receive(c, drop_of_users(tmp_path, 1), "lincoln", source="watch", move=True)
    with c.engine.connect() as conn:
        assert not has_drop_bytes(conn, drop.run_id)
    assert c.config.queue.backend == "local"  # the default
    c.engine.dispose()


def test_serve_with_procrastinate_takes_a_drop_through_its_door_and_stops_on_sigterm(ctx, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROSTERDROP_DAEMON__WORKERS": "1"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "processor", "--home", str(ctx.home), "serve"], env=env,
                            stderr=log, stdout=log)
    try:
        wait_for(lambda: "serving 2 tenants" in (tmp_path / "serve.log").read_text(), timeout=60, interval=0.2)
        drop_of_users(tmp_path, 1).rename(ctx.path("inbox", "lincoln", "nightly.zip"))  # the watched folder
        wait_for(lambda: [r["status"] for r in run_rows(ctx)] == ["applied"], timeout=90, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert jobs(ctx) == []


def test_a_hold_is_released_on_a_host_that_never_had_the_drop(ctx, home, tmp_path):
    import shutil

    from processor.pipeline import release_hold

    samples = ROOT / "sample_drops"
    for name in ("clean", "mass_withdrawal"):
        shutil.copytree(samples / name, tmp_path / name)
        receive(ctx, tmp_path / name, "lincoln", source="watch", move=True)
    run_worker_until_idle(ctx)
    applied, held = run_rows(ctx)
    assert (applied["status"], held["status"]) == ("applied", "held")
    console = tmp_path / "console-host"  # e.g. the web console's host: its own home, the same store
    init_home(console, ["lincoln", "roosevelt"])
    (console / "rosterdrop.toml").write_text((home / "rosterdrop.toml").read_text())
    console_ctx = Context.load(console)
    try:
        assert not Path(held["spool_path"]).is_relative_to(console)  # the door's spool, in another home
        result = release_hold(console_ctx, held["run_id"], by="ops", note="term ended")
    finally:
        console_ctx.engine.dispose()
    assert result.status.value == "applied"
    assert (console / "archive" / "lincoln" / held["run_id"]).is_dir()  # the console host's fetched copy
    assert Path(held["spool_path"]).exists()  # another home's spool is never touched
