"""The built-in SFTP server (paramiko): one jailed inbox per tenant, a drop is ready when the client closes it.

User name = tenant id; authentication by the tenant's password and/or its authorized public keys
(processor.intake.auth). Each tenant sees its `inbox/<tenant>/` folder as `/` and nothing else.

When is an upload complete? When the client closes a file it wrote. paramiko also closes every open
handle when a connection drops, so the SFTP session records that it ended and a close after that is an
aborted upload: the partial file is kept aside as `<name>.aborted` and never processed. `x.part` (and
the other names in loose.IGNORED_SUFFIXES, and dot files) never trigger; renaming `x.part` to `x.zip`
does. Loose CSV files go to the LooseCsvCollector, which hands over one bundle folder.

OpenSSH's `sftp` and `scp` (which speaks SFTP since OpenSSH 9.0) work; legacy `scp -O` needs a shell
and is refused.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path

import paramiko
from paramiko.sftp import (
    SFTP_FAILURE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    SFTP_PERMISSION_DENIED,
)
from sqlalchemy import Engine

from processor.apply.access import tenant_disabled
from processor.home import HOST_KEY
from processor.intake import results
from processor.intake.auth import LoginThrottle, check_key, check_password
from processor.intake.limits import UploadLimits, inbox_bytes
from processor.intake.loose import LooseCsvCollector, OnUpload, is_ignored, is_loose_csv

log = logging.getLogger("rosterdrop.intake.sftp")
SSH_LOG = "rosterdrop.intake.ssh"  # paramiko's transport log of our connections (see _ParamikoNoise)


# paramiko's default channel window is 2 MiB; over a fast link the client then spends most of its time
# waiting for window adjustments. 128 MiB measured ~3x the throughput of the default here.
WINDOW_SIZE = 128 * 1024 * 1024
MAX_PACKET_SIZE = 32768
READ_AHEAD = 4 * 1024 * 1024
QUOTA_CHECK_BYTES = 16 * 1024 * 1024  # how often a long upload measures the inbox again (see _Handle.write)
RECEIVED_TTL = 300.0  # how long stat() still answers for a file handed over (see _TenantSftp._lstat)


def _weak_cipher(name: str) -> bool:
    # CBC modes are open to plaintext-recovery attacks on SSH (CVE-2008-5161); 3DES is slow and has a
    # 64-bit block. Every current client speaks CTR or GCM.
    return "-cbc" in name or "3des" in name


_TRACEBACK_LINE = re.compile(r"^(Traceback \(most recent call last\):|\s|$|[A-Za-z_][\w.]*(:|$)"
                             r"|During handling of the above exception|The above exception was the direct cause)")


class _ParamikoNoise(logging.Filter):
    """paramiko logs every connection that fails as an ERROR followed by its traceback, one record per
    line (1,500 lines for 64 idle sockets), and a client that hangs up as "Connection reset by peer".
    Neither is a fault of the daemon: the failure becomes one INFO line naming the address, the
    traceback and the reset go to DEBUG."""

    closed_by_us: set[str] = set()  # transport thread names: their end was logged already, by us
    lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        msg = record.getMessage()
        address = record.threadName.split(" ")[1] if record.threadName.startswith("sftp ") else "?"
        if msg.startswith("Exception (server): "):
            with self.lock:
                ours = record.threadName in self.closed_by_us
                self.closed_by_us.discard(record.threadName)
            if ours:
                return self._debug(record)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "SFTP connection from %s ended: %s", (address, msg[20:][:200])
            return True
        if msg.startswith("Unknown exception: "):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "SFTP connection from %s failed: %s", (address, msg[19:][:200])
            return True
        if msg.startswith("Socket exception: Connection reset by peer") or _TRACEBACK_LINE.match(msg):
            return self._debug(record)
        return True

    @staticmethod
    def _debug(record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    @classmethod
    def closing(cls, t: paramiko.Transport) -> None:
        """We close t and log why ourselves: paramiko's own report of it is noise."""
        with cls.lock:
            if len(cls.closed_by_us) > 10_000:  # names of transports that ended without a report
                cls.closed_by_us.clear()
            cls.closed_by_us.add(t.name)


logging.getLogger(SSH_LOG).addFilter(_ParamikoNoise())


class _Escape(PermissionError):
    """A path that resolves outside the tenant's inbox."""


# ---------------------------------------------------------------- the jail


