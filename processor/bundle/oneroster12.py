"""OneRoster 1.2 CSV → the same Bundle the 1.1 reader builds, so everything after bundle/ is shared.

What 1.2 changes, and what this reader does about it:
- users.csv has no `role` or `orgSourcedIds`: roles.csv has one row per person × org × role, with
  `roleType` primary or secondary. roles.csv is checked here (its issues name roles.csv and its lines);
  its good rows give each person `role` (their primary role, the most privileged if several) and
  `orgSourcedIds` (the orgs of every active role, the primary role's first, so that it is the person's
  primary school and `single_school` sees every school), written into the users frame.
- New users columns (userMasterIdentifier, preferred names, pronouns, primaryOrgSourcedId) are read and
  so kept in each person's data.
- userProfiles.csv carries credentials: it is never read, so its passwords are never stored, and it is
  never an error (also when misnamed userprofiles.csv).
- Vocabularies are extensible: `ext:` values are valid, with one alert per file and column.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd

from processor.bundle.formats import ENTITY_ORDER, MANIFEST, SPECS, STATUS, USER_ROLES, Field, FileSpec
from processor.bundle.provenance import Origin
from processor.bundle.read import LINE, MODES, Bundle, BundleFile, _check_files, _read_manifest, read_file
from processor.bundle.sniff import header, manifest_version
from processor.bundle.unpack import Unpacked
from processor.convert.roles import DEFAULT_ROLE_MAP, EXT_ROLE, PRIVILEGE
from processor.validate.issues import issue_frame, one_issue
from processor.validate.references import Targets, check_references
from processor.validate.values import DATE_RE, check_values
from processor.vector import isin, lookup

FORMAT = "oneroster-1.2"
ROLES_FILE = "roles.csv"
PROFILES_FILE = "userProfiles.csv"
ROLE_TYPES = ("primary", "secondary")
NEW_USER_COLUMNS = ("userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
                    "preferredFamilyName", "primaryOrgSourcedId", "pronouns")

# users.csv of 1.2: 1.1's columns, with role and orgSourcedIds coming from roles.csv instead, plus the new ones.
USERS = FileSpec("users", "users.csv", (
    *(dataclasses.replace(f, required=False) if f.name in ("role", "orgSourcedIds") else f
      for f in SPECS["users"].fields),
    Field("userMasterIdentifier"),
    Field("resourceSourcedIds", many=True),
    Field("preferredGivenName"),
    Field("preferredMiddleName"),
    Field("preferredFamilyName"),
    Field("primaryOrgSourcedId", ref="orgs", strong=False),
    Field("pronouns"),
))
ROLES = FileSpec("roles", ROLES_FILE, (
    Field("sourcedId", required=True),
    Field("status", kind="enum", enum=STATUS),
    Field("dateLastModified", kind="datetime"),
    Field("userSourcedId", required=True, ref="users"),
    Field("roleType", required=True, kind="enum", enum=ROLE_TYPES),
    Field("role", required=True, kind="enum", enum=USER_ROLES),
    Field("beginDate", kind="date"),
    Field("endDate", kind="date"),
    Field("orgSourcedId", required=True, ref="orgs"),
    Field("userProfileSourcedId"),
))
# The vocabularies 1.2 lets a district extend with 'ext:' values (status and roleType are closed).
EXTENSIBLE = {"orgs": ("type",), "academicSessions": ("type",), "classes": ("classType",), "users": ("role",),
              "enrollments": ("role",), "demographics": ("sex",), "roles": ("role",)}
# In issues about a person's role or orgs, name where the district keeps them.
FROM_ROLES = {"role": "role (roles.csv)", "orgSourcedIds": "orgSourcedId (roles.csv)"}


def detect(raw: Unpacked) -> bool:
    """1.2 if the manifest says so; without a version, if roles.csv is there or users.csv has 1.2's columns."""
    version = manifest_version(raw.files)
    if version is not None:
        return version.startswith("1.2")
    if ROLES_FILE in raw.files:
        return True
    users = header(raw.files.get("users.csv"))
    if not users:
        return False
    lower = {c.lower() for c in users}
    return "role" not in lower and any(c.lower() in lower for c in NEW_USER_COLUMNS)


