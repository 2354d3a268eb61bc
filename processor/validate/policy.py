"""The tenant's policy rules. Codes: multiple_schools, student_without_enrollment."""

from __future__ import annotations

import pandas as pd

from processor.bundle.provenance import field_of, file_of
from processor.bundle.read import LINE, BundleFile
from processor.validate.issues import issue_frame
from processor.vector import explode, isin


def check_single_school(users: BundleFile, ok: pd.Series, org_types: pd.Series) -> tuple[list[pd.DataFrame], pd.Series]:
    df = users.frame
    orgs = explode(df.loc[ok, "orgSourcedIds"])
    schools = orgs[isin(orgs, org_types.index[org_types.eq("school")]).to_numpy()]
    counts = schools.groupby(level=0).nunique()
    many = counts[counts > 1].index
    rejected = pd.Series(df.index.isin(many), index=df.index)
    if not rejected.any():
        return [], rejected
    listed = schools[schools.index.isin(many)].groupby(level=0).agg(lambda s: ", ".join(dict.fromkeys(s)))
    issues = [issue_frame(
        "multiple_schools", file_of(users, rejected), df.loc[rejected, LINE], df.loc[rejected, "sourcedId"],
        field_of(users, "orgSourcedIds", rejected),
        listed.reindex(df.index[rejected]),
        "This person is tied to " + counts[many].astype("str") + " schools (" + listed.reindex(many) +
        "), but your district's settings allow one. Keep one school for this person in your SIS.")]
    return issues, rejected


def check_students_need_enrollment(users: BundleFile, students: pd.Series, enrolled: pd.Index
                                   ) -> tuple[list[pd.DataFrame], pd.Series]:
    df = users.frame
    lacking = students & ~isin(df["sourcedId"], enrolled)
    if not lacking.any():
        return [], lacking
    return [issue_frame(
        "student_without_enrollment", file_of(users, lacking), df.loc[lacking, LINE], df.loc[lacking, "sourcedId"],
        None,
        None, "This student has no active class enrollment, and your district's settings require one. "
        "Enroll the student in a class in your SIS, or leave them out of the export.")], lacking
