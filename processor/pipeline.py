"""process_drop(): the stages in order. Each returns a value; a fatal issue or a hold ends the run early."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError

from processor import calendar, events, progress
from processor.apply import hold_actions, pauses
from processor.apply import runs as run_store
from processor.apply.diff import ChangeSet, TableChanges, compute_changes, labels, note_kept
from processor.apply.holds import check_holds, counts_by_entity
from processor.apply.manual import apply_manual_edits
from processor.apply.store import ENTITY_TABLES, refresh_statistics
from processor.apply.writer import apply_changes
from processor.bundle.read import read_bundle
from processor.bundle.unpack import Limits
from processor.config import Policy
from processor.context import Context, UserError
from processor.convert.incremental import load_state
from processor.convert.roster import TABLE_OF, Roster, convert
from processor.failures import failure_reason, log_failure, record_failed, supersede_unprocessed
from processor.intake.spool import Drop, archive, open_drop, take
from processor.runs import Counts, IssueOut, RunResult, RunStatus, new_run_id, now_iso
from processor.validate.current import CurrentRoster
from processor.validate.datachecks import load_stored as load_data_check_roster
from processor.validate.issues import cap_issues, concat_issues, issues_to_records, sort_issues
from processor.validate.run import validate

log = logging.getLogger("rosterdrop.pipeline")


def process_path(ctx: Context, path: Path, tenant: str, dry_run: bool = False, source: str = "cli",
                 move: bool = False, new_year: bool = False) -> RunResult:
    """Receive a bundle (copy for the CLI, move for the daemon's doors) and process it. new_year: the August
    reset (processor/calendar.py)."""
    received = receive(ctx, path, tenant, source, move)
    if isinstance(received, RunResult):
        return received
    return process_drop(ctx, received, dry_run=dry_run, new_year=new_year)


def receive(ctx: Context, path: Path, tenant: str, source: str, move: bool) -> Drop | RunResult:
    tcfg = ctx.config.tenant(tenant)
    if not path.exists() and not (move and path.is_symlink()):  # a door's dangling symlink: refused below
        raise UserError(f"{path} does not exist")
    opened = open_drop(path, nofollow=move, tenant=tenant)  # a door's inbox: a symlink is refused, never followed
    sha = opened.sha256
    engine = ctx.engine
    earlier = run_store.find_by_sha(engine, tenant, sha, run_store.DONE)
    if earlier:
        return _duplicate(ctx, path, tenant, source, sha, earlier, move)
    unfinished = run_store.find_by_sha(engine, tenant, sha, ("received", "processing"))
    if unfinished:
        # The same bytes were received before and never finished (a crash): resume that run.
        row = run_store.run_row(engine, unfinished)
        spooled = Path(row["spool_path"])
        if spooled.exists():
            if move:
                archive_copy = ctx.path("archive", tenant, unfinished + "-resent")
                archive_copy.parent.mkdir(parents=True, exist_ok=True)
                path.replace(archive_copy)
            return Drop(unfinished, tenant, spooled, sha, row["received_at"], row["source"], row["original_name"])
    run_id = new_run_id()
    spooled = take(ctx, opened, tenant, run_id, move)  # moves what was hashed, checked by its descriptor
    result = RunResult(run_id=run_id, tenant=tenant, status=RunStatus.RECEIVED, source=source,
                       received_at=now_iso(), sha256=sha)
    run_store.record_run(engine, result, path.name, str(spooled), tcfg.name, also=_queued(ctx, tenant, run_id, spooled))
    log.info("run %s tenant %s: received from %s (%s)", run_id, tenant, source, sha[:12])
    return Drop(run_id, tenant, spooled, sha, result.received_at, source, path.name)


def _queued(ctx: Context, tenant: str, run_id: str, spooled: Path):
    """With the procrastinate backend, what the drop's transaction also does: store its bytes (a worker on
    any host processes it from the store alone) and ring the tenant's wake-up."""
    if ctx.config.queue.backend != "procrastinate":
        return None

    def also(conn: Connection) -> None:
        from processor.intake.blobs import put_drop_bytes
        from processor.queue import ring

        put_drop_bytes(conn, tenant, run_id, spooled)
        ring(conn, tenant)

    return also


