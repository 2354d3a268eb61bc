"""Tenant administration behind `rosterdrop tenant ...` and `rosterdrop server fingerprint`.

Tenants themselves are configured in rosterdrop.toml; their SFTP credentials (store.credentials) and
whether their logins are refused (store.tenant_access) live in the store, so a running daemon sees a
change at the next login without any reload.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from sqlalchemy import Engine, delete, func, select

from processor.apply.access import disable, enable, tenant_disabled  # noqa: F401 - the tenant commands' API
from processor.apply.store import credentials, tenant_access
from processor.context import Context, UserError
from processor.home import HOST_KEY
from processor.intake.auth import fingerprint


def list_tenants(ctx: Context) -> list[dict]:
    """Every configured tenant with its name, report_to, credentials and whether it is disabled."""
    with ctx.engine.connect() as conn:
        creds = conn.execute(select(credentials.c.tenant, credentials.c.kind, func.count())
                             .group_by(credentials.c.tenant, credentials.c.kind)).all()
        disabled = set(conn.execute(select(tenant_access.c.tenant)).scalars())
    counts: dict[tuple[str, str], int] = {(t, k): n for t, k, n in creds}
    return [{"tenant": tid, "name": cfg.name, "report_to": list(cfg.report_to),
             "password": counts.get((tid, "password"), 0) > 0, "keys": counts.get((tid, "key"), 0),
             "disabled": tid in disabled, "pull": cfg.pull is not None}
            for tid, cfg in sorted(ctx.config.tenants.items())]


def keys(engine: Engine, tenant: str) -> list[dict]:
    """The tenant's authorized public keys: type, SHA256 fingerprint, when added."""
    with engine.connect() as conn:
        rows = conn.execute(select(credentials.c.value, credentials.c.created_at)
                            .where(credentials.c.tenant == tenant, credentials.c.kind == "key")
                            .order_by(credentials.c.id)).all()
    out = []
    for value, created_at in rows:
        key_type, _, data = value.partition(" ")
        try:
            blob = base64.b64decode(data)
        except (binascii.Error, ValueError):
            continue
        out.append({"type": key_type, "fingerprint": fingerprint(blob), "added_at": _iso(created_at)})
    return out


def remove_key(engine: Engine, tenant: str, wanted: str) -> str:
    """Revoke the key with that fingerprint (`SHA256:...`, as `tenant keys` prints it); its fingerprint."""
    wanted = wanted.strip()
    if not wanted.startswith("SHA256:"):
        wanted = "SHA256:" + wanted
    with engine.begin() as conn:
        rows = conn.execute(select(credentials.c.id, credentials.c.value)
                            .where(credentials.c.tenant == tenant, credentials.c.kind == "key")).all()
        ids = []
        for row_id, value in rows:
            try:
                blob = base64.b64decode(value.partition(" ")[2])
            except (binascii.Error, ValueError):
                continue
            if fingerprint(blob) == wanted:
                ids.append(row_id)
        if not ids:
            raise UserError(f"tenant {tenant} has no key {wanted}; `rosterdrop tenant keys {tenant}` lists them")
        conn.execute(delete(credentials).where(credentials.c.id.in_(ids)))
    return wanted


def host_key_fingerprint(home: Path) -> str:
    """The SSH host key's SHA256 fingerprint, as clients show it on first connection."""
    import paramiko

    path = home / HOST_KEY
    if not path.exists():
        raise UserError(f"{path} does not exist; run `rosterdrop init --home {home}` to create the host key")
    try:
        key = paramiko.Ed25519Key.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise UserError(f"cannot read the host key {path}: {exc}") from None
    return f"{key.get_name()} {fingerprint(key.asbytes())}"


def credential_hint(tenant: str) -> str:
    return (f"set tenant {tenant}'s SFTP credentials with `rosterdrop tenant passwd {tenant}` or "
            f"`rosterdrop tenant add-key {tenant} KEY.pub`; its user name is {tenant}")


def _iso(ts: float | None) -> str | None:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None
