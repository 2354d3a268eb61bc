"""The daemon as a service: one `serve` per home (a lock), systemd's notify protocol, start-up warnings,
JSON log lines, and picking up a changed configuration while running (ConfigWatch)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from processor.config import CONFIG_NAME, Config, ConfigError, load_config
from processor.context import UserError

log = logging.getLogger("rosterdrop.service")

LOCK_NAME = "serve.lock"
RELOAD_POLL_SECONDS = 1.0  # how often a running daemon looks at rosterdrop.toml (the contract allows 5 s)


# ---------------------------------------------------------------- one daemon per home


class ServeLock:
    """An exclusive fcntl lock on <home>/serve.lock, holding the PID of the daemon that has it.

    The kernel drops the lock when the process dies however it dies, so a stale file never blocks a
    restart; the PID written into it is only there to name the running daemon in the refusal.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"another `rosterdrop serve` (PID {pid}) is already running on {self.path.parent}; "
                            "stop it first (one daemon per home)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServeLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- systemd notify (Type=notify)


def sd_notify(message: str) -> bool:
    """Send a notification to systemd ($NOTIFY_SOCKET); False when not run by systemd (nothing to do)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("could not notify systemd at $NOTIFY_SOCKET: %s", exc.strerror or exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when systemd wants none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.1)
    except ValueError:
        return None


class Watchdog:
    """Pings systemd's watchdog from the daemon's main loop (tick()), so a stuck loop is restarted."""

    def __init__(self) -> None:
        self.every = watchdog_interval()
        self._next = 0.0

    def tick(self) -> None:
        if self.every is None:
            return
        now = time.monotonic()
        if now >= self._next:
            sd_notify("WATCHDOG=1")
            self._next = now + self.every


# ---------------------------------------------------------------- start-up warnings


def startup_warnings(config: Config) -> list[str]:
    """Problems that do not stop the daemon but will bite later; each is logged as a WARNING."""
    warnings = []
    smtp = config.smtp
    if smtp is not None and smtp.password_env and smtp.password_env not in os.environ:
        warnings.append(f"[smtp] password_env names {smtp.password_env}, which is not set: emails will fail to "
                        "send (and stay queued) until it is; set it in the service's environment file")
    for tenant, cfg in sorted(config.tenants.items()):
        pull = cfg.pull
        if pull is not None and pull.password_env and pull.password_env not in os.environ:
            warnings.append(f"tenants.{tenant}.pull.password_env names {pull.password_env}, which is not set")
    for w in warnings:
        log.warning("%s", w)
    return warnings


# ---------------------------------------------------------------- JSON log lines


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 with the local offset), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_FORMAT_ENV = "ROSTERDROP_LOG_FORMAT"  # how `--log-format` reaches the daemon's worker processes


def apply_log_format(fmt: str | None = None) -> None:
    """`--log-format json`: every handler of the root logger writes JSON lines (workers read the env)."""
    fmt = fmt or os.environ.get(LOG_FORMAT_ENV, "text")
    if fmt != "json":
        return
    os.environ[LOG_FORMAT_ENV] = "json"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())


# ---------------------------------------------------------------- live reload


def config_stamp(home: Path) -> tuple | None:
    """What changes when rosterdrop.toml is edited or replaced (an editor's rename-into-place included)."""
    try:
        st = (home / CONFIG_NAME).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ConfigWatch:
    """Tells a running daemon when rosterdrop.toml changed (polled) or SIGHUP asked for a reload.

    poll() returns a new, valid Config, or None. A file that does not validate is logged once and the
    daemon keeps the configuration it has.
    """

    def __init__(self, home: Path, every: float = RELOAD_POLL_SECONDS) -> None:
        self.home = home
        self.every = every
        self.requested = False  # set by SIGHUP: a plain flag, safe to set from a signal handler
        self._stamp = config_stamp(home)
        self._next = time.monotonic() + every
        self._bad_stamp: tuple | None = None

    def poll(self) -> Config | None:
        now = time.monotonic()
        if not self.requested and now < self._next:
            return None
        self._next = now + self.every
        forced, self.requested = self.requested, False
        stamp = config_stamp(self.home)
        if not forced and stamp == self._stamp:
            return None
        if not forced and stamp == self._bad_stamp:
            return None
        try:
            config = load_config(self.home)
        except ConfigError as exc:
            self._bad_stamp = stamp
            log.error("configuration not reloaded, the daemon keeps the previous one: %s", exc)
            return None
        self._stamp = stamp
        self._bad_stamp = None
        return config


def restart_needed(old: Config, new: Config) -> list[str]:
    """Sections whose change only takes effect at the next start (they are bound when the doors open)."""
    out = []
    for section in ("store", "sftp", "daemon"):
        if getattr(old, section) != getattr(new, section):
            out.append(section)
    # a pull of a tenant added or changed while running only starts at the next start
    if any(c.pull is not None and (t not in old.tenants or old.tenants[t].pull != c.pull)
           for t, c in new.tenants.items()):
        out.append("tenants.*.pull")
    return out


def refresh_worker_config(ctx) -> None:
    """In a worker process, before each drop: the configuration as the file says now, so that changed
    policies apply to the next drop without a restart. An invalid file keeps the previous one (the
    daemon logs why)."""
    stamp = config_stamp(ctx.home)
    if stamp == getattr(ctx, "_config_stamp", None):
        return
    try:
        ctx.config = load_config(ctx.home)
    except ConfigError:
        return
    ctx._config_stamp = stamp


def watch_new_inboxes(watcher, tenants: list[str]) -> None:
    """Have a running InboxWatcher watch the inboxes of tenants added while it runs."""
    from processor.intake.watcher import _EventHandler

    observer = getattr(watcher, "_observer", None)
    for tenant in tenants:
        inbox = watcher.inbox(tenant)
        inbox.mkdir(parents=True, exist_ok=True)
        if observer is not None:
            observer.schedule(_EventHandler(watcher), str(inbox), recursive=True)
