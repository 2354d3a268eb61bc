"""References across files: codes unknown_reference, rejected_reference, dangling_link, references_not_checked.

A reference resolves to a row of the bundle that was not rejected, or, when the bundle does not carry
the full set of that entity (delta, absent), to an active row of the current roster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from processor.bundle.formats import Field
from processor.bundle.provenance import (
    FILE,
    field_of,
    file_of,
    files_of,
    label_of,
    named,
    ref_file,
    ref_files,
)
from processor.bundle.read import LINE, BundleFile
from processor.validate.issues import issue_frame, one_issue
from processor.vector import explode, isin, ne


@dataclass
class Targets:
    """Per entity: ids a row may point at, ids that were rejected (→ root cause), and if checkable."""
    valid: dict[str, pd.Index] = field(default_factory=dict)  # may repeat ids: only looked up
    rejected: dict[str, pd.Series] = field(default_factory=dict)
    checkable: dict[str, bool] = field(default_factory=dict)


def check_references(bf: BundleFile, f: Field, active: pd.Series, targets: Targets
                     ) -> tuple[list[pd.DataFrame], pd.Series]:
    df = bf.frame
    rejected = pd.Series(False, index=df.index)
    col = df[f.name]
    use = active & ne(col, "")
    if not use.any():
        return [], rejected
    target_file = ref_file(bf, f.ref)  # the district's name for it (Clever: schools.csv, sections.csv...)
    if not targets.checkable.get(f.ref, False):
        label = label_of(bf, f.name)
        return [one_issue(
            "references_not_checked", f"{label} values of {bf.name} point at {target_file}, which is not in "
            "the bundle nor in the current roster; they were not checked.", file=bf.name, field=label)], rejected
    values = col[use]
    if f.many:
        values = explode(values)
    valid = targets.valid.get(f.ref, pd.Index([], dtype="str"))
    causes = targets.rejected.get(f.ref, pd.Series([], dtype="str"))
    ok = isin(values, valid)
    was_rejected = ~ok & isin(values, causes.index)
    unknown = ~ok & ~was_rejected
    issues: list[pd.DataFrame] = []
    if unknown.any():
        v = values[unknown]
        msg = (named(bf, f.name, v.index) + " names '" + v + "', which is neither in " + ref_files(bf, f.ref, v.index)
               + " nor in the current roster." + (" Include that record in the export or correct the reference in "
                                                  "your SIS." if f.strong else " The link was dropped."))
        issues.append(issue_frame("unknown_reference" if f.strong else "dangling_link", file_of(bf, v.index),
                                  df.loc[v.index, LINE], df.loc[v.index, "sourcedId"], field_of(bf, f.name, v.index),
                                  v, msg))
    if was_rejected.any():
        v = values[was_rejected]
        msg = (named(bf, f.name, v.index) + " names '" + v + "' of " + ref_files(bf, f.ref, v.index)
               + ", which was rejected (" + v.map(causes) + ")."
               + (" Fix that record first; this row will then import." if f.strong else " The link was dropped."))
        issues.append(issue_frame("rejected_reference" if f.strong else "dangling_link", file_of(bf, v.index),
                                  df.loc[v.index, LINE], df.loc[v.index, "sourcedId"], field_of(bf, f.name, v.index),
                                  v, msg))
    if f.strong:
        bad = values.index[(unknown | was_rejected).to_numpy()]
        rejected = pd.Series(df.index.isin(bad), index=df.index)
    return issues, rejected


def root_causes(bf: BundleFile, errors: pd.DataFrame) -> pd.Series:
    """sourcedId → 'code on line N of file' for the first error of each rejected id."""
    mine = errors[errors["file"].isin(files_of(bf)) & errors["sourced_id"].notna()]
    if mine.empty:
        return pd.Series([], dtype="str")
    # Arrow strings throughout: a file with a million rejected rows makes no million Python objects here.
    sid = mine["sourced_id"].astype("str")
    first = mine[~sid.duplicated().to_numpy()]
    where = first["file"].astype("str") if FILE in bf.frame.columns else bf.name
    text = first["code"].astype("str") + " on line " + first["line"].astype("str") + " of " + where
    return pd.Series(text.array, index=pd.Index(sid[first.index].array), dtype="str")