def _duplicate(ctx: Context, path: Path, tenant: str, source: str, sha: str, earlier: str, move: bool) -> RunResult:
    run_id = new_run_id()
    result = RunResult(run_id=run_id, tenant=tenant, status=RunStatus.DUPLICATE, source=source,
                       received_at=now_iso(), finished_at=now_iso(), sha256=sha, issues=[IssueOut(
                           severity="alert", code="duplicate_drop",
                           message=f"These exact bytes were already processed in run {earlier}; nothing was done.")])
    spooled = ""
    if move:  # never silently drop a file a district sent: keep it with the archive
        taken = take(ctx, path, tenant, run_id, move=True)
        spooled = str(archive(ctx, taken.parent, tenant, run_id) / taken.name)
    run_store.record_run(ctx.engine, result, path.name, spooled, ctx.config.tenant(tenant).name)
    log.info("run %s tenant %s: duplicate of run %s", run_id, tenant, earlier)
    if source != "cli":  # a district that uploaded a file hears what became of it; a CLI user sees it
        _duplicate_notice(ctx, result, earlier, path.name)
    return result


def _duplicate_notice(ctx: Context, result: RunResult, earlier: str, result_name: str) -> None:
    from processor.report.mail import queue_notice

    first = run_store.run_row(ctx.engine, earlier)
    with ctx.engine.begin() as conn:
        queue_notice(conn, ctx, result.tenant, "duplicate_drop", {
            "run_id": result.run_id, "received_at": result.received_at, "earlier_run_id": earlier,
            "earlier_received_at": first["received_at"], "earlier_status": first["status"],
            "file_name": result_name})


def process_drop(ctx: Context, drop: Drop, dry_run: bool = False, force: bool = False,
                 release: RunResult | None = None, new_year: bool = False) -> RunResult:
    """Validate, convert, diff, hold-check and apply one spooled drop. force: skip holds (a release);
    release: the held run's result with `released` set, whose holds the new result keeps; new_year: the
    August reset (processor/calendar.py)."""
    tenant = drop.tenant
    policy = ctx.config.tenant(tenant).policy
    engine = ctx.engine
    result = RunResult(run_id=drop.run_id, tenant=tenant, status=RunStatus.PROCESSING, source=drop.source,
                       received_at=drop.received_at, sha256=drop.sha256)
    if release is not None:
        result.released = release.released
        result.issues = [i for i in release.issues if i.severity == "hold"]
    result.new_year = new_year or None
    superseded: list[tuple[str, str | None]] = []
    reshaped: list[str] = []
    with run_store.tenant_lock(engine, tenant, drop.run_id):
        # Decided inside the lock, never before it: while this process waited, another one (a worker whose
        # pool was replaced, the daemon racing an operator's command) may have finished this run, or applied
        # a newer drop of the tenant.
        done = _finished_elsewhere(ctx, drop, force)
        if done is not None:
            return done
        newer = None if dry_run else _newer_applied(engine, drop)
        if newer and force:
            result = run_store.mark_superseded(engine, drop.run_id, newer, "after this one was held")
        elif newer:
            result = supersede_unprocessed(ctx, drop, newer)
        else:
            try:
                with progress.run(drop.run_id, drop.path):  # big runs log their stages
                    result = _process(ctx, drop, result, policy, dry_run, force, superseded, reshaped, new_year)
            except OperationalError:
                raise  # a busy or unreachable store: the daemon retries it; nothing could be recorded anyway
            except Exception as exc:  # noqa: BLE001 - any other error ends the run `failed`, nothing applied
                log_failure(drop, exc)
                result = record_failed(ctx, drop, failure_reason(exc), result, dry_run) or \
                    run_store.get_result(engine, drop.run_id)
                superseded.clear()
                reshaped.clear()
            refresh_statistics(engine, reshaped, drop.run_id)
    # After the commit, never before: a run that did not commit must find its spooled bundle to resume (and a
    # failed one, to be retried).
    if result.status not in (RunStatus.HELD, RunStatus.FAILED) or dry_run:
        archive(ctx, drop.path.parent, drop.tenant, drop.run_id)
    for old_id, old_spool in superseded:  # holds a newer drop replaced can never be released
        log.info("run %s tenant %s: supersedes held run %s", drop.run_id, tenant, old_id)
        if old_spool:
            archive(ctx, Path(old_spool).parent, tenant, old_id)
    return result


