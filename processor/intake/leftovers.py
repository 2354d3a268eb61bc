"""Leftovers in the inboxes: what a crash, a dropped connection or a sender's tool left behind.

Nothing here is ever taken as a drop, so without cleaning it would stay for ever (and count against the
tenant's inbox quota): `.part`/`.tmp`/`.filepart` files, dot files, empty folders, symlinks and zips
that never became readable. Each is removed once it has not changed for `[daemon] leftover_days`.
`.bundle-*` folders are not leftovers (the next start hands them over) and `.aborted` uploads follow
`retention_days` (daemon.apply_retention). Symlinks are removed, never followed.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from processor.context import Context
from processor.intake.loose import BUNDLE_PREFIX, IGNORED_SUFFIXES

log = logging.getLogger("rosterdrop.intake")


def _leftover(rel_parts: tuple[str, ...], st: os.stat_result, full: str) -> str | None:
    """Why this inbox entry is a leftover (a few words), or None."""
    name = rel_parts[-1]
    if rel_parts[0].startswith(BUNDLE_PREFIX) or name.lower().endswith(".aborted"):
        return None
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if name.startswith(".") or any(p.startswith(".") for p in rel_parts[:-1]):
        return "dot file"
    if name.lower().endswith(IGNORED_SUFFIXES) or any(p.lower().endswith(IGNORED_SUFFIXES) for p in rel_parts):
        return "partial upload"
    if stat.S_ISREG(st.st_mode) and name.lower().endswith(".zip"):
        from processor.intake.watcher import zip_ok

        return None if zip_ok(Path(full)) else "unreadable zip"
    return None


def clean_leftovers(ctx: Context, now: float | None = None) -> int:
    """Remove every inbox leftover unchanged for leftover_days (0: never); how many entries were removed."""
    days = ctx.config.daemon.leftover_days
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * 86400
    total = 0
    for tenant in sorted(ctx.config.tenants):
        inbox = ctx.path("inbox", tenant)
        if not inbox.is_dir() or inbox.is_symlink():
            continue
        kinds: dict[str, int] = {}
        touched: set[str] = set()  # folders this pass removed something from (their mtime is now)
        # bottom-up, so that a folder emptied here is seen empty afterwards
        for root, dirs, files in os.walk(inbox, topdown=False):
            rel_root = Path(root).relative_to(inbox).parts
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                full = os.path.join(root, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                why = _leftover(rel_root + (name,), st, full) if st.st_mtime < cutoff else None
                if why is None:
                    continue
                try:
                    os.unlink(full)
                except OSError as exc:
                    log.warning("tenant %s: leftover %s could not be removed: %s", tenant, why, exc.strerror)
                    continue
                kinds[why] = kinds.get(why, 0) + 1
                touched.add(root)
            if rel_root and not rel_root[0].startswith(BUNDLE_PREFIX):
                try:
                    if not os.listdir(root) and (root in touched or os.lstat(root).st_mtime < cutoff):
                        os.rmdir(root)
                        kinds["empty folder"] = kinds.get("empty folder", 0) + 1
                        touched.add(os.path.dirname(root))
                except OSError:
                    pass
        if kinds:
            removed = sum(kinds.values())
            total += removed
            detail = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
            log.info("tenant %s: retention removed %d inbox leftovers older than %g days (%s)", tenant, removed,
                     days, detail)
    return total
