"""The daemon end to end: real doors (OpenSSH sftp, paramiko, the watched folder), real worker processes,
the real store. Waits are bounded polls; the only sleeps are short negative checks.

Daemon processes are started as `python -m processor serve`. A test hook (a sitecustomize module put on
PYTHONPATH of that process only) makes a worker sleep inside the apply transaction, so that the daemon
can be killed or stopped while a run holds uncommitted rows.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import pytest
from sqlalchemy import Engine, func, select, update

from processor.apply.runs import list_runs
from processor.apply.store import audit, open_store, outbox, runs
from processor.config import ConfigError
from processor.context import Context
from processor.daemon import (
    Daemon,
    apply_retention,
    check_missing_drops,
    cron_trigger,
    queue_weekly_digests,
)
from processor.home import init_home
from processor.intake.auth import set_password
from processor.intake.spool import take
from processor.pipeline import process_path, receive
from tests.helpers import wait_for as _wait_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_drops"
PASSWORD = "tenant-secret-1"
FINISHED = {"applied", "held", "rejected", "duplicate", "superseded", "discarded"}

# Put on PYTHONPATH of a daemon process only. Workers are spawned interpreters, so they run it too.
HOOK = '''
import os, time
_marker = os.environ.get("RD_HOOK_MARKER")
_fail = os.environ.get("RD_HOOK_FAIL_NAME")
_locked_once = os.environ.get("RD_HOOK_LOCKED_ONCE")
if _marker or _fail or _locked_once:
    import processor.pipeline as _p
    if _marker:
        _apply = _p.apply_changes
        def _slow_apply(*args, **kwargs):
            _apply(*args, **kwargs)  # the rows are written; the transaction is still open
            with open(_marker, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(float(os.environ.get("RD_HOOK_SLEEP", "60")))
        _p.apply_changes = _slow_apply
    if _fail:
        _process = _p.process_drop
        def _failing(ctx, drop, *args, **kwargs):
            if drop.original_name == _fail:
                raise RuntimeError("injected failure")
            return _process(ctx, drop, *args, **kwargs)
        _p.process_drop = _failing
    if _locked_once:
        import sqlite3
        from sqlalchemy.exc import OperationalError
        _process_once = _p.process_drop
        def _locked(ctx, drop, *args, **kwargs):
            if not os.path.exists(_locked_once):
                open(_locked_once, "w").close()
                raise OperationalError("INSERT INTO people ...", {}, sqlite3.OperationalError("database is locked"))
            return _process_once(ctx, drop, *args, **kwargs)
        _p.process_drop = _locked
'''


# ---------------------------------------------------------------- helpers



def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    return _wait_for(predicate, timeout, interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_folder(folder: Path, dest: Path, comment: str = "") -> Path:
    """The sample folder as a zip; a comment makes other bytes (another sha256) of the same drop."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
        zf.comment = comment.encode()
    return dest


