"""[tenants.X] timezone: the tenant's reports, emails and notices show its local time with the abbreviation."""

from __future__ import annotations

from datetime import datetime
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from processor.apply.store import outbox
from processor.config import ConfigError, load_config
from processor.report import view
from processor.report.notices import normalise
from tests.bundles import CLEAN


def set_timezone(env, zone: str) -> None:
    path = env.home / "rosterdrop.toml"
    path.write_text(path.read_text().replace("[tenants.lincoln]\n", f'[tenants.lincoln]\ntimezone = "{zone}"\n'))
    env.__dict__.pop("ctx", None)


def test_an_unknown_time_zone_is_a_config_error_naming_the_key(sqlite_env):
    set_timezone(sqlite_env, "Mars/Olympus_Mons")
    with pytest.raises(ConfigError) as err:
        load_config(sqlite_env.home)
    assert "tenants.lincoln.timezone" in str(err.value) and "America/Chicago" in str(err.value)


def test_the_default_is_utc(sqlite_env):
    assert load_config(sqlite_env.home).tenant("lincoln").timezone == "UTC"


def test_local_times_carry_the_zone_abbreviation():
    assert view.when("2026-07-01T12:00:00+00:00", "America/Chicago") == "2026-07-01 07:00 CDT"
    assert view.when("2026-12-01T12:00:00+00:00", "America/Chicago") == "2026-12-01 06:00 CST"
    assert view.when("2026-12-01T12:00:00+00:00") == "2026-12-01 12:00 UTC"
    notice = normalise("duplicate_drop", {"received_at": "2026-07-01T12:00:00+00:00",
                                          "earlier_received_at": "2026-06-30T23:30:00+00:00",
                                          "timezone": "Europe/Berlin"})
    assert (notice["received"], notice["earlier"]) == ("2026-07-01 14:00 CEST", "2026-07-01 01:30 CEST")


def test_the_report_and_its_email_show_the_tenants_local_time(sqlite_env):
    set_timezone(sqlite_env, "America/Chicago")
    result = sqlite_env.process(CLEAN)
    local = datetime.fromisoformat(result.received_at).astimezone(ZoneInfo("America/Chicago"))
    shown = local.strftime("%Y-%m-%d %H:%M %Z")
    assert shown.endswith((" CST", " CDT"))
    assert f"drop received {shown}" in (Path(result.report).parent / "report.txt").read_text()
    assert f"drop received {shown}" in Path(result.report).read_text()
    with sqlite_env.ctx.engine.connect() as conn:
        [raw] = conn.execute(select(outbox.c.message).where(outbox.c.run_id == result.run_id)).scalars().all()
    body = BytesParser(policy=default).parsebytes(raw).get_body(("plain",)).get_content()
    assert f"drop received {shown}" in body
