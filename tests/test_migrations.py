"""Schema migrations (CONTRACT.md section 9): Alembic revisions in the package, `db upgrade` / `db current`,
stores made at head by init, and every other command refusing a store that is not at head."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from processor.apply import schema
from processor.apply.store import ENTITY_TABLES, credentials, metadata, open_store, runs
from processor.cli import main
from tests.bundles import CLEAN
from tests.conftest import write_config


def empty_store(env) -> str:
    """A database with nothing in it, on the env's engine; its URL (also written into the env's config)."""
    if env.store_url is None:
        url = "sqlite:///" + str(env.tmp / "empty.db")
    else:
        url = env.store_url
        engine = open_store(url, create=False)
        metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema.VERSION_TABLE}")
        engine.dispose()
    write_config(env.home, {"lincoln": {}}, url)
    env.__dict__.pop("ctx", None)
    return url


def cli(capsys, env, *args: str) -> tuple[int, str, str]:
    code = main(["--home", str(env.home), *args])
    out, err = capsys.readouterr()
    return code, out, err


def drift(engine) -> list:
    with engine.connect() as conn:
        # Procrastinate's own tables (the procrastinate queue backend) share the database and are not ours.
        opts = {"compare_type": True, "include_name": lambda name, type_, parents: not (
            type_ == "table" and name.startswith("procrastinate_"))}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def test_the_migrations_build_exactly_the_schema_the_code_writes(env, capsys):
    """Fails when a table or column is added to `metadata` without a revision: write one (see
    docs/operations.md, Upgrades) so that stores made by older releases get it too."""
    url = empty_store(env)
    code, out, _ = cli(capsys, env, "db", "upgrade")
    assert code == 0, out
    engine = open_store(url, create=False)
    assert drift(engine) == [], "metadata and processor/migrations differ: add a revision"
    with engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    engine.dispose()


def test_a_store_at_the_baseline_keeps_its_data_through_the_upgrade(env, capsys):
    url = empty_store(env)
    engine = open_store(url, create=False)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.execute(insert(runs).values(run_id="r1", tenant="lincoln", status="applied", source="cli",
                                         received_at="2026-12-01T10:00:00+00:00", sha256="ab" * 32))
        conn.execute(insert(ENTITY_TABLES["people"]).values(
            tenant="lincoln", sourced_id="u1", status="active", row_hash=7, run_id="r1", role="teacher"))
        conn.execute(insert(credentials).values(tenant="lincoln", kind="password", value="x", created_at=1.0))
    assert "tenant_access" not in inspect(engine).get_table_names()

    code, _, err = cli(capsys, env, "runs", "list")
    assert code == 1 and "rosterdrop db upgrade" in err and schema.BASELINE in err

    code, out, _ = cli(capsys, env, "--json", "db", "current")
    assert code == 0 and json.loads(out) == {"store": schema.display_url(url), "revision": schema.BASELINE,
                                             "head": schema.head(), "current": False}
    code, out, _ = cli(capsys, env, "--json", "db", "upgrade")
    assert code == 0 and json.loads(out)["from"] == schema.BASELINE and json.loads(out)["to"] == schema.head()

    assert drift(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.run_id, runs.c.status)).all() == [("r1", "applied")]
        assert conn.execute(select(ENTITY_TABLES["people"].c.sourced_id)).scalars().all() == ["u1"]
        assert conn.execute(select(credentials.c.kind)).scalars().all() == ["password"]
    engine.dispose()
    code, out, _ = cli(capsys, env, "runs", "list")
    assert code == 0 and "r1" in out
    code, out, _ = cli(capsys, env, "db", "upgrade")
    assert code == 0 and "nothing to do" in out


def test_an_unversioned_store_of_the_first_release_is_adopted_by_db_upgrade(env, capsys):
    url = empty_store(env)
    engine = open_store(url, create=False)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.exec_driver_sql(f"DROP TABLE {schema.VERSION_TABLE}")
    code, _, err = cli(capsys, env, "holds", "list")
    assert code == 1 and "no schema revision" in err and "rosterdrop db upgrade" in err
    code, out, _ = cli(capsys, env, "db", "upgrade")
    assert code == 0 and "upgraded from the first release's schema" in out, out
    assert drift(engine) == []
    engine.dispose()


def test_ordinary_commands_never_create_tables(env, capsys):
    url = empty_store(env)
    code, _, err = cli(capsys, env, "runs", "list")
    assert code == 1 and "rosterdrop init" in err and len(err.strip().splitlines()) == 1
    engine = open_store(url, create=False)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_init_makes_a_store_at_head_that_commands_accept(env, capsys, tmp_path):
    empty_store(env)
    code, out, _ = cli(capsys, env, "init")
    assert code == 0 and "store " in out
    code, out, _ = cli(capsys, env, "db", "current")
    assert code == 0 and out.strip() == f"{schema.head()} (current)"
    assert env.process(CLEAN).status.value == "applied"


def test_a_foreign_database_is_not_taken_over(env, capsys):
    url = empty_store(env)
    engine = open_store(url, create=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    try:
        code, _, err = cli(capsys, env, "db", "upgrade")
        assert code == 1 and "not a Rosterdrop store" in err
        assert inspect(engine).get_table_names() == ["invoices"]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE invoices")
        engine.dispose()


@pytest.mark.parametrize("revision", ["0001_baseline"])
def test_the_head_descends_from_the_baseline(revision):
    script = schema.ScriptDirectory.from_config(schema.alembic_config())
    assert revision in {s.revision for s in script.iterate_revisions(schema.head(), "base")}
