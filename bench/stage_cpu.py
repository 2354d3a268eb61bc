"""CPU seconds per stage of one drop, in this process, against a copy of a loaded store: read, validate,
convert, diff and apply (in a transaction that is rolled back, so the copy can be used again).

    .venv/bin/python bench/stage_cpu.py HOME BUNDLE STORE_COPY     # HOME's rosterdrop.db is replaced by
                                                                   # STORE_COPY first; tenant "bench"

With the home of a `pipeline_bench.py` run (after its nightly) and the first bundle, this is a 1%-changed
drop. Set ROSTERDROP_INCREMENTAL=1 for the incremental path. CPU (process_time) rather than wall: the
machines these run on are shared. Nothing is asserted.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import time
from pathlib import Path

from processor import pipeline
from processor.apply.diff import compute_changes
from processor.apply.writer import apply_changes
from processor.bundle.read import read_bundle
from processor.bundle.unpack import Limits
from processor.context import Context
from processor.convert.roster import convert
from processor.validate.run import validate


def main() -> None:
    home, bundle, store = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    shutil.copy(store, home / "rosterdrop.db")
    ctx = Context.load(home)
    engine, tenant = ctx.engine, "bench"
    policy = ctx.config.tenant(tenant).policy
    cpu, out = time.process_time, {}
    t = cpu()
    b = read_bundle(bundle, Limits(**ctx.config.limits.model_dump()))
    out["read"] = cpu() - t
    t = cpu()
    with engine.connect() as conn:
        current = pipeline.load_current_roster(conn, tenant, b.modes)
    v = validate(b, policy, current)
    out["validate"] = cpu() - t
    t = cpu()
    if hasattr(pipeline, "load_state"):  # the incremental path's code (it works on older checkouts too)
        roster = convert(b, v, policy, current, pipeline.load_state(engine, tenant, pipeline._stored_tables(b),
                                                                   policy, b.format))
    else:
        roster = convert(b, v, policy, current)
    out["convert"] = cpu() - t
    with engine.connect() as conn:
        trans = conn.begin()
        t = cpu()
        changes = compute_changes(conn, tenant, roster)
        out["diff"] = cpu() - t
        kw = {"lines": True} if "lines" in inspect.signature(apply_changes).parameters else {}
        t = cpu()
        apply_changes(conn, tenant, "bench-stage-cpu", changes, **kw)
        out["apply"] = cpu() - t
        trans.rollback()
    out["total"] = sum(out.values())
    print(json.dumps({k: round(x, 2) for k, x in out.items()}))


if __name__ == "__main__":
    main()
