"""Progress bars for long commands, on a terminal only, and the stage log lines of big runs.

A bar is drawn on stderr when stderr is a terminal and tqdm is installed; otherwise (pipes, files, the
daemon, tests, `--json` consumers reading stdout) every call is a no-op, so nothing ever lands on stdout.
The pipeline reports each stage of a run through `stage()`: a bar per stage for `process` and `holds
release` on a terminal, and INFO lines (`run <id> tenant <id>: validate started` / `... done in 1.2 s`)
for a big run wherever it runs; no roster value is ever in them.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class _Quiet:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass


class _Bar:
    def __init__(self, bar) -> None:
        self._bar = bar
        self._lock = threading.Lock()  # generate writes two bundles from two threads

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)

    def set_description(self, desc: str) -> None:
        with self._lock:
            self._bar.set_description(desc, refresh=True)


def enabled(stream=None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        if not stream.isatty():
            return False
        import tqdm  # noqa: F401
    except (ImportError, AttributeError, ValueError):
        return False
    return True


@contextmanager
def progress(total: int | None, desc: str, unit: str = "step") -> Iterator[_Bar | _Quiet]:
    """A bar of `total` units on stderr (a terminal only), closed on exit."""
    if not enabled():
        yield _Quiet()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
               unit_scale=unit != "step")
    try:
        yield _Bar(bar)
    finally:
        bar.close()


# ---------------------------------------------------------------- the stages of one run

# A run whose CSVs hold at least this many bytes (about 50,000 rows of OneRoster CSV) logs each stage's start
# and end at INFO: an operator watching the daemon sees where a big district's drop is, and how long each
# stage took. Smaller runs log only their outcome, as before.
BIG_RUN_BYTES = 5_000_000

log = logging.getLogger("rosterdrop.pipeline")
_big_runs: dict[str, bool] = {}  # run_id → logs its stages (the daemon's worker threads each run one)
_bars = False  # `process` / `holds release` on a terminal, without --json: a bar per stage on stderr
_current: ContextVar = ContextVar("rosterdrop_stage_bar", default=None)


def show_stage_bars(on: bool) -> None:
    """The CLI's `process` and `holds release`: draw a bar per stage (only if stderr is a terminal)."""
    global _bars
    _bars = bool(on) and enabled()


def bundle_bytes(path: Path) -> int:
    """The uncompressed size of a drop's files (zip members or a folder's files), read off the zip's
    directory: nothing is decompressed. 0 if it cannot be read (the read stage reports why)."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return sum(i.file_size for i in zf.infolist())
        return path.stat().st_size
    except (OSError, zipfile.BadZipFile, ValueError):
        return 0


@contextmanager
def run(run_id: str, path: Path) -> Iterator[None]:
    """One run's processing: whether its stages are logged is decided here, by the size of its files."""
    _big_runs[run_id] = bundle_bytes(path) >= BIG_RUN_BYTES
    if _big_runs[run_id]:
        _steady_mmap_threshold()
    try:
        yield
    finally:
        _big_runs.pop(run_id, None)


@contextmanager
def stage(run_id: str, tenant: str, name: str) -> Iterator[None]:
    """One stage of a run: its start and end logged for a big run; a bar on the CLI's terminal."""
    big = _big_runs.get(run_id, False)
    if big:
        log.info("run %s tenant %s: %s started", run_id, tenant, name)
    bar = _StageBar(name) if _bars else None
    token = _current.set(bar)
    start = time.perf_counter()
    failed = True
    try:
        yield
        failed = False
    finally:
        _current.reset(token)
        if bar is not None:
            bar.close()
        if big:
            release_memory()
            log.info("run %s tenant %s: %s %s %.1f s", run_id, tenant, name,
                     "stopped by an error after" if failed else "done in", time.perf_counter() - start)


def release_memory() -> None:
    """Give the pages the allocators kept after a stage back to the system: the frames a stage dropped
    would otherwise stay resident under the next stage's own peak. Arrow's pool keeps freed pages for reuse;
    glibc's malloc keeps the freed heap of the unzipped bytes, numpy's arrays and Python's objects (its
    mmap threshold rises after the first big free, so later big buffers come from the heap)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20


@functools.cache
def _steady_mmap_threshold() -> None:
    """Once per process, before its first big run: glibc serves allocations of 1 MiB and more (column
    buffers, the unzipped members) from their own mappings, returned whole when freed. By default its
    threshold rises to the biggest block freed so far (up to 32 MiB), after which such buffers come from the
    heap and stay resident once freed. Measured on a 300k-student nightly: peak RSS 2.05-2.24 GB → 1.87-1.95
    GB with release_memory's trim, CPU unchanged (bench/README.md, 2026-12-02)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


@functools.cache
def _libc():
    """glibc, or None where there is none to tune (musl, macOS: malloc_trim and mallopt are glibc's)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def stage_total(rows: int) -> None:
    """The current stage will report `rows` units of work (the apply: rows written)."""
    bar = _current.get()
    if bar is not None:
        bar.total(rows)


def stage_advance(rows: int) -> None:
    bar = _current.get()
    if bar is not None:
        bar.advance(rows)


class _StageBar:
    """A tqdm bar for one stage: elapsed time ticking while it works, and rows done when it reports them."""

    TICK = 0.5

    def __init__(self, name: str) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._bar = tqdm(total=None, desc=f"{name:>8s}", unit="rows", unit_scale=True, file=sys.stderr,
                         leave=True, dynamic_ncols=True, bar_format="{desc}: {elapsed}")
        self._done = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="stage-bar", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._done.wait(self.TICK):
            with self._lock:
                self._bar.refresh()

    def total(self, rows: int) -> None:
        with self._lock:
            self._bar.reset(total=rows)
            self._bar.bar_format = None  # tqdm's default: percentage, bar, rows, rate

    def advance(self, rows: int) -> None:
        with self._lock:
            self._bar.update(rows)

    def close(self) -> None:
        self._done.set()
        self._ticker.join()
        with self._lock:
            self._bar.close()
