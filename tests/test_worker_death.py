"""A worker process that dies, a run that raises, a tenant lock whose holder is gone, an operator racing the
daemon: each affects only its own run, never applies an older drop over a newer one, and never leaves a run
`processing` or processed twice. Real worker processes (the daemon's pool), the real store.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from processor.apply import runs as run_store
from processor.apply.store import locks, outbox
from processor.context import Context, UserError
from processor.daemon import Daemon
from processor.failures import retry_run
from processor.pipeline import process_drop, receive, release_hold
from processor.runs import RunStatus
from tests.bundles import CLEAN, USERS, with_changes
from tests.test_daemon import (
    ROOT,
    SAMPLES,
    DaemonProcess,
    audit_rows,
    cli,
    emails,
    engine_of,
    pid_alive,
    runs_of,
    wait_for,
    write_home,
    zip_folder,
)

# Loaded by the daemon's worker processes only (a sitecustomize on their PYTHONPATH).
HOOK = '''
import os, signal, time
_markers = os.environ.get("RD_SLOW_READ_DIR")
_die = os.environ.get("RD_DIE_TENANT")
_raise = os.environ.get("RD_RAISE_IN_APPLY_TENANT")
if _markers or _die or _raise:
    import processor.pipeline as _p
    _read = _p.read_bundle
    def _read_hooked(path, *args, **kwargs):
        tenant = path.parent.parent.name  # spool/<tenant>/<run-id>/<file>
        if tenant == _die:
            os.kill(os.getpid(), signal.SIGKILL)  # an OOM kill, a segfault
        if _markers:  # in flight, holding the tenant's lock, until the test says go
            open(os.path.join(_markers, f"{tenant}.{os.getpid()}"), "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(_markers, "go")) and time.monotonic() < deadline:
                time.sleep(0.02)
        return _read(path, *args, **kwargs)
    _p.read_bundle = _read_hooked
    _apply = _p.apply_changes
    def _apply_hooked(conn, tenant, *args, **kwargs):
        _apply(conn, tenant, *args, **kwargs)  # the rows are written; the transaction is still open
        if tenant == _raise:
            raise RuntimeError("injected failure inside the apply")
    _p.apply_changes = _apply_hooked
'''


@pytest.fixture
def hooked(tmp_path) -> str:
    d = tmp_path / "hook"
    d.mkdir()
    (d / "sitecustomize.py").write_text(HOOK)
    return os.pathsep.join([str(d), str(ROOT)])


def markers(folder: Path, tenant: str) -> list[int]:
    return [int(p.suffix[1:]) for p in folder.glob(f"{tenant}.[0-9]*")]


def outbox_kinds(engine, run_id: str) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(outbox.c.kind).where(outbox.c.run_id == run_id)).scalars())


# ---------------------------------------------------------------- a worker's death


def test_kill_9_of_one_worker_affects_only_its_own_run(tmp_path, hooked):
    home = tmp_path / "home"
    write_home(home, ["alpha", "beta"], daemon={"workers": 2, "watch_stable_seconds": 0.1})
    folder = tmp_path / "markers"
    folder.mkdir()
    daemon = DaemonProcess(home, {"PYTHONPATH": hooked, "RD_SLOW_READ_DIR": str(folder)})
    try:
        daemon.wait_log("serving")
        zip_folder(SAMPLES / "clean", home / "inbox" / "alpha" / "nightly.zip")
        zip_folder(SAMPLES / "clean", home / "inbox" / "beta" / "nightly.zip")
        # Both runs are in flight, each in its own worker, each holding its tenant's lock.
        [victim] = wait_for(lambda: markers(folder, "alpha"))
        [survivor] = wait_for(lambda: markers(folder, "beta"))
        assert victim != survivor
        os.kill(victim, signal.SIGKILL)
        # The victim's run is tried again in a new worker while the survivor's is still in flight.
        wait_for(lambda: len(markers(folder, "alpha")) == 2, timeout=60)
        assert markers(folder, "beta") == [survivor] and pid_alive(survivor)
        (folder / "go").touch()
        engine = engine_of(home)
        wait_for(lambda: all(r["status"] == "applied" for t in ("alpha", "beta") for r in runs_of(engine, t)),
                 timeout=60)
        assert daemon.proc.poll() is None  # the daemon serves on
        daemon.signal(signal.SIGTERM)  # and lets whatever it still has in hand finish before it exits
        rc, _ = daemon.wait(30)
        assert rc == 0
    finally:
        daemon.kill_all()
    log = daemon.log()
    for tenant in ("alpha", "beta"):
        [run] = runs_of(engine, tenant)
        assert run["status"] == "applied", (tenant, log)
        assert run["counts"]["users"]["created"] > 0  # the result of the run that applied it, recorded once
        assert outbox_kinds(engine, run["run_id"]) == ["run_report"]  # one email, not two contradictory ones
        assert audit_rows(engine, run["run_id"]) > 0
    alpha, beta = (runs_of(engine, t)[0]["run_id"] for t in ("alpha", "beta"))
    assert f"run {alpha} tenant alpha: its worker process died (killed by signal 9); trying it once more" in log
    assert f"run {beta} tenant beta: its worker process died" not in log
    assert len(markers(folder, "beta")) == 1  # the survivor's run was processed by its worker only
    assert len(markers(folder, "alpha")) == 2  # the victim's run again, in a new worker


def test_a_run_whose_worker_dies_twice_ends_failed_and_the_other_tenant_is_applied(tmp_path, hooked, monkeypatch):
    home = tmp_path / "home"
    write_home(home, ["alpha", "beta"], daemon={"workers": 2})
    zip_folder(SAMPLES / "clean", home / "inbox" / "alpha" / "nightly.zip")
    zip_folder(SAMPLES / "clean", home / "inbox" / "beta" / "nightly.zip")
    monkeypatch.setenv("PYTHONPATH", hooked)
    monkeypatch.setenv("RD_DIE_TENANT", "alpha")
    assert Daemon(Context.load(home), burst=True).run() == 1
    engine = engine_of(home)
    [alpha], [beta] = runs_of(engine, "alpha"), runs_of(engine, "beta")
    assert beta["status"] == "applied" and outbox_kinds(engine, beta["run_id"]) == ["run_report"]
    assert alpha["status"] == "failed"  # never left `processing` once its worker is gone
    assert audit_rows(engine, alpha["run_id"]) == 0
    assert outbox_kinds(engine, alpha["run_id"]) == ["run_failed"]
    [issue] = run_store.get_result(engine, alpha["run_id"]).issues
    assert issue.code == "internal_error" and "operator has been told" in issue.message

    monkeypatch.delenv("RD_DIE_TENANT")
    r = cli(home, "runs", "retry", alpha["run_id"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "applied"
    assert audit_rows(engine, alpha["run_id"]) == audit_rows(engine, beta["run_id"])
    assert len(emails(home, alpha["run_id"])) == 2  # the failure notice, then the report


def test_a_worker_that_raises_inside_the_apply_ends_the_run_failed_with_nothing_applied(tmp_path, hooked,
                                                                                          monkeypatch):
    home = tmp_path / "home"
    write_home(home, ["alpha"], daemon={"workers": 1})
    zip_folder(SAMPLES / "clean", home / "inbox" / "alpha" / "nightly.zip")
    monkeypatch.setenv("PYTHONPATH", hooked)
    monkeypatch.setenv("RD_RAISE_IN_APPLY_TENANT", "alpha")
    assert Daemon(Context.load(home), burst=True).run() == 1
    engine = engine_of(home)
    [run] = runs_of(engine, "alpha")
    assert run["status"] == "failed"
    assert audit_rows(engine, run["run_id"]) == 0  # the apply's writes rolled back
    from processor.apply.export import export_roster

    assert export_roster(engine, "alpha", True)["people"] == []
    [mail] = emails(home, run["run_id"])
    text = mail.read_text(errors="replace")
    assert "could not process" in text and "operator has been told" in text
    assert "injected failure" not in text
    monkeypatch.delenv("RD_RAISE_IN_APPLY_TENANT")
    r = cli(home, "runs", "retry", run["run_id"])
    assert r.returncode == 0, r.stderr
    assert runs_of(engine, "alpha")[0]["status"] == "applied"
    assert export_roster(engine, "alpha")["people"]


# ---------------------------------------------------------------- the failed status, in process (both stores)


def test_an_exception_inside_a_stage_ends_the_run_failed_and_retry_applies_it(env, monkeypatch, caplog):
    import processor.pipeline as pipeline

    caplog.set_level(logging.INFO)

    real_apply = pipeline.apply_changes

    quoted = "Núñez"  # an exception message that quotes a roster value

    def broken_apply(*args, **kwargs):
        real_apply(*args, **kwargs)
        raise KeyError(quoted)

    monkeypatch.setattr(pipeline, "apply_changes", broken_apply)
    result = env.process(CLEAN)
    assert result.status == "failed" and result.exit_code() == 1
    assert [(i.severity, i.code) for i in result.issues] == [("error", "internal_error")]
    assert env.export(include_inactive=True)["people"] == []  # nothing applied
    assert run_store.get_result(env.ctx.engine, result.run_id).status == "failed"
    assert outbox_kinds(env.ctx.engine, result.run_id) == ["run_failed"]
    assert "could not process" in Path(result.report).read_text()
    assert f"run {result.run_id} tenant lincoln: processing failed: KeyError" in caplog.text
    assert "Núñez" not in caplog.text and "apply_changes" in caplog.text  # frames, not the message

    monkeypatch.setattr(pipeline, "apply_changes", real_apply)
    again = retry_run(env.ctx, result.run_id)
    assert (again.run_id, again.status) == (result.run_id, "applied")
    assert len(env.export()["people"]) == 6
    with pytest.raises(UserError, match="has not failed"):
        retry_run(env.ctx, result.run_id)


def test_a_dry_run_that_fails_sends_nothing_and_cannot_be_retried_into_an_apply(env, monkeypatch):
    import processor.pipeline as pipeline

    def broken_diff(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(pipeline, "compute_changes", broken_diff)
    result = env.process(CLEAN, dry_run=True)
    assert result.status == "failed" and result.exit_code() == 1
    assert outbox_kinds(env.ctx.engine, result.run_id) == []  # a dry run sends nothing
    monkeypatch.undo()
    with pytest.raises(UserError, match="was a dry run"):
        retry_run(env.ctx, result.run_id)
    assert env.export()["people"] == []


# ---------------------------------------------------------------- newer drops, decided inside the lock


def test_an_older_drop_processed_after_a_newer_one_was_applied_is_superseded(env):
    older = receive(env.ctx, env.bundle(CLEAN), "lincoln", "cli", move=False)  # waiting, like the daemon's queue
    newer = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert newer.status == "applied"
    result = process_drop(env.ctx, older)
    assert result.status == "superseded"
    assert {p["given_name"] for p in env.export()["people"]} >= {"Tamara"}
    assert outbox_kinds(env.ctx.engine, older.run_id) == ["run_superseded"]  # the district is told


def test_a_release_racing_a_newer_drop_is_superseded(env, monkeypatch):
    held = receive(env.ctx, env.bundle(CLEAN), "lincoln", "cli", move=False)
    newer = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert newer.status == "applied"
    # An older run held after the newer one was applied (held while that one was being processed).
    run_store.set_status(env.ctx.engine, held.run_id, RunStatus.HELD)
    # The newer drop is applied between release's first look and its lock: the first look misses it.
    real = run_store.newer_applied
    calls = []

    def first_look_misses(*args):
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(run_store, "newer_applied", first_look_misses)
    result = release_hold(env.ctx, held.run_id)
    assert result.status == "superseded"
    assert len(calls) == 2
    assert "Tamara" in {p["given_name"] for p in env.export()["people"]}


def test_a_release_after_a_newer_drop_superseded_the_hold_while_it_waited_applies_nothing(env):
    held = receive(env.ctx, env.bundle(CLEAN), "lincoln", "cli", move=False)
    run_store.set_status(env.ctx.engine, held.run_id, RunStatus.HELD)
    newer = env.process(with_changes(CLEAN, users_csv=USERS.replace("Tara", "Tamara")))
    assert run_store.run_row(env.ctx.engine, held.run_id)["status"] == "superseded"
    # A release that looked before that apply and got the lock after it (a second operator, the web page).
    result = process_drop(env.ctx, held, force=True)
    assert result.status == "superseded" and newer.status == "applied"
    assert "Tamara" in {p["given_name"] for p in env.export()["people"]}


def test_a_run_that_another_process_finished_while_this_one_waited_is_not_processed_again(env):
    drop = receive(env.ctx, env.bundle(CLEAN), "lincoln", "cli", move=False)
    first = process_drop(env.ctx, drop)
    assert first.status == "applied"
    # The same drop handed to a second worker (a retry of a run whose worker was thought dead).
    again = process_drop(env.ctx, drop)
    assert again.status == "applied" and again.finished_at == first.finished_at
    assert outbox_kinds(env.ctx.engine, drop.run_id) == ["run_report"]


# ---------------------------------------------------------------- the tenant lock dies with its holder


HOLDER = """
import sys
from processor.apply.store import open_store
from processor.apply.runs import tenant_lock
engine = open_store(sys.argv[1])
with tenant_lock(engine, "lincoln", "holder-run"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _store_url(env) -> str:
    return env.store_url or env.ctx.config.store_url()


def test_a_lock_left_by_a_dead_holder_whose_pid_came_back_does_not_block(env):
    # A container restart: the recorded owner's pid is alive again, but it is another process.
    with env.ctx.engine.begin() as conn:
        conn.execute(insert(locks).values(tenant="lincoln", run_id="dead-run",
                                          owner=f"{socket.gethostname()}:{os.getppid()}", acquired_at=0.0))
    with run_store.tenant_lock(env.ctx.engine, "lincoln", "new-run", timeout=2):
        with env.ctx.engine.connect() as conn:
            assert conn.execute(select(locks.c.run_id).where(locks.c.tenant == "lincoln")).scalar() == "new-run"
    assert env.process(CLEAN).status == "applied"


def test_two_live_holders_exclude_each_other_and_a_killed_holder_releases_the_lock(env):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), _store_url(env)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="busy with another run"):
            with run_store.tenant_lock(env.ctx.engine, "lincoln", "second", timeout=0.5):
                pass
        with run_store.tenant_lock(env.ctx.engine, "roosevelt", "other-tenant", timeout=0.5):
            pass  # another tenant is not blocked
        holder.kill()  # kill -9: no clean-up code runs in the holder
        holder.wait(10)
        with run_store.tenant_lock(env.ctx.engine, "lincoln", "third", timeout=10):
            pass
    finally:
        holder.kill()
        holder.wait(10)