def read(raw: Unpacked, bundle: Bundle) -> Bundle:
    _read_manifest(raw, bundle)
    bundle.format = FORMAT
    if bundle.fatal:
        return bundle
    issues = bundle.issues
    _renamed_files(raw, issues)
    for entity in ENTITY_ORDER:
        spec = USERS if entity == "users" else SPECS[entity]
        data = raw.files.get(spec.filename)
        if data is None:
            continue
        if bundle.modes.get(entity) == "absent":
            issues.append(one_issue("unsupported_file", f"{spec.filename} was ignored: manifest.csv marks it "
                                    "absent.", file=spec.filename))
            continue
        bf = read_file(spec, data, issues, raw.limits)
        if bf is None:
            bundle.fatal = True
            continue
        bf.origin = Origin(ext_columns=frozenset(EXTENSIBLE.get(entity, ())))
        if entity != "users":  # users' role is checked with roles.csv below
            _alert_extensions(bf, issues)
        bundle.files[entity] = bf
    _check_files(Unpacked(files={n: b for n, b in raw.files.items() if n not in (ROLES_FILE, PROFILES_FILE)}),
                 bundle)
    if PROFILES_FILE in raw.files:
        sent = raw.names.get(PROFILES_FILE, PROFILES_FILE)
        issues.append(one_issue(
            "unsupported_file", f"{sent} was not read: it holds login credentials, and Rosterdrop never stores "
            "passwords. Leave it out of the export if the app does not need it.", file=sent))
    mode = _roles_mode(raw, bundle)
    if bundle.fatal:
        return bundle
    if "users" not in bundle.files:
        if mode != "absent":
            issues.append(one_issue("role_not_applied", f"{ROLES_FILE} was not applied: this drop carries no "
                                    "users.csv, and a person's roles are applied with their users.csv row.",
                                    file=ROLES_FILE))
        return bundle
    users = bundle.files["users"]
    if mode == "absent":
        if "role" in users.sent_columns:  # a 1.1-style users.csv in a 1.2 bundle: its own roles stand
            _alert_extensions(users, issues)
            return bundle
        issues.append(one_issue(
            "missing_file", f"{ROLES_FILE} is required: in OneRoster 1.2 it gives every person in users.csv "
            "their role and orgs. Include it in the export.", file=ROLES_FILE))
        bundle.fatal = True
        return bundle
    _apply_roles(raw, bundle, users)
    return bundle


def _roles_mode(raw: Unpacked, bundle: Bundle) -> str:
    present = ROLES_FILE in raw.files
    stated = {k.lower(): v.strip().lower() for k, v in bundle.manifest.items()}.get("file.roles", "")
    mode = stated if stated in MODES else ("bulk" if present else "absent")
    if mode != "absent" and not present:
        if MANIFEST in raw.files and stated in ("bulk", "delta"):
            bundle.issues.append(one_issue(
                "missing_file", f"manifest.csv marks {ROLES_FILE} as {stated}, but the bundle does not contain it. "
                "Include the file, or mark it absent in manifest.csv.", file=ROLES_FILE))
            bundle.fatal = True
        return "absent"
    if mode == "absent" and present:
        bundle.issues.append(one_issue("unsupported_file", f"{ROLES_FILE} was ignored: manifest.csv marks it "
                                       "absent.", file=ROLES_FILE))
    return mode


def _apply_roles(raw: Unpacked, bundle: Bundle, users: BundleFile) -> None:
    issues = bundle.issues
    roles = read_file(ROLES, raw.files[ROLES_FILE], issues, raw.limits)
    if roles is None:
        bundle.fatal = True
        return
    roles.origin = Origin(ext_columns=frozenset(EXTENSIBLE["roles"]))
    _alert_extensions(roles, issues)
    r = roles.frame
    active = r["status"].ne("tobedeleted")
    found, bad = check_values(roles, ROLES, active, {})
    issues.extend(found)
    targets = Targets()
    person_ids = pd.Index(users.frame["sourcedId"].unique())
    targets.valid["users"], targets.checkable["users"] = person_ids, True
    if bundle.modes.get("users") == "bulk":
        found, rejected = check_references(roles, ROLES.field("userSourcedId"), active & ~bad, targets)
        issues.extend(found)
        bad |= rejected
    else:
        # A delta restates a person with their users.csv row; a role alone cannot be applied.
        orphan = active & ~bad & ~isin(r["userSourcedId"], person_ids)
        if orphan.any():
            issues.append(issue_frame(
                "role_not_applied", ROLES_FILE, r.loc[orphan, LINE], r.loc[orphan, "sourcedId"], "userSourcedId",
                r.loc[orphan, "userSourcedId"], "userSourcedId names '" + r.loc[orphan, "userSourcedId"] +
                "', who is not in this delta's users.csv, so this role was not applied. Send the person's "
                "users.csv row with their roles."))
            bad |= orphan
    if "orgs" in bundle.files and bundle.modes.get("orgs") == "bulk":
        # Against orgs.csv here, so a bad org drops that role only; otherwise validation checks the
        # person's orgs against the roster.
        targets.valid["orgs"] = pd.Index(bundle.files["orgs"].frame["sourcedId"].unique())
        targets.checkable["orgs"] = True
        found, rejected = check_references(roles, ROLES.field("orgSourcedId"), active & ~bad, targets)
        issues.extend(found)
        bad |= rejected
        found, _ = check_references(users, USERS.field("primaryOrgSourcedId"),
                                    users.frame["status"].ne("tobedeleted"), targets)
        issues.extend(found)
    today = date.today().isoformat()
    ended = r["endDate"].str.match(DATE_RE) & r["endDate"].lt(today)
    _write_roles(users, roles, active & ~bad & ~ended, issues)


