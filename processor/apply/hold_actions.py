"""Releasing and discarding holds: who acted, when and why, claimed once (CONTRACT.md section 7).

A hold is acted on once. The claim is a conditional UPDATE of the run's status (held → processing for a
release, held → discarded for a discard), so two admins clicking at the same moment, or a second click of
the same link, cannot apply a drop twice: the loser gets AlreadyActed with what happened instead.
"""

from __future__ import annotations

import getpass
import os

import pandas as pd
from sqlalchemy import Engine, update

from processor.apply.store import runs
from processor.context import UserError
from processor.runs import HoldAction, RunResult, RunStatus, now_iso
from processor.validate.issues import ISSUE_COLUMNS, concat_issues, empty_issues


class AlreadyActed(UserError):
    """The hold was released or discarded before (or meanwhile): nothing was done this time."""

    def __init__(self, message: str, result: RunResult, same: bool) -> None:
        super().__init__(message)
        self.result = result
        self.same = same  # the same action again (harmless) rather than the other one


def default_by() -> str:
    """The operating-system user (CONTRACT.md section 7), or a stand-in where there is none (a container)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid {os.getuid()}"


def hold_action(by: str | None, note: str | None) -> HoldAction:
    by = (by or "").strip() or default_by()
    note = (note or "").strip() or None
    return HoldAction(by=by, at=now_iso(), note=note)


def check_not_acted(result: RunResult, action: str) -> None:
    """Raise AlreadyActed if the run was released or discarded before. action: "release" | "discard"."""
    done = result.released or result.discarded
    if done is None:
        return
    from processor.report.view import when

    what = "released" if result.released else "discarded"
    same = what == _PAST[action]
    raise AlreadyActed(f"run {result.run_id} was already {what} by {done.by} at {when(done.at)}; nothing was done"
                       + (" this time." if same else f", so it cannot be {_PAST[action]}."), result, same=same)


_PAST = {"release": "released", "discard": "discarded"}


def claim(engine: Engine, run_id: str, to: RunStatus) -> bool:
    """Move a held run to `to` if it is still held; False when someone else acted first."""
    with engine.begin() as conn:
        moved = conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == RunStatus.HELD.value)
                             .values(status=to.value)).rowcount
    return moved == 1


def unclaim(engine: Engine, run_id: str) -> None:
    """Give a claimed release back (it failed before it finished): the run is held again."""
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == RunStatus.PROCESSING.value)
                     .values(status=RunStatus.HELD.value))


def hold_issues(result: RunResult) -> pd.DataFrame:
    """The hold issues a run was held for, as an issue frame: a release keeps them in its result."""
    rows = [i.model_dump() for i in result.issues if i.severity == "hold"]
    if not rows:
        return empty_issues()
    frame = pd.DataFrame(rows, columns=ISSUE_COLUMNS)
    frame["line"] = frame["line"].astype("Int64")
    return concat_issues([frame])


def notice_context(result: RunResult, action: HoldAction, status: str) -> dict:
    return {"run_id": result.run_id, "received_at": result.received_at, "status": status, "by": action.by,
            "at": action.at, "note": action.note or ""}
