"""The SQLite store holds the whole roster: it is created readable by its owner only, whatever the umask."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import text

from processor.apply.store import open_store
from processor.cli import main


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_creates_the_store_and_its_wal_files_0600(tmp_path, umask_022, capsys):
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--tenant", "lincoln"]) == 0
    db = home / "rosterdrop.db"
    engine = open_store("sqlite:///" + str(db))
    with engine.connect() as conn:  # a reader keeps the -wal and -shm files in place
        with engine.begin() as writer:
            writer.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            writer.execute(text("INSERT INTO probe VALUES (1)"))
        conn.execute(text("SELECT count(*) FROM probe")).scalar_one()
        assert {p.name: mode(p) for p in home.glob("rosterdrop.db*")} == {
            "rosterdrop.db": 0o600, "rosterdrop.db-wal": 0o600, "rosterdrop.db-shm": 0o600}
    engine.dispose()


def test_a_store_first_opened_by_any_command_is_0600_and_an_existing_one_is_left_alone(tmp_path, umask_022):
    new = tmp_path / "new.db"
    open_store("sqlite:///" + str(new)).dispose()
    assert mode(new) == 0o600
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)
    open_store("sqlite:///" + str(shared)).dispose()
    assert mode(shared) == 0o640  # the operator's choice
