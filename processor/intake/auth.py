"""SFTP credentials: password hashes, authorized public keys, and a failed-login throttle.

Both kinds live in the `sftp_credentials` table (store.credentials). Nothing here logs a password,
a key comment or anything else a person typed; callers log tenant ids and addresses only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from sqlalchemy import Engine, delete, insert, select

from processor.apply.access import tenant_disabled
from processor.apply.store import credentials
from processor.context import UserError

# scrypt cost: N=2**15, r=8 needs 32 MiB and ~0.1 s per check, which makes an offline guess of a
# leaked hash expensive while a login stays quick. The parameters are stored with each hash so they
# can be raised later without invalidating existing passwords.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAXMEM = 128 * 1024 * 1024  # OpenSSL's default limit (32 MiB) is just below what N=2**15, r=8 needs

# Each check holds 32 MiB for ~0.1 s; a burst of connections must not be able to exhaust memory.
_HASH_SLOTS = threading.BoundedSemaphore(4)

RSA_MIN_BITS = 2048
KEY_TYPES = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
}


# ---------------------------------------------------------------- passwords


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A self-describing salted scrypt hash: `scrypt$N$r$p$salt$hash` (salt and hash base64)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password.encode("utf-8"), salt, n, r, p, _HASH_BYTES)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def verify_password(stored: str, password: str) -> bool:
    """True if password matches the stored hash; compared in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password.encode("utf-8"), base64.b64decode(salt), int(n), int(r), int(p),
                         len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    # Checked when a tenant has no password (or is unknown) so that the answer takes as long as a
    # real check: response time must not tell an attacker which tenants have a password.
    return hash_password(secrets.token_hex(16))


def set_password(engine: Engine, tenant: str, pw: str) -> None:
    """Store a new password hash for the tenant, replacing its previous password."""
    value = hash_password(pw)
    with engine.begin() as conn:
        conn.execute(delete(credentials).where(credentials.c.tenant == tenant,
                                               credentials.c.kind == "password"))
        conn.execute(insert(credentials).values(tenant=tenant, kind="password", value=value,
                                                created_at=time.time()))


def check_password(engine: Engine, tenant: str, pw: str) -> bool:
    """True if pw is the tenant's SFTP password. Takes the same time whether or not one is set."""
    with engine.connect() as conn:
        stored = conn.execute(
            select(credentials.c.value).where(credentials.c.tenant == tenant,
                                              credentials.c.kind == "password")
            .order_by(credentials.c.id.desc())
        ).scalar()
    if stored is None:
        verify_password(_dummy_hash(), pw)
        return False
    return verify_password(stored, pw) and not tenant_disabled(engine, tenant)


