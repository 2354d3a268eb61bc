"""CPU and wall seconds per stage of one drop, in this process, against a copy of a loaded store: read,
validate, convert, diff and apply (in a transaction that is rolled back, so the copy can be used again). One
JSON line per repeat: {"cpu": {stage: s, "total": s}, "wall": {...}} (the stages run threads two at a time,
so a stage's wall is below its CPU where they overlap).

    .venv/bin/python bench/stage_cpu.py HOME BUNDLE STORE_COPY [--repeat K]   # HOME's rosterdrop.db is
                                                                   # replaced by STORE_COPY first; tenant "bench"

With the home of a `pipeline_bench.py` run (after its nightly) and the first bundle, this is a 1%-changed
drop. Set ROSTERDROP_INCREMENTAL=1 for the incremental path. CPU (process_time) first: the machines
these run on are shared, so wall figures need pairs (old and new code in turn, PYTHONPATH=<checkout>).
`--repeat K` runs the drop K times on the same copy (each apply is rolled back). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from processor import pipeline
from processor.apply.diff import compute_changes
from processor.apply.writer import apply_changes
from processor.bundle.read import read_bundle
from processor.bundle.unpack import Limits
from processor.context import Context
from processor.convert.roster import convert
from processor.validate.run import validate


class Clock:
    """CPU (process_time, every thread) and wall (perf_counter) seconds per stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        c, w = time.process_time(), time.perf_counter()
        yield
        self.cpu[name] = time.process_time() - c
        self.wall[name] = time.perf_counter() - w

    def figures(self) -> dict:
        return {kind: {**{k: round(x, 2) for k, x in got.items()}, "total": round(sum(got.values()), 2)}
                for kind, got in (("cpu", self.cpu), ("wall", self.wall))}


def run_once(ctx: Context, bundle: Path) -> dict:
    engine, tenant = ctx.engine, "bench"
    policy = ctx.config.tenant(tenant).policy
    clock = Clock()
    with clock.stage("read"):
        b = read_bundle(bundle, Limits(**ctx.config.limits.model_dump()))
    with clock.stage("validate"):
        with engine.connect() as conn:
            current = pipeline.load_current_roster(conn, tenant, b.modes)
        v = validate(b, policy, current)
    with clock.stage("convert"):
        if hasattr(pipeline, "load_state"):  # the incremental path's code (it works on older checkouts too)
            roster = convert(b, v, policy, current, pipeline.load_state(engine, tenant, pipeline._stored_tables(b),
                                                                       policy, b.format))
        else:
            roster = convert(b, v, policy, current)
    with engine.connect() as conn:
        trans = conn.begin()
        with clock.stage("diff"):
            changes = compute_changes(conn, tenant, roster)
        kw = {"lines": True} if "lines" in inspect.signature(apply_changes).parameters else {}
        with clock.stage("apply"):
            apply_changes(conn, tenant, "bench-stage-cpu", changes, **kw)
        trans.rollback()
    return clock.figures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("store", type=Path, help="a copy of a loaded store; HOME's rosterdrop.db is replaced by it")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    shutil.copy(args.store, args.home / "rosterdrop.db")
    ctx = Context.load(args.home)
    for _ in range(args.repeat):
        print(json.dumps(run_once(ctx, args.bundle)), flush=True)


if __name__ == "__main__":
    main()
