"""Progress bars for long commands, on a terminal only.

A bar is drawn on stderr when stderr is a terminal and tqdm is installed; otherwise (pipes, files, the
daemon, tests, `--json` consumers reading stdout) every call is a no-op, so nothing ever lands on stdout.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
