"""The run: its status, its exit code and its JSON result (CONTRACT.md sections 3 and 4)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class RunStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    APPLIED = "applied"
    HELD = "held"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DISCARDED = "discarded"
    SUPERSEDED = "superseded"
    DRY_RUN = "dry_run"
    FAILED = "failed"  # the pipeline hit an internal error; nothing applied; `rosterdrop runs retry` redoes it
    REVERTED = "reverted"  # was applied; `rosterdrop runs revert` undid its changes (its bytes may be sent again)


EXIT_CODES: dict[RunStatus, int] = {
    RunStatus.APPLIED: 0,
    RunStatus.DRY_RUN: 0,
    RunStatus.REJECTED: 2,
    RunStatus.SUPERSEDED: 2,
    RunStatus.HELD: 3,
    RunStatus.DUPLICATE: 4,
    RunStatus.DISCARDED: 0,
    RunStatus.RECEIVED: 1,
    RunStatus.PROCESSING: 1,
    RunStatus.FAILED: 1,
    RunStatus.REVERTED: 0,
}

Source = Literal["cli", "sftp", "watch", "pull"]
ENTITIES = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics")
COUNTED = ("users", "orgs", "classes", "enrollments")


def new_run_id() -> str:
    # Sortable by time, unique without coordination between hosts.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Counts(BaseModel):
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0


class IssueOut(BaseModel):
    severity: Literal["error", "alert", "hold"]
    code: str
    file: str | None = None
    line: int | None = None
    sourced_id: str | None = None
    field: str | None = None
    value: str | None = None
    message: str
    count: int = 1  # how many occurrences this issue stands for: past the cap per code and file, one counts the rest


class HoldAction(BaseModel):
    """Who released or discarded a hold, when, and why (CONTRACT.md section 7)."""
    by: str
    at: str
    note: str | None = None


class RunResult(BaseModel):
    run_id: str
    tenant: str
    status: RunStatus
    outcome: Literal["applied", "held", "rejected"] | None = None
    format: str | None = None
    source: Source = "cli"
    received_at: str
    finished_at: str | None = None
    sha256: str | None = None
    counts: dict[str, Counts] = Field(default_factory=lambda: {e: Counts() for e in COUNTED})
    issues: list[IssueOut] = []
    report: str | None = None
    timings: dict[str, float] = {}  # seconds per stage (read, validate, convert, diff, holds, apply, report)
    released: HoldAction | None = None
    discarded: HoldAction | None = None
    new_year: bool | None = None  # true: the new-school-year reset (processor/calendar.py); absent otherwise

    def exit_code(self) -> int:
        if self.status == RunStatus.DRY_RUN and self.outcome:
            return EXIT_CODES[RunStatus(self.outcome)]  # a dry run exits with its would-be outcome's code
        return EXIT_CODES[self.status]

    def to_json(self) -> dict:
        data = self.model_dump(mode="json")
        for key in ("outcome", "released", "discarded", "new_year"):
            if data[key] is None:
                del data[key]
        return data