def test_two_threads_of_one_process_exclude_each_other(env):
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with run_store.tenant_lock(env.ctx.engine, "lincoln", "first", timeout=5):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(UserError):
            with run_store.tenant_lock(env.ctx.engine, "lincoln", "second", timeout=0.3):
                pass
    finally:
        release.set()
        t.join(10)
    with run_store.tenant_lock(env.ctx.engine, "lincoln", "second", timeout=5):
        pass


def test_a_run_left_processing_by_a_killed_command_is_resumed_by_the_running_daemon(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["alpha"], daemon={"workers": 1, "watch_inbox": False})
    daemon = Daemon(Context.load(home))
    serving = threading.Thread(target=daemon.run)
    serving.start()
    try:
        wait_for(lambda: daemon.schedule.scheduler is not None)  # recovery at start is over
        ctx = Context.load(home)
        drop = receive(ctx, zip_folder(SAMPLES / "clean", tmp_path / "cli" / "nightly.zip"), "alpha", "cli", False)
        run_store.set_status(ctx.engine, drop.run_id, RunStatus.PROCESSING)  # `process` was killed mid-run
        daemon.queue.resume_abandoned()  # what the every-minute job does
        wait_for(lambda: run_store.run_row(ctx.engine, drop.run_id)["status"] == "applied", timeout=60)
    finally:
        daemon.request_stop()
        serving.join(30)
    assert audit_rows(ctx.engine, drop.run_id) > 0


