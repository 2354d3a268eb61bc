"""The first-load write path: rows written in slices land whole, the audit's list of created ids is exact
JSON whatever the ids hold, and a first load reverts to nothing."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from processor.apply import store, writer
from processor.apply.store import ENTITY_TABLES
from processor.apply.writer import json_list, revert_run
from tests.bundles import CLEAN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12)))
def test_the_created_ids_list_is_the_json_array_of_exactly_those_ids(ids):
    values = pd.Series(pd.array(ids, dtype="str"))
    assert json.loads(json_list(values)) == ids
    assert json.loads(json_list(values)) == json.loads(json.dumps(ids, ensure_ascii=False))


def _stored(env, tenant: str = "lincoln") -> dict[str, list]:
    out = {}
    with env.ctx.engine.connect() as conn:
        for name, t in ENTITY_TABLES.items():
            rows = conn.execute(t.select().where(t.c.tenant == tenant).order_by(t.c.sourced_id)).all()
            out[name] = [tuple(r) for r in rows]
    return out


def test_a_first_load_written_in_many_slices_stores_what_one_slice_does(env, monkeypatch):
    whole = env.process(CLEAN)
    assert whole.status == "applied"
    expected = {t: [r[:3] + r[5:] for r in rows] for t, rows in _stored(env).items()}  # all but row_hash, run_id
    with env.ctx.engine.begin() as conn:
        revert_run(conn, "lincoln", whole.run_id)
    assert all(not rows for rows in _stored(env).values())  # reverted: the created-ids list named every row
    monkeypatch.setattr(writer, "INSERT_SLICE", 2)
    monkeypatch.setattr(writer, "COPY_SLICE", 2)
    again = env.process(CLEAN, tenant="roosevelt")
    assert again.status == "applied"
    got = {t: [(r[0].replace("roosevelt", "lincoln"),) + r[1:3] + r[5:] for r in rows]
           for t, rows in _stored(env, "roosevelt").items()}
    assert got == expected and sum(map(len, got.values())) > 10
    with env.ctx.engine.connect() as conn:
        audit = conn.execute(select(store.audit.c.entity, store.audit.c.sourced_id, store.audit.c.after).where(
            store.audit.c.run_id == again.run_id, store.audit.c.action == "created")).all()
    for entity, count, after in audit:
        ids = json.loads(after)
        assert count == f"*{len(ids)}" and sorted(ids) == [r[1] for r in got[entity]]
