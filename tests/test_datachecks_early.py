"""The data checks' early part (datachecks.start_data_checks: what does not depend on rejections, computed
while the references are checked) gives exactly the alerts check_data computes on its own, for random
users and enrollments with shared emails and usernames, deleted rows, rejected rows, excluded roles and
unenrolled students and classes."""

from __future__ import annotations

import random
from concurrent.futures import Future

import pandas as pd
import pytest

from processor.bundle.read import read_bundle
from processor.config import Policy
from processor.validate.current import NO_ROSTER
from processor.validate.datachecks import check_data, start_data_checks
from processor.validate.issues import concat_issues, sort_issues
from processor.validate.run import validate
from tests.bundles import CLASSES, COURSES, ORGS, SESSIONS, make_bundle
from tests.test_apply import ENR_HEADER, USERS_HEADER


def now(fn, *args) -> Future:
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def random_bundle(rng: random.Random) -> dict[str, str]:
    emails = ["a@x.example", "A@x.example ", "b@x.example", "", "c@x.example"]
    names = ["ann", "ANN", "bob", "", "cy"]
    users, enrollments = [USERS_HEADER], [ENR_HEADER]
    for n in range(rng.randint(3, 14)):
        role = rng.choice(["student", "student", "teacher", "parent", "aide"])
        status = rng.choice(["active"] * 4 + ["tobedeleted"])
        given = "" if rng.random() < 0.15 else "Pat"  # no givenName: the row is rejected
        users.append(f"u{n},{status},,true,{rng.choice(['s1', 's2'])},{role},{rng.choice(names)},,{given},Lee,,"
                     f",{rng.choice(emails)},,,,,,\n")
        if role in ("student", "teacher") and rng.random() < 0.6:
            e_status = rng.choice(["active", "active", "tobedeleted"])
            enrollments.append(f"e{n},{e_status},,{rng.choice(['k1', 'k2'])},s1,u{n},{role},false,,\n")
    return {"orgs.csv": ORGS, "academicSessions.csv": SESSIONS, "courses.csv": COURSES, "classes.csv": CLASSES,
            "users.csv": "".join(users), "enrollments.csv": "".join(enrollments)}


def alerts(frames: list[pd.DataFrame]) -> list[tuple]:
    issues = sort_issues(concat_issues(frames))
    return [tuple(r) for r in issues[["code", "file", "line", "sourced_id", "value", "message"]]
            .astype("str").itertuples(index=False)]


@pytest.mark.parametrize("seed", range(40))
def test_early_data_checks_equal_the_late_ones(tmp_path, seed):
    rng = random.Random(seed)
    policy = Policy(exclude_roles=["staff"] if seed % 2 else [])
    bundle = read_bundle(make_bundle(tmp_path, random_bundle(rng)))
    validation = validate(bundle, policy)
    rejected = {e: m.copy() for e, m in validation.rejected.items()}
    extra = rejected["users"].copy()  # more rejections than validation made: any mask must give the same
    extra[:] = [rng.random() < 0.2 for _ in range(len(extra))]
    rejected["users"] = rejected["users"] | extra
    late = check_data(bundle, policy, NO_ROSTER, rejected, validation.roles)
    early = check_data(bundle, policy, NO_ROSTER, rejected, validation.roles,
                       start_data_checks(bundle, policy, now))
    assert alerts(early) == alerts(late)


def test_the_random_bundles_raise_the_alerts_compared():
    """The comparison above is not vacuous: the random bundles raise each kind of alert it covers."""
    import tempfile
    from pathlib import Path

    seen = set()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(40):
            bundle = read_bundle(make_bundle(Path(tmp) / str(seed), random_bundle(random.Random(seed))))
            v = validate(bundle, Policy())
            seen |= {r[0] for r in alerts(check_data(bundle, Policy(), NO_ROSTER, v.rejected, v.roles))}
    assert {"duplicate_email", "duplicate_username", "student_without_class", "class_without_teacher",
            "class_without_students"} <= seen