def _finished_elsewhere(ctx: Context, drop: Drop, force: bool) -> RunResult | None:
    """The stored result if the run is no longer waiting to be processed (for a release: no longer held, or
    claimed for the release, `processing`)."""
    status = run_store.run_row(ctx.engine, drop.run_id)["status"]
    if status in ((RunStatus.HELD, RunStatus.PROCESSING) if force else (RunStatus.RECEIVED, RunStatus.PROCESSING)):
        return None
    log.info("run %s tenant %s: already %s; not processed again", drop.run_id, drop.tenant, status)
    return run_store.get_result(ctx.engine, drop.run_id)


def _newer_applied(engine, drop: Drop) -> str | None:
    with engine.connect() as conn:
        return run_store.newer_applied(conn, drop.tenant, drop.received_at, drop.run_id)


def _process(ctx: Context, drop: Drop, result: RunResult, policy: Policy, dry_run: bool, force: bool,
             superseded: list, reshaped: list, new_year: bool = False) -> RunResult:
    tenant, engine = drop.tenant, ctx.engine
    if not dry_run:
        run_store.set_status(engine, drop.run_id, RunStatus.PROCESSING)
    with _stage(result, "read"):
        bundle = read_bundle(drop.path, Limits(**ctx.config.limits.model_dump()))
    result.format = bundle.format
    with _stage(result, "validate"):
        with engine.connect() as conn:
            current = load_current_roster(conn, tenant, bundle.modes)
        validation = validate(bundle, policy, current)
    if validation.fatal:
        return _finish(ctx, drop, result, validation.issues, None, None, RunStatus.REJECTED, dry_run)
    with _stage(result, "convert"):
        state = load_state(engine, tenant, _stored_tables(bundle), policy, bundle.format)
        roster = convert(bundle, validation, policy, current, state)
        same = sum(len(f) for t, f in roster.same.items() if t != "guardian_links")
        if same:
            log.info("run %s tenant %s: incremental: %d rows unchanged since the last applied drop were not "
                     "converted again (%d converted; %d guardian links as stored)", drop.run_id, tenant, same,
                     sum(len(f) for t, f in roster.tables.items() if t != "guardian_links"),
                     len(roster.same.get("guardian_links", ())))
        apply_manual_edits(engine, tenant, roster)
        issues = sort_issues(concat_issues([validation.issues, *roster.issues]))
        if new_year:
            calendar.new_year_roster(roster)
    rejected = {e: validation.rejected_count(e) for e in validation.rejected}
    # The raw frames are not needed past convert; letting them go before the diff and the writes lowers the
    # peak memory of a big first load by the size of the bundle.
    del bundle, validation
    with engine.begin() as conn:
        # Write first: on SQLite this takes the write lock before the diff reads, so a transaction that
        # has read never has to upgrade to writing after another tenant's commit ("database is locked").
        run_store.touch(conn, drop.run_id)
        with _stage(result, "diff"):
            changes = compute_changes(conn, tenant, roster)
            issues = note_kept(issues, changes, roster)
            if new_year:
                issues = concat_issues([calendar.new_year_issue(changes, calendar.keep_people(changes)), issues])
        result.counts = {e: Counts(**c) for e, c in counts_by_entity(changes, rejected, roster.skipped).items()}
        with _stage(result, "holds"):
            # A release keeps the holds it was held for (they are history, not a reason to hold again).
            holds = (check_holds(conn, tenant, changes, roster, policy) if not force
                     else hold_actions.hold_issues(result))
            if new_year and not force:  # reported, never held: a new year replaces most classes by design
                issues = concat_issues([calendar.unheld(holds), issues])
                holds = holds.iloc[0:0]
        issues = sort_issues(concat_issues([holds, issues]))
        if len(holds) and not force:
            return _finish(ctx, drop, result, issues, changes, roster, RunStatus.HELD, dry_run, conn)
        pause = None if force or new_year else pauses.active_pause(ctx.config.tenant(tenant), drop.received_at)
        if pause is not None:  # the district's calendar (CONTRACT.md section 12): a release or new year is never paused
            status = _paused(conn, drop, result, pause, changes, dry_run, superseded)
            issues = sort_issues(concat_issues([pauses.pause_issue(pause, changes, status is not None), issues]))
            if status is not None:
                return _finish(ctx, drop, result, issues, changes, roster, status, dry_run, conn)
        if dry_run:
            return _finish(ctx, drop, result, issues, changes, roster, RunStatus.APPLIED, dry_run, conn)
        with _stage(result, "apply"):
            apply_changes(conn, tenant, drop.run_id, changes, lines=True)
        reshaped.extend(t for t, tc in changes.tables.items() if _reshaped(tc))
        superseded.extend(run_store.supersede_older_holds(conn, tenant, drop.received_at))
        return _finish(ctx, drop, result, issues, changes, roster, RunStatus.APPLIED, dry_run, conn)