# ---------------------------------------------------------------- the pool itself


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_file(path: str) -> int:
    wait_for(lambda: Path(path).exists(), timeout=30)
    return os.getpid()


def _unpicklable_answer():
    return threading.Lock()


def test_the_pool_fails_only_the_task_whose_worker_died(tmp_path):
    from processor.workers import WorkerDied, WorkerPool

    pool = WorkerPool(2, eager=True)
    try:
        go = tmp_path / "go"
        survivor = pool.submit(_wait_for_file, str(go))
        victim = pool.submit(_die)
        with pytest.raises(WorkerDied, match="killed by signal 9"):
            victim.result(timeout=60)
        assert not survivor.done()  # still running in its own worker
        go.touch()
        pid = survivor.result(timeout=60)
        assert pid != os.getpid()
        with pytest.raises(RuntimeError, match="could not be sent back"):
            pool.submit(_unpicklable_answer).result(timeout=60)
        assert pool.submit(_wait_for_file, str(go)).result(timeout=60) > 0  # the pool serves on, two workers
        assert len(pool.processes()) == 2
    finally:
        pool.shutdown()
    assert pool.processes() == []


# ---------------------------------------------------------------- the two notices


@pytest.mark.parametrize("kind, subject", [
    ("run_failed", "Lincoln Unified roster: we could not process this drop; the operator has been told"),
    ("run_superseded", "Lincoln Unified roster: drop not applied, a newer drop was applied first"),
])
def test_the_failed_and_superseded_notices_escape_the_districts_file_name(kind, subject):
    from processor.report.notices import render_notice

    hostile = "<script>x</script>\r\nBcc: evil@example.org.zip"
    rendered = render_notice(kind, "lincoln", "Lincoln Unified", {"run_id": "r1", "file": hostile,
                                                                  "received_at": "2024-05-02T02:13:00+00:00",
                                                                  "newer": "r2"})
    assert rendered.subject == subject
    assert "<script>x</script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "\nBcc:" not in rendered.text and "r1" in rendered.text
    assert "not applied" in rendered.text.lower() or "nothing from it was applied" in rendered.text.lower()


def test_a_release_interrupted_after_its_claim_is_held_again_by_the_sweep(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["alpha"], daemon={"workers": 1, "watch_inbox": False})
    ctx = Context.load(home)
    from processor.pipeline import process_path

    assert process_path(ctx, zip_folder(SAMPLES / "clean", tmp_path / "a" / "clean.zip"), "alpha").status == "applied"
    held = process_path(ctx, zip_folder(SAMPLES / "mass_withdrawal", tmp_path / "b" / "mass.zip"), "alpha")
    assert held.status == "held"
    run_store.set_status(ctx.engine, held.run_id, RunStatus.PROCESSING)  # claimed by a release that was killed
    Daemon(ctx).queue.resume_abandoned()
    assert run_store.run_row(ctx.engine, held.run_id)["status"] == "held"  # open to be released again
    assert release_hold(ctx, held.run_id).status == "applied"
