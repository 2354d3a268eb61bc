"""A person's preferred language: `metadata.preferred_language` in users.csv (Clever: a `preferred_language`
or `ext.preferred_language` column, which the Clever reader keeps as metadata.*). An ISO 639-1/2/3 code or a
well-formed BCP 47 tag (en, spa, zh-Hant, pt-BR, es-419); anything else is an invalid_value alert and the
person gets the default, English. Code: invalid_value (alert)."""

from __future__ import annotations

import pandas as pd

from processor.bundle.read import LINE, BundleFile
from processor.validate.issues import issue_frame
from processor.vector import matches

DEFAULT_LANGUAGE = "en"
COLUMNS = ("metadata.preferred_language", "metadata.preferredlanguage", "metadata.ext.preferred_language")
# BCP 47 (RFC 5646) well-formedness, without checking the registry: language (2-3 letters, the ISO 639 codes)
# with up to three extended subtags, then script, region, variants, extensions and a private-use part.
BCP47 = (r"^[A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?"
         r"(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(-[0-9A-WY-Za-wy-z](-[A-Za-z0-9]{2,8})+)*"
         r"(-[Xx](-[A-Za-z0-9]{1,8})+)?$")


def language_column(df: pd.DataFrame) -> str | None:
    """The users frame's preferred-language column, if the district sends one."""
    by_lower = {c.lower(): c for c in df.columns if c.startswith("metadata.")}
    return next((by_lower[c] for c in COLUMNS if c in by_lower), None)


def preferred_languages(df: pd.DataFrame) -> pd.Series:
    """Per users row, the language to store: the value as sent (trimmed) when well-formed, else the default."""
    column = language_column(df)
    if column is None or df.empty:
        return pd.Series(DEFAULT_LANGUAGE, index=df.index, dtype="str")
    values = df[column].fillna("").astype("str").str.strip()
    ok = matches(values, BCP47)
    return values.where(ok, DEFAULT_LANGUAGE).astype("str")


def check_languages(users: BundleFile, rows: pd.Series) -> list[pd.DataFrame]:
    """An alert for each of rows (the people the drop stores) whose language is sent but not well-formed."""
    column = language_column(users.frame)
    if column is None:
        return []
    df = users.frame
    values = df[column].fillna("").astype("str").str.strip()
    bad = rows & values.ne("") & ~pd.Series(matches(values, BCP47), index=df.index)
    if not bad.any():
        return []
    from processor.bundle.provenance import file_of

    return [issue_frame(
        "invalid_value", file_of(users, bad), df.loc[bad, LINE], df.loc[bad, "sourcedId"], column,
        df.loc[bad, column], f"{column} is not a language code (an ISO 639 code or a BCP 47 tag such as en, es, "
        "zh-Hant or pt-BR); English (en) was used. Correct the value in your SIS.", severity="alert")]
