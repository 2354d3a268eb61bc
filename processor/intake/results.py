"""The read-only `results/` folder each tenant sees in its SFTP root (CONTRACT.md section 8).

It is virtual: nothing is written into the inbox. Per finished run of the tenant it lists `<run-id>.txt`
(the text report) and `<run-id>-issues.csv`, read from `reports/<run-id>/`. Runs are looked up in the
store with the tenant in the WHERE clause, so a run id of another tenant is simply not there. A district
that only uses SFTP sees what happened to each upload; anything but reading is refused.
"""

from __future__ import annotations

import errno
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paramiko
from paramiko.sftp import SFTP_OK
from sqlalchemy import Engine, select

from processor.apply.store import runs

FOLDER = "results"
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")
FILES = {".txt": "report.txt", "-issues.csv": "issues.csv"}
MAX_LISTED = 500
FINISHED = ("applied", "held", "rejected", "discarded", "superseded", "failed", "duplicate")


def owns(vpath: str) -> bool:
    """Whether a (normalized, absolute) client path is the results folder or inside it."""
    return vpath == f"/{FOLDER}" or vpath.startswith(f"/{FOLDER}/")


class _ReadOnly(paramiko.SFTPHandle):
    def __init__(self, path: Path, flags: int) -> None:
        super().__init__(flags)
        self.path = path
        self.readfile = path.open("rb")

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(_read_only(self.path.stat()), self.path.name)

    def chattr(self, attr):
        return paramiko.sftp.SFTP_PERMISSION_DENIED


def _read_only(st):
    attr = paramiko.SFTPAttributes.from_stat(st)
    attr.st_mode = stat.S_IFREG | 0o444
    return attr


class ResultsFolder:
    def __init__(self, home: Path, engine: Engine, tenant: str, retention_days: int = 30) -> None:
        self.reports = home / "reports"
        self.engine = engine
        self.tenant = tenant
        self.retention_days = retention_days

    def folder_attr(self) -> paramiko.SFTPAttributes:
        attr = paramiko.SFTPAttributes()
        attr.filename = FOLDER
        attr.st_mode = stat.S_IFDIR | 0o555
        attr.st_size = 0
        attr.st_uid = attr.st_gid = 0
        attr.st_atime = attr.st_mtime = int(time.time())
        return attr

    def _retention_days(self) -> int:
        # read at each listing, so a changed retention applies without a restart
        try:
            from processor.config import load_config

            return load_config(self.reports.parent).daemon.retention_days
        except Exception:  # noqa: BLE001 - an unreadable config keeps the default
            return self.retention_days

    def _run_ids(self) -> list[str]:
        days = self._retention_days()
        q = (select(runs.c.run_id).where(runs.c.tenant == self.tenant, runs.c.status.in_(FINISHED))
             .order_by(runs.c.received_at.desc()).limit(MAX_LISTED))
        if days > 0:
            since = (datetime.now(UTC) - timedelta(days=days)).isoformat()
            q = q.where(runs.c.received_at >= since)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def _file(self, name: str) -> Path:
        """The report file behind a listed name; OSError(ENOENT) for anything else."""
        for suffix, stored in FILES.items():
            run_id = name[: -len(suffix)] if name.endswith(suffix) else None
            if run_id and RUN_ID.match(run_id):
                with self.engine.connect() as conn:
                    mine = conn.execute(select(runs.c.run_id).where(
                        runs.c.run_id == run_id, runs.c.tenant == self.tenant,
                        runs.c.status.in_(FINISHED))).first()
                path = self.reports / run_id / stored
                if mine is not None and path.is_file() and not path.is_symlink():
                    return path
        raise OSError(errno.ENOENT, "no such result")

    def _name(self, vpath: str) -> str | None:
        rest = vpath[len(FOLDER) + 2:]
        return rest or None

    def list_folder(self, vpath: str):
        if self._name(vpath) is not None:
            raise OSError(errno.ENOTDIR, "not a folder")
        out = []
        for run_id in self._run_ids():
            for suffix, stored in FILES.items():
                path = self.reports / run_id / stored
                try:
                    st = path.stat()
                except OSError:
                    continue
                attr = _read_only(st)
                attr.filename = run_id + suffix
                out.append(attr)
        return out

    def stat(self, vpath: str):
        name = self._name(vpath)
        if name is None:
            return self.folder_attr()
        path = self._file(name)
        attr = _read_only(path.stat())
        attr.filename = name
        return attr

    def open(self, vpath: str, flags: int):
        import os

        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
            raise PermissionError(errno.EACCES, "the results folder is read-only")
        name = self._name(vpath)
        if name is None:
            raise PermissionError(errno.EACCES, "a folder")
        return _ReadOnly(self._file(name), flags)


def refused(*_args) -> int:
    """What every changing operation on the results folder answers."""
    return paramiko.sftp.SFTP_PERMISSION_DENIED


__all__ = ["FOLDER", "ResultsFolder", "owns", "refused", "SFTP_OK"]