def _stored_tables(bundle) -> list[str]:
    """The store tables the diff compares the drop with (what convert.incremental reads first)."""
    tables = [TABLE_OF[e] for e in bundle.files if bundle.modes.get(e, "bulk") != "absent"]
    return tables + (["guardian_links"] if "people" in tables else [])


def _paused(conn: Connection, drop: Drop, result: RunResult, pause, changes: ChangeSet, dry_run: bool,
            superseded: list) -> RunStatus | None:
    """What a pause makes of the drop: held, skipped (discarded), or None (apply it as usual). additions_only
    applies the creations here and holds the rest; with nothing to hold back the drop applies as usual."""
    if pause.mode == "skip":
        return RunStatus.DISCARDED
    if pause.mode == "additions_only":
        if not pauses.held_back(changes):
            return None
        if not dry_run:
            with _stage(result, "apply"):
                apply_changes(conn, drop.tenant, drop.run_id, pauses.additions_only(changes))
            superseded.extend(run_store.supersede_older_holds(conn, drop.tenant, drop.received_at))
    return RunStatus.HELD


RESHAPED_ROWS = 10_000


def _reshaped(tc: TableChanges) -> bool:
    """A change big enough to make the database's planner statistics of its table stale (a first load)."""
    return tc.changed >= RESHAPED_ROWS and tc.changed >= 0.1 * tc.current_active


