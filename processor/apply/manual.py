"""What operators and the vendor's app changed by hand, applied to every converted drop (one call in the
pipeline, after convert): id aliases first (a renamed person is its stored record), then field locks (keyed
by the stored ids)."""

from __future__ import annotations

from sqlalchemy import Engine

from processor.apply.identity import apply_aliases
from processor.apply.locks import apply_field_locks


def apply_manual_edits(engine: Engine, tenant: str, roster) -> None:
    apply_aliases(engine, tenant, roster)
    apply_field_locks(engine, tenant, roster)
