"""The home folder: `rosterdrop init` and the layout every other command relies on."""

from __future__ import annotations

import os
from pathlib import Path

from processor.config import CONFIG_NAME, TENANT_ID

FOLDERS = ("inbox", "spool", "archive", "outbox", "reports")
HOST_KEY = "ssh_host_ed25519_key"

CONFIG_HEADER = """\
# Rosterdrop configuration. Every key is optional unless marked; each is described in docs/configuration.md
# (in the Rosterdrop source; `python -m processor.configdoc` prints it too).
# [store], [sftp] and [smtp] keys can be overridden by ROSTERDROP_<SECTION>__<KEY> environment variables.

[store]
url = "sqlite:///rosterdrop.db"   # or "postgresql+psycopg://user@host/db"

[sftp]
enabled = true
host = "127.0.0.1"
port = 2222

# Without [smtp], every report email is written to outbox/ as a .eml file.
# [smtp]
# host = "smtp.example.org"
# port = 587
# starttls = true
# username = "rosterdrop"
# password_env = "ROSTERDROP_SMTP_PASSWORD"
# sender = "Roster Sync <sync@example.org>"

# What one run may take in; a bundle over a size limit is rejected (bad_bundle) before it is read further.
# [limits]
# max_total_bytes = 1073741824       # the files once unzipped, together (1 GiB; ~2.5x a 300,000-student district)
# max_ratio = 100                    # a zip member may expand at most this many times its compressed size
# max_members = 200                  # entries in one zip
# max_rows_per_file = 10000000
# max_columns_per_file = 500
# max_field_chars = 131072           # the longest one value may be (characters)
# max_issues_per_code_and_file = 1000  # past this, one issue per code and file counts the rest

# An example tenant (one district). Copy it, or run `rosterdrop init --tenant ID`.
# [tenants.demo]
# name = "Demo District"
# report_to = ["it@demo.example"]
# timezone = "America/Chicago"            # times in reports and emails are local (an IANA name; default UTC)
#
# [tenants.demo.policy]
# single_school = false
# students_need_enrollment = false
# exclude_roles = []
# max_deactivated_percent = 10
# max_guardians_per_student = 5
# min_deactivated_count = 10              # a mass_deactivation hold also needs more than this many rows
# max_deactivated_percent_per_school = 25 # hold if one school would lose more than this % of its people
# max_rejected_percent = 10               # hold if more than this % of a file's rows are rejected ...
# min_rejected_count = 10                 # ... and more than this many (an export cut short)
# max_updated_percent = 50                # hold if more than this % of an entity's rows would be updated
# role_map = {}                # e.g. { aide = "teacher" }
#
# [tenants.demo.policy.require]
# users = ["email"]
#
# [[tenants.demo.policy.role_overrides]]
# column = "metadata.MembeanSchoolAdmin"
# value = "true"
# role = "school_admin"
"""


def tenant_block(tenant_id: str) -> str:
    return (f'\n[tenants.{tenant_id}]\nname = "{tenant_id}"\n'
            f'report_to = ["it@{tenant_id}.example"]   # who gets sync reports: put the district\'s admins here\n\n'
            f"[tenants.{tenant_id}.policy]\n")


def init_home(home: Path, tenants: list[str]) -> list[str]:
    """Create whatever is missing under home; never overwrite. Returns what was created."""
    for t in tenants:
        if not TENANT_ID.match(t):
            raise ValueError(f"tenant id {t!r} must be 1-64 characters of a-z, 0-9, '_' or '-'")
    created: list[str] = []
    if not home.exists():
        home.mkdir(parents=True)
        created.append(str(home))
    cfg = home / CONFIG_NAME
    if not cfg.exists():
        cfg.write_text(CONFIG_HEADER + "".join(tenant_block(t) for t in tenants), encoding="utf-8")
        created.append(str(cfg))
    else:
        text = cfg.read_text(encoding="utf-8")
        missing = [t for t in tenants if f"[tenants.{t}]" not in text]
        if missing:
            with cfg.open("a", encoding="utf-8") as f:
                f.write("".join(tenant_block(t) for t in missing))
            created.extend(f"{cfg} [tenants.{t}]" for t in missing)
    for name in FOLDERS:
        p = home / name
        if not p.exists():
            p.mkdir()
            created.append(str(p))
    for t in tenants:
        p = home / "inbox" / t
        if not p.exists():
            p.mkdir(parents=True)
            created.append(str(p))
    key = home / HOST_KEY
    if not key.exists():
        write_host_key(key)
        created.append(str(key))
    created += init_store(home)
    return created


def init_store(home: Path) -> list[str]:
    """A new store at the current schema revision, for the URL the home's config names; [] if it has tables."""
    from processor.apply.schema import create_at_head, display_url, open_engine
    from processor.config import load_config

    url = load_config(home).store_url()
    engine = open_engine(url)
    try:
        return [f"store {display_url(url)}"] if create_at_head(engine) else []
    finally:
        engine.dispose()


def write_host_key(path: Path) -> None:
    # paramiko cannot generate Ed25519 keys; cryptography (a paramiko dependency) can.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def create_private_sqlite(database: str | None) -> bool:
    """Create the SQLite store file readable and writable by its owner only (0600), before SQLite does.

    SQLite creates a new file with the process's umask (0644 under the usual 022): every local user
    could read the roster. An empty file is a valid new database; SQLite gives its -wal and -shm files
    the database file's permissions. An existing file is left as it is. True if the file was created.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    path = Path(database)
    if not path.parent.is_dir():
        return False  # SQLite reports that itself
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
