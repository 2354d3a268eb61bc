"""docs/configuration.md, generated from the pydantic models of processor/config.py.

    python -m processor.configdoc > docs/configuration.md

tests/test_configdoc.py fails when the page and the models drift apart. A key's text is its Field's
`description=` if it has one, else the line in DESCRIPTIONS below (keyed by the key's path, with `<id>` for
a tenant id and `[]` for an item of an array of tables).
"""

from __future__ import annotations

import sys
import types
from typing import Annotated, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from processor.config import ENV_SECTIONS, Config

DESCRIPTIONS: dict[str, str] = {
    "store": "Where runs, the roster and the audit log are kept.",
    "store.url": "SQLAlchemy URL. `sqlite:///rosterdrop.db` (a relative path is relative to the home) or "
                 "`postgresql+psycopg://USER@HOST/DATABASE`. Put no password here: see `password_env`.",
    "store.password_env": "Name of an environment variable holding the database password; it is put into the "
                          "URL. Unset variable: every command exits 1 naming it.",
    "sftp": "The built-in SFTP server (user name = tenant id; credentials with `rosterdrop tenant ...`).",
    "sftp.enabled": "Listen for districts' uploads.",
    "sftp.host": "Address to listen on; `0.0.0.0` for every interface.",
    "sftp.port": "Port to listen on (22 needs CAP_NET_BIND_SERVICE).",
    "sftp.quiet_period_seconds": "Loose CSV files become one bundle after this long without a new file (or at "
                                 "once when `manifest.csv` and every file it names are there).",
    "smtp": "Outgoing email. Absent: every email is written to `outbox/` as a `.eml` file instead.",
    "smtp.host": "SMTP server.",
    "smtp.port": "SMTP port.",
    "smtp.starttls": "Upgrade the connection with STARTTLS.",
    "smtp.ssl": "Connect with TLS from the start (port 465) instead of STARTTLS.",
    "smtp.username": "Login name, if the server wants one.",
    "smtp.password_env": "Name of the environment variable holding the SMTP password (never in this file). "
                         "Set but missing: a warning at `serve` start, and emails stay queued.",
    "smtp.sender": "From: address, e.g. `Roster Sync <sync@example.org>`.",
    "smtp.reply_to": "Reply-To: address.",
    "smtp.list_id": "List-Id: header, so that district mail filters can sort the reports.",
    "smtp.timeout_seconds": "Give up on a connection or command after this long (the email is retried).",
    "daemon": "`rosterdrop serve`: workers, the watched folder, retention, scheduled jobs.",
    "daemon.workers": "Worker processes; 0 = one per core.",
    "daemon.retention_days": "Raw archived drops and `.aborted` uploads older than this are deleted (runs, "
                             "reports and the audit log are kept); 0 keeps them forever.",
    "daemon.polling_observer": "Watch the inboxes by polling instead of inotify (network file systems).",
    "daemon.rescan_seconds": "How often the watched folder is rescanned in full (events can be missed).",
    "daemon.watch_inbox": "Take files written into `inbox/<tenant>/` by someone else (OpenSSH chroot SFTP). "
                          "Unset: on exactly when the built-in SFTP server is off.",
    "daemon.watch_stable_seconds": "A file in a watched inbox is taken once unchanged for this long.",
    "daemon.stop_timeout_seconds": "On SIGTERM, how long current runs may take to finish before they are "
                                   "stopped (they resume at the next start).",
    "daemon.weekly_digest": "Crontab line (minute hour day month weekday) for a weekly summary to every "
                            "tenant's `report_to`, e.g. `\"0 7 * * mon\"`; unset: no digest.",
    "queue": "Where received drops wait for a worker (CONTRACT.md section 11).",
    "queue.backend": "`local`: an in-process queue on one host. `procrastinate`: a Procrastinate job per busy "
                     "tenant in the PostgreSQL store, so `rosterdrop serve` and `rosterdrop worker` on any number "
                     "of hosts share the work (one run at a time per tenant, in arrival order); needs a "
                     "PostgreSQL `[store] url` and `rosterdrop db upgrade`.",
    "queue.stalled_after_seconds": "procrastinate: a worker without a heartbeat for this long (its host died, "
                                   "kill -9) has its drop run again from the start by another worker.",
    "tenants.<id>": "One district. The id (1-64 of `a-z 0-9 _ -`) is its SFTP user name and inbox folder.",
    "tenants.<id>.name": "The district's name, shown in reports and emails. One line: control characters, "
                         "line and paragraph separators are refused.",
    "tenants.<id>.report_to": "Email addresses that get the sync reports and notices (`it@district.example` or "
                              "`District IT <it@district.example>`, one per item).",
    "tenants.<id>.expect_drop_every_hours": "If no drop arrives for this long, one `missing_drop` notice is "
                                            "queued to `report_to` per gap; unset: no check.",
    "tenants.<id>.policy": "What makes a row an error and a drop a hold, for this district.",
    "tenants.<id>.policy.single_school": "A person tied to more than one school is an error (row rejected).",
    "tenants.<id>.policy.students_need_enrollment": "A student with no active enrollment is an error.",
    "tenants.<id>.policy.exclude_roles": "App roles never stored, e.g. `[\"student\", \"guardian\"]` to keep "
                                         "no student data.",
    "tenants.<id>.policy.max_deactivated_percent": "Hold a bulk drop that would deactivate more than this % "
                                                   "of an entity's active rows.",
    "tenants.<id>.policy.max_guardians_per_student": "Hold a drop where a student has more guardian links "
                                                     "than this.",
    "tenants.<id>.policy.role_map": "OneRoster role → app role, overriding the defaults, e.g. "
                                    "`{ aide = \"teacher\" }`.",
    "tenants.<id>.policy.require": "Columns that must be non-blank on top of the OneRoster spec (row "
                                   "rejected otherwise). Each must be a column of that file, or `metadata.*`.",
    "tenants.<id>.policy.require.users": "users.csv columns, every role.",
    "tenants.<id>.policy.require.students": "users.csv columns, students only.",
    "tenants.<id>.policy.require.classes": "classes.csv columns.",
    "tenants.<id>.policy.require.schools": "orgs.csv columns, orgs of type school.",
    "tenants.<id>.policy.role_overrides[]": "A `metadata.*` column whose value grants an app role; the "
                                            "highest privilege wins.",
    "tenants.<id>.policy.role_overrides[].column": "The `metadata.*` column of users.csv.",
    "tenants.<id>.policy.role_overrides[].value": "The value that grants the role (compared case-insensitively, "
                                                  "trimmed).",
    "tenants.<id>.policy.role_overrides[].role": "The app role granted.",
    "tenants.<id>.pull": "Fetch drops from the district's own SFTP server on a schedule.",
    "tenants.<id>.pull.host": "The district's SFTP server.",
    "tenants.<id>.pull.port": "Its port.",
    "tenants.<id>.pull.username": "User name there.",
    "tenants.<id>.pull.key_file": "Private key file (relative paths are relative to the home).",
    "tenants.<id>.pull.password_env": "Or a password, read from this environment variable.",
    "tenants.<id>.pull.remote_dir": "Folder to fetch from.",
    "tenants.<id>.pull.pattern": "fnmatch pattern of the files to fetch; `*.csv` pulls loose CSVs as one bundle.",
    "tenants.<id>.pull.schedule": "Crontab line (minute hour day month weekday, host time zone).",
    "tenants.<id>.pull.known_hosts": "known_hosts file with the server's host key (else the service user's "
                                     "`~/.ssh/known_hosts`); an unknown key is refused.",
}


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"table of {_type_name(key)} → {_type_name(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(info) -> str:
    parts = []
    for m in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(m, attr)}")
    return ", ".join(parts)


