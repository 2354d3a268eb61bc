"""OneRoster role → app role, with the tenant's role_map and metadata overrides. Whole columns at once."""

from __future__ import annotations

import pandas as pd

from processor.config import Policy
from processor.vector import per_unique_map

DEFAULT_ROLE_MAP: dict[str, str] = {
    "districtAdministrator": "district_admin",
    "systemAdministrator": "district_admin",
    "administrator": "school_admin",
    "principal": "school_admin",
    "siteAdministrator": "school_admin",
    "teacher": "teacher",
    "aide": "staff",
    "proctor": "staff",
    "counselor": "staff",
    "student": "student",
    "guardian": "guardian",
    "parent": "guardian",
    "relative": "guardian",
}

EXT_ROLE = "staff"

# Highest privilege first: when an override and the base role disagree, the higher one wins.
PRIVILEGE = {"district_admin": 6, "school_admin": 5, "teacher": 4, "staff": 3, "student": 2, "guardian": 1}


def role_map(policy: Policy) -> dict[str, str]:
    return DEFAULT_ROLE_MAP | dict(policy.role_map)


def _app_role(role, mapping: dict[str, str]) -> str:
    if role in mapping:
        return mapping[role]
    # An 'ext:' role (OneRoster 1.2 extension; Clever staff are 'ext:staff') that role_map does not name.
    return EXT_ROLE if isinstance(role, str) and role.startswith("ext:") else ""


def app_roles(users: pd.DataFrame, policy: Policy) -> pd.Series:
    """The app role of every users.csv row (empty string where the OneRoster role is unknown)."""
    base = per_unique_map(users["role"], lambda role: _app_role(role, role_map(policy)))
    if not policy.role_overrides:
        return base
    rank = base.map(PRIVILEGE).fillna(0)
    best, best_rank = base.copy(), rank.copy()
    lower_cols = {c.lower(): c for c in users.columns}
    for ov in policy.role_overrides:
        col = lower_cols.get(ov.column.lower())
        if col is None:
            continue
        hit = users[col].str.strip().str.lower().eq(ov.value.strip().lower())
        better = hit & (PRIVILEGE[ov.role] > best_rank)
        best = best.mask(better, ov.role)
        best_rank = best_rank.mask(better, PRIVILEGE[ov.role])
    return best
