"""validate(): every rule over a bundle, in reference order, so that rejections cascade in one pass."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from processor.bundle.formats import ENTITY_ORDER, SPECS
from processor.bundle.read import Bundle
from processor.config import Policy
from processor.convert.roles import app_roles
from processor.validate.current import NO_ROSTER, CurrentRoster
from processor.validate.datachecks import check_data, start_data_checks
from processor.validate.issues import cap_issues, concat_issues, is_fatal, one_issue, sort_issues
from processor.validate.policy import check_single_school, check_students_need_enrollment
from processor.validate.references import Targets, check_references, root_causes
from processor.validate.values import check_values
from processor.vector import PARALLEL, id_set, isin, ne


@dataclass
class Validation:
    issues: pd.DataFrame
    rejected: dict[str, pd.Series] = field(default_factory=dict)  # entity → mask over the file's rows
    roles: pd.Series | None = None  # app role of every users.csv row
    fatal: bool = False

    def rejected_count(self, entity: str) -> int:
        mask = self.rejected.get(entity)
        return int(mask.sum()) if mask is not None else 0


def validate(bundle: Bundle, policy: Policy, current: CurrentRoster = NO_ROSTER) -> Validation:
    cap = bundle.limits.max_issues_per_code_and_file
    # Issues are capped as they come (a million invalid rows must not cost a million rows of memory
    # downstream), and once more when merged; reference checks see each file's issues in full.
    issues: list[pd.DataFrame] = [cap_issues(f, cap) for f in bundle.issues]
    if bundle.fatal:
        return Validation(cap_issues(sort_issues(concat_issues(issues)), cap), fatal=True)
    out = Validation(issues=pd.DataFrame())
    targets = Targets()
    if "users" in bundle.files:
        out.roles = app_roles(bundle.files["users"].frame, policy)
    # Value checks need nothing from other files: they run two at a time, biggest file first (duplicate ids,
    # patterns and dates are Arrow and pandas kernels that release the GIL); references then go in order.
    required = {e: _policy_required(e, bf, policy, out.roles) for e, bf in bundle.files.items()}
    pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="validate")
    active = {e: ne(bf.frame["status"], "tobedeleted") for e, bf in bundle.files.items()}
    try:
        checked = {}
        for entity in sorted(bundle.files, key=lambda e: -len(bundle.files[e].frame)):
            bf = bundle.files[entity]
            extra, missing_cols = required[entity]
            if not missing_cols:
                checked[entity] = pool.submit(check_values, bf, SPECS[entity], active[entity], extra)
        # A file's references to its own rows (parent orgs and sessions, guardian links) resolve against every
        # id of the file, whatever is rejected: they need nothing from the other files either.
        own = {(e, f.name): pool.submit(check_references, bf, f, active[e], _own_targets(e, bf, current))
               for e, bf in bundle.files.items() if not required[e][1] for f in SPECS[e].fields if f.ref == e}
        # What the data checks can compute before any row is rejected runs on the pool's idle turns while
        # the references are checked (it took ~1 s after them at 300k, on one core).
        early = start_data_checks(bundle, policy, pool.submit)
        _check_in_order(bundle, policy, current, out, targets, issues, required, checked, own, active)
        if policy.students_need_enrollment and "users" in bundle.files and "enrollments" not in bundle.files:
            _students_need_enrollment(bundle, out, targets, issues, current, None)
        if not out.fatal:
            issues.extend(check_data(bundle, policy, current, out.rejected, out.roles, early))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    all_issues = concat_issues(issues)
    out.fatal = out.fatal or is_fatal(all_issues)
    out.issues = cap_issues(sort_issues(all_issues), cap)
    return out


def _own_targets(entity: str, bf, current: CurrentRoster) -> Targets:
    """What a file's references to its own rows resolve against: any id of the file (or the stored roster),
    none rejected yet (what _check_in_order has for the entity when it checks its fields)."""
    return Targets(valid={entity: id_set(bf.frame["sourcedId"], current.active(entity))}, checkable={entity: True})


def _check_in_order(bundle: Bundle, policy: Policy, current: CurrentRoster, out: Validation, targets: Targets,
                    issues: list[pd.DataFrame], required: dict, checked: dict, own: dict,
                    active: dict[str, pd.Series]) -> None:
    """File by file in ENTITY_ORDER: each file's references resolve against the files before it (own: the
    checks of references to the file's own rows, already submitted; active: each file's rows not deleted)."""
    org_types = current.org_types
    # An optional link to the file's own rows rejects nothing, and its alerts (dangling_link) are no root
    # cause of anything: they are collected at the end, and the files after it do not wait for them.
    optional = []
    for entity in ENTITY_ORDER:
        bf = bundle.files.get(entity)
        if bf is None:
            targets.valid[entity] = current.active(entity)
            targets.checkable[entity] = current.has(entity)
            continue
        spec = SPECS[entity]
        df = bf.frame
        rows = active[entity]
        missing_cols = required[entity][1]
        if missing_cols:
            issues.extend(missing_cols)
            out.fatal = True
            # The run is rejected anyway; let later files resolve against it rather than add noise.
            targets.valid[entity] = pd.Index(df["sourcedId"].unique())
            targets.checkable[entity] = True
            continue
        file_issues, rejected = checked[entity].result()
        # Self-references (parent org, guardian links) are optional links: any id of the file will do.
        targets.valid[entity] = id_set(df["sourcedId"], current.active(entity))
        targets.checkable[entity] = True
        for f in spec.fields:
            if f.ref:
                done = own.get((entity, f.name))
                if done is not None and not f.strong:
                    optional.append(done)
                    continue
                more, bad = done.result() if done is not None else check_references(bf, f, rows, targets)
                file_issues += more
                rejected |= bad
        if entity == "orgs":
            ok = ~rejected
            org_types = pd.concat([org_types, df.loc[ok].set_index("sourcedId")["type"]])
            org_types = org_types[~org_types.index.duplicated(keep="last")]
        if entity == "users" and policy.single_school:
            more, bad = check_single_school(bf, rows & ~rejected, org_types)
            file_issues += more
            rejected |= bad
        if entity == "enrollments" and policy.students_need_enrollment and "users" in bundle.files:
            _students_need_enrollment(bundle, out, targets, issues, current, rows & ~rejected)
        issues.extend(cap_issues(f, bundle.limits.max_issues_per_code_and_file) for f in file_issues)
        out.rejected[entity] = rejected
        _update_targets(targets, bundle, entity, rejected, file_issues, current)
    for done in optional:
        issues.extend(cap_issues(f, bundle.limits.max_issues_per_code_and_file) for f in done.result()[0])


def _update_targets(targets: Targets, bundle: Bundle, entity: str, rejected: pd.Series,
                    file_issues: list[pd.DataFrame], current: CurrentRoster) -> None:
    bf = bundle.files[entity]
    sid = bf.frame["sourcedId"]
    valid = id_set(sid[~rejected])
    if bundle.modes.get(entity) != "bulk":
        valid = valid.union(current.active(entity).difference(pd.Index(sid[rejected].unique())))
    targets.valid[entity] = valid
    # Only the columns root_causes reads, errors only: a file with a million rejected rows is not copied whole.
    errors = concat_issues([f.loc[f["severity"].eq("error"), _CAUSE_COLUMNS] for f in file_issues if len(f)])
    causes = root_causes(bf, errors)
    # vector.isin: pandas' Index.isin takes seconds against a large `valid` even when causes is empty.
    targets.rejected[entity] = causes[~isin(causes.index, valid)] if len(causes) else causes
    targets.checkable[entity] = True


_CAUSE_COLUMNS = ["severity", "code", "file", "line", "sourced_id"]


def _students_need_enrollment(bundle: Bundle, out: Validation, targets: Targets, issues: list[pd.DataFrame],
                              current: CurrentRoster, ok_enrollments: pd.Series | None) -> None:
    users = bundle.files["users"]
    enrolled = current.enrolled_people
    if ok_enrollments is not None:
        enr = bundle.files["enrollments"].frame
        in_file = pd.Index(enr.loc[ok_enrollments, "userSourcedId"].unique())
        if bundle.modes.get("enrollments") == "bulk":
            enrolled = in_file
        else:
            # A delta: enrollments it deletes no longer count, the rest of the roster's still do.
            gone = enr.loc[enr["status"].eq("tobedeleted"), "userSourcedId"]
            enrolled = enrolled.difference(pd.Index(gone.unique())).union(in_file)
    df = users.frame
    students = out.roles.eq("student") & df["status"].ne("tobedeleted") & ~out.rejected["users"]
    more, bad = check_students_need_enrollment(users, students, enrolled)
    issues.extend(more)
    out.rejected["users"] = out.rejected["users"] | bad


def _policy_required(entity: str, bf, policy: Policy, roles: pd.Series | None
                     ) -> tuple[dict[str, pd.Series], list[pd.DataFrame]]:
    df = bf.frame
    req = policy.require
    wanted: list[tuple[str, pd.Series]] = []
    everyone = pd.Series(True, index=df.index)
    if entity == "users":
        wanted += [(c, everyone) for c in req.users]
        wanted += [(c, roles.eq("student")) for c in req.students]
    elif entity == "classes":
        wanted += [(c, everyone) for c in req.classes]
    elif entity == "orgs":
        wanted += [(c, df["type"].eq("school")) for c in req.schools]
    extra: dict[str, pd.Series] = {}
    missing: list[pd.DataFrame] = []
    for col, rows in wanted:
        name = _column(bf, col)
        if name is None:
            if rows.any():
                missing.append(one_issue(
                    "missing_column", f"{bf.name} has no {col!r} column, which your district's settings require. "
                    "Add the column to the export.", file=bf.name, line=1, field=col))
            continue
        extra[name] = extra.get(name, pd.Series(False, index=df.index)) | rows
    return extra, missing


def _column(bf, col: str) -> str | None:
    by_lower = {c.lower(): c for c in bf.sent_columns}
    return by_lower.get(col.lower())
