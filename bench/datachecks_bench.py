"""Time the data checks (validate/datachecks.py) on a generated bundle, beside the whole validation.

    python bench/datachecks_bench.py [--students 100000]

Prints the seconds of read, validate (which includes the checks) and the checks alone, and the alerts found.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from processor.bundle.read import read_bundle
from processor.config import Policy
from processor.generate import generate_bundles
from processor.validate.current import NO_ROSTER
from processor.validate.datachecks import check_data
from processor.validate.run import validate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--schools", type=int, default=20)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, pandas {pd.__version__}, pyarrow {pa.__version__}, "
          f"{platform.machine()} {platform.processor() or ''}".strip())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drop.zip"
        generate_bundles(path, schools=args.schools, students=args.students, seed=1)
        t = time.perf_counter()
        bundle = read_bundle(path)
        read_s = time.perf_counter() - t
        policy = Policy()
        t = time.perf_counter()
        v = validate(bundle, policy, NO_ROSTER)
        validate_s = time.perf_counter() - t
        t = time.perf_counter()
        found = pd.concat(check_data(bundle, policy, NO_ROSTER, v.rejected, v.roles) or [pd.DataFrame({"code": []})])
        checks_s = time.perf_counter() - t
    rows = {e: len(bf.frame) for e, bf in bundle.files.items()}
    print(f"rows: {rows}")
    print(f"read {read_s:.2f} s, validate (with the checks) {validate_s:.2f} s, data checks alone {checks_s:.2f} s")
    print(f"alerts: {found['code'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