def write_home(home: Path, tenants: list[str], *, sftp: bool = False, daemon: dict | None = None,
               tenant_extra: dict[str, str] | None = None) -> None:
    init_home(home, tenants)
    lines = ["[sftp]", f"enabled = {str(sftp).lower()}", 'host = "127.0.0.1"', "quiet_period_seconds = 30", "",
             "[daemon]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (daemon or {}).items()]
    for t in tenants:
        lines += ["", f"[tenants.{t}]", f'name = "{t.title()} Unified"', f'report_to = ["it@{t}.example"]',
                  (tenant_extra or {}).get(t, "")]
    (home / "rosterdrop.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def engine_of(home: Path) -> Engine:
    return open_store("sqlite:///" + str(home / "rosterdrop.db"))


def runs_of(engine: Engine, tenant: str) -> list[dict]:
    return list_runs(engine, tenant=tenant, limit=None)


def wait_finished(engine: Engine, tenant: str, n: int = 1, timeout: float = 20.0) -> list[dict]:
    """The tenant's runs, oldest first, once n of them are finished."""
    def done():
        rows = runs_of(engine, tenant)
        return rows[::-1] if sum(r["status"] in FINISHED for r in rows) >= n else None
    return wait_for(done, timeout)


def audit_rows(engine: Engine, run_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit).where(audit.c.run_id == run_id)).scalar_one()


def emails(home: Path, run_id: str) -> list[Path]:
    return list((home / "outbox").glob(f"*-{run_id}.eml"))


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processor", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=60)


class DaemonProcess:
    """`python -m processor serve` as a child process in its own session, its log in a file."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, *args: str, stdout=subprocess.DEVNULL):
        self.log_path = home.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "serve", "--home", str(home), *args],
            stdout=stdout, stderr=self._log, env={**os.environ, **(env or {})}, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        try:
            wait_for(lambda: text in self.log() or self.proc.poll() is not None, timeout)
        finally:
            assert text in self.log(), self.log()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> tuple[int, float]:
        start = time.monotonic()
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - start

    def kill_all(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the daemon and any worker still alive
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def paramiko_sftp(port: int, user: str, password: str = PASSWORD):
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username=user, password=password)
    return t, paramiko.SFTPClient.from_transport(t)


@pytest.fixture
def hook_path(tmp_path) -> str:
    """PYTHONPATH for a process that loads the hook (and this checkout's processor package)."""
    d = tmp_path / "hook"
    d.mkdir()
    (d / "sitecustomize.py").write_text(HOOK)
    return os.pathsep.join([str(d), str(ROOT)])


# ---------------------------------------------------------------- one served daemon, several doors

SERVED_TENANTS = ["openssh", "paramiko", "killed", "slow", "watched", "loose"]


@dataclass
class Served:
    home: Path
    port: int
    key: Path
    engine: Engine
    daemon: DaemonProcess


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    home = tmp / "home"
    write_home(home, SERVED_TENANTS, sftp=True,
               daemon={"workers": 2, "watch_inbox": True, "watch_stable_seconds": 0.3})
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    r = cli(home, "tenant", "add-key", "openssh", str(key.with_suffix(".pub")))
    assert r.returncode == 0, r.stderr
    engine = engine_of(home)
    for tenant in SERVED_TENANTS[1:]:
        set_password(engine, tenant, PASSWORD)
    port = free_port()
    daemon = DaemonProcess(home, {"ROSTERDROP_SFTP__PORT": str(port)})
    daemon.wait_log("serving 6 tenants")
    yield Served(home, port, key, engine, daemon)
    daemon.signal(signal.SIGTERM)
    rc, _ = daemon.wait(15)
    daemon.kill_all()
    assert rc == 0, daemon.log()


def test_openssh_sftp_upload_with_a_key_is_applied_and_reported(served, tmp_path):
    bundle = zip_folder(SAMPLES / "clean", tmp_path / "nightly.zip")
    r = subprocess.run(
        ["sftp", "-b", "-", "-P", str(served.port), "-i", str(served.key), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "LogLevel=ERROR", "openssh@127.0.0.1"],
        input=f"put {bundle} nightly.zip\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    [run] = wait_finished(served.engine, "openssh")
    listed = json.loads(cli(served.home, "runs", "list", "--tenant", "openssh", "--json").stdout)["runs"]
    assert [(x["run_id"], x["status"], x["source"]) for x in listed] == [(run["run_id"], "applied", "sftp")]
    assert listed[0]["counts"]["users"]["created"] == 59
    wait_for(lambda: emails(served.home, run["run_id"]))
    assert not any((served.home / "inbox" / "openssh").iterdir())


def test_paramiko_password_upload_is_applied_and_reported(served, tmp_path):
    bundle = zip_folder(SAMPLES / "clean", tmp_path / "nightly.zip", comment="paramiko")
    t, sftp = paramiko_sftp(served.port, "paramiko")
    try:
        sftp.put(str(bundle), "nightly.zip")
    finally:
        t.close()
    [run] = wait_finished(served.engine, "paramiko")
    assert (run["status"], run["source"]) == ("applied", "sftp")
    wait_for(lambda: emails(served.home, run["run_id"]))


def test_killed_upload_is_not_processed(served, tmp_path):
    data = zip_folder(SAMPLES / "clean", tmp_path / "cut.zip").read_bytes()
    t, sftp = paramiko_sftp(served.port, "killed")
    f = sftp.open("cut.zip", "wb")
    f.write(data[: len(data) // 2])
    f.flush()
    sftp.stat("cut.zip")  # a round trip: the first half is on the server
    t.close()  # the connection drops with the file still open
    inbox = served.home / "inbox" / "killed"
    wait_for(lambda: (inbox / "cut.zip.aborted").exists())
    time.sleep(1.0)  # longer than the watched folder's stability wait: it must not take it either
    assert runs_of(served.engine, "killed") == []
    assert [p.name for p in inbox.iterdir()] == ["cut.zip.aborted"]


def test_slow_upload_is_processed_once_after_close(served, tmp_path):
    data = zip_folder(SAMPLES / "clean", tmp_path / "slow.zip", comment="slow").read_bytes()
    chunk = len(data) // 4 + 1
    t, sftp = paramiko_sftp(served.port, "slow")
    try:
        f = sftp.open("slow.zip", "wb")
        for i in range(0, len(data), chunk):
            f.write(data[i:i + chunk])
            f.flush()
            sftp.stat("slow.zip")
            time.sleep(0.3)  # slower than the watched folder's stability wait (0.3 s)
            assert runs_of(served.engine, "slow") == []
        f.close()
    finally:
        t.close()
    [run] = wait_finished(served.engine, "slow")
    assert run["status"] == "applied"
    time.sleep(0.7)
    assert len(runs_of(served.engine, "slow")) == 1


def test_rename_into_place_in_the_watched_folder_is_processed(served, tmp_path):
    inbox = served.home / "inbox" / "watched"
    part = inbox / "nightly.zip.part"
    zip_folder(SAMPLES / "clean", part, comment="watched")
    time.sleep(0.5)
    assert runs_of(served.engine, "watched") == []  # a .part is never taken
    os.rename(part, inbox / "nightly.zip")
    [run] = wait_finished(served.engine, "watched")
    assert (run["status"], run["source"]) == ("applied", "watch")


def test_loose_csvs_and_manifest_make_one_run(served):
    names = sorted(p.name for p in (SAMPLES / "clean").iterdir() if p.name != "manifest.csv") + ["manifest.csv"]
    t, sftp = paramiko_sftp(served.port, "loose")
    try:
        for name in names:  # one by one, the manifest last
            sftp.put(str(SAMPLES / "clean" / name), name)
    finally:
        t.close()
    [run] = wait_finished(served.engine, "loose")
    assert run["status"] == "applied"
    assert run["counts"]["enrollments"]["created"] == 89
    time.sleep(0.7)
    assert len(runs_of(served.engine, "loose")) == 1


# ---------------------------------------------------------------- start and stop


def test_serve_on_a_missing_home_creates_it_prints_a_working_password_and_stops_on_sigterm(tmp_path):
    home = tmp_path / "new-home"
    port = free_port()
    # without a terminal (as here) only `serve --init` creates a missing home (test_service.py)
    daemon = DaemonProcess(home, {"ROSTERDROP_SFTP__PORT": str(port), "ROSTERDROP_DAEMON__WORKERS": "1"},
                           "--init", stdout=subprocess.PIPE)
    try:
        daemon.wait_log("serving 1 tenants")
        out = daemon.proc.stdout.read1().decode()
        password = next(line.strip() for line in out.splitlines() if line.startswith("    "))
        assert f"sftp -P {port} demo@127.0.0.1" in out
        assert (home / "rosterdrop.toml").exists() and (home / "inbox" / "demo").is_dir()
        t, sftp = paramiko_sftp(port, "demo", password)
        try:
            sftp.put(str(zip_folder(SAMPLES / "clean", tmp_path / "n.zip")), "nightly.zip")
        finally:
            t.close()
        [run] = wait_finished(engine_of(home), "demo")
        assert run["status"] == "applied"
        daemon.signal(signal.SIGTERM)
        rc, took = daemon.wait(10)
        assert rc == 0 and took < 10, daemon.log()
        assert password not in daemon.log()  # printed on stdout once, never logged
    finally:
        daemon.kill_all()


def _watched_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"workers": 1, "watch_stable_seconds": 0.1})
    return home


def test_kill_9_mid_apply_then_restart_applies_the_drop_exactly_once(tmp_path, hook_path, caplog):
    reference = tmp_path / "reference"
    write_home(reference, ["lincoln"])
    expected = process_path(Context.load(reference), SAMPLES / "clean", "lincoln")
    expected_audit = audit_rows(engine_of(reference), expected.run_id)

    home = _watched_home(tmp_path)
    marker = tmp_path / "in-apply"
    daemon = DaemonProcess(home, {"PYTHONPATH": hook_path, "RD_HOOK_MARKER": str(marker)})
    try:
        daemon.wait_log("serving")
        zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "nightly.zip")
        wait_for(marker.exists)
        worker = int(wait_for(lambda: marker.read_text()))
        daemon.proc.kill()  # kill -9 of the daemon only: its worker must die with it
        daemon.wait(5)
        wait_for(lambda: not pid_alive(worker), timeout=5)
    finally:
        daemon.kill_all()
    engine = engine_of(home)
    [run] = runs_of(engine, "lincoln")
    assert run["status"] == "processing"
    assert audit_rows(engine, run["run_id"]) == 0  # the open transaction rolled back

    caplog.set_level(logging.INFO, logger="rosterdrop")
    assert Daemon(Context.load(home), burst=True).run() == 0  # the restart (in-process, burst)
    assert f"run {run['run_id']} tenant lincoln: resumed" in caplog.text
    [after] = runs_of(engine, "lincoln")
    assert (after["run_id"], after["status"]) == (run["run_id"], "applied")
    assert audit_rows(engine, run["run_id"]) == expected_audit
    assert len(emails(home, run["run_id"])) == 1
    export = Context.load(home)
    from processor.apply.export import export_roster

    assert export_roster(export.engine, "lincoln", True) == export_roster(engine_of(reference), "lincoln", True)


def test_sigterm_lets_the_current_run_finish_and_exits_0(tmp_path, hook_path):
    home = _watched_home(tmp_path)
    marker = tmp_path / "in-apply"
    daemon = DaemonProcess(home, {"PYTHONPATH": hook_path, "RD_HOOK_MARKER": str(marker),
                                  "RD_HOOK_SLEEP": "0.8"})
    try:
        daemon.wait_log("serving")
        zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "nightly.zip")
        wait_for(marker.exists)
        daemon.signal(signal.SIGTERM)
        rc, took = daemon.wait(10)
    finally:
        daemon.kill_all()
    assert rc == 0 and took < 10, daemon.log()
    [run] = runs_of(engine_of(home), "lincoln")
    assert run["status"] == "applied"


def test_a_second_signal_stops_at_once_and_the_run_resumes_later(tmp_path, hook_path):
    home = _watched_home(tmp_path)
    marker = tmp_path / "in-apply"
    daemon = DaemonProcess(home, {"PYTHONPATH": hook_path, "RD_HOOK_MARKER": str(marker)})
    try:
        daemon.wait_log("serving")
        zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "nightly.zip")
        wait_for(marker.exists)
        worker = int(wait_for(lambda: marker.read_text()))
        daemon.signal(signal.SIGINT)
        daemon.wait_log("stopping")
        daemon.signal(signal.SIGINT)
        rc, took = daemon.wait(5)
        wait_for(lambda: not pid_alive(worker), timeout=5)
    finally:
        daemon.kill_all()
    assert rc == 0 and took < 3, daemon.log()
    [run] = runs_of(engine_of(home), "lincoln")
    assert run["status"] == "processing"  # left for the next start, nothing applied
    assert audit_rows(engine_of(home), run["run_id"]) == 0


