"""Which inbox files make a drop, and loose CSV files gathered into one bundle folder.

Some senders upload a bundle's CSVs one by one instead of zipping them. Handing each CSV over on its
own would make one broken drop per file, so the LooseCsvCollector waits: a directory's loose CSVs
become one bundle when its `manifest.csv` arrives and every file the manifest names is there, or
after a quiet period with no new CSV. They are then moved into a new folder
`inbox/<tenant>/.bundle-<timestamp>-<random>/` and that folder is handed to `on_upload`. Both intake
doors (the built-in SFTP server and the watched folder) use the same rules and the same collector.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

log = logging.getLogger("rosterdrop.intake")

OnUpload = Callable[[str, Path], None]

# Names that are still being written or are not meant for processing. A sender (or rsync, WinSCP,
# FileZilla) writes `x.part` / `.x.tmp` and renames it into place when complete. `.aborted` is ours:
# an upload cut off by a dropped connection is kept aside under that name.
IGNORED_SUFFIXES = (".part", ".tmp", ".filepart", ".aborted")
BUNDLE_PREFIX = ".bundle-"
MANIFEST = "manifest.csv"


def is_ignored(rel_path: str | PurePosixPath) -> bool:
    """True for a path (relative to the tenant's inbox) that must never trigger processing.

    Applies to every component, so nothing inside a dot folder or an `x.part/` folder counts either.
    """
    for part in PurePosixPath(rel_path).parts:
        low = part.lower()
        if part.startswith(".") or low.endswith(IGNORED_SUFFIXES):
            return True
    return False


def is_loose_csv(name: str) -> bool:
    return name.lower().endswith(".csv")


def _manifest_needs(manifest: Path) -> set[str] | None:
    """The CSV names a manifest says are in the bundle (`file.<entity>` = bulk | delta), lowercased.

    None when the manifest cannot be read: the bundle is then handed over as it is and the pipeline
    reports what is wrong with it.
    """
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    needs = set()
    for row in rows[1:]:
        if len(row) >= 2 and row[0].strip().lower().startswith("file.") \
                and row[1].strip().lower() in ("bulk", "delta"):
            needs.add(row[0].strip()[len("file."):].lower() + ".csv")
    return needs


@dataclass
class _Pending:
    """Loose CSVs of one directory that have not been handed over yet."""

    tenant: str
    files: dict[str, Path] = field(default_factory=dict)  # lowercased name -> path
    writing: set[Path] = field(default_factory=set)  # CSVs open for writing right now
    last_activity: float = 0.0


class LooseCsvCollector:
    """Gathers loose CSVs per inbox directory into bundle folders; see the module docstring.

    Thread-safe. `on_upload` is called from the caller's thread (a manifest completing the set) or
    from the collector's timer thread (quiet period); never while holding the collector's lock.
    """

    def __init__(self, home: Path, on_upload: OnUpload, quiet_period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.home = Path(home)
        self.on_upload = on_upload
        self.quiet_period = quiet_period
        self._clock = clock
        self._lock = threading.Lock()
        self._dirs: dict[Path, _Pending] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the quiet-period timer in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loose-csv-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = max(0.05, min(1.0, self.quiet_period / 4))
        while not self._stop.wait(interval):
            try:
                self.flush_due()
            except Exception:  # the timer must survive anything a single flush hits
                log.exception("loose CSV collector: flush failed")

    # ------------------------------------------------------------ events

    def begin_write(self, tenant: str, path: Path) -> None:
        """A CSV is being written: its directory is not bundled until the write ends."""
        with self._lock:
            pending = self._pending(tenant, path.parent)
            pending.writing.add(path)
            pending.last_activity = self._clock()

    def end_write(self, tenant: str, path: Path) -> None:
        """A write ended without a complete file (aborted upload)."""
        with self._lock:
            pending = self._dirs.get(path.parent)
            if pending is not None:
                pending.writing.discard(path)
                pending.last_activity = self._clock()

    def add(self, tenant: str, path: Path) -> None:
        """A loose CSV is complete (closed after writing, or renamed into place)."""
        with self._lock:
            pending = self._pending(tenant, path.parent)
            pending.writing.discard(path)
            pending.files[path.name.lower()] = path
            pending.last_activity = self._clock()
            ready = self._complete(pending)
        if ready:
            self._flush_dir(path.parent)

    def flush_due(self) -> list[Path]:
        """Bundle every directory quiet for the quiet period; returns the bundle folders handed over."""
        now = self._clock()
        with self._lock:
            due = [d for d, p in self._dirs.items()
                   if p.files and not p.writing and now - p.last_activity >= self.quiet_period]
        return [b for d in due if (b := self._flush_dir(d)) is not None]

    def recover(self, tenant: str, adopt_csvs: bool = True) -> None:
        """At start-up: hand over bundle folders a crash left behind and adopt loose CSVs already there.

        A crash between moving the CSVs and handing the folder over leaves a `.bundle-*` folder; it is
        complete (its CSVs were moved in before anything else), so it is handed over now. The watcher
        passes adopt_csvs=False: its rescan finds the CSVs and debounces them first.
        """
        inbox = self.home / "inbox" / tenant
        if not inbox.is_dir():
            return
        for entry in sorted(inbox.iterdir()):
            if entry.name.startswith(BUNDLE_PREFIX) and entry.is_dir() and not entry.is_symlink():
                log.info("tenant %s: handing over bundle folder %s left from before a restart",
                         tenant, entry.name)
                self._hand_over(tenant, entry)
        if not adopt_csvs:
            return
        for root, dirs, files in os.walk(inbox):
            rel_root = Path(root).relative_to(inbox)
            dirs[:] = [d for d in dirs if not is_ignored((rel_root / d).as_posix())]
            for name in files:
                path = Path(root) / name
                if is_loose_csv(name) and not is_ignored((rel_root / name).as_posix()) \
                        and path.is_file() and not path.is_symlink():
                    self.add(tenant, path)

    # ------------------------------------------------------------ internals

    def _pending(self, tenant: str, directory: Path) -> _Pending:
        pending = self._dirs.get(directory)
        if pending is None:
            pending = self._dirs[directory] = _Pending(tenant=tenant)
        return pending

    def _complete(self, pending: _Pending) -> bool:
        """True once the manifest is here with every file it names, and nothing is still being written."""
        manifest = pending.files.get(MANIFEST)
        if manifest is None or pending.writing:
            return False
        needs = _manifest_needs(manifest)
        return needs is None or needs <= set(pending.files)

    def _flush_dir(self, directory: Path) -> Path | None:
        with self._lock:
            pending = self._dirs.pop(directory, None)
            if pending is None:
                return None
            if pending.writing:  # a CSV started in the meantime: wait for it
                self._dirs[directory] = pending
                return None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            bundle = self.home / "inbox" / pending.tenant / f"{BUNDLE_PREFIX}{stamp}-{secrets.token_hex(3)}"
            # The folder is dot-named, so neither door nor a rescan takes it while it fills; the
            # on_upload call below is the hand-over. Each os.rename is atomic on one filesystem.
            bundle.mkdir(mode=0o750)
            moved = []
            for path in pending.files.values():
                try:
                    os.rename(path, bundle / path.name)
                    moved.append(path.name)
                except FileNotFoundError:
                    continue  # removed or renamed by the sender since it arrived
            if not moved:
                bundle.rmdir()
                return None
        log.info("tenant %s: %d loose CSV files bundled as %s", pending.tenant, len(moved), bundle.name)
        self._hand_over(pending.tenant, bundle)
        return bundle

    def _hand_over(self, tenant: str, bundle: Path) -> None:
        try:
            self.on_upload(tenant, bundle)
        except Exception:
            # The folder stays in the inbox; recover() hands it over at the next start.
            log.exception("tenant %s: handing over %s failed", tenant, bundle.name)
