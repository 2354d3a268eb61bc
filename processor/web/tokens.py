"""API tokens: `rosterdrop api-token create|list|revoke`. A token is shown once and stored only as its
SHA-256 (tokens are 256 random bits, so a plain hash cannot be brute-forced; no salt or slow hash needed).
A token is scoped to one tenant, or (no tenant) sees every tenant."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Column, Engine, String, Table, select

from processor.apply.store import metadata
from processor.context import UserError
from processor.runs import now_iso

api_tokens = Table(
    "api_tokens", metadata,
    Column("name", String(64), primary_key=True),
    Column("tenant", String(64)),  # null: every tenant
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PREFIX = "rdt_"


@dataclass(frozen=True)
class Token:
    name: str
    tenant: str | None  # None: every tenant

    def sees(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str, tenant: str | None) -> str:
    """A new token (returned once, never stored in clear). A revoked token's name may be used again."""
    if not NAME.match(name):
        raise UserError(f"token name {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
    token = PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        old = conn.execute(select(api_tokens.c.revoked_at).where(api_tokens.c.name == name)).first()
        if old is not None and old.revoked_at is None:
            raise UserError(f"an API token named {name!r} exists; revoke it first "
                            f"(`rosterdrop api-token revoke {name}`) or choose another name")
        if old is not None:
            conn.execute(api_tokens.delete().where(api_tokens.c.name == name))
        conn.execute(api_tokens.insert().values(name=name, tenant=tenant, token_hash=_hash(token),
                                                created_at=now_iso()))
    return token


def list_tokens(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_tokens.c.name, api_tokens.c.tenant, api_tokens.c.created_at,
                                   api_tokens.c.revoked_at).order_by(api_tokens.c.name)).mappings().all()
    return [dict(r) for r in rows]


def revoke_token(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        done = conn.execute(api_tokens.update().where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                            .values(revoked_at=now_iso())).rowcount
    if done != 1:
        raise UserError(f"no active API token named {name!r}; see `rosterdrop api-token list`")


def authenticate(engine: Engine, token: str) -> Token | None:
    """The token's grant, or None for an unknown or revoked token."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens.c.name, api_tokens.c.tenant).where(
            api_tokens.c.token_hash == _hash(token), api_tokens.c.revoked_at.is_(None))).first()
    return Token(row.name, row.tenant) if row else None