def _write_roles(users: BundleFile, roles: BundleFile, ok: pd.Series, issues: list[pd.DataFrame]) -> None:
    """role, orgSourcedIds and a `roles` summary on every users row, from its good, current roles."""
    df = users.frame
    r = roles.frame.loc[ok, ["sourcedId", "userSourcedId", "roleType", "role", "orgSourcedId", LINE]].copy()
    base = r["role"].map(DEFAULT_ROLE_MAP)
    base = base.mask(base.isna() & r["role"].str.startswith("ext:"), EXT_ROLE)
    r["rank"] = base.map(PRIVILEGE).fillna(0).astype("int64")
    r["secondary"] = r["roleType"].ne("primary")
    preferred = lookup(r["userSourcedId"], df["sourcedId"], df["primaryOrgSourcedId"])
    r["elsewhere"] = r["orgSourcedId"].ne(preferred)
    # Per person: primary roles first, the most privileged first (its org is the primary school); then the
    # org the person names as primaryOrgSourcedId.
    r = r.sort_values(["userSourcedId", "secondary", "rank", "elsewhere", LINE],
                      ascending=[True, True, False, True, True], kind="stable")
    best = r.drop_duplicates("userSourcedId")
    lacking = best[best["secondary"]]
    if len(lacking):
        issues.append(issue_frame(
            "no_primary_role", ROLES_FILE, lacking[LINE], lacking["sourcedId"], "roleType", lacking["roleType"],
            "userSourcedId '" + lacking["userSourcedId"] + "' has no primary role, so their app role comes from "
            "this secondary one (" + lacking["role"] + "). Mark one of the person's roles as primary in your SIS."))
    orgs = r.drop_duplicates(["userSourcedId", "orgSourcedId"])
    several = orgs["userSourcedId"].duplicated(keep=False)
    joined = orgs.loc[~several, ["userSourcedId", "orgSourcedId"]].set_index("userSourcedId")["orgSourcedId"]
    if several.any():  # most people have one org: join strings only for the rest
        joined = pd.concat([joined, orgs[several].groupby("userSourcedId", sort=False)["orgSourcedId"]
                            .agg(",".join)])
    summary = r["roleType"] + ":" + r["role"] + "@" + r["orgSourcedId"]
    many = r["userSourcedId"].duplicated(keep=False)
    listed = summary[~many].set_axis(r.loc[~many, "userSourcedId"])
    if many.any():
        listed = pd.concat([listed, summary[many].groupby(r.loc[many, "userSourcedId"], sort=False).agg(",".join)])
    sid = df["sourcedId"]
    df["role"] = lookup(sid, best["userSourcedId"], best["role"])
    df["orgSourcedIds"] = lookup(sid, joined.index, joined.to_numpy())
    df["roles"] = lookup(sid, listed.index, listed.to_numpy())
    users.origin = dataclasses.replace(users.origin or Origin(), headers={users.name: FROM_ROLES})


def _alert_extensions(bf: BundleFile, issues: list[pd.DataFrame]) -> None:
    df = bf.frame
    for name in sorted(bf.origin.ext_columns if bf.origin else ()):
        ext = df[name].str.startswith("ext:")
        if not ext.any():
            continue
        first = ext.idxmax()
        values = ", ".join(repr(v) for v in pd.unique(df.loc[ext, name])[:5])
        tail = (f" An 'ext:' role gives the app role {EXT_ROLE} unless your settings' role_map names it."
                if name == "role" and bf.entity in ("users", "roles") else "")
        issues.append(one_issue(
            "extension_value", f"{int(ext.sum())} value(s) of {name} in {bf.name} are OneRoster 1.2 extensions "
            f"({values}), first on line {int(df.at[first, LINE])}" + _more(int(ext.sum()))
            + f"; they were accepted as sent.{tail}", file=bf.name, line=int(df.at[first, LINE]),
            sourced_id=str(df.at[first, "sourcedId"]) if "sourcedId" in df.columns else None,
            field=name, value=str(df.at[first, name])))


def _more(n: int) -> str:
    return f" and {n - 1:,} more" if n > 1 else ""


def _renamed_files(raw: Unpacked, issues: list[pd.DataFrame]) -> None:
    for name, sent in sorted(raw.names.items()):
        if sent != name:
            issues.append(one_issue("renamed_file", f"{sent} was read as {name}, its OneRoster name. Name the file "
                                    f"{name} in the export.", file=sent))