# ---------------------------------------------------------------- burst: in-process, no sleeps


def test_burst_takes_what_waits_processes_it_delivers_the_outbox_and_exits(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln", "roosevelt"], daemon={"workers": 1})
    zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "nightly.zip")
    zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "ignored.zip.part")
    for f in (SAMPLES / "clean").iterdir():  # loose CSVs with their manifest: one bundle
        (home / "inbox" / "roosevelt" / f.name).write_bytes(f.read_bytes())
    assert Daemon(Context.load(home), burst=True).run() == 0
    engine = engine_of(home)
    for tenant in ("lincoln", "roosevelt"):
        [run] = runs_of(engine, tenant)
        assert run["status"] == "applied", tenant
        assert len(emails(home, run["run_id"])) == 1  # delivered (.eml without [smtp]) before exit
    assert [p.name for p in (home / "inbox" / "lincoln").iterdir()] == ["ignored.zip.part"]
    assert not any((home / "inbox" / "roosevelt").iterdir())
    assert not any((home / "spool").rglob("*.zip"))


def test_burst_resumes_unfinished_runs_in_order_and_adopts_orphan_spool_folders(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln", "roosevelt"], daemon={"workers": 1})
    ctx = Context.load(home)
    # A crash after the run was recorded (`received`), and one in the middle of processing.
    first = receive(ctx, zip_folder(SAMPLES / "clean", tmp_path / "a" / "first.zip"), "lincoln", "sftp", True)
    second = receive(ctx, zip_folder(SAMPLES / "delta", tmp_path / "b" / "second.zip"), "lincoln", "sftp", True)
    from processor.apply.runs import set_status
    from processor.runs import RunStatus

    set_status(ctx.engine, second.run_id, RunStatus.PROCESSING)
    # A crash between the move into the spool and the run's insert: a folder no run knows.
    orphan_id = "20260101T000000-0badc0de"
    take(ctx, zip_folder(SAMPLES / "clean", tmp_path / "c" / "orphan.zip"), "roosevelt", orphan_id, move=True)

    assert Daemon(Context.load(home), burst=True).run() == 0
    engine = engine_of(home)
    lincoln = runs_of(engine, "lincoln")[::-1]
    assert [(r["run_id"], r["status"]) for r in lincoln] == [(first.run_id, "applied"), (second.run_id, "applied")]
    users = lincoln[1]["counts"]["users"]
    assert (users["created"], users["updated"], users["deactivated"]) == (1, 1, 1)  # the delta, on top of clean
    [adopted] = runs_of(engine, "roosevelt")
    assert adopted["status"] == "applied" and adopted["run_id"] != orphan_id
    assert not (home / "spool" / "roosevelt" / orphan_id).exists()


def test_a_failed_run_is_kept_the_next_drop_goes_ahead_and_a_retry_supersedes_it(tmp_path, hook_path, monkeypatch):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"workers": 1})
    inbox = home / "inbox" / "lincoln"
    zip_folder(SAMPLES / "clean", inbox / "1-broken.zip")
    zip_folder(SAMPLES / "clean", inbox / "2-next.zip", comment="next")
    monkeypatch.setenv("PYTHONPATH", hook_path)
    monkeypatch.setenv("RD_HOOK_FAIL_NAME", "1-broken.zip")
    assert Daemon(Context.load(home), burst=True).run() == 1  # burst reports the failure...
    engine = engine_of(home)
    statuses = {r["run_id"]: r["status"] for r in runs_of(engine, "lincoln")}
    assert len(statuses) == 2 and "applied" in statuses.values()
    failed = next(k for k, v in statuses.items() if v != "applied")
    assert statuses[failed] == "failed"  # recorded, not left `processing`; the loop went on
    assert len(emails(home, failed)) == 1  # the district was told
    assert (home / "spool" / "lincoln" / failed).is_dir()  # kept for a retry

    monkeypatch.delenv("RD_HOOK_FAIL_NAME")
    assert Daemon(Context.load(home), burst=True).run() == 0
    assert {r["run_id"]: r["status"] for r in runs_of(engine, "lincoln")}[failed] == "failed"  # not resumed
    assert (home / "spool" / "lincoln" / failed).is_dir()  # nor archived by the restart
    r = cli(home, "runs", "retry", failed, "--json")
    # the older drop is not applied over the newer one
    assert r.returncode == 2, r.stderr
    assert json.loads(r.stdout)["status"] == "superseded"
    after = {r["run_id"]: r["status"] for r in runs_of(engine, "lincoln")}
    assert sorted(after.values()) == ["applied", "superseded"]
    assert audit_rows(engine, failed) == 0
    assert len(emails(home, failed)) == 2  # and the district is told it was not applied


