"""The diff lets a table's converted rows go once the table is joined (Roster.let_go): a nightly then keeps
only the `data` sources of the rows it creates and the active rows per school that the report counts.

Nothing a run stores, counts, reports or holds may differ from a run that keeps every row: the random drops
of tests/test_incremental_property.py (edits, additions, deletions, rejections, holds released, reverts),
sent to two tenants of one store, one of them with let_go doing nothing."""

from __future__ import annotations

import random

import pytest

from processor.convert.roster import Roster
from processor.pipeline import release_hold
from processor.report import render
from processor.runs import RunStatus
from processor.status import revert
from tests.test_incremental_property import (
    FULL,
    INC,
    _configure,
    _files,
    _mutate,
    _roster,
    _same_results,
    _state,
)
from tests.test_incremental_property import as_zip as _zip

LETS_GO, KEEPS = INC, FULL


@pytest.mark.parametrize("seed", range(3))
def test_letting_rows_go_after_the_diff_changes_nothing_a_run_stores_counts_or_reports(env, monkeypatch, seed):
    monkeypatch.setenv("ROSTERDROP_INCREMENTAL", "0")
    rng = random.Random(seed)
    rows = _roster(rng)
    _configure(env, {})
    schools: dict[str, list] = {LETS_GO: [], KEEPS: []}
    write_report = render.write_report

    def capture(report_dir, data):
        counts = data.school_counts.sort_values(["school", "entity"]).to_dict("records")
        schools[data.result.tenant].append((data.result.status.value, counts))
        return write_report(report_dir, data)

    monkeypatch.setattr(render, "write_report", capture)
    let_go = Roster.let_go
    trimmed = []

    def counted_let_go(self, table, created):
        before = len(self.tables[table])
        let_go(self, table, created)
        if len(self.tables[table]) < before:
            trimmed.append(table)

    for step in range(5):
        extras = _mutate(rng, rows) if step else {}
        if "policy" in extras:
            _configure(env, extras["policy"])
        files = _files(rows, extras)
        results = {}
        for tenant in (LETS_GO, KEEPS):
            monkeypatch.setattr(Roster, "let_go", counted_let_go if tenant == LETS_GO else lambda *a: None)
            result = env.process(_zip(env, files), tenant=tenant)
            if result.status == RunStatus.HELD:  # released, as an operator would
                result = release_hold(env.ctx, result.run_id, by="test")
            results[tenant] = result
        context = f"seed {seed} step {step}"
        try:
            _same_results(results[LETS_GO], results[KEEPS])
            assert _state(env, LETS_GO) == _state(env, KEEPS)
            assert schools[LETS_GO] == schools[KEEPS]
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc
        if rng.random() < 0.15 and results[LETS_GO].status == RunStatus.APPLIED:
            for tenant in (LETS_GO, KEEPS):
                revert(env.ctx, results[tenant].run_id)
    # The comparison says nothing unless rows were let go, and reports with school counts were compared.
    assert trimmed and any(counts for _, counts in schools[LETS_GO])