def _scrypt(data: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    with _HASH_SLOTS:
        return hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- public keys


def parse_public_key(text: str) -> tuple[str, bytes]:
    """(key type, key blob) of one OpenSSH public key line; UserError naming the problem otherwise."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise UserError("the file holds no public key; give the .pub file made by ssh-keygen")
    if "PRIVATE KEY" in text:
        raise UserError("this is a private key; give the matching .pub file instead (never share the private key)")
    if len(lines) > 1:
        raise UserError("the file holds more than one line; give one OpenSSH public key (one .pub file) at a time")
    parts = lines[0].split()
    if parts[0] not in KEY_TYPES:
        if parts[0] == "ssh-dss":
            raise UserError("DSA keys are not accepted; make an Ed25519 key with `ssh-keygen -t ed25519`")
        if "BEGIN" in lines[0] or len(parts) < 2:
            raise UserError("not an OpenSSH public key line (expected e.g. 'ssh-ed25519 AAAA... comment'); "
                            "convert it with `ssh-keygen -i -f FILE`")
        raise UserError(f"key type {parts[0][:40]!r} is not accepted (options before the key type are not "
                        "supported either); use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of "
                        f"at least {RSA_MIN_BITS} bits")
    if len(parts) < 2:
        raise UserError("the key line has no key data after its type")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise UserError("the key data is not valid base64; the file looks damaged") from None
    try:
        key = paramiko.PKey.from_type_string(parts[0], blob)
    except Exception:
        # paramiko raises several exception types for malformed blobs; all mean the same to the operator
        raise UserError("the key data does not decode as a " + parts[0] + " key; the file looks damaged") from None
    if key.asbytes() != blob:
        raise UserError("the key data does not match its declared type " + parts[0])
    if parts[0] == "ssh-rsa" and key.get_bits() < RSA_MIN_BITS:
        raise UserError(f"this RSA key has {key.get_bits()} bits; at least {RSA_MIN_BITS} are required "
                        "(better: `ssh-keygen -t ed25519`)")
    return parts[0], blob


def fingerprint(blob: bytes) -> str:
    """The key's SHA256 fingerprint as `ssh-keygen -l` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def add_key(engine: Engine, tenant: str, path: Path) -> str:
    """Authorize the OpenSSH public key in `path` for the tenant; returns its fingerprint.

    The comment after the key (often a person's email) is not stored. Adding a key twice is harmless.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file; give the OpenSSH .pub file made by ssh-keygen") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    key_type, blob = parse_public_key(text)
    value = f"{key_type} {_b64(blob)}"
    with engine.begin() as conn:
        known = conn.execute(
            select(credentials.c.id).where(credentials.c.tenant == tenant, credentials.c.kind == "key",
                                           credentials.c.value == value)
        ).first()
        if known is None:
            conn.execute(insert(credentials).values(tenant=tenant, kind="key", value=value,
                                                    created_at=time.time()))
    return fingerprint(blob)


# A user name with fewer authorized keys than this (an unknown one has none) is compared against
# random stand-ins up to this count, so the answer takes the same work whether or not the user exists.
DUMMY_KEYS = 4


@functools.cache
def _dummy_key_blobs() -> tuple[bytes, ...]:
    return tuple(secrets.token_bytes(51) for _ in range(DUMMY_KEYS))  # 51: an Ed25519 key blob


def check_key(engine: Engine, tenant: str, paramiko_pkey: paramiko.PKey) -> bool:
    """True if the public key is authorized for the tenant (the signature is paramiko's job).

    Any user name, known or not, costs the same: one query and at least DUMMY_KEYS comparisons.
    """
    offered = paramiko_pkey.asbytes()
    with engine.connect() as conn:
        values = conn.execute(
            select(credentials.c.value).where(credentials.c.tenant == tenant, credentials.c.kind == "key")
        ).scalars().all()
    blobs = []
    for value in values:
        _, _, data = value.partition(" ")
        try:
            blobs.append(base64.b64decode(data))
        except (binascii.Error, ValueError):
            continue
    blobs += _dummy_key_blobs()[len(blobs):]
    found = False
    for blob in blobs:
        # no early exit: the time taken must not depend on which key matched; stand-ins never match
        found |= hmac.compare_digest(blob, offered)
    return found and not tenant_disabled(engine, tenant)


# ---------------------------------------------------------------- throttle


@dataclass
class _Record:
    failures: deque[tuple[float, float]] = field(default_factory=deque)  # (when, weight)
    strikes: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0
    in_flight: int = 0  # attempts reserved and not yet decided (a password being hashed)


class _Counter:
    """Failures per key (an address, or a user name) in a sliding window, with growing blocks."""

    def __init__(self, limit: float, throttle: LoginThrottle) -> None:
        self.limit = limit
        self.t = throttle
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def get(self, key: str) -> _Record:
        rec = self.records.pop(key, None) or _Record()
        self.records[key] = rec  # most recently used last
        while len(self.records) > self.t.max_tracked:
            self.records.popitem(last=False)
        return rec

    def weight(self, rec: _Record, now: float) -> float:
        while rec.failures and now - rec.failures[0][0] > self.t.window_seconds:
            rec.failures.popleft()
        return sum(w for _, w in rec.failures)

    def blocked(self, key: str, now: float) -> float:
        rec = self.records.get(key)
        return max(0.0, rec.blocked_until - now) if rec else 0.0

    def full(self, key: str, now: float) -> bool:
        """True when one more attempt could not be decided without passing the limit."""
        rec = self.records.get(key)
        return rec is not None and self.weight(rec, now) + rec.in_flight >= self.limit

    def fail(self, key: str, now: float, weight: float) -> float:
        rec = self.get(key)
        # a long quiet spell forgives earlier blocks, so a typo next month starts from scratch
        if rec.strikes and now - rec.last_failure > 2 * self.t.max_delay:
            rec.strikes = 0
        rec.last_failure = now
        rec.failures.append((now, weight))
        if self.weight(rec, now) < self.limit - 1e-9:
            return 0.0
        delay = min(self.t.max_delay, self.t.base_delay * 2**rec.strikes)
        rec.strikes += 1
        rec.failures.clear()
        rec.blocked_until = now + delay
        return delay


class LoginAttempt:
    """One reserved login attempt: tell the throttle how it ended, exactly once."""

    def __init__(self, throttle: LoginThrottle, address: str, user: str | None, kind: str) -> None:
        self.throttle, self.address, self.user, self.kind = throttle, address, user, kind
        self._done = False

    def failed(self) -> float:
        """Record the failure; the block (seconds) it started, 0 if none."""
        return self.throttle._finish(self, ok=False)

    def succeeded(self) -> None:
        self.throttle._finish(self, ok=True)


class LoginThrottle:
    """Refuses logins after repeated failures, per source address and per target user, for a growing delay.

    After `max_failures` failures from one address within `window_seconds` (or `max_user_failures`
    password failures for one user name, from anywhere), that address (user) is refused for
    `base_delay` seconds, doubling with each further block up to `max_delay`. A public-key failure
    counts `max_failures / max_key_failures` of a password failure against its address: a client offers
    every key it holds, so a few misses are normal, but endless offers are not.

    An attempt is reserved with `reserve()` *before* the slow hash and counts against the limit while it
    is being decided, so parallel guesses cannot all slip under it. A success clears only the failures of
    the user who logged in: logging in as one's own tenant does not wipe out the failures an address
    piled up guessing at another's. Per-user blocks apply to passwords only, so guessing at a tenant's
    password cannot lock out its key logins.

    Kept in memory (a restart forgets it), bounded to `max_tracked` addresses and as many user names,
    least recently used dropped first. Thread-safe: every connection's transport thread calls it.
    """

    def __init__(self, max_failures: int = 5, window_seconds: float = 60.0, base_delay: float = 30.0,
                 max_delay: float = 900.0, max_tracked: int = 10_000, max_user_failures: int = 10,
                 max_key_failures: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        self.key_weight = max_failures / max(max_key_failures, 1)
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses = _Counter(max_failures, self)
        self._users = _Counter(max_user_failures, self)
        self._records = self._addresses.records  # by address; kept for inspection

    def retry_after(self, address: str, user: str | None = None) -> float:
        """Seconds until the address (and, given one, the user's password) may be tried again; 0: now."""
        now = self._clock()
        with self._lock:
            wait = self._addresses.blocked(address, now)
            if user is not None:
                wait = max(wait, self._users.blocked(user, now))
            return wait

    def reserve(self, address: str, user: str | None, kind: str = "password") -> LoginAttempt | None:
        """Reserve one attempt before checking the credential; None when it must be refused unchecked."""
        now = self._clock()
        by_user = kind == "password" and user is not None
        with self._lock:
            if self._addresses.blocked(address, now) or self._addresses.full(address, now):
                return None
            if by_user and (self._users.blocked(user, now) or self._users.full(user, now)):
                return None
            self._addresses.get(address).in_flight += 1
            if by_user:
                self._users.get(user).in_flight += 1
        return LoginAttempt(self, address, user if by_user else None, kind)

    def _finish(self, attempt: LoginAttempt, ok: bool) -> float:
        now = self._clock()
        with self._lock:
            if attempt._done:
                return 0.0
            attempt._done = True
            addr = self._addresses.get(attempt.address)
            addr.in_flight = max(0, addr.in_flight - 1)
            if attempt.user is not None:
                user = self._users.get(attempt.user)
                user.in_flight = max(0, user.in_flight - 1)
            if ok:
                if attempt.user is not None:
                    self._users.records.pop(attempt.user, None)
                return 0.0
            weight = 1.0 if attempt.kind == "password" else self.key_weight
            delay = self._addresses.fail(attempt.address, now, weight)
            if attempt.user is not None:
                delay = max(delay, self._users.fail(attempt.user, now, 1.0))
            return delay

    def failure(self, address: str, user: str | None = None, kind: str = "password") -> float:
        """Record a failed login that was not reserved; returns the block (seconds) it started, 0 if none."""
        by_user = kind == "password" and user is not None
        with self._lock:
            self._addresses.get(address).in_flight += 1
            if by_user:
                self._users.get(user).in_flight += 1
        return LoginAttempt(self, address, user if by_user else None, kind).failed()

    def success(self, address: str, user: str | None = None) -> None:
        """A login succeeded: the user's own failures are forgiven; the address's are not."""
        if user is None:
            return
        with self._lock:
            self._users.records.pop(user, None)