def test_a_busy_store_is_retried_in_the_same_process(tmp_path, hook_path, monkeypatch, caplog):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"workers": 1})
    zip_folder(SAMPLES / "clean", home / "inbox" / "lincoln" / "nightly.zip")
    monkeypatch.setenv("PYTHONPATH", hook_path)
    monkeypatch.setenv("RD_HOOK_LOCKED_ONCE", str(tmp_path / "locked-once"))
    monkeypatch.setattr("processor.daemon.local_queue.TRANSIENT_FIRST_DELAY", 0.1)
    assert Daemon(Context.load(home), burst=True).run() == 0
    [run] = runs_of(engine_of(home), "lincoln")
    assert run["status"] == "applied"
    assert "the store failed (OperationalError: database is locked); retrying" in caplog.text


def test_a_newer_drop_is_processed_normally_while_a_run_is_held(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"workers": 1})
    inbox = home / "inbox" / "lincoln"
    zip_folder(SAMPLES / "clean", inbox / "1-clean.zip")
    zip_folder(SAMPLES / "mass_withdrawal", inbox / "2-mass-withdrawal.zip")
    zip_folder(SAMPLES / "delta", inbox / "3-delta.zip")
    assert Daemon(Context.load(home), burst=True).run() == 0
    held_then = runs_of(engine_of(home), "lincoln")[::-1]
    # the hold was superseded by the newer applied drop (arrival order kept within the tenant)
    assert [r["status"] for r in held_then] == ["applied", "superseded", "applied"]
    assert held_then[1]["holds"] >= 1


