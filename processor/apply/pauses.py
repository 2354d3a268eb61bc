"""The district's calendar: `[[tenants.X.pauses]]` (CONTRACT.md section 12). A drop received during a pause
(its date in the tenant's time zone, from and until inclusive) is a decision, like a hold:

- `hold`: held until released or discarded (a `paused` hold);
- `additions_only`: the records it creates are applied now; its updates and deactivations are held, and
  releasing the hold applies them (the release recomputes the change set, so the creations are unchanged);
- `skip`: archived, nothing applied (status discarded, a `paused` alert says why).

Holds that a drop trips (mass_deactivation, ...) come first; a release is never paused again.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pandas as pd

from processor.apply.diff import ChangeSet
from processor.config import Pause, Tenant
from processor.validate.issues import one_issue


def active_pause(tenant: Tenant, received_at: str) -> Pause | None:
    """The pause the drop's day falls in, if any (the first one listed wins)."""
    if not tenant.pauses:
        return None
    from zoneinfo import ZoneInfo

    day = datetime.fromisoformat(received_at).astimezone(ZoneInfo(tenant.timezone)).date()
    return next((p for p in tenant.pauses if p.start <= day <= p.until), None)


def held_back(changes: ChangeSet) -> int:
    """Updates and deactivations: what an additions_only pause holds back."""
    return sum(len(tc.updated) + len(tc.deactivated) for tc in changes.tables.values())


def additions_only(changes: ChangeSet) -> ChangeSet:
    """The change set with its creations only."""
    tables = {t: dataclasses.replace(tc, updated=tc.updated.iloc[0:0], deactivated=tc.deactivated.iloc[0:0],
                                     rehashed=None)
              for t, tc in changes.tables.items()}
    return dataclasses.replace(changes, tables=tables)


def pause_issue(pause: Pause, changes: ChangeSet, held: bool) -> pd.DataFrame:
    span = f"Syncs are paused from {pause.start} to {pause.until}"
    if pause.mode == "skip":
        return one_issue("paused", f"{span} (mode skip): this drop was archived and nothing was applied.",
                         field="mode", value="skip", severity="alert")
    if pause.mode == "hold":
        return one_issue("paused", f"{span}: this drop is held until someone releases or discards it.",
                         field="mode", value="hold")
    created = sum(len(tc.created) for tc in changes.tables.values())
    if not held:
        return one_issue("paused", f"{span} for additions only; this drop only adds records ({created:,}), so "
                         "it was applied.", field="mode", value="additions_only", severity="alert")
    updated = sum(len(tc.updated) for tc in changes.tables.values())
    deactivated = sum(len(tc.deactivated) for tc in changes.tables.values())
    return one_issue("paused", f"{span} for additions only: the {created:,} new records of this drop were "
                     f"applied; its {updated:,} updates and {deactivated:,} deactivations are held until someone "
                     "releases the hold (or discards them).", field="mode", value="additions_only")
