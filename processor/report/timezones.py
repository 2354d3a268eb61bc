"""A tenant's time zone (`[tenants.X] timezone`, an IANA name): its reports and emails show local times."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_NAME = "UTC"


def check_timezone(name: str) -> str:
    """The name if zoneinfo knows it; a ValueError that says what to write otherwise (config validation)."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as America/Chicago or UTC") from None
    return name


@cache
def _zone(name: str) -> ZoneInfo:
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(name)  # zoneinfo would read a path; names only
    return ZoneInfo(name)


def local_time(dt: datetime, name: str | None) -> str:
    """'2026-12-01 16:10 CST' in the tenant's zone ('2026-12-01 22:10 UTC' without one)."""
    if not name or name == UTC_NAME:
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    try:
        zone = _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return dt.strftime("%Y-%m-%d %H:%M UTC")
    return dt.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
