"""Retention of inbox leftovers: what a crash or a sender's tool left behind is removed once it is old."""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from pathlib import Path

from processor.context import Context
from processor.daemon import apply_retention
from tests.test_daemon import write_home

DAY = 86400


def aged(path: Path, days: float) -> Path:
    t = time.time() - days * DAY
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def write(path: Path, data: bytes = b"x", days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return aged(path, days)


def good_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("users.csv", "sourcedId\n")
    return buf.getvalue()


def test_old_leftovers_are_removed_and_everything_else_is_kept(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"leftover_days": 7, "retention_days": 30})
    inbox = home / "inbox" / "lincoln"
    outside = write(tmp_path / "secret.txt", b"not the daemon's to delete")
    gone = [
        write(inbox / "nightly.zip.part", days=8),
        write(inbox / ".nightly.zip.tmp", days=8),
        write(inbox / ".DS_Store", days=8),
        write(inbox / "upload.filepart", days=8),
        write(inbox / "broken.zip", good_zip()[:40], days=8),  # truncated by a crash
        write(inbox / "sub" / "x.tmp", days=8),
    ]
    aged(inbox / "sub", 8)
    (inbox / "empty" / "deeper").mkdir(parents=True)
    aged(inbox / "empty" / "deeper", 8)
    aged(inbox / "empty", 8)
    link = inbox / "link.zip"
    link.symlink_to(outside)
    aged(link, 8)
    kept = [
        write(inbox / "fresh.zip.part", days=1),  # may still be resumed
        write(inbox / "complete.zip", good_zip(), days=8),  # a real drop waiting for a hand-over retry
        write(inbox / "cut.zip.aborted", days=8),  # retention_days' business
        write(inbox / ".bundle-20260101T000000000000Z-abc123" / "users.csv", days=8),  # handed over at start
        write(inbox / "users.csv", days=8),
    ]
    apply_retention(Context.load(home))
    assert [p for p in gone if os.path.lexists(p)] == []
    assert not os.path.lexists(link) and outside.read_bytes() == b"not the daemon's to delete"
    assert not (inbox / "empty").exists() and not (inbox / "sub").exists()
    assert [p for p in kept if not p.exists()] == []
    [line] = [r.getMessage() for r in caplog.records if "inbox leftovers" in r.getMessage()]
    assert line.startswith("tenant lincoln: retention removed 10 inbox leftovers older than 7 days")


def test_leftover_days_0_keeps_leftovers(tmp_path):
    home = tmp_path / "home"
    write_home(home, ["lincoln"], daemon={"leftover_days": 0})
    part = write(home / "inbox" / "lincoln" / "x.part", days=400)
    apply_retention(Context.load(home))
    assert part.exists()
