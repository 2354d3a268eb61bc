"""A drop is opened once, without following symlinks, and what lands in the spool is what was hashed.

In watched-folder mode the inbox belongs to the district's own account (OpenSSH chroot SFTP): it could
swap its file for a symlink to someone else's data after the watcher's last check.
"""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from processor import pipeline
from processor.context import UserError
from processor.intake.spool import Drop
from tests.bundles import CLEAN, make_bundle


@pytest.fixture
def inbox(sqlite_env):
    path = sqlite_env.home / "inbox" / "lincoln"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def secret(sqlite_env):
    """Another tenant's drop, which lincoln's account must never get processed as its own."""
    other = sqlite_env.home / "spool" / "roosevelt" / "20260101T000000-0000aaaa"
    other.mkdir(parents=True)
    path = other / "roster.zip"
    path.write_bytes(make_bundle(sqlite_env.tmp / "other", CLEAN).read_bytes())
    return path


def runs(env) -> list:
    from processor.apply import runs as run_store

    return run_store.list_runs(env.ctx.engine, tenant="lincoln", limit=None)


def test_a_symlink_in_an_inbox_is_refused_and_never_followed(sqlite_env, inbox, secret, caplog):
    caplog.set_level(logging.INFO)
    link = inbox / "nightly.zip"
    link.symlink_to(secret)
    with pytest.raises(UserError, match="symbolic link"):
        pipeline.receive(sqlite_env.ctx, link, "lincoln", source="watch", move=True)
    assert runs(sqlite_env) == []
    assert not os.path.lexists(link) and (inbox / "nightly.zip.symlink-refused").is_symlink()
    assert secret.exists() and not (sqlite_env.home / "spool" / "lincoln").exists()
    [line] = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert line.startswith("tenant lincoln: nightly.zip in the inbox is a symbolic link: refused, never followed")


def test_a_file_swapped_for_a_symlink_after_it_was_opened_is_taken_from_its_descriptor(
        sqlite_env, inbox, secret, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    drop = inbox / "nightly.zip"
    own = make_bundle(sqlite_env.tmp / "own", {**CLEAN, "users.csv": CLEAN["users.csv"].replace("Tara", "Tess")})
    drop.write_bytes(own.read_bytes())
    real_find = pipeline.run_store.find_by_sha

    def swap_then_find(*args, **kwargs):
        # between the hash and the move: the name now leads to another tenant's drop
        if os.path.lexists(drop) and not drop.is_symlink():
            drop.unlink()
            drop.symlink_to(secret)
        return real_find(*args, **kwargs)

    monkeypatch.setattr(pipeline.run_store, "find_by_sha", swap_then_find)
    received = pipeline.receive(sqlite_env.ctx, drop, "lincoln", source="watch", move=True)
    assert isinstance(received, Drop)
    assert not received.path.is_symlink()
    assert received.path.read_bytes() == own.read_bytes() != secret.read_bytes()
    assert received.sha256 == hashlib.sha256(own.read_bytes()).hexdigest()
    assert secret.exists()
    assert any("replaced by a symbolic link after it was checked" in r.getMessage() for r in caplog.records)


def test_a_bundle_folder_swapped_for_a_symlink_is_not_taken(sqlite_env, inbox, secret):
    from processor.intake.spool import open_drop, take

    folder = make_bundle(inbox, CLEAN, as_zip=False, name=".bundle-20260101T000000000000Z-abcdef")
    opened = open_drop(folder, nofollow=True, tenant="lincoln")
    moved = folder.with_name(folder.name + "-moved")
    folder.rename(moved)
    folder.symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(UserError, match="changed while it was being taken"):
        take(sqlite_env.ctx, opened, "lincoln", "20260101T000001-0000bbbb", move=True)
    spool = sqlite_env.home / "spool" / "lincoln" / "20260101T000001-0000bbbb"
    assert list(spool.iterdir()) == []
    assert secret.exists() and not folder.exists()


def test_the_cli_may_still_process_a_symlink_the_operator_names(sqlite_env, tmp_path):
    target = make_bundle(tmp_path / "real", CLEAN)
    link = tmp_path / "latest.zip"
    link.symlink_to(target)
    assert sqlite_env.process(link).status == "applied"


def test_a_dangling_symlink_in_an_inbox_is_refused_the_same_way(sqlite_env, inbox):
    link = inbox / "nightly.zip"
    link.symlink_to(inbox / "gone.zip")
    with pytest.raises(UserError, match="symbolic link"):
        pipeline.receive(sqlite_env.ctx, link, "lincoln", source="watch", move=True)
    assert not os.path.lexists(link) and runs(sqlite_env) == []
