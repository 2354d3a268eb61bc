"""The store's schema over time: Alembic revisions in processor/migrations, run from the library.

`init` creates a new store at head (tables + stamp); `rosterdrop db upgrade` migrates an older one;
every other command calls check_schema() first and refuses a store that is not at head, so nothing ever
writes to a schema it does not know. Tables are never created implicitly by an ordinary command.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from processor.apply.store import metadata
from processor.context import UserError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version"


class StoreNotCurrent(UserError):
    """The store exists but is not at the schema this version of Rosterdrop writes."""


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


# The tables of the baseline revision: an unversioned store that has them all was made by the first release.
BASELINE_TABLES = frozenset({
    "tenants", "runs", "tenant_locks", "audit", "outbox", "sftp_credentials", "pulled_files", "roster_snapshots",
    "orgs", "academic_sessions", "courses", "classes", "people", "enrollments", "guardian_links", "demographics"})
BASELINE = "0001_baseline"


class StoreUnavailable(UserError):
    """The store cannot be reached or opened; the message names the URL (no password) and the cause."""


@functools.cache
def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations have {len(heads)} heads; merge them into one"
    return heads[0]


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def is_empty(conn: Connection) -> bool:
    return not inspect(conn).get_table_names()


def create_at_head(engine: Engine) -> bool:
    """A new store: every table of `metadata`, stamped at head. Does nothing (False) if it has tables."""
    with engine.begin() as conn:
        if not is_empty(conn):
            return False
        metadata.create_all(conn)
        command.stamp(alembic_config(conn), "head")
    return True


def upgrade(engine: Engine) -> tuple[str | None, str, bool]:
    """Migrate the store to head (an empty one is built from the baseline up); the revisions before and
    after, and whether an unversioned store of the first release was adopted at the baseline."""
    with engine.begin() as conn:
        before = current(conn)
        adopted = before is None and not is_empty(conn)
        if adopted:
            # Made by the release before migrations: its schema is the baseline, whose tables it must have.
            missing = sorted(BASELINE_TABLES - set(inspect(conn).get_table_names()))
            if missing:
                raise StoreNotCurrent(
                    f"the database has tables but no Rosterdrop schema revision, and lacks {', '.join(missing)}: "
                    "it is not a Rosterdrop store; give [store] url a database of its own")
            command.stamp(alembic_config(conn), BASELINE)
        command.upgrade(alembic_config(conn), "head")
        return before, current(conn) or "", adopted


def stamp(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.stamp(alembic_config(conn), revision)


def check_schema(conn: Connection) -> None:
    """StoreNotCurrent unless the store is at head: ordinary commands never touch another schema."""
    rev = current(conn)
    want = head()
    if rev == want:
        return
    if rev is None:
        if is_empty(conn):
            raise StoreNotCurrent("the store has no Rosterdrop tables yet; run `rosterdrop init` (or "
                                  "`rosterdrop db upgrade`) to create them")
        raise StoreNotCurrent("the store has no schema revision; run `rosterdrop db upgrade`")
    if rev not in _known_revisions():
        raise StoreNotCurrent(f"the store is at schema revision {rev}, which this version of Rosterdrop does "
                              f"not know (a newer release migrated it?); upgrade Rosterdrop")
    raise StoreNotCurrent(f"the store is at schema revision {rev}, this version needs {want}; run "
                          "`rosterdrop db upgrade`")


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions())


# ---------------------------------------------------------------- opening the store, with one-line errors


def display_url(url: str) -> str:
    """The URL as it may be shown and logged: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def open_engine(url: str) -> Engine:
    """An engine on the store URL, connected once; StoreUnavailable with one line if that fails."""
    from processor.apply.store import open_store

    shown = display_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        _check_sqlite_path(Path(url[len("sqlite:///"):].split("?")[0]), shown)
    try:
        engine = open_store(url, create=False)
    except NoSuchModuleError:
        raise StoreUnavailable(f"cannot open the store {shown}: unsupported URL scheme "
                               f"{url.partition(':')[0]!r}; use sqlite:///PATH or "
                               "postgresql+psycopg://USER@HOST/DATABASE") from None
    except ArgumentError:
        raise StoreUnavailable(f"cannot open the store {shown}: not a database URL; use sqlite:///PATH or "
                               "postgresql+psycopg://USER@HOST/DATABASE") from None
    except ModuleNotFoundError as exc:
        raise StoreUnavailable(f"cannot open the store {shown}: its driver {exc.name!r} is not installed; "
                               "use postgresql+psycopg:// for PostgreSQL") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise StoreUnavailable(f"cannot open the store {shown}: {describe_failure(exc)}") from None
    return engine


def open_checked(url: str) -> Engine:
    """What every ordinary command uses: the store opened, and at the schema this version writes."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            check_schema(conn)
    except StoreNotCurrent as exc:
        engine.dispose()
        raise StoreNotCurrent(f"store {display_url(url)}: {exc}") from None
    return engine


def _check_sqlite_path(path: Path, shown: str) -> None:
    # SQLite in WAL mode writes two files beside the database: its folder must be writable too.
    folder = path.parent
    if not folder.is_dir():
        raise StoreUnavailable(f"cannot open the store {shown}: the folder {folder} does not exist")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreUnavailable(f"cannot open the store {shown}: the file is not readable and writable by this "
                               "user (run the command as the service's user, e.g. `sudo -u rosterdrop ...`)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreUnavailable(f"cannot open the store {shown}: the folder {folder} is not writable by this user "
                               "(SQLite writes its journal beside the database)")


_CAUSES = (
    (r"password authentication failed|authentication failed|no password supplied|"
     r"peer authentication failed|ident authentication failed",
     "authentication failed (check the user name, and the password [store] password_env names)"),
    (r'database "[^"]*" does not exist', "the database does not exist (create it: see docs/operations.md)"),
    (r"role \"[^\"]*\" does not exist", "the database user does not exist"),
    (r"connection refused", "connection refused (is the server running, and listening on that host and port?)"),
    (r"could not translate host name|name or service not known|nodename nor servname|no address associated",
     "unknown host name"),
    (r"timeout expired|timed out", "the server did not answer in time"),
    (r"no route to host|network is unreachable", "the server's network is unreachable"),
    (r"unable to open database file", "the file cannot be created or opened"),
    (r"file is not a database|file is encrypted", "the file is not an SQLite database"),
    (r"permission denied for database", "this user may not connect to that database (GRANT CONNECT)"),
)


def describe_failure(exc: BaseException) -> str:
    """The cause of a failed connection in a few words (never the password: drivers do not print it)."""
    text = str(getattr(exc, "orig", None) or exc)
    for pattern, cause in _CAUSES:
        if re.search(pattern, text, re.IGNORECASE):
            return cause
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


# ---------------------------------------------------------------- writing the next revision


def write_revision(message: str, rev_id: str | None = None) -> None:
    """Autogenerate the next revision: `metadata` compared with a scratch SQLite store built by the
    existing revisions. Review the file it writes (renames come out as drop + add) before committing."""
    import tempfile

    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
            command.revision(alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m processor.apply.schema",
                                     description="write the next schema revision into processor/migrations")
    parser.add_argument("command", choices=["revision"])
    parser.add_argument("-m", "--message", required=True, help="what the revision changes")
    parser.add_argument("--rev-id", help="revision id, e.g. 0003_web_sessions (default: random)")
    args = parser.parse_args()
    write_revision(args.message, args.rev_id)
