"""The scheduled jobs: pull, missing drop, retention, weekly digest, the vendor's outbox and webhooks, the
retry sweeps; and the email outbox's own delivery thread.

scheduled_jobs() is the whole schedule, one ScheduledJob(name, trigger, run) per entry, built from the
config before any door opens (a bad cron line is a ConfigError then). Scheduler runs them on APScheduler
threads. With the procrastinate backend several hosts run the same schedule, and each job must still
run once across them: a job's run first claims its slot in the store (processor.queue.claim_slot: one
conditional write per job and minute, or per interval) while holding a PostgreSQL advisory lock of its
own, so a second host's timer finds the slot taken, or the job still running, and skips it.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from processor.apply.store import outbox, runs
from processor.calendar import send_pause_notices
from processor.config import ConfigError
from processor.context import Context
from processor.events import vendor_jobs
from processor.intake.leftovers import clean_leftovers

log = logging.getLogger("rosterdrop.daemon")

MAIL_EVERY_SECONDS = 60.0
RETRY_EVERY_SECONDS = 60.0
MISSING_DROP_CHECK_SECONDS = 60.0


class ScheduledJob(NamedTuple):
    """One entry of the schedule. options: APScheduler add_job() keywords (e.g. a first next_run_time);
    local: this host's own work (its failed hand-overs, its spool), run by every host."""

    name: str
    trigger: Any
    run: Callable[[], object]
    options: dict = {}
    local: bool = False


def scheduled_jobs(ctx: Context, started_at: float, pull: Callable[[str], object],
                   sweeps: Callable[[], object]) -> list[ScheduledJob]:
    """The whole schedule, from the config; ConfigError on a bad schedule. pull(tenant) runs a tenant's
    pull; sweeps() retries failed hand-overs and re-queues abandoned runs."""
    config = ctx.config
    jobs: list[ScheduledJob] = []
    for tenant in sorted(config.tenants):
        cfg = config.tenants[tenant].pull
        if cfg is not None:
            jobs.append(ScheduledJob(f"pull-{tenant}", cron_trigger(cfg.schedule, f"tenants.{tenant}.pull.schedule"),
                                     partial(pull, tenant)))
    if any(t.expect_drop_every_hours for t in config.tenants.values()):
        jobs.append(ScheduledJob("missing-drops", IntervalTrigger(seconds=MISSING_DROP_CHECK_SECONDS),
                                 lambda: check_missing_drops(ctx, started_at=started_at)))
    # Every host's own archive; the store's part is idempotent.
    jobs.append(ScheduledJob("retention", CronTrigger(hour=3, minute=17), lambda: apply_retention(ctx),
                             {"next_run_time": datetime.now(UTC) + timedelta(minutes=1)}, local=True))
    if config.daemon.weekly_digest:
        jobs.append(ScheduledJob("weekly-digest", cron_trigger(config.daemon.weekly_digest, "daemon.weekly_digest"),
                                 lambda: queue_weekly_digests(ctx)))
    jobs.extend(ScheduledJob(name, trigger, fn, options) for name, fn, trigger, options in vendor_jobs(ctx))
    jobs.append(ScheduledJob("pause-notices", IntervalTrigger(hours=1), lambda: send_pause_notices(ctx),
                             {"next_run_time": datetime.now(UTC) + timedelta(seconds=30)}))
    jobs.append(ScheduledJob("retry-hand-overs", IntervalTrigger(seconds=RETRY_EVERY_SECONDS), sweeps, local=True))
    return jobs


class Scheduler:
    """Runs the schedule on APScheduler threads; `once` (a callable(job) -> context manager yielding whether
    this host runs it) makes each job run once across hosts."""

    def __init__(self, jobs: list[ScheduledJob], once=None) -> None:
        self.jobs = jobs
        self.once = once
        self.scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        self.scheduler = BackgroundScheduler(job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        for job in self.jobs:
            self.scheduler.add_job(_guarded(job, self.once), job.trigger, id=job.name, name=job.name,
                                   **job.options)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)


def _guarded(job: ScheduledJob, once=None):
    def run() -> None:
        try:
            if once is None:
                job.run()
                return
            with once(job) as ours:
                if ours:
                    job.run()
        except Exception:  # noqa: BLE001 - one failed job run must not disturb the others
            log.exception("scheduled job %s failed", job.name)

    return run


# ---------------------------------------------------------------- the outbox



class Mailer:
    """Delivers the outbox every minute (retries with backoff are mail.deliver_due's) and after each run."""

    def __init__(self, ctx: Context, every: float = MAIL_EVERY_SECONDS) -> None:
        self.ctx = ctx
        self.every = every
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # a daemon thread: an SMTP server that hangs must not hold up a stop (the row's lease covers it)
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.every)
            self._kick.clear()
            if self._stop.is_set():
                return
            deliver(self.ctx)


def deliver(ctx: Context, force: bool = False) -> None:
    from processor.report.mail import deliver_due

    try:
        deliver_due(ctx, force=force)
    except Exception:  # noqa: BLE001 - a mail failure never stops the daemon; the emails stay queued
        log.exception("outbox delivery failed; the emails stay queued")




