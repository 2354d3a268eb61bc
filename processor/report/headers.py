"""Header values for the outbox: nothing user-supplied reaches an email header as it was typed.

A file name from a bundle, a tenant's name or an address from the config can carry line separators
(CR, LF, U+2028, U+0085 ...) or an RFC 2047 encoded word (`=?utf-8?q?x=0D=0AReply-To:...?=`). Python's
email package refuses raw CR/LF, but it *decodes* encoded words in the values it is given and writes
the decoded CR/LF out raw, so a drop could add headers (Reply-To, Bcc) to the mail sent to district
admins. Every header the outbox writes goes through `header_text` or `header_addresses`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from email.headerregistry import Address
from email.utils import getaddresses

log = logging.getLogger("rosterdrop.mail")

HEADER_CHARS = 200
# Every character that ends a line for some reader, plus every other control or format character:
# C0 and C1 controls (VT, FF, NEL U+0085...), U+2028/U+2029, bidi overrides and zero-width marks.
_SEPARATOR_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_ENCODED_WORD_START = re.compile(r"=\s*\?")
_SPACES = re.compile(r"\s+")
# An addr-spec we are willing to put in a header: no spaces, quotes, brackets or separators at all.
_ADDR_SPEC = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,200}$")


def _no_separators(value: str) -> str:
    return "".join(" " if unicodedata.category(ch) in _SEPARATOR_CATEGORIES else ch for ch in value)


def header_text(value: object, limit: int = HEADER_CHARS) -> str:
    """One safe line for an unstructured header (Subject, List-Id, X-...): separators become spaces,
    `=?` (the start of an encoded word) becomes `= ?`, runs of spaces collapse, cut to `limit` characters."""
    if value is None:
        return ""
    text = _no_separators(str(value))
    # Breaking the opening "=?" is enough: no decoder starts an encoded word without it.
    text = _ENCODED_WORD_START.sub("= ?", text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def header_addresses(values: list[str] | str, header: str = "To") -> list[Address]:
    """Address objects for an address header; an address that is not a plain `local@domain` is left out
    (logged without the address, which may be a person's) rather than written."""
    if isinstance(values, str):
        values = [values]
    out: list[Address] = []
    for value in values:
        value = str(value)
        parsed = getaddresses([value])
        # One entry is one address: an entry with a line separator, or one that parses as several
        # ("a@x.example\r\nBcc: b@y.example"), is refused whole rather than split.
        if _no_separators(value) != value or len(parsed) != 1:
            log.warning("email %s header: an address with a line break or several addresses was left out",
                        header)
            continue
        name, addr = parsed[0]
        addr = addr.strip()
        if not _ADDR_SPEC.match(addr) or ".." in addr or len(addr) > 254:
            log.warning("email %s header: an address that is not a plain local@domain was left out", header)
            continue
        try:
            out.append(Address(display_name=header_text(name, 80), addr_spec=addr))
        except (ValueError, IndexError):  # the email package's own parser disagrees: leave it out too
            log.warning("email %s header: an address the email package cannot parse was left out", header)
    return out


def header_domain(value: str, fallback: str = "rosterdrop.invalid") -> str:
    """A domain for a Message-ID: letters, digits, dots and hyphens only."""
    value = value.strip().strip(".")
    return value if _DOMAIN.match(value) else fallback
