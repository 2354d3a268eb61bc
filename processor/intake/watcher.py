"""The watched-folder door: every tenant's inbox, written by someone else (OpenSSH chroot SFTP, rsync, a share).

A file is a candidate when it is closed after writing or moved into place (with PollingObserver, which
sees no closes: when it appears or changes). A candidate is taken once its size and mtime have not
changed for `stable_seconds`, and, for a `.zip`, once it opens and every member's CRC passes. Dot
files, `.part`/`.tmp`/`.filepart` names and symlinks are never taken. Loose CSV files go to the
LooseCsvCollector (see loose.py), like on the SFTP door.

inotify drops events when its queue overflows and never sees writes made on another NFS client, so
the inboxes are also rescanned at start-up and every `rescan_seconds`.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from processor.intake.loose import LooseCsvCollector, OnUpload, is_ignored, is_loose_csv

log = logging.getLogger("rosterdrop.intake.watch")

Signature = tuple[int, int, int]  # inode, size, mtime in ns: a new upload under an old name differs


@dataclass
class _Candidate:
    tenant: str
    sig: Signature | None = None
    since: float = 0.0  # when sig was first seen
    bad_sig: Signature | None = None  # the version of a .zip that failed its check
    bad_since: float = 0.0


def zip_ok(path: Path) -> bool:
    """True if the zip opens and every member's CRC passes (a half-written zip has no central directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f, zipfile.ZipFile(f) as z:
            return z.testzip() is None
    except UnicodeDecodeError:
        # A name flagged UTF-8 that is not: the central directory was read whole, so the zip is complete;
        # the run rejects it with a clear issue (bundle/unpack.py) rather than the inbox keeping it forever.
        return True
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
            RuntimeError, ValueError):
        # RuntimeError: encrypted member; NotImplementedError: unsupported compression. Neither is
        # a drop we can read, but they are not "still being written" either: see corrupt_grace_seconds.
        return False