def _default(info) -> str:
    if info.is_required():
        return "**required**"
    value = info.default if info.default is not PydanticUndefined else info.default_factory()
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _model_of(tp) -> type[BaseModel] | None:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) in (Union, types.UnionType) and len(args) == 1:
        return _model_of(args[0])
    return None


def _sections(model: type[BaseModel], path: str, out: list) -> None:
    rows, subs = [], []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        key = f"{path}.{name}" if path else name
        tp = info.annotation
        sub = _model_of(tp)
        if name == "tenants" and not path:
            subs.append(("tenants.<id>", _model_of(get_args(tp)[1]), False))
            continue
        if sub is not None:
            subs.append((key, sub, False))
            continue
        if get_origin(tp) is list and _model_of(get_args(tp)[0]) is not None:
            subs.append((key + "[]", _model_of(get_args(tp)[0]), True))
            continue
        bounds = _bounds(info)
        rows.append((name, _type_name(tp) + (f" ({bounds})" if bounds else ""), _default(info),
                     info.description or DESCRIPTIONS.get(key, "")))
    if path:
        out.append((path, DESCRIPTIONS.get(path, ""), rows))
    for key, sub, _ in subs:
        _sections(sub, key, out)


def render() -> str:
    sections: list = []
    _sections(Config, "", sections)
    lines = [
        "# Configuration reference: `rosterdrop.toml`",
        "",
        "<!-- Generated from processor/config.py by `python -m processor.configdoc > docs/configuration.md`;"
        " do not edit by hand. -->",
        "",
        "`rosterdrop.toml` lives in the home (`--home`, else `$ROSTERDROP_HOME`, else `./rosterdrop-home`) and is "
        "validated at the start of every command and whenever a running daemon reloads it (within a second of a "
        "change, or on SIGHUP). An unknown key, a wrong type or a bad value exits 1 with one line naming the key "
        "path (e.g. `tenants.lincoln.policy.max_deactivated_percent`) and what is expected. Every key is "
        "optional unless marked **required**.",
        "",
        "Every key of " + ", ".join(f"`[{s}]`" for s in ENV_SECTIONS) + " can also be set by an environment "
        "variable `ROSTERDROP_<SECTION>__<KEY>` (e.g. `ROSTERDROP_SFTP__PORT=2223`), which wins over the file; "
        "an error in such a value names the variable.",
        "",
        "Secrets are never in this file: `*.password_env` keys name environment variables that hold them.",
        "",
    ]
    for path, text, rows in sections:
        header = f"[{path}]" if not path.endswith("[]") else f"[[{path[:-2]}]]"
        lines += [f"## `{header}`", ""]
        if text:
            lines += [text, ""]
        if rows:
            lines += ["| key | type | default | |", "|---|---|---|---|"]
            lines += [f"| `{name}` | {tp} | {default} | {desc} |" for name, tp, default, desc in rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
