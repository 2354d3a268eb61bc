"""The doors: the built-in SFTP server, the watched folder and scheduled SFTP pulls, and one way in for
all of them.

Every door calls hand_over(tenant, path, source): pipeline.receive() moves the file atomically into the
spool and records the run (`received`) before anything else (with the procrastinate backend it also
stores the drop's bytes and rings the tenant's wake-up, in the same transaction); the Drop then goes to
the queue. A hand-over that fails keeps the file where it is and is retried every minute.

recover(): spool folders without a run (a crash between the move and the insert) are recorded and
processed, finished runs' folders archived, and what a pull left half-way is handed over.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import select

from processor.apply.store import runs
from processor.context import Context, UserError
from processor.daemon.scheduled import mtime
from processor.intake import pull
from processor.intake.loose import LooseCsvCollector, is_ignored, is_loose_csv
from processor.intake.spool import Drop, archive, spooled_bundle, spooled_runs
from processor.pipeline import receive
from processor.runs import RunResult

log = logging.getLogger("rosterdrop.daemon")

UNFINISHED = ("received", "processing")
ORPHAN_MIN_AGE_SECONDS = 60.0  # while running, a spool folder this young may be a receive in flight


class Doors:
    """The intake doors of one home; to_queue(drop) is called (from door threads) for every recorded drop."""

    def __init__(self, ctx: Context, to_queue: Callable[[Drop], None], stopping: threading.Event) -> None:
        self.ctx = ctx
        self.to_queue = to_queue
        self.stopping = stopping
        self.tenants = sorted(ctx.config.tenants)
        watch = ctx.config.daemon.watch_inbox
        self.watch = (not ctx.config.sftp.enabled) if watch is None else watch
        # What a file found lying in an inbox most likely came through.
        self.inbox_source = "sftp" if ctx.config.sftp.enabled and not self.watch else "watch"
        self.sftp = None
        self.watcher = None
        self._lock = threading.Lock()
        # made up front: a defaultdict filled from several door threads could hand out two locks for one tenant
        self._receive_locks = {t: threading.RLock() for t in self.tenants}
        self._failed_hand_overs: dict[Path, tuple[str, str]] = {}  # path -> (tenant, source)

    # ------------------------------------------------------------ one way in for every door

    def hand_over(self, tenant: str, path: Path, source: str) -> str | None:
        """Spool and record a complete upload, queue its drop; the run id. Thread-safe; called by every door.

        A path that is already gone (another door took it) is not an error: None. Any other failure is
        raised back to the door (which keeps the file and logs it) and the hand-over is retried every
        minute.
        """
        self.ctx.config.tenant(tenant)  # ConfigError for a tenant that is not configured
        with self._receive_locks[tenant]:  # one receive per tenant at a time: the sha checks see each other
            if not os.path.lexists(path):
                return None
            try:
                received = receive(self.ctx, path, tenant, source=source, move=True)
            except (UserError, FileNotFoundError):
                if not os.path.lexists(path):
                    return None  # taken in the meantime
                self._remember_failure(tenant, path, source)
                raise
            except Exception:
                if os.path.lexists(path):
                    self._remember_failure(tenant, path, source)
                raise
        with self._lock:
            self._failed_hand_overs.pop(Path(path), None)
        if isinstance(received, RunResult):
            return received.run_id  # a duplicate: recorded and archived, nothing to run
        self.to_queue(received)
        return received.run_id

    def _remember_failure(self, tenant: str, path: Path, source: str) -> None:
        with self._lock:
            self._failed_hand_overs[Path(path)] = (tenant, source)

    def try_hand_over(self, tenant: str, path: Path, source: str) -> None:
        try:
            self.hand_over(tenant, path, source)
        except Exception:  # noqa: BLE001 - logged; the file stays where it is and is retried
            log.exception("tenant %s: handing over %s failed; retried in a minute", tenant, Path(path).name)

    def retry_hand_overs(self) -> None:
        """Every minute: failed hand-overs again, and spool folders a crash left without a run."""
        with self._lock:
            failed = dict(self._failed_hand_overs)
        for path, (tenant, source) in failed.items():
            if os.path.lexists(path):
                self.try_hand_over(tenant, path, source)
            else:
                with self._lock:
                    self._failed_hand_overs.pop(path, None)
        self.reconcile_spool(at_start=False)

    def pull(self, tenant: str) -> None:
        """The tenant's scheduled pull."""
        try:
            run_ids = pull.pull_tenant(self.ctx, tenant, self.hand_over, stop=self.stopping)
        except pull.PullError as exc:
            log.warning("tenant %s: pull failed: %s", tenant, exc)
            return
        if run_ids:
            log.info("tenant %s: pull fetched %d drops", tenant, len(run_ids))

    # ------------------------------------------------------------ start-up recovery

    def recover(self) -> None:
        """Reconcile the spool, hand over what a pull left half-way."""
        self.reconcile_spool(at_start=True)
        for tenant in self.tenants:
            pull.recover(self.ctx, tenant, self.hand_over)

    def reconcile_spool(self, at_start: bool) -> None:
        """Spool folders without a run are adopted; at start, finished runs' folders are archived.

        A folder without a run is a drop a crash caught between its move into the spool and its insert.
        While the daemon runs, only folders older than a minute count (a receive may be in flight).
        """
        folders = [f for f in spooled_runs(self.ctx) if f[0] in self.ctx.config.tenants]
        statuses = self._statuses([run_id for _, run_id, _ in folders])
        now = time.time()
        for tenant, run_id, folder in folders:
            status = statuses.get(run_id)
            if status is None:
                if not at_start and now - mtime(folder) < ORPHAN_MIN_AGE_SECONDS:
                    continue
                with self._receive_locks[tenant]:
                    if self._statuses([run_id]):
                        continue  # recorded in the meantime
                    self._adopt(tenant, run_id, folder)
            elif at_start and status not in (*UNFINISHED, "held", "failed"):
                # finished (its transaction committed) but a crash came before its folder was archived;
                # also held runs a newer drop superseded
                archive(self.ctx, folder, tenant, run_id)

    def _statuses(self, run_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.ctx.engine.connect() as conn:
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i:i + 500]
                out.update(conn.execute(select(runs.c.run_id, runs.c.status)
                                        .where(runs.c.run_id.in_(chunk))).all())
        return out

    def _adopt(self, tenant: str, run_id: str, folder: Path) -> None:
        bundle = spooled_bundle(folder)
        if bundle is not None:
            log.info("tenant %s: spool folder %s has no run (interrupted between spooling and recording); "
                     "taking its drop now", tenant, run_id)
            # It becomes a new run: the folder's id was never recorded anywhere, and receive() applies
            # the duplicate and resume rules to its bytes like to any other drop.
            self.try_hand_over(tenant, bundle, self.inbox_source)
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: the hand-over failed and is retried

    # ------------------------------------------------------------ open and close

    def open(self) -> list[str]:
        """Start the SFTP server and the watcher (or sweep the inboxes once); what is open, for the log."""
        from processor.intake.limits import sftp_options
        from processor.intake.sftp_server import SftpServer
        from processor.intake.watcher import InboxWatcher

        cfg = self.ctx.config
        if cfg.sftp.enabled:
            self.sftp = SftpServer(self.ctx.home, self.ctx.engine, cfg.sftp.host, cfg.sftp.port, self.tenants,
                                   partial(self.hand_over, source="sftp"),
                                   quiet_period=cfg.sftp.quiet_period_seconds, **sftp_options(cfg))
            try:
                self.sftp.start()
            except OSError as exc:
                raise UserError(f"cannot listen on {cfg.sftp.host}:{cfg.sftp.port} for SFTP: {exc.strerror or exc}; "
                                "is another `rosterdrop serve` running? Set [sftp] port (or "
                                "ROSTERDROP_SFTP__PORT), or [sftp] enabled = false") from None
        if self.watch:
            self.watcher = InboxWatcher(self.ctx.home, self.tenants, partial(self.hand_over, source="watch"),
                                        polling=cfg.daemon.polling_observer,
                                        stable_seconds=cfg.daemon.watch_stable_seconds,
                                        rescan_seconds=cfg.daemon.rescan_seconds,
                                        quiet_period=cfg.sftp.quiet_period_seconds)
            self.watcher.start()  # its start rescans the inboxes
        elif self.sftp is not None:
            # Uploads completed just before a crash were never handed over, and nothing rescans: take them.
            self.sweep_inboxes(self.inbox_source)
        doors = [f"SFTP on {cfg.sftp.host}:{self.sftp.port}"] if self.sftp else []
        doors += ["watched inboxes"] if self.watcher else []
        doors += [f"pull for {n} tenants"] if (n := sum(1 for t in cfg.tenants.values() if t.pull)) else []
        if not doors:
            log.warning("no intake door is open ([sftp] enabled = false, daemon.watch_inbox = false, no pull)")
        return doors

    def take_inboxes(self) -> None:
        """Burst: whatever waits in the inboxes is handed over now, as it is (nobody is uploading)."""
        collector = LooseCsvCollector(self.ctx.home, partial(self.try_hand_over, source=self.inbox_source),
                                      quiet_period=0)
        for tenant in self.tenants:
            collector.recover(tenant)  # .bundle-* folders, loose CSVs (a complete manifest flushes at once)
        collector.flush_due()  # the rest, as if their quiet period had passed
        self.sweep_inboxes(self.inbox_source)

    def sweep_inboxes(self, source: str) -> None:
        """Hand over every complete file lying in the inboxes (CSVs are the loose collector's business)."""
        from processor.intake.watcher import zip_ok

        for tenant in self.tenants:
            inbox = self.ctx.path("inbox", tenant)
            for root, dirs, files in os.walk(inbox):
                rel_root = Path(root).relative_to(inbox)
                dirs[:] = [d for d in dirs if not is_ignored((rel_root / d).as_posix())]
                for name in sorted(files):
                    path = Path(root) / name
                    if is_ignored((rel_root / name).as_posix()) or is_loose_csv(name) or path.is_symlink():
                        continue
                    if path.suffix.lower() == ".zip" and not zip_ok(path):
                        log.warning("tenant %s: %s in the inbox is not a complete zip; left there",
                                    tenant, (rel_root / name).as_posix())
                        continue
                    self.try_hand_over(tenant, path, source)

    def close(self) -> None:
        if self.sftp is not None:
            self.sftp.stop()  # uploads in flight become aborted uploads, kept aside
        if self.watcher is not None:
            self.watcher.stop()

    def reload(self, new, added: list[str]) -> None:
        """Take a reloaded configuration: added tenants get a receive lock and an inbox before any door can
        hand a drop of theirs over."""
        from processor.service import watch_new_inboxes

        for tenant in added:
            self._receive_locks.setdefault(tenant, threading.RLock())
            self.ctx.path("inbox", tenant).mkdir(parents=True, exist_ok=True)
        self.ctx.config = new
        self.tenants = sorted(self.ctx.config.tenants)
        if self.sftp is not None:
            self.sftp.tenants = frozenset(self.tenants)
        if self.watcher is not None:
            self.watcher.tenants = frozenset(self.tenants)
            watch_new_inboxes(self.watcher, added)
