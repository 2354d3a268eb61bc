"""How long a run report with many issues takes to render, and how big its email gets.

    .venv/bin/python bench/report_bench.py [N_ISSUES]      # default 100000

Prints: render time (HTML + text, with grouping and CSS inlining), write_report time (adds issues.csv),
message build time, HTML/text/email-body sizes and attachment sizes, with machine and library versions.
Targets (issue 5): render < 2 s for 100,000 issues; email body < 1 MB.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from processor.config import Config
from processor.context import Context
from processor.report import samples
from processor.report.mail import _attachment, build_message
from processor.report.render import ReportData, render_report, write_report
from processor.runs import RunStatus


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def best_of(n: int, fn):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    print(f"machine: {_machine()}")
    print(f"python {platform.python_version()}; " + ", ".join(
        f"{p} {version(p)}" for p in ("pandas", "pyarrow", "jinja2", "css-inline")))
    t = time.perf_counter()
    issues = samples.issues(n)
    print(f"synthetic issues: {n:,} rows over {issues.groupby(['severity', 'code']).ngroups} codes "
          f"({time.perf_counter() - t:.2f} s to build, not counted)")
    data = ReportData(samples.result(RunStatus.APPLIED), samples.TENANT_NAME, issues, samples.schools(40),
                      samples.held().changes)

    render_s, rendered = best_of(3, lambda: render_report(data))
    html_b, text_b = len(rendered.html.encode()), len(rendered.text.encode())
    print(f"render (group + HTML + inline CSS + text): {render_s:.3f} s   [target < 2 s]")
    with tempfile.TemporaryDirectory() as tmp:
        write_s, _ = best_of(3, lambda: write_report(Path(tmp) / "r", data))
        csv_bytes = (Path(tmp) / "r" / "issues.csv").read_bytes()
    print(f"write_report (+ issues.csv): {write_s:.3f} s")

    cfg = Config.model_validate({"tenants": {"lincoln": {"name": "Lincoln Unified", "report_to": ["a@x.example"]}}})
    ctx = Context(Path("."), cfg)
    attach_s, attachment = best_of(1, lambda: _attachment("issues.csv", csv_bytes, None))
    build_s, msg = best_of(1, lambda: build_message(ctx, ["a@x.example"], rendered, [attachment],
                                                   tenant="lincoln", run_id=data.result.run_id))
    raw = msg.as_bytes()
    body = msg.get_body(("html",)).as_bytes() + msg.get_body(("plain",)).as_bytes()
    print(f"html: {html_b:,} bytes; text: {text_b:,} bytes")
    print(f"email body (text + HTML parts, encoded): {len(body):,} bytes   [target < 1 MB = 1,048,576]")
    print(f"issues.csv: {len(csv_bytes):,} bytes -> attached as {attachment[0]} ({len(attachment[1]):,} bytes, "
          f"{attach_s:.2f} s)")
    print(f"whole message: {len(raw):,} bytes (build {build_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
