"""SFTP pull: fetch a tenant's drops from someone else's SFTP server (an SIS, Clever, ClassLink) on a schedule.

`[tenants.<id>.pull]` names the server, the account (key file, or a password read from the environment
variable `password_env`), the remote folder and a file-name pattern. The server's host key must be in
`known_hosts` (the configured file, else ~/.ssh/known_hosts): an unknown or changed key is refused,
never trusted on first use, because a pull from an impostor would apply its roster.

A file already fetched (same name, size and mtime, table `pulled_files`) is not fetched again. A file
is downloaded to `inbox/<tenant>/.pull-<name>.part`, checked (its size, and that it did not change on
the server while it was read), then renamed to `inbox/<tenant>/.pulled/<name>` and handed over. Both
names start with a dot, so neither the SFTP server nor the watched folder ever takes them; the drop
keeps the district's file name. CSV files matched by the pattern are fetched together (all of them
when any is new) into one folder and handed over as one bundle.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import posixpath
import shutil
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from processor.apply.store import pulled
from processor.config import PullConfig
from processor.context import Context
from processor.intake.loose import is_ignored, is_loose_csv

log = logging.getLogger("rosterdrop.intake.pull")

# hand_over(tenant, path, source) -> the run id the drop got (None when nothing was left to take)
HandOver = Callable[[str, Path, str], "str | None"]

STAGING = ".pulled"
TIMEOUT_SECONDS = 30.0


class PullError(Exception):
    """A pull could not run (unreachable, refused host key, no credentials); worded for the operator."""


class _Stopped(Exception):
    """The daemon is stopping: a download in progress is abandoned (it is fetched again next time)."""


def _home_path(ctx: Context, value: str) -> Path:
    # Relative paths in the config are relative to the home, like the store URL.
    p = Path(value).expanduser()
    return p if p.is_absolute() else ctx.home / p


def known_hosts_file(ctx: Context, cfg: PullConfig) -> Path:
    return _home_path(ctx, cfg.known_hosts) if cfg.known_hosts else Path("~/.ssh/known_hosts").expanduser()


def connect(ctx: Context, cfg: PullConfig, timeout: float = TIMEOUT_SECONDS) -> paramiko.SSHClient:
    """An authenticated SSH client to the pull server; PullError if it cannot be had."""
    password = None
    if cfg.password_env:
        password = os.environ.get(cfg.password_env)
        if password is None:
            raise PullError(f"the environment variable {cfg.password_env} (pull.password_env) is not set")
    if not cfg.key_file and password is None:
        raise PullError("neither pull.key_file nor pull.password_env is configured")
    known_hosts = known_hosts_file(ctx, cfg)
    client = paramiko.SSHClient()
    try:
        if known_hosts.exists():
            # "system" host keys are read-only: nothing is ever written back to the file
            client.load_system_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            cfg.host, port=cfg.port, username=cfg.username, password=password,
            key_filename=str(_home_path(ctx, cfg.key_file)) if cfg.key_file else None,
            look_for_keys=False, allow_agent=False,  # only the configured credentials, nothing of the host's
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
    except paramiko.BadHostKeyException:
        client.close()
        raise PullError(f"the host key of {cfg.host}:{cfg.port} does not match the one in {known_hosts}; "
                        "refusing to connect (a changed key can mean an impostor: check with the "
                        "server's operator before updating known_hosts)") from None
    except paramiko.SSHException as exc:
        client.close()
        if "known_hosts" in str(exc):
            raise PullError(f"the host key of {cfg.host}:{cfg.port} is not in {known_hosts}; refusing to "
                            f"connect. Add it after checking its fingerprint with the server's operator "
                            f"(`ssh-keyscan -p {cfg.port} {cfg.host}`)") from None
        raise PullError(f"SSH to {cfg.host}:{cfg.port} failed: {type(exc).__name__}: {exc}") from None
    except OSError as exc:  # TimeoutError included
        client.close()
        raise PullError(f"cannot reach {cfg.host}:{cfg.port}: {exc}") from None
    except BaseException:
        client.close()
        raise
    return client


def pull_tenant(ctx: Context, tenant: str, hand_over: HandOver, stop: threading.Event | None = None,
                timeout: float = TIMEOUT_SECONDS) -> list[str]:
    """Fetch the tenant's new remote files and hand each drop over; returns the run ids they got.

    Raises PullError when the server cannot be used at all; a single file that fails is logged and
    fetched again next time.
    """
    cfg = ctx.config.tenant(tenant).pull
    if cfg is None:
        return []
    stop = stop or threading.Event()
    engine = ctx.engine
    inbox = ctx.path("inbox", tenant)
    inbox.mkdir(parents=True, exist_ok=True)
    run_ids: list[str] = []
    client = connect(ctx, cfg, timeout)
    try:
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(timeout)
        files = _matching(sftp, cfg)
        csvs = [a for a in files if is_loose_csv(a.filename)]
        others = [a for a in files if not is_loose_csv(a.filename)]
        for attr in others:
            if stop.is_set():
                break
            if _already_pulled(engine, tenant, attr):
                continue
            staged = _fetch(sftp, cfg, attr, inbox, inbox / STAGING, stop)
            if staged is not None:
                run_ids += _hand_over(engine, tenant, staged, [attr], hand_over)
        # Loose CSVs are one bundle: fetched together, all of them, as soon as any of them is new.
        if csvs and not stop.is_set() and not all(_already_pulled(engine, tenant, a) for a in csvs):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            folder = inbox / STAGING / f"pull-{stamp}"
            fetched = [_fetch(sftp, cfg, a, inbox, folder, stop) for a in csvs if not stop.is_set()]
            if fetched and all(p is not None for p in fetched) and not stop.is_set():
                run_ids += _hand_over(engine, tenant, folder, csvs, hand_over)
            else:
                shutil.rmtree(folder, ignore_errors=True)  # an incomplete set is never handed over
    finally:
        client.close()
    return run_ids


def _matching(sftp: paramiko.SFTPClient, cfg: PullConfig) -> list[paramiko.SFTPAttributes]:
    out = []
    for attr in sftp.listdir_attr(cfg.remote_dir):
        name = attr.filename
        # A server is not trusted to send plain names: nothing may lead out of the staging folder.
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            continue
        if is_ignored(name) or not stat.S_ISREG(attr.st_mode or 0):
            continue  # dot files and .part/.tmp names are still being written on the server
        if fnmatch.fnmatchcase(name, cfg.pattern):
            out.append(attr)
    return sorted(out, key=lambda a: (a.st_mtime or 0, a.filename))


def _key(tenant: str, attr: paramiko.SFTPAttributes) -> dict:
    return {"tenant": tenant, "name": attr.filename, "size": int(attr.st_size or 0),
            "mtime": int(attr.st_mtime or 0)}


def _already_pulled(engine: Engine, tenant: str, attr: paramiko.SFTPAttributes) -> bool:
    k = _key(tenant, attr)
    with engine.connect() as conn:
        return conn.execute(select(pulled.c.run_id).where(
            pulled.c.tenant == k["tenant"], pulled.c.name == k["name"], pulled.c.size == k["size"],
            pulled.c.mtime == k["mtime"])).first() is not None


def _fetch(sftp: paramiko.SFTPClient, cfg: PullConfig, attr: paramiko.SFTPAttributes, inbox: Path,
           dest_dir: Path, stop: threading.Event) -> Path | None:
    """Download one remote file into dest_dir under its own name; None if it changed or failed."""
    name = attr.filename
    remote = posixpath.join(cfg.remote_dir, name)
    part = inbox / f".pull-{name}.part"

    def progress(done: int, total: int) -> None:
        if stop.is_set():
            raise _Stopped()

    try:
        with open(part, "wb") as f:
            sftp.getfo(remote, f, callback=progress)
            f.flush()
            os.fsync(f.fileno())  # on disk before it becomes a drop
        after = sftp.stat(remote)
        if (after.st_size, after.st_mtime) != (attr.st_size, attr.st_mtime) \
                or part.stat().st_size != attr.st_size:
            log.warning("pull: %s changed on the server while it was fetched; fetching it next time", name)
            part.unlink(missing_ok=True)
            return None
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        os.replace(part, dest)
        if attr.st_mtime:
            os.utime(dest, (attr.st_mtime, attr.st_mtime))
        return dest
    except _Stopped:
        part.unlink(missing_ok=True)
        return None
    except (OSError, paramiko.SSHException) as exc:
        part.unlink(missing_ok=True)
        log.warning("pull: fetching %s failed (%s); fetching it next time", name, type(exc).__name__)
        return None


def _hand_over(engine: Engine, tenant: str, path: Path, attrs: list[paramiko.SFTPAttributes],
               hand_over: HandOver) -> list[str]:
    try:
        run_id = hand_over(tenant, path, "pull")
    except Exception:
        # It stays in .pulled/: handed over again by the daemon's retry or at the next start.
        log.exception("tenant %s: handing over pulled %s failed", tenant, path.name)
        return []
    # Recorded after the hand-over: a crash in between fetches the file again, and the same bytes
    # are then a duplicate run, never a second apply.
    for attr in attrs:
        try:
            with engine.begin() as conn:
                conn.execute(insert(pulled).values(**_key(tenant, attr), run_id=run_id))
        except IntegrityError:
            pass  # fetched before, and again after a crash: already recorded
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    return [run_id] if run_id else []


def recover(ctx: Context, tenant: str, hand_over: HandOver) -> None:
    """At start-up: hand over what a crash left in `.pulled/`; drop half-downloaded `.pull-*.part` files."""
    inbox = ctx.path("inbox", tenant)
    if not inbox.is_dir():
        return
    for part in inbox.glob(".pull-*.part"):
        part.unlink(missing_ok=True)  # not recorded in pulled_files, so it is fetched again
    staging = inbox / STAGING
    if not staging.is_dir():
        return
    for entry in sorted(staging.iterdir()):
        if entry.is_symlink():
            continue
        if entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()
            continue
        log.info("tenant %s: handing over pulled %s left from before a restart", tenant, entry.name)
        try:
            hand_over(tenant, entry, "pull")
        except Exception:
            log.exception("tenant %s: handing over pulled %s failed", tenant, entry.name)
