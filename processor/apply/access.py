"""Whether a tenant's SFTP logins are refused (`rosterdrop tenant disable|enable`), kept in the store."""

from __future__ import annotations

import getpass
import time

from sqlalchemy import Engine, delete, insert, select

from processor.apply.store import tenant_access


def tenant_disabled(engine: Engine, tenant: str) -> bool:
    """True while `rosterdrop tenant disable` refuses the tenant's SFTP logins."""
    with engine.connect() as conn:
        return conn.execute(select(tenant_access.c.tenant).where(tenant_access.c.tenant == tenant)).first() is not None


def disable(engine: Engine, tenant: str, by: str | None = None) -> bool:
    """Refuse the tenant's logins from now on; False if it was already disabled."""
    with engine.begin() as conn:
        if conn.execute(select(tenant_access.c.tenant).where(tenant_access.c.tenant == tenant)).first():
            return False
        conn.execute(insert(tenant_access).values(tenant=tenant, disabled_at=time.time(), disabled_by=by or _user()))
    return True


def enable(engine: Engine, tenant: str) -> bool:
    """Accept the tenant's logins again; False if it was not disabled."""
    with engine.begin() as conn:
        return conn.execute(delete(tenant_access).where(tenant_access.c.tenant == tenant)).rowcount > 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