class Jail:
    """Maps the paths a client sends onto one inbox folder, which the client sees as `/`."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)

    @staticmethod
    def virtual(path: str) -> str:
        """The normalized client-side path: absolute, no `.`/`..`; `..` cannot climb above `/`."""
        p = posixpath.normpath(posixpath.join("/", path))
        return "/" + p.lstrip("/")

    def real(self, path: str) -> str:
        """The real path for a client path; its final component is not resolved (so never followed).

        Every directory above it is resolved with realpath and must stay inside the inbox, so a
        symlink planted anywhere on the way cannot lead out. Callers never follow the final component
        (O_NOFOLLOW, lstat, refusing symlinks), so it cannot lead out either.
        """
        if "\0" in path:
            raise _Escape(errno.EACCES, "NUL in path")
        v = self.virtual(path)
        if v == "/":
            return self.root
        parent, name = posixpath.split(v)
        real_parent = os.path.realpath(os.path.join(self.root, parent.lstrip("/")))
        if real_parent != self.root and not real_parent.startswith(self.root + os.sep):
            raise _Escape(errno.EACCES, "outside the inbox")
        return os.path.join(real_parent, name)

    def rel(self, real: str) -> str:
        """The path relative to the inbox, POSIX style ('' for the inbox itself)."""
        return Path(os.path.relpath(real, self.root)).as_posix() if real != self.root else ""


def _sftp_errors(fn):
    """Turn OS errors into SFTP status codes: the session must never die on a bad request."""

    @wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except _Escape:
            log.warning("tenant %s: %s refused: path outside the inbox", self.tenant, fn.__name__)
            return SFTP_PERMISSION_DENIED
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
                return SFTP_PERMISSION_DENIED
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return SFTP_NO_SUCH_FILE
            return SFTP_FAILURE
        except ValueError:
            return SFTP_FAILURE

    return wrapper


# ---------------------------------------------------------------- file handles


class _Handle(paramiko.SFTPHandle):
    def __init__(self, session: _TenantSftp, real: str, flags: int, fileobj, writing: bool) -> None:
        super().__init__(flags)
        self.session = session
        self.path = real
        self.writing = writing
        st = os.fstat(fileobj.fileno())
        self.identity = (st.st_dev, st.st_ino)
        self.readfile = fileobj
        if writing:
            self.writefile = fileobj
        self.failed = False  # a write or the final flush failed (disk full...): the file is incomplete
        self._closed = False
        self.max_bytes: int | None = None  # the size this file may reach (upload and inbox limits)
        self.over_limit: str | None = None  # why a write was refused for going past max_bytes
        self._unchecked = 0  # bytes written since the inbox was last measured

    def _past_limit(self, size: int, reason: str | None = None) -> int | None:
        if reason is None and (self.max_bytes is None or size <= self.max_bytes):
            return None
        if self.over_limit is None:
            self.over_limit = reason or self.session.server._limit_reason(self.session.tenant, self.max_bytes)
            log.warning("tenant %s: upload of %s refused: %s", self.session.tenant,
                        self.session.jail.rel(self.path), self.over_limit)
        self.failed = True
        return self.session.refuse(self.over_limit)

    def write(self, offset, data):
        if (refused := self._past_limit(offset + len(data))) is not None:
            return refused
        if self.max_bytes is not None:
            # Several connections may write at once, each within the room there was when it opened its
            # file: the inbox is measured again every QUOTA_CHECK_BYTES written.
            self._unchecked += len(data)
            if self._unchecked >= QUOTA_CHECK_BYTES:
                self._unchecked = 0
                why = self.session.server._inbox_full(self.session, len(data))
                if why is not None:
                    return self._past_limit(offset + len(data), why)
        result = super().write(offset, data)
        if result != SFTP_OK:
            self.failed = True
        return result

    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr):
        # Permissions, owner and times are the daemon's business, not the sender's; they are accepted
        # and ignored so that `scp` and `sftp put -p` (which send them) succeed.
        if attr._flags & attr.FLAG_SIZE:
            if not self.writing:
                return SFTP_PERMISSION_DENIED
            if (refused := self._past_limit(attr.st_size)) is not None:
                return refused
            try:
                self.writefile.flush()
                os.ftruncate(self.writefile.fileno(), attr.st_size)
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def close(self):
        if self._closed:
            return
        self._closed = True
        # paramiko closes leftover handles itself when the connection ends; such a close is no sign
        # that the upload is complete.
        aborted = self.session.ended
        if self.writing and not aborted and not self.failed:
            try:
                # the client is told the upload succeeded only once the bytes are on disk
                self.writefile.flush()
                os.fsync(self.writefile.fileno())
            except OSError:
                self.failed = True
        try:
            super().close()
        except OSError:
            self.failed = True
        if self.writing:
            self.session.server._write_closed(self, aborted=aborted, failed=self.failed)


# ---------------------------------------------------------------- the SFTP session


class _TenantSftp(paramiko.SFTPServerInterface):
    """One SFTP session of one tenant, jailed in the tenant's inbox."""

    def __init__(self, gate: _Gate, server: SftpServer, *args, **kwargs) -> None:
        super().__init__(gate, *args, **kwargs)
        tenant = gate.transport.get_username()
        if tenant not in server.tenants:  # cannot happen: the gate only admits configured tenants
            raise PermissionError("not a configured tenant")
        self.server = server
        self.tenant: str = tenant
        self.address = gate.address
        self.jail = Jail(server.inbox(tenant))
        self.ended = False
        # real paths opened for writing over this connection (all its SFTP channels: a session is a login)
        self.files_written: set[str] = gate.files_written
        self.status_message: str | None = None  # the text of the next error status (see _SftpSubsystem)
        self.results = results.ResultsFolder(server.home, server.engine, tenant)  # read-only results/

    def refuse(self, why: str) -> int:
        """SFTP_FAILURE with `why` as its message (SFTP v3 has no "quota exceeded" code)."""
        self.status_message = why
        return SFTP_FAILURE

    def _in_results(self, *paths: str) -> bool:
        return any(results.owns(self.jail.virtual(p)) for p in paths)

    def session_started(self) -> None:
        with self.server._lock:  # called in the session's own thread (SftpServer.stop waits for it)
            self.server._session_threads.add(threading.current_thread())
        log.info("tenant %s: SFTP session from %s", self.tenant, self.address)

    def session_ended(self) -> None:
        self.ended = True
        log.info("tenant %s: SFTP session from %s ended", self.tenant, self.address)

    def canonicalize(self, path):
        return self.jail.virtual(path)

    @_sftp_errors
    def open(self, path, flags, attr):
        if self._in_results(path):
            return self.results.open(self.jail.virtual(path), flags)
        real = self.jail.real(path)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if real == self.jail.root:
            return SFTP_PERMISSION_DENIED
        max_bytes = None
        if writing:  # checked before the open, which may create or truncate the file
            max_bytes, refusal = self.server._upload_allowance(self, real)
            if refusal is not None:
                log.warning("tenant %s: upload of %s refused: %s", self.tenant, self.jail.rel(real), refusal)
                return self.refuse(refusal)
        # O_NOFOLLOW: a symlink in the final component is refused (ELOOP), even one planted after
        # the path was checked.
        fd = os.open(real, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EACCES, "not a regular file")
            if flags & os.O_RDWR:
                mode = "r+b"
            elif writing:
                mode = "ab" if flags & os.O_APPEND else "wb"
            else:
                mode = "rb"
            fileobj = os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        handle = _Handle(self, real, flags, fileobj, writing)
        if writing:
            handle.max_bytes = max_bytes
            self.files_written.add(real)
            self.server._write_opened(handle)
        return handle

    @_sftp_errors
    def list_folder(self, path):
        if self._in_results(path):
            return self.results.list_folder(self.jail.virtual(path))
        real = self.jail.real(path)
        if os.path.islink(real):
            return SFTP_PERMISSION_DENIED
        out = [self.results.folder_attr()] if real == self.jail.root else []
        with os.scandir(real) as entries:
            for entry in entries:
                try:
                    attr = paramiko.SFTPAttributes.from_stat(entry.stat(follow_symlinks=False), entry.name)
                except OSError:
                    continue  # gone since the listing started
                if real == self.jail.root and entry.name == results.FOLDER:
                    continue  # the virtual results/ folder shadows a real one
                out.append(attr)
        return out

    @_sftp_errors
    def stat(self, path):
        if self._in_results(path):
            return self.results.stat(self.jail.virtual(path))
        real = self.jail.real(path)
        st = self._lstat(real)
        if isinstance(st, paramiko.SFTPAttributes):
            return st
        if stat.S_ISLNK(st.st_mode):
            return SFTP_PERMISSION_DENIED  # following it could lead out of the inbox
        return paramiko.SFTPAttributes.from_stat(st, posixpath.basename(real))

    @_sftp_errors
    def lstat(self, path):
        if self._in_results(path):
            return self.results.stat(self.jail.virtual(path))
        real = self.jail.real(path)
        st = self._lstat(real)
        if isinstance(st, paramiko.SFTPAttributes):
            return st
        return paramiko.SFTPAttributes.from_stat(st, posixpath.basename(real))

    def _lstat(self, real: str) -> os.stat_result | paramiko.SFTPAttributes:
        try:
            return os.lstat(real)
        except FileNotFoundError:
            # Just received and already moved to the spool: many clients check the size right
            # after the upload (paramiko's put(), WinSCP) and would otherwise report a failure.
            attr = self.server._recently_received(real)
            if attr is None:
                raise
            return attr

    @_sftp_errors
    def remove(self, path):
        if self._in_results(path):
            return SFTP_PERMISSION_DENIED
        real = self.jail.real(path)
        if real == self.jail.root:
            return SFTP_PERMISSION_DENIED
        os.remove(real)
        return SFTP_OK

    @_sftp_errors
    def rename(self, oldpath, newpath):
        return self._rename(oldpath, newpath, replace=False)

    @_sftp_errors
    def posix_rename(self, oldpath, newpath):
        return self._rename(oldpath, newpath, replace=True)

    def _rename(self, oldpath: str, newpath: str, replace: bool) -> int:
        if self._in_results(oldpath, newpath):
            return SFTP_PERMISSION_DENIED
        old, new = self.jail.real(oldpath), self.jail.real(newpath)
        if self.jail.root in (old, new):
            return SFTP_PERMISSION_DENIED
        st = os.lstat(old)
        if replace:
            os.replace(old, new)
        elif stat.S_ISREG(st.st_mode):
            # SFTP v3 rename must not overwrite; link + unlink is an atomic no-clobber rename (what
            # OpenSSH's sftp-server does).
            os.link(old, new, follow_symlinks=False)
            os.unlink(old)
        else:
            if os.path.lexists(new):
                return SFTP_FAILURE
            os.rename(old, new)
        self.server._renamed(self.tenant, self.jail, old, new, st)
        return SFTP_OK

    @_sftp_errors
    def mkdir(self, path, attr):
        if self._in_results(path):
            return SFTP_PERMISSION_DENIED
        real = self.jail.real(path)
        if real == self.jail.root:
            return SFTP_FAILURE
        os.mkdir(real, 0o750)
        return SFTP_OK

    @_sftp_errors
    def rmdir(self, path):
        if self._in_results(path):
            return SFTP_PERMISSION_DENIED
        real = self.jail.real(path)
        if real == self.jail.root or os.path.islink(real):
            return SFTP_PERMISSION_DENIED
        os.rmdir(real)
        return SFTP_OK

    @_sftp_errors
    def chattr(self, path, attr):
        if self._in_results(path):
            return SFTP_PERMISSION_DENIED
        real = self.jail.real(path)
        st = self._lstat(real)
        if isinstance(st, paramiko.SFTPAttributes):
            return SFTP_OK  # setting times on a file just received (see _lstat): accepted, ignored
        if stat.S_ISLNK(st.st_mode):
            return SFTP_PERMISSION_DENIED
        if attr._flags & attr.FLAG_SIZE:
            if not stat.S_ISREG(st.st_mode):
                return SFTP_PERMISSION_DENIED
            fd = os.open(real, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, attr.st_size)
            finally:
                os.close(fd)
        # mode, owner and times: accepted and ignored (see _Handle.chattr)
        return SFTP_OK

    def readlink(self, path):
        return SFTP_PERMISSION_DENIED

    def symlink(self, target_path, path):
        return SFTP_PERMISSION_DENIED