# ---------------------------------------------------------------- scheduled jobs


def test_missing_drop_notice_is_queued_once_per_gap(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln", "quiet"], tenant_extra={"lincoln": "expect_drop_every_hours = 24",
                                                         "quiet": "expect_drop_every_hours = 24"})
    ctx = Context.load(home)
    hour = 3600
    now = time.time()
    first = process_path(ctx, SAMPLES / "clean", "lincoln")
    with ctx.engine.begin() as conn:  # the first drop came 100 hours ago
        conn.execute(update(runs).where(runs.c.run_id == first.run_id).values(
            received_at=datetime.fromtimestamp(now - 100 * hour, UTC).isoformat(timespec="microseconds")))
    started = now - 100 * hour

    def notices(tenant: str) -> int:
        with ctx.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox).where(
                outbox.c.tenant == tenant, outbox.c.kind == "missing_drop")).scalar_one()

    assert check_missing_drops(ctx, now=now - 77 * hour, started_at=started) == []
    assert check_missing_drops(ctx, now=now - 75 * hour, started_at=started) == ["lincoln", "quiet"]
    assert check_missing_drops(ctx, now=now - 50 * hour, started_at=started) == []  # same gap: told already
    process_path(ctx, SAMPLES / "delta", "lincoln")  # a drop now ends lincoln's gap
    assert check_missing_drops(ctx, now=now + 23 * hour, started_at=started) == []
    assert check_missing_drops(ctx, now=now + 25 * hour, started_at=started) == ["lincoln"]
    assert (notices("lincoln"), notices("quiet")) == (2, 1)


