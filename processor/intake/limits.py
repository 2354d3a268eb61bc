"""What one tenant may put in its inbox over SFTP, and the SFTP server's connection caps, from the config.

Limits (`[sftp]`, overridable per tenant in `[tenants.X.limits]`): the size of one uploaded file, the
number of files one session may write, and the bytes the tenant's inbox may hold at once (the inbox is
normally empty: drops move to the spool as soon as they are complete; what stays is uploads in progress,
`.part` files kept for a resume and loose CSVs waiting for the rest of their bundle).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from processor.config import Config

GIB = 1024**3


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int = 2 * GIB
    max_files_per_session: int = 100
    max_inbox_bytes: int = 10 * GIB


def inbox_bytes(inbox: Path) -> int:
    """Bytes of every regular file under the inbox (symlinks are not followed, nor counted)."""
    total = 0
    for root, _dirs, files in os.walk(inbox):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # moved to the spool meanwhile
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def tenant_limits(cfg: Config) -> Callable[[str], UploadLimits]:
    """tenant id -> its limits: the tenant's own `[tenants.X.limits]` keys over `[sftp]`'s."""
    base = cfg.sftp

    def limits(tenant: str) -> UploadLimits:
        own = cfg.tenants[tenant].limits if tenant in cfg.tenants else None

        def pick(key: str) -> int:
            value = getattr(own, key, None) if own is not None else None
            return int(value if value is not None else getattr(base, key))

        return UploadLimits(pick("max_upload_bytes"), pick("max_files_per_session"), pick("max_inbox_bytes"))

    return limits


def sftp_options(cfg: Config) -> dict:
    """The SftpServer keyword arguments that come from `[sftp]` (connection caps and upload limits)."""
    s = cfg.sftp
    return {"max_connections": s.max_connections, "max_unauthenticated": s.max_unauthenticated,
            "max_unauthenticated_per_address": s.max_unauthenticated_per_address,
            "login_grace_seconds": s.login_grace_seconds, "limits": tenant_limits(cfg)}