class InboxWatcher:
    """Watches `home/inbox/<tenant>/` for every tenant and hands complete files to `on_upload`.

    `on_upload(tenant, path)` is called from the watcher's own thread, one call at a time, with a file
    or a `.bundle-*` folder of loose CSVs. The consumer is expected to move the path out of the inbox
    atomically before returning. It may be called for a path that is already gone (taken by another
    door, or by an earlier call): the consumer must tolerate a missing path. A file left in place by
    the consumer is not handed over again unless it changes.

    A `.zip` that stays corrupt for `corrupt_grace_seconds` is handed over anyway, so that the pipeline
    rejects it and the district hears about it instead of the drop sitting in the inbox unnoticed.
    """

    def __init__(self, home: Path, tenants: Iterable[str], on_upload: OnUpload, polling: bool = False,
                 stable_seconds: float = 2.0, rescan_seconds: float = 60, *, quiet_period: float = 60.0,
                 corrupt_grace_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.home = Path(home)
        self.inbox_root = self.home / "inbox"
        self.tenants = frozenset(tenants)
        self.on_upload = on_upload
        self.polling = polling
        self.stable_seconds = stable_seconds
        self.rescan_seconds = rescan_seconds
        self.corrupt_grace_seconds = corrupt_grace_seconds
        self.collector = LooseCsvCollector(self.home, on_upload, quiet_period=quiet_period)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[Path, _Candidate] = {}
        self._taken: dict[Path, Signature] = {}
        self._warned: set[Path] = set()
        self._observer = None
        self._sees_closes = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover, rescan and start watching; returns once the observer runs."""
        for tenant in self.tenants:
            self.inbox(tenant).mkdir(parents=True, exist_ok=True)
        observer = self._observer_for_platform()
        handler = _EventHandler(self)
        for tenant in sorted(self.tenants):
            observer.schedule(handler, str(self.inbox(tenant)), recursive=True)
        observer.start()
        self._observer = observer
        for tenant in sorted(self.tenants):
            self.collector.recover(tenant, adopt_csvs=False)
        self.collector.start()
        self.rescan()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inbox-watcher", daemon=True)
        self._thread.start()
        log.info("watching %d tenant inboxes (%s)", len(self.tenants), "polling" if self.polling else "inotify")

    def _observer_for_platform(self):
        if self.polling:
            self._sees_closes = False
            return PollingObserver(timeout=max(0.1, min(1.0, self.stable_seconds / 2)))
        try:
            from watchdog.observers.inotify import InotifyObserver
        except ImportError:  # not Linux: no close events; fall back to creations and changes
            self._sees_closes = False
            return Observer()
        self._sees_closes = True
        # Full events: a file moved in from outside the inbox (`mv /tmp/x.zip inbox/t/`) is reported
        # as a move, not as a creation that could also be a writer opening a new file.
        return InotifyObserver(generate_full_events=True)

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.collector.stop()

    def inbox(self, tenant: str) -> Path:
        return self.inbox_root / tenant

    def rescan(self) -> None:
        """Consider every file in every inbox: catches events inotify dropped or never saw (NFS)."""
        for tenant in sorted(self.tenants):
            inbox = self.inbox(tenant)
            for root, dirs, files in os.walk(inbox):  # does not follow symlinked folders
                rel_root = Path(root).relative_to(inbox)
                dirs[:] = [d for d in dirs if not is_ignored((rel_root / d).as_posix())]
                for name in files:
                    self.consider(Path(root) / name)
        with self._lock:
            # forget taken files the consumer has moved away; a new upload under the name is new
            for path in [p for p in self._taken if not os.path.lexists(p)]:
                del self._taken[path]
            self._warned = {p for p in self._warned if os.path.lexists(p)}

    def consider(self, path: Path) -> None:
        """A file may be complete: check it from now on (events and rescans call this)."""
        tenant, rel = self._locate(path)
        if tenant is None or is_ignored(rel):
            return
        with self._lock:
            if path not in self._pending:
                self._pending[path] = _Candidate(tenant=tenant)

    # ------------------------------------------------------------ the checker

    def _run(self) -> None:
        interval = max(0.02, min(0.5, self.stable_seconds / 4))
        next_rescan = self._clock() + self.rescan_seconds
        while not self._stop.wait(interval):
            try:
                if self._clock() >= next_rescan:
                    next_rescan = self._clock() + self.rescan_seconds
                    self.rescan()
                self.check()
            except Exception:  # one bad file must not stop the door
                log.exception("inbox watcher: check failed")

    def check(self) -> None:
        """Take every candidate that has been stable long enough (and, for a zip, passes its CRCs)."""
        with self._lock:
            candidates = list(self._pending.items())
        for path, cand in candidates:
            if self._stop.is_set():
                return
            self._check_one(path, cand)

    def _check_one(self, path: Path, cand: _Candidate) -> None:
        now = self._clock()
        sig = self._signature(path)
        if sig is None:
            with self._lock:
                self._pending.pop(path, None)
            return
        with self._lock:
            if self._taken.get(path) == sig:
                self._pending.pop(path, None)  # handed over before and left in place: not again
                return
        if sig != cand.sig:
            cand.sig, cand.since = sig, now
            return
        if now - cand.since < self.stable_seconds:
            return
        rel = self._locate(path)[1]
        if path.suffix.lower() == ".zip":
            if cand.bad_sig == sig:
                if now - cand.bad_since < self.corrupt_grace_seconds:
                    return
                log.warning("tenant %s: %s is still not a readable zip after %.0f s; handing it over to be "
                            "reported", cand.tenant, rel, self.corrupt_grace_seconds)
            elif not zip_ok(path):
                cand.bad_sig, cand.bad_since = sig, now
                log.warning("tenant %s: %s is not a complete zip (open or CRC check failed); waiting for it "
                            "to be completed or uploaded again", cand.tenant, rel)
                return
            if self._signature(path) != sig:
                return  # changed while being checked: start over on the next pass
        with self._lock:
            self._pending.pop(path, None)
            self._taken[path] = sig
        if is_loose_csv(path.name):
            self.collector.add(cand.tenant, path)
            return
        log.info("tenant %s: %s arrived in the watched inbox", cand.tenant, rel)
        try:
            self.on_upload(cand.tenant, path)
        except Exception:
            # the file stays in the inbox; forget it was taken so that a later rescan retries it
            log.exception("tenant %s: handing over %s failed", cand.tenant, rel)
            with self._lock:
                self._taken.pop(path, None)

    def _signature(self, path: Path) -> Signature | None:
        """(inode, size, mtime) of a regular file; None if it is gone or is not a regular file."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISLNK(st.st_mode) and path not in self._warned:
                self._warned.add(path)
                log.warning("ignoring symlink %s in an inbox: only regular files are taken", path.name)
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _locate(self, path: Path) -> tuple[str | None, str]:
        """(tenant, path relative to its inbox) for a path inside a configured tenant's inbox."""
        try:
            rel = Path(path).relative_to(self.inbox_root)
        except ValueError:
            return None, ""
        if len(rel.parts) < 2 or rel.parts[0] not in self.tenants:
            return None, ""
        return rel.parts[0], Path(*rel.parts[1:]).as_posix()


class _EventHandler(FileSystemEventHandler):
    """Turns watchdog events into candidates; runs in the observer's thread, so it only records."""

    def __init__(self, watcher: InboxWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        watcher = self.watcher
        if isinstance(event, FileClosedEvent):
            watcher.consider(Path(os.fsdecode(event.src_path)))
        elif isinstance(event, FileMovedEvent):
            if event.dest_path:  # empty when moved out of the inbox
                watcher.consider(Path(os.fsdecode(event.dest_path)))
        elif isinstance(event, DirMovedEvent):
            # a folder moved into place: consider what is in it (watchdog's per-file events for it are
            # not guaranteed; considering a file twice is harmless)
            if event.dest_path:
                for root, _dirs, files in os.walk(os.fsdecode(event.dest_path)):
                    for name in files:
                        watcher.consider(Path(root) / name)
        elif isinstance(event, FileCreatedEvent) and event.is_synthetic:
            watcher.consider(Path(os.fsdecode(event.src_path)))  # inside a folder moved into place
        elif not watcher._sees_closes and isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            # polling sees no closes; the stability check is what tells a finished file
            watcher.consider(Path(os.fsdecode(event.src_path)))