def test_retention_deletes_old_raw_drops_and_aborted_uploads_but_keeps_runs(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"retention_days": 30})
    ctx = Context.load(home)
    run = process_path(ctx, SAMPLES / "clean", "lincoln")
    old_id = datetime.fromtimestamp(time.time() - 31 * 86400, UTC).strftime("%Y%m%dT%H%M%S") + "-00000001"
    old = home / "archive" / "lincoln" / old_id
    old.mkdir(parents=True)
    (old / "nightly.zip").write_bytes(b"old")
    aborted = home / "inbox" / "lincoln" / "cut.zip.aborted"
    aborted.write_bytes(b"half")
    os.utime(aborted, (time.time() - 31 * 86400,) * 2)
    fresh_aborted = home / "inbox" / "lincoln" / "new.zip.aborted"
    fresh_aborted.write_bytes(b"half")

    assert apply_retention(ctx) == 2
    assert not old.exists() and not aborted.exists() and fresh_aborted.exists()
    assert (home / "archive" / "lincoln" / run.run_id).exists()
    assert [r["run_id"] for r in runs_of(ctx.engine, "lincoln")] == [run.run_id]


def test_retention_days_0_keeps_raw_drops_forever(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"retention_days": 0})
    old = home / "archive" / "lincoln" / "20200101T000000-00000001"
    old.mkdir(parents=True)
    assert apply_retention(Context.load(home)) == 0 and old.exists()


def test_weekly_digest_is_queued_for_tenants_with_recipients(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln", "roosevelt"])
    ctx = Context.load(home)
    process_path(ctx, SAMPLES / "clean", "lincoln")
    assert queue_weekly_digests(ctx) == 2


def test_cron_schedules_use_crontab_weekday_numbers():
    # APScheduler 3 counts weekdays from Monday = 0; a crontab line counts from Sunday = 0.
    assert str(cron_trigger("0 2 * * 1-5", "k").fields[4]) == "mon,tue,wed,thu,fri"
    assert str(cron_trigger("30 6 * * 0", "k").fields[4]) == "sun"
    assert str(cron_trigger("0 7 * * 7", "k").fields[4]) == "sun"
    assert str(cron_trigger("0 7 * * mon", "k").fields[4]) == "mon"
    assert str(cron_trigger("0 2 * * *", "k").fields[4]) == "*"


def test_a_bad_schedule_is_a_config_error_naming_the_key(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"weekly_digest": "every monday"})
    with pytest.raises(ConfigError, match="daemon.weekly_digest"):
        Daemon(Context.load(home))  # before any door opens; the CLI prints it and exits 1