_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _crontab_weekdays(field: str) -> str:
    # APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (and 7 = Sunday again).
    # Numbers are turned into names, which mean the same in both, so a crontab line means what it says.
    if field == "*":
        return field
    names: list[str] = []
    for part in field.split(","):
        rng, _, step = part.partition("/")
        m = re.fullmatch(r"\*|([0-7])(?:-([0-7]))?", rng)
        if m is None:
            names.append(part)  # names (mon-fri) already mean the same to both
            continue
        if rng == "*":
            lo, hi = 0, 6
        else:
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else (6 if step else lo)
        names += [_WEEKDAYS[d] for d in range(lo, hi + 1, int(step) if step else 1)]
    return ",".join(dict.fromkeys(names))


def cron_trigger(expr: str, key: str) -> CronTrigger:
    """A CronTrigger from a crontab line (minute hour day month weekday, crontab's weekday numbers)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(f"{key}: expected a crontab expression of 5 fields (minute hour day month weekday), "
                          f"got {expr!r}")
    try:
        fields[4] = _crontab_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} (got {expr!r})") from None


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def check_missing_drops(ctx: Context, now: float | None = None, started_at: float | None = None) -> list[str]:
    """Queue one missing_drop notice per gap for tenants silent longer than expect_drop_every_hours.

    A gap starts at the tenant's last received drop (any run, whatever its outcome), or at started_at
    for a tenant that never sent one. It was already notified when a missing_drop notice was queued
    after its start, so each gap gets one notice however often this runs, across restarts too.
    Returns the tenants notified now.
    """
    from processor.report.mail import queue_notice

    now = time.time() if now is None else now
    notified = []
    for tenant, tcfg in sorted(ctx.config.tenants.items()):
        hours = tcfg.expect_drop_every_hours
        if not hours or not tcfg.report_to:
            continue
        with ctx.engine.begin() as conn:
            last = conn.execute(select(func.max(runs.c.received_at)).where(runs.c.tenant == tenant)).scalar()
            gap_start = _timestamp(last) if last else started_at
            if gap_start is None or now - gap_start < hours * 3600:
                continue
            told = conn.execute(select(outbox.c.id).where(
                outbox.c.tenant == tenant, outbox.c.kind == "missing_drop",
                outbox.c.created_at >= (_timestamp(last) if last else 0))).first()
            if told is not None:
                continue
            queue_notice(conn, ctx, tenant, "missing_drop", {
                "hours": (now - gap_start) / 3600, "last_received_at": last, "expect_every_hours": hours}, now=now)
        log.info("tenant %s: no drop for %.0f hours; missing-drop notice queued", tenant, (now - gap_start) / 3600)
        notified.append(tenant)
    return notified


def _received_time(entry: Path) -> float:
    # Run ids start with their UTC receive time: more reliable than an mtime a backup restore rewrote.
    try:
        return datetime.strptime(entry.name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return mtime(entry)


def mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return time.time()


def apply_retention(ctx: Context, now: float | None = None) -> int:
    """Delete raw archived drops (archive/<tenant>/<run-id>) and `.aborted` uploads older than retention_days.

    Runs, issues, reports and the audit log are kept. retention_days = 0 keeps raw drops forever.
    Returns how many entries were deleted.
    """
    clean_leftovers(ctx, now)  # .part/.tmp/dot files, empty folders, unreadable zips: [daemon] leftover_days
    days = ctx.config.daemon.retention_days
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = 0
    archive_root = ctx.path("archive")
    for tenant_dir in sorted(archive_root.iterdir()) if archive_root.is_dir() else []:
        if not tenant_dir.is_dir() or tenant_dir.is_symlink():
            continue
        for entry in tenant_dir.iterdir():
            if _received_time(entry) < cutoff:
                _remove(entry)
                removed += 1
    inbox_root = ctx.path("inbox")
    for aborted in inbox_root.glob("*/**/*.aborted") if inbox_root.is_dir() else []:
        if not aborted.is_symlink() and mtime(aborted) < cutoff:
            _remove(aborted)
            removed += 1
    from processor.intake.blobs import expire_drop_bytes

    with ctx.engine.begin() as conn:  # the procrastinate backend keeps each drop's bytes in the store too
        stored = expire_drop_bytes(conn, cutoff)
    if removed:
        log.info("retention: %d raw drops older than %d days deleted", removed, days)
    if stored:
        log.info("retention: the bytes of %d drops older than %d days deleted from the store", stored, days)
    return removed + stored


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def queue_weekly_digests(ctx: Context) -> int:
    """Queue the weekly digest for every tenant with report_to; how many were queued."""
    from processor.report.mail import queue_notice

    queued = 0
    for tenant, tcfg in sorted(ctx.config.tenants.items()):
        if not tcfg.report_to:
            continue
        with ctx.engine.begin() as conn:
            if queue_notice(conn, ctx, tenant, "weekly_digest", {}) is not None:
                queued += 1
    return queued
