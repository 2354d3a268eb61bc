"""Console sessions (server-side, in the store), operators' passwords and the sign-in rate limits."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from processor.apply.store import web_operators, web_sessions, web_used_tokens
from processor.intake.auth import hash_password, verify_password

SESSION_SECONDS = 12 * 3600
COOKIE = "rd_session"


@dataclass(frozen=True)
class Session:
    sid: str
    kind: str  # admin | operator
    principal: str  # the admin's address, or the operator's name
    tenant: str | None  # the admin's one tenant; None for an operator
    csrf: str

    @property
    def by(self) -> str:
        """What a hold release records as `by`."""
        return self.principal if self.kind == "admin" else f"operator {self.principal}"

    def may_see(self, tenant: str) -> bool:
        return self.kind == "operator" or self.tenant == tenant


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def create_session(engine: Engine, kind: str, principal: str, tenant: str | None,
                   now: float | None = None) -> Session:
    """A new session with a fresh random id (never one the browser brought: no fixation)."""
    now = time.time() if now is None else now
    sid, csrf = secrets.token_urlsafe(32), secrets.token_hex(32)
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        conn.execute(insert(web_sessions).values(sid_hash=_hash(sid), kind=kind, principal=principal,
                                                 tenant=tenant, csrf=csrf, created_at=now,
                                                 expires_at=now + SESSION_SECONDS))
    return Session(sid, kind, principal, tenant, csrf)


def get_session(engine: Engine, sid: str | None, now: float | None = None) -> Session | None:
    if not sid or len(sid) > 200:
        return None
    now = time.time() if now is None else now
    with engine.connect() as conn:
        row = conn.execute(select(web_sessions).where(web_sessions.c.sid_hash == _hash(sid))).first()
    if row is None or row.expires_at < now:
        return None
    return Session(sid, row.kind, row.principal, row.tenant, row.csrf)


def end_session(engine: Engine, sid: str | None) -> None:
    if sid:
        with engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.sid_hash == _hash(sid)))


def spend_nonce(engine: Engine, nonce: str, kind: str) -> bool:
    """Mark a one-time token used; False if it was used before (a replay)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(web_used_tokens).values(nonce=nonce, kind=kind, used_at=time.time()))
        return True
    except IntegrityError:
        return False


# ---------------------------------------------------------------- operators


def set_operator_password(engine: Engine, name: str, password: str) -> None:
    hashed = hash_password(password)
    with engine.begin() as conn:
        done = conn.execute(update(web_operators).where(web_operators.c.name == name)
                            .values(password_hash=hashed)).rowcount
        if not done:
            conn.execute(insert(web_operators).values(name=name, password_hash=hashed, created_at=time.time()))


_DUMMY = None


def check_operator(engine: Engine, name: str, password: str) -> bool:
    global _DUMMY
    with engine.connect() as conn:
        stored = conn.execute(select(web_operators.c.password_hash).where(web_operators.c.name == name)).scalar()
    if stored is None:
        # The same scrypt work for an unknown name: the answer's timing does not tell which names exist.
        _DUMMY = _DUMMY or hash_password(secrets.token_hex(8))
        verify_password(_DUMMY, password)
        return False
    return verify_password(stored, password)


# ---------------------------------------------------------------- rate limits


class RateLimit:
    """At most `limit` events per key in a sliding window (in memory: one daemon serves the console)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events[key]
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._events) > 10_000:  # bounded memory under a flood of distinct keys
                for k in [k for k, v in self._events.items() if not v][:5000]:
                    del self._events[k]
            return True