class _ReadAhead:
    """The SFTP subsystem's channel, read in gulps of up to READ_AHEAD bytes.

    paramiko's SFTP server reads each request as two small recv() calls, and each recv() from the
    channel's buffer shifts everything still buffered behind it (`del buf[:n]`). With a large window
    a client that keeps many writes in flight builds a backlog of megabytes, and the server slowed to
    a quarter of its speed (OpenSSH `sftp -R 512`, 100 MiB over loopback: 16-26 MiB/s instead of 74).
    Taking big gulps makes that shift rare; the requests are then cut from the gulp here.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._data = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._data):
            self._data = self._channel.recv(READ_AHEAD)
            self._pos = 0
            if not self._data:
                return b""
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def __getattr__(self, name: str):
        return getattr(self._channel, name)


class _SftpSubsystem(paramiko.SFTPServer):
    def start_subsystem(self, name, transport, channel):
        super().start_subsystem(name, transport, _ReadAhead(channel))

    def _send_status(self, request_number, code, desc=None):
        # Requests of one session are answered one at a time, in this thread: a message the session
        # set while handling this request belongs to this answer.
        message = getattr(self.server, "status_message", None)
        if message is not None:
            self.server.status_message = None
            if code != SFTP_OK and desc is None:
                desc = message
        return super()._send_status(request_number, code, desc)

    def finish_subsystem(self):
        # OpenSSH's scp waits for an exit status before it reports success.
        try:
            self.sock.send_exit_status(0)
        except Exception:  # the channel may already be gone; nothing to tell then
            pass
        super().finish_subsystem()


# ---------------------------------------------------------------- authentication


class _Gate(paramiko.ServerInterface):
    """Authentication and channel policy for one connection."""

    def __init__(self, server: SftpServer, address: str) -> None:
        self.server = server
        self.address = address
        self.transport: paramiko.Transport | None = None
        self.authenticated = False
        self.login_method: str | None = None  # password | publickey, once the gate said yes
        self.files_written: set[str] = set()  # see _TenantSftp.files_written

    def get_allowed_auths(self, username):
        # The same answer for every user name, so it does not tell which tenants exist.
        return "publickey,password"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def _login_refusal(self, username: str) -> str | None:
        """Why this user may not log in whatever its credential; None when it may.

        Every rule about who may log in lives here (a disabled tenant belongs here too). It is asked
        after the credential was checked, so that refused and unknown users cost the same time.
        """
        if username not in self.server.tenants:
            return "unknown user"
        if tenant_disabled(self.server.engine, username):
            return "tenant disabled"
        return None

    def _refused(self, username: str, method: str, why: str) -> None:
        # INFO, with the tenant id and the address only: never the password, the key or an unknown
        # user name (people type passwords and email addresses into the user name field).
        who = f"tenant {username}" if username in self.server.tenants else "tenant -"
        log.info("%s: login refused (%s, %s) from %s", who, method, why, self.address)

    def _accepted(self) -> None:
        # Called once the client is in (its first channel request): a public key the gate accepted may
        # still fail its signature check, which paramiko makes after asking the gate.
        if self.authenticated or self.transport is None or not self.transport.is_authenticated():
            return
        self.authenticated = True
        self.server._authenticated(self.transport)
        method = self.login_method or "?"
        log.info("tenant %s: login accepted (%s) from %s", self.transport.get_username(), method, self.address)

    def check_auth_password(self, username, password):
        # The hash runs for unknown user names too: the answer takes the same time either way.
        return self._check_credential(username, "password", "wrong password",
                                      lambda: check_password(self.server.engine, username, str(password)))

    def check_auth_publickey(self, username, key):
        # paramiko asks twice for a key that is accepted (without, then with its signature): both
        # answers come from here, the signature itself is paramiko's job. Queried for unknown user names
        # too: the time taken must not tell which tenants exist.
        return self._check_credential(username, "publickey", "key not authorized",
                                      lambda: check_key(self.server.engine, username, key))

    def _check_credential(self, username: str, method: str, wrong: str, check) -> int:
        """One login attempt: reserved in the throttle before the (slow) check, then the who-may-log-in
        rules, then success or a logged refusal that counts against the address and the user."""
        attempt = self.server.throttle.reserve(self.address, username, method)
        if attempt is None:
            self._refused(username, method, "throttled after repeated failures")
            return paramiko.AUTH_FAILED
        try:
            ok = check()
        except Exception:
            log.exception("%s check failed", method)
            attempt.failed()
            return paramiko.AUTH_FAILED
        refusal = self._login_refusal(username)
        if ok and refusal is None:
            attempt.succeeded()
            self.login_method = method
            return paramiko.AUTH_SUCCESSFUL
        self._refused(username, method, refusal or wrong)
        delay = attempt.failed()
        if delay:
            log.warning("address %s refused for %.0f s after repeated failed logins", self.address, delay)
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        self._accepted()
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel, name):
        if name != "sftp":
            return False
        return super().check_channel_subsystem_request(channel, name)


# ---------------------------------------------------------------- the server


class SftpServer:
    """The SFTP door: `start()` listens, `stop()` closes every connection.

    `on_upload(tenant, path)` is called, from a connection's thread (several may run at once), when a
    file is complete: a `.zip` or any other non-CSV file, or a `.bundle-*` folder of loose CSVs. The
    consumer is expected to move the path out of the inbox atomically before returning. It may be
    called for a path that is already gone (a second door, a retry): the consumer must tolerate a
    missing path. An exception it raises is logged and the file stays in the inbox.
    """

    def __init__(self, home: Path, engine: Engine, host: str, port: int, tenants: Iterable[str],
                 on_upload: OnUpload, *, quiet_period: float = 60.0, throttle: LoginThrottle | None = None,
                 window_size: int = WINDOW_SIZE, max_packet_size: int = MAX_PACKET_SIZE,
                 max_connections: int = 64, max_unauthenticated: int = 32,
                 max_unauthenticated_per_address: int = 8, login_grace_seconds: float = 30.0,
                 limits: UploadLimits | Callable[[str], UploadLimits] | None = None) -> None:
        self.home = Path(home)
        self.engine = engine
        self.host = host
        self.port = port
        self.tenants = frozenset(tenants)
        self.on_upload = on_upload
        self.throttle = throttle or LoginThrottle()
        self.window_size = window_size
        self.max_packet_size = max_packet_size
        self.max_connections = max_connections
        self.max_unauthenticated = min(max_unauthenticated, max_connections)
        self.max_unauthenticated_per_address = max_unauthenticated_per_address
        self.login_grace_seconds = login_grace_seconds
        fixed = limits if isinstance(limits, UploadLimits) else UploadLimits()
        self._limits: Callable[[str], UploadLimits] = limits if callable(limits) else (lambda _tenant: fixed)
        self._preauth: dict[paramiko.Transport, tuple[str, float]] = {}  # not logged in: address, deadline
        self._next_reap = 0.0
        self._accepted_count = 0
        self.collector = LooseCsvCollector(self.home, on_upload, quiet_period=quiet_period)
        self._host_key: paramiko.PKey | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._transports: set[paramiko.Transport] = set()
        # each SFTP session runs in a thread of its own (paramiko's subsystem handler), which also closes the
        # files a lost connection left open (an upload in flight becomes `<name>.aborted` there)
        self._session_threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._writers: dict[str, list[_Handle]] = {}  # real path -> handles writing it, all sessions
        self._received: dict[str, tuple[float, paramiko.SFTPAttributes]] = {}  # real path -> (expiry, attrs)

    def inbox(self, tenant: str) -> Path:
        return self.home / "inbox" / tenant

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind and listen; returns once connections are accepted. Port 0 picks a free port (see .port)."""
        self._host_key = paramiko.Ed25519Key.from_private_key_file(str(self.home / HOST_KEY))
        for tenant in self.tenants:
            self.inbox(tenant).mkdir(parents=True, exist_ok=True)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.settimeout(0.2)  # lets the accept loop notice stop()
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        self.collector.start()
        for tenant in sorted(self.tenants):
            self.collector.recover(tenant)
        self._thread = threading.Thread(target=self._accept_loop, name="sftp-accept", daemon=True)
        self._thread.start()
        log.info("SFTP server listening on %s:%d for %d tenants", self.host, self.port, len(self.tenants))

    def stop(self) -> None:
        """Stop listening and close every connection (uploads in flight become aborted uploads)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            transports = list(self._transports)
            self._transports.clear()
        for t in transports:
            t.close()
        for t in transports:
            t.join(timeout=5)
        # A transport's thread ends before its sessions' threads have closed their files: wait for those too,
        # so every upload in flight is an aborted upload (kept aside, never processed) once stop returns.
        with self._lock:
            sessions = list(self._session_threads)
            self._session_threads.clear()
        for thread in sessions:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self.collector.stop()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            self._reap()
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("SFTP accept failed")
                continue
            try:
                self._handshake(conn, addr[0])
            except Exception:
                log.exception("SFTP connection from %s could not start", addr[0])
                conn.close()

    def _handshake(self, conn: socket.socket, address: str) -> None:
        wait = self.throttle.retry_after(address)
        if wait > 0:
            # refused early: no key exchange or password hash for a blocked address
            log.info("SFTP connection from %s refused: blocked for %.0f s after repeated failed logins",
                     address, wait)
            conn.close()
            return
        with self._lock:
            victims, refusal = self._make_room(address)
            t = None
            if refusal is None:
                conn.settimeout(None)
                t = paramiko.Transport(conn, default_window_size=self.window_size,
                                       default_max_packet_size=self.max_packet_size)
                self._transports.add(t)
                self._preauth[t] = (address, time.monotonic() + self.login_grace_seconds)
        for victim, victim_address, why in victims:
            log.info("SFTP connection from %s closed: %s", victim_address, why)
            _ParamikoNoise.closing(victim)
            victim.close()
        if t is None:
            log.info("SFTP connection from %s refused: %s", address, refusal)
            conn.close()
            return
        # A client that connects and says nothing must not hold a slot for long.
        t.banner_timeout = min(10.0, self.login_grace_seconds)
        t.handshake_timeout = 15.0  # paramiko's default; login_grace_seconds bounds the whole login
        t.set_log_channel(SSH_LOG)
        self._accepted_count += 1
        t.name = f"sftp {address} #{self._accepted_count}"  # read by _ParamikoNoise to name the address
        t.add_server_key(self._host_key)
        opts = t.get_security_options()
        opts.ciphers = tuple(c for c in opts.ciphers if not _weak_cipher(c))
        t.set_subsystem_handler("sftp", _SftpSubsystem, _TenantSftp, self)
        gate = _Gate(self, address)
        gate.transport = t
        # With an event, start_server returns at once; key exchange and authentication run in the
        # transport's own thread, so a slow client cannot hold up the accept loop.
        t.start_server(event=threading.Event(), server=gate)

    def _make_room(self, address: str) -> tuple[list[tuple[paramiko.Transport, str, str]], str | None]:
        """Under the lock: (connections to close to make room: transport, address, why; why a new one is
        refused, or None).

        Connections not logged in yet are capped per address and in total, below max_connections, so
        that a flood of idle connections leaves room for logged-in sessions and for other addresses.
        When a cap is reached, the oldest waiting connection that has not even sent its SSH greeting
        makes way: a real client sends it at once, an idle socket never does.
        """
        self._transports = {t for t in self._transports if t.is_alive()}
        self._preauth = {t: v for t, v in self._preauth.items() if t.is_alive()}
        self._session_threads = {t for t in self._session_threads if t.is_alive()}
        victims: list[tuple[paramiko.Transport, str, str]] = []
        refusal = None
        mine = [t for t, (a, _) in self._preauth.items() if a == address]
        if len(mine) >= self.max_unauthenticated_per_address:
            victim = self._idle(mine)
            if victim is None:
                refusal = (f"{len(mine)} connections from this address are not logged in yet "
                           f"(at most {self.max_unauthenticated_per_address})")
            else:
                victims.append((victim, address, "no SSH greeting, and a newer connection from the address "
                                                 "was waiting"))
        if refusal is None and len(self._preauth) - len(victims) >= self.max_unauthenticated:
            victim = self._idle([t for t in self._preauth if t not in {v[0] for v in victims}])
            if victim is None:
                refusal = f"{self.max_unauthenticated} connections are not logged in yet"
            else:
                victims.append((victim, self._preauth[victim][0], "no SSH greeting, and a newer connection "
                                                                  "was waiting"))
        for victim, _, _ in victims:
            self._preauth.pop(victim, None)
            self._transports.discard(victim)
        if refusal is None and len(self._transports) >= self.max_connections:
            refusal = f"{self.max_connections} connections open"
        return victims, refusal

    @staticmethod
    def _idle(transports: list[paramiko.Transport]) -> paramiko.Transport | None:
        """The oldest of these (dicts keep insertion order) that has sent no SSH greeting yet."""
        return next((t for t in transports if not t.remote_version), None)

    def _authenticated(self, t: paramiko.Transport | None) -> None:
        with self._lock:
            self._preauth.pop(t, None)

    def _reap(self) -> None:
        """Close connections that did not log in within login_grace_seconds."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + 0.5
        with self._lock:
            expired = [(t, a) for t, (a, deadline) in self._preauth.items() if deadline <= now]
            for t, _ in expired:
                self._preauth.pop(t, None)
        for t, address in expired:
            if t.is_alive():
                log.info("SFTP connection from %s closed: not logged in within %.0f s", address,
                         self.login_grace_seconds)
                _ParamikoNoise.closing(t)
            t.close()

    # ------------------------------------------------------------ upload limits

    def limits(self, tenant: str) -> UploadLimits:
        return self._limits(tenant)

    def _upload_allowance(self, session: _TenantSftp, real: str) -> tuple[int, str | None]:
        """(the size the file may reach, why opening it for writing is refused or None)."""
        lim = self.limits(session.tenant)
        if real not in session.files_written and len(session.files_written) >= lim.max_files_per_session:
            return 0, (f"upload limit reached: at most {lim.max_files_per_session} files per session; "
                       "log in again to send more")
        try:
            st = os.lstat(real)
            own = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except FileNotFoundError:
            own = 0
        used = inbox_bytes(session.jail.root) - own
        if used >= lim.max_inbox_bytes:
            return 0, (f"quota exceeded: the inbox holds {used:,} bytes, at most {lim.max_inbox_bytes:,} "
                       "(files waiting there count, .part files too)")
        return min(lim.max_upload_bytes, lim.max_inbox_bytes - used), None

    def _inbox_full(self, session: _TenantSftp, more: int) -> str | None:
        lim = self.limits(session.tenant)
        if inbox_bytes(session.jail.root) + more > lim.max_inbox_bytes:
            return f"quota exceeded: the inbox may hold at most {lim.max_inbox_bytes:,} bytes"
        return None

    def _limit_reason(self, tenant: str, max_bytes: int) -> str:
        lim = self.limits(tenant)
        if max_bytes >= lim.max_upload_bytes:
            return f"file too large: at most {lim.max_upload_bytes:,} bytes per file"
        return f"quota exceeded: the inbox may hold at most {lim.max_inbox_bytes:,} bytes"

    # ------------------------------------------------------------ upload completion

    def _write_opened(self, handle: _Handle) -> None:
        with self._lock:
            self._writers.setdefault(handle.path, []).append(handle)
        if is_loose_csv(handle.path) and not is_ignored(handle.session.jail.rel(handle.path)):
            self.collector.begin_write(handle.session.tenant, Path(handle.path))

    def _write_closed(self, handle: _Handle, aborted: bool, failed: bool = False) -> None:
        session = handle.session
        with self._lock:
            writers = self._writers.get(handle.path, [])
            if handle in writers:
                writers.remove(handle)
            if not writers:
                self._writers.pop(handle.path, None)
            others = bool(writers)
        path = Path(handle.path)
        rel = session.jail.rel(handle.path)
        if others:
            return  # another session is still writing this file; its close decides
        if not self._same_file(handle):
            self.collector.end_write(session.tenant, path)
            return  # removed or replaced while open: nothing of this upload is left at that name
        if handle.over_limit:
            self.collector.end_write(session.tenant, path)
            try:
                os.unlink(path)  # never processed, and it must not go on filling the inbox
            except OSError:
                pass
            log.warning("tenant %s: upload of %s removed: %s", session.tenant, rel, handle.over_limit)
            return
        if aborted or failed:
            self.collector.end_write(session.tenant, path)
            self._aborted(session.tenant, path, rel, "the connection was lost before the file was closed"
                          if aborted else "writing it failed on the server")
            return
        self._announce(session.tenant, path, rel)

    @staticmethod
    def _same_file(handle: _Handle) -> bool:
        try:
            st = os.lstat(handle.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == handle.identity

    def _aborted(self, tenant: str, path: Path, rel: str, why: str) -> None:
        if is_ignored(rel):
            # A .part file is left as it is: the sender can resume it (sftp `reput`).
            log.warning("tenant %s: upload of %s incomplete (%s); kept for a resume", tenant, rel, why)
            return
        aside = path.with_name(path.name + ".aborted")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        log.warning("tenant %s: upload of %s incomplete (%s); not processed, kept as %s",
                    tenant, rel, why, aside.name)

    def _announce(self, tenant: str, path: Path, rel: str) -> None:
        """A file is complete at `path`: hand it over unless its name says it is not a drop."""
        if is_ignored(rel):
            return
        self._remember(path)
        try:
            if is_loose_csv(path.name):
                self.collector.add(tenant, path)
                return
            log.info("tenant %s: upload of %s complete", tenant, rel)
            self.on_upload(tenant, path)
        except Exception:
            log.exception("tenant %s: handing over %s failed; it stays in the inbox", tenant, rel)

    def _remember(self, path: Path) -> None:
        try:
            attr = paramiko.SFTPAttributes.from_stat(os.lstat(path), path.name)
        except OSError:
            return
        now = time.monotonic()
        with self._lock:
            self._received = {p: v for p, v in self._received.items() if v[0] > now}
            self._received[str(path)] = (now + RECEIVED_TTL, attr)

    def _recently_received(self, real: str) -> paramiko.SFTPAttributes | None:
        with self._lock:
            entry = self._received.get(real)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _renamed(self, tenant: str, jail: Jail, old: str, new: str, st: os.stat_result) -> None:
        """After a rename: files still being written follow the new name; complete files are announced."""
        prefix = old + os.sep
        moved_writers = False
        with self._lock:
            for path in [p for p in self._writers if p == old or p.startswith(prefix)]:
                handles = self._writers.pop(path)
                target = new + path[len(old):]
                for h in handles:
                    h.path = target
                self._writers.setdefault(target, []).extend(handles)
                moved_writers = True
                if is_loose_csv(path):
                    self.collector.end_write(tenant, Path(path))
                    if not is_ignored(jail.rel(target)):
                        self.collector.begin_write(tenant, Path(target))
        if stat.S_ISREG(st.st_mode):
            if not moved_writers:
                self._announce(tenant, Path(new), jail.rel(new))
        elif stat.S_ISDIR(st.st_mode) and not is_ignored(jail.rel(new)):
            # A folder renamed into place (`upload.part/` -> `upload/`): every complete file in it counts.
            for root, dirs, files in os.walk(new):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in sorted(files):
                    full = os.path.join(root, name)
                    with self._lock:
                        busy = full in self._writers
                    if not busy and not os.path.islink(full):
                        self._announce(tenant, Path(full), jail.rel(full))