@contextmanager
def _stage(result: RunResult, name: str):
    """Time one stage into result.timings (seconds), for logs and bench/; a bar and log lines (progress)."""
    start = time.perf_counter()
    try:
        with progress.stage(result.run_id, result.tenant, name):
            yield
    finally:
        result.timings[name] = round(result.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def _finish(ctx: Context, drop: Drop, result: RunResult, issues: pd.DataFrame, changes: ChangeSet | None,
            roster: Roster | None, status: RunStatus, dry_run: bool, conn: Connection | None = None) -> RunResult:
    if dry_run:
        result.status, result.outcome = RunStatus.DRY_RUN, status.value
    else:
        result.status = status
    result.finished_at = now_iso()
    issues = cap_issues(issues, ctx.config.limits.max_issues_per_code_and_file)
    result.issues = [IssueOut.model_construct(**r) for r in issues_to_records(issues)]
    # A release writes its report beside the hold's, which stays readable (CONTRACT.md section 7).
    report_dir = ctx.path("reports", drop.run_id, *(["release"] if result.released else []))
    with _stage(result, "report"):
        data = _report_data(ctx, result, issues, changes, roster, conn)
        try:
            from processor.report.render import write_report

            result.report = str(write_report(report_dir, data))
        except Exception:  # noqa: BLE001 - a report failure must not lose the run; it is logged with its cause
            log.exception("run %s tenant %s: the report could not be written", drop.run_id, drop.tenant)
        if conn is None:
            with ctx.engine.begin() as own:
                _save(ctx, own, result, data, report_dir, dry_run)
        else:
            _save(ctx, conn, result, data, report_dir, dry_run)
    counts = " ".join(f"{e}:+{c.created}~{c.updated}-{c.deactivated}" for e, c in result.counts.items())
    log.info("run %s tenant %s: %s (%s) %d issues", drop.run_id, drop.tenant, result.status.value,
             counts, len(result.issues))
    return result


def _save(ctx: Context, conn: Connection, result: RunResult, data, report_dir: Path, dry_run: bool) -> None:
    run_store.save_result(conn, result, result.report)
    if dry_run:
        return  # a dry run sends nothing
    events.record_run(conn, result)
    try:
        from processor.report.mail import queue_run_email
    except ImportError:
        return
    queue_run_email(conn, ctx, data, report_dir)
    if result.released:
        from processor.report.mail import queue_notice

        queue_notice(conn, ctx, result.tenant, "hold_released",
                     hold_actions.notice_context(result, result.released, result.status.value))


def _report_data(ctx: Context, result: RunResult, issues: pd.DataFrame, changes: ChangeSet | None,
                 roster: Roster | None, conn: Connection | None):
    from processor.report.render import ReportData

    held = result.status == RunStatus.HELD or result.outcome == "held"
    return ReportData(
        result=result, tenant_name=ctx.config.tenant(result.tenant).name, issues=issues,
        school_counts=_school_counts(changes, roster, conn, result.tenant) if changes else _empty_school_counts(),
        changes=_change_rows(changes) if changes else _empty_changes(),
        release_command=f"rosterdrop holds release {result.run_id}" if held and not result.outcome else None,
        discard_command=f"rosterdrop holds discard {result.run_id}" if held and not result.outcome else None,
        timezone=ctx.config.tenant(result.tenant).timezone,
    )


def _empty_changes() -> pd.DataFrame:
    return pd.DataFrame(columns=["entity", "sourced_id", "action", "label", "fields"])


def _empty_school_counts() -> pd.DataFrame:
    return pd.DataFrame(columns=["school", "school_name", "entity", "created", "updated", "deactivated",
                                 "unchanged"])


def _change_rows(changes: ChangeSet) -> pd.DataFrame:
    """Rows that change (not the created ones: a first load would list the whole district)."""
    parts = []
    for table, tc in changes.tables.items():
        if not tc.updated.empty:
            parts.append(pd.DataFrame({"entity": table, "sourced_id": tc.updated["sourced_id"].to_numpy(),
                                       "action": tc.updated["action"].to_numpy(),
                                       "label": labels(table, tc.updated).to_numpy(),
                                       "fields": tc.updated["fields"].to_numpy()}))
        if not tc.deactivated.empty:
            before = changes.before[table]
            gone = before[before["sourced_id"].isin(tc.deactivated["sourced_id"])]
            parts.append(pd.DataFrame({"entity": table, "sourced_id": gone["sourced_id"].to_numpy(),
                                       "action": "deactivated", "label": labels(table, gone).to_numpy(),
                                       "fields": "status"}))
    return pd.concat(parts, ignore_index=True) if parts else _empty_changes()


def _school_counts(changes: ChangeSet, roster: Roster | None, conn: Connection | None, tenant: str) -> pd.DataFrame:
    # Counted per change list with Arrow's value_counts (a first load lists millions of rows; a pivot of them
    # took most of a second), then laid out one row per (school, entity) with a column per action.
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for table in ("people", "classes", "enrollments"):
        tc = changes.tables.get(table)
        if tc is None:
            continue
        for action, frame in (("created", tc.created), ("updated", tc.updated), ("deactivated", tc.deactivated)):
            if len(frame) and "school" in frame:
                for school, n in frame["school"].value_counts().items():
                    counts.setdefault((school, table), {})[action] = int(n)
    if not counts:
        return _empty_school_counts()
    keys = sorted(counts)
    table = pd.DataFrame({"school": pd.array([k[0] for k in keys], dtype="str"),
                          "entity": pd.array([k[1] for k in keys], dtype="str"),
                          **{c: pd.array([counts[k].get(c, 0) for k in keys], dtype="int64")
                             for c in ("created", "updated", "deactivated")}})
    table["unchanged"] = 0
    if roster is not None:
        # Unchanged per school: the drop's active rows there, less the ones it creates or updates.
        for entity in ("people", "classes", "enrollments"):
            seen = roster.active_per_school(entity)
            if seen is None:
                continue
            same = roster.same.get(entity)  # rows not converted again (convert.incremental), as stored
            if same is not None and len(same):
                school = same.column("school")
                seen = seen.add(school[same.column("status").eq("active")].value_counts(), fill_value=0)
            rows = table["entity"].eq(entity)
            sent = table.loc[rows, "school"].map(seen).fillna(0).astype("int64")
            table.loc[rows, "unchanged"] = (sent - table.loc[rows, "created"] - table.loc[rows, "updated"]).clip(lower=0)
    names = _school_names(roster, conn, tenant)
    table["school_name"] = table["school"].map(names).astype("str").fillna("(no school)")
    return table[["school", "school_name", "entity", "created", "updated", "deactivated", "unchanged"]]


def _school_names(roster: Roster | None, conn: Connection | None, tenant: str) -> pd.Series:
    t = ENTITY_TABLES["orgs"]
    names = pd.Series(dtype="str")
    if conn is not None:
        rows = conn.execute(select(t.c.sourced_id, t.c.name).where(t.c.tenant == tenant)).all()
        names = pd.Series(dict(rows), dtype="str")
    if roster is not None and "orgs" in roster.tables:
        o = roster.tables["orgs"]
        names = pd.concat([names, pd.Series(o["name"].to_numpy(), index=o["sourced_id"].to_numpy())])
        names = names[~names.index.duplicated(keep="last")]
    return names


def load_current_roster(conn: Connection, tenant: str, modes: dict[str, str]) -> CurrentRoster:
    """The ids validation may resolve against: only for entities the drop does not carry in full."""
    current = CurrentRoster()
    orgs = ENTITY_TABLES["orgs"]
    rows = conn.execute(select(orgs.c.sourced_id, orgs.c.type).where(
        orgs.c.tenant == tenant, orgs.c.status == "active")).all()
    current.org_types = pd.Series({sid: typ or "" for sid, typ in rows}, dtype="str")
    for entity in ("orgs", "academicSessions", "courses", "classes", "users"):
        if modes.get(entity) == "bulk":
            continue
        t = ENTITY_TABLES[TABLE_OF[entity]]
        ids = conn.execute(select(t.c.sourced_id).where(t.c.tenant == tenant, t.c.status == "active")).scalars().all()
        current.ids[entity] = pd.Index(ids, dtype="str")
    if modes.get("enrollments") != "bulk":
        e = ENTITY_TABLES["enrollments"]
        people = conn.execute(select(e.c.person).distinct().where(e.c.tenant == tenant, e.c.status == "active")
                              ).scalars().all()
        current.enrolled_people = pd.Index(people, dtype="str")
    load_data_check_roster(conn, tenant, modes, current)
    return current


# ---------------------------------------------------------------- holds


def release_hold(ctx: Context, run_id: str, by: str | None = None, note: str | None = None,
                 new_year: bool = False) -> RunResult:
    """Apply a held run now. by: who released it (default: the operating-system user); note: why;
    new_year: apply it as the August reset (processor/calendar.py)."""
    row = run_store.run_row(ctx.engine, run_id)
    ctx.config.tenant(row["tenant"])
    held = run_store.get_result(ctx.engine, run_id)
    hold_actions.check_not_acted(held, "release")  # a second click changes nothing, and says what happened
    if row["status"] == RunStatus.SUPERSEDED:
        return held
    if row["status"] != RunStatus.HELD:
        raise UserError(f"run {run_id} is not held (its status is {row['status']}); only held runs can be released")
    with ctx.engine.connect() as conn:
        newer = run_store.newer_applied(conn, row["tenant"], row["received_at"], run_id)
    if newer:
        return run_store.mark_superseded(ctx.engine, run_id, newer, "after this one was held")
    drop = Drop(run_id, row["tenant"], Path(row["spool_path"]), row["sha256"], row["received_at"], row["source"],
                row["original_name"] or "")
    if ctx.config.queue.backend == "procrastinate":
        from processor.queue import local_copy

        drop = local_copy(ctx, row)  # received on another host (or home): its bytes are in the store
    if not drop.path.exists():
        raise UserError(f"the spooled bundle of run {run_id} is missing ({drop.path}); it cannot be released")
    held.released = hold_actions.hold_action(by, note)
    if not hold_actions.claim(ctx.engine, run_id, RunStatus.PROCESSING):
        _acted_meanwhile(ctx, run_id, "release")
    log.info("run %s tenant %s: hold released", run_id, row["tenant"])
    events.record_hold_released(ctx.engine, row["tenant"], run_id)
    try:
        return process_drop(ctx, drop, force=True, release=held, new_year=new_year)
    except BaseException:
        # Not applied (the tenant was busy, the store went away): the hold stays open to be released again.
        hold_actions.unclaim(ctx.engine, run_id)
        raise


def _acted_meanwhile(ctx: Context, run_id: str, action: str) -> None:
    """Another release or discard won the claim: say what it did (or that it is still under way)."""
    hold_actions.check_not_acted(run_store.get_result(ctx.engine, run_id), action)
    raise hold_actions.AlreadyActed(f"run {run_id} is being released or discarded by someone else right now; "
                                    "nothing was done", run_store.get_result(ctx.engine, run_id), same=False)


def discard_hold(ctx: Context, run_id: str, by: str | None = None, note: str | None = None) -> RunResult:
    """Drop a held run; nothing is applied. by/note as for release_hold."""
    row = run_store.run_row(ctx.engine, run_id)
    result = run_store.get_result(ctx.engine, run_id)
    hold_actions.check_not_acted(result, "discard")  # a second click changes nothing, and says what happened
    if row["status"] != RunStatus.HELD:
        raise UserError(f"run {run_id} is not held (its status is {row['status']}); only held runs can be discarded")
    result.discarded = hold_actions.hold_action(by, note)
    if not hold_actions.claim(ctx.engine, run_id, RunStatus.DISCARDED):
        _acted_meanwhile(ctx, run_id, "discard")
    result.status = RunStatus.DISCARDED
    result.finished_at = now_iso()
    with ctx.engine.begin() as conn:
        run_store.save_result(conn, result)
        events.record_hold(conn, result.tenant, run_id, "discarded")
        try:
            from processor.report.mail import queue_notice

            queue_notice(conn, ctx, result.tenant, "hold_discarded",
                         hold_actions.notice_context(result, result.discarded, "discarded"))
        except ImportError:
            pass
    archive(ctx, Path(row["spool_path"]).parent, row["tenant"], run_id)
    log.info("run %s tenant %s: hold discarded", run_id, row["tenant"])
    return result
