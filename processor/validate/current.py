"""What validation needs to know about the tenant's current roster (references in deltas and absent files)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

EMPTY_INDEX = pd.Index([], dtype="str")


@dataclass
class CurrentRoster:
    ids: dict[str, pd.Index] = field(default_factory=dict)  # OneRoster entity → active sourcedIds
    org_types: pd.Series = field(default_factory=lambda: pd.Series([], dtype="str"))  # sid → type
    enrolled_people: pd.Index = field(default_factory=lambda: EMPTY_INDEX)  # people with an active enrollment
    # For the data checks (validate/datachecks.py), loaded only when the drop does not carry the entity in full:
    people: pd.DataFrame | None = None  # active people: sourced_id, email, username
    # enrollment role → active enrollments of that role per class id
    classes_with: dict[str, pd.Series] = field(default_factory=dict)
    person_enrollments: pd.Series | None = None  # person → active enrollments (a delta of enrollments only)
    sessions: pd.DataFrame | None = None  # active academic sessions: sourced_id, start_date, end_date (a delta)

    def active(self, entity: str) -> pd.Index:
        return self.ids.get(entity, EMPTY_INDEX)

    def has(self, entity: str) -> bool:
        return len(self.active(entity)) > 0


NO_ROSTER = CurrentRoster()
