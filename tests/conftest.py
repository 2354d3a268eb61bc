"""Shared fixtures: a home on SQLite (always) and on PostgreSQL (when ROSTERDROP_TEST_PG_URL is set)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.apply.store import metadata, open_store
from processor.context import Context
from processor.home import init_home
from processor.pipeline import process_path
from processor.runs import RunResult
from tests.bundles import make_bundle

# CLI and daemon tests start Python processes that import pandas, pyarrow and SQLAlchemy. Where the
# environment sets PYTHONDONTWRITEBYTECODE, each of them would compile those from source (~1.5 s a process).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Every `rosterdrop serve` a test starts also serves the web console: on a free port, never a fixed one.
os.environ.setdefault("ROSTERDROP_WEB__PORT", "0")


def _admin(url: str):
    """An autocommit psycopg connection to the database of url (CREATE / DROP DATABASE run outside a
    transaction)."""
    import psycopg
    from sqlalchemy.engine import make_url

    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                           autocommit=True)


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database


def _worker_database(url: str | None) -> str | None:
    """Under pytest-xdist each worker gets a PostgreSQL database of its own, `<db>_<worker>`, made afresh.

    The store tests reset the whole database (tables, Procrastinate's schema); two workers on one database
    would wipe each other's. The URL is put back into the environment so the daemons a test starts use it
    too; `pytest_sessionfinish` drops it again.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker or os.environ.get("ROSTERDROP_TEST_PG_BASE_URL"):
        return url  # no PostgreSQL, no xdist, or a process a worker started (it has the worker's database)
    from sqlalchemy.engine import make_url

    name = f"{_database_name(url)}_{worker}"
    with _admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    worker_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    os.environ["ROSTERDROP_TEST_PG_URL"] = worker_url
    os.environ["ROSTERDROP_TEST_PG_BASE_URL"] = url
    return worker_url


PG_URL = _worker_database(os.environ.get("ROSTERDROP_TEST_PG_URL"))


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker more than there are cores. A third of the suite's time is
    spent waiting on the daemons, CLI processes and sockets it starts; on 2 cores, in one pair of runs of
    `.ci/run`'s suite (slow tests included), 3 workers took 13:00 where 2 took 15:10."""
    return (os.cpu_count() or 1) + 1


def pytest_sessionfinish(session, exitstatus):
    base = os.environ.get("ROSTERDROP_TEST_PG_BASE_URL")
    if not base or not PG_URL:
        return
    import psycopg

    try:
        with _admin(base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_database_name(PG_URL)}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the worker's database is left behind; the next run of that worker drops it first


# Slow end-to-end tests (big bundles, browsers, many processes) run in CI (`.ci/run` sets CI=true) or with
# ROSTERDROP_SLOW_TESTS=1; the default local run stays lean.
RUN_SLOW = bool(os.environ.get("ROSTERDROP_SLOW_TESTS") or os.environ.get("CI"))


# The modules whose tests take longest (10–65 s each: several hosts, daemons, CLI processes, property
# runs) are handed out first, so that no pytest-xdist worker starts a minute-long test when the others are
# done. Order within a module is kept.
LONG_FIRST = ("test_scaleout.py", "test_cli.py", "test_properties.py", "test_summer.py", "test_service.py",
              "test_incremental_property.py", "test_worker_death.py", "test_queue.py", "test_progress.py",
              "test_daemon.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: the rest keep their order
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: set ROSTERDROP_SLOW_TESTS=1 (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


ENGINES = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _toml_value(v) -> str:
    return json.dumps(v) if not isinstance(v, dict) else "{ " + ", ".join(
        f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def write_config(home: Path, tenants: dict[str, dict], store_url: str | None = None) -> None:
    lines = []
    if store_url:
        lines += ["[store]", f"url = {json.dumps(store_url)}", ""]
    lines += ["[sftp]", "enabled = false", ""]
    for tid, policy in tenants.items():
        lines += [f"[tenants.{tid}]", f'name = "{tid.title()} Unified"', f'report_to = ["it@{tid}.example"]', ""]
        overrides = policy.get("role_overrides", [])
        require = policy.get("require", {})
        rest = {k: v for k, v in policy.items() if k not in ("role_overrides", "require")}
        lines.append(f"[tenants.{tid}.policy]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in rest.items()]
        if require:
            lines.append(f"[tenants.{tid}.policy.require]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in require.items()]
        for ov in overrides:
            lines.append(f"[[tenants.{tid}.policy.role_overrides]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in ov.items()]
        lines.append("")
    (home / "rosterdrop.toml").write_text("\n".join(lines), encoding="utf-8")


@dataclass
class Env:
    """A home with tenants, and helpers to run drops through the real pipeline."""
    home: Path
    tmp: Path
    store_url: str | None
    _n: int = 0

    def configure(self, **tenants: dict) -> None:
        write_config(self.home, tenants or {"lincoln": {}}, self.store_url)
        self.__dict__.pop("ctx", None)

    @property
    def ctx(self) -> Context:
        if "ctx" not in self.__dict__:
            self.__dict__["ctx"] = Context.load(self.home)
        return self.__dict__["ctx"]

    def bundle(self, files: dict, as_zip: bool = True) -> Path:
        self._n += 1
        return make_bundle(self.tmp / "drops", files, as_zip=as_zip, name=f"drop{self._n}")

    def process(self, files: dict | Path, tenant: str = "lincoln", dry_run: bool = False) -> RunResult:
        path = files if isinstance(files, Path) else self.bundle(files)
        return process_path(self.ctx, path, tenant, dry_run=dry_run)

    def export(self, tenant: str = "lincoln", include_inactive: bool = False) -> dict:
        from processor.apply.export import export_roster

        return export_roster(self.ctx.engine, tenant, include_inactive)


def issue_rows(result: RunResult, severity: str | None = None) -> list[tuple]:
    return sorted((i.code, i.file, i.line, i.field) for i in result.issues
                  if severity is None or i.severity == severity)


def reset_store(url: str) -> None:
    """An empty store at the newest schema revision (as `rosterdrop init` makes it)."""
    from processor.apply.schema import VERSION_TABLE, create_at_head

    engine = open_store(url, create=False)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")
        if conn.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar() is not None:
            # A procrastinate-backend test left Procrastinate's schema (tables, types, functions): without
            # this the database would not be empty and create_at_head() would make nothing.
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    create_at_head(engine)
    engine.dispose()


@pytest.fixture(params=ENGINES)
def env(request, tmp_path) -> Env:
    home = tmp_path / "home"
    init_home(home, ["lincoln", "roosevelt"])
    url = None
    if request.param == "postgresql":
        url = PG_URL
        reset_store(url)
    e = Env(home=home, tmp=tmp_path, store_url=url)
    e.configure(lincoln={}, roosevelt={})
    yield e
    if "ctx" in e.__dict__ and "engine" in e.ctx.__dict__:
        e.ctx.engine.dispose()


@pytest.fixture
def sqlite_env(tmp_path) -> Env:
    home = tmp_path / "home"
    init_home(home, ["lincoln", "roosevelt"])
    e = Env(home=home, tmp=tmp_path, store_url=None)
    e.configure(lincoln={}, roosevelt={})
    return e
