"""Render every email template from synthetic data to HTML and, with Chromium, to PNG (600 and 375 px).

    .venv/bin/python bench/render_previews.py [OUT_DIR [HEIGHT]]   # default /tmp/rosterdrop-previews, 2000

Look at the pictures before changing a template. PNGs are for eyes only: never commit them.
Chromium: `apt-get install -y chromium` (Debian). A dark-mode copy at 600 px is rendered too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from processor.report import samples
from processor.report.notices import render_notice
from processor.report.render import render_report

CHROMIUM = "/usr/bin/chromium"
WIDTHS = (600, 375)


def previews() -> dict[str, str]:
    """name -> inlined HTML for each template and outcome."""
    pages = {name: render_report(make()).html for name, make in samples.SCENARIOS.items()}
    tenant, name = samples.TENANT, samples.TENANT_NAME
    notices = {
        "missing_drop": ("missing_drop", {"hours": 26, "last_received_at": "2024-05-01T02:10:00+00:00",
                                          "expect_every_hours": 24}),
        "hold_released": ("hold_released", {"run_id": "20240502T021300-5f3a9c1e",
                                            "received_at": "2024-05-02T02:13:00+00:00", "status": "applied"}),
        "hold_discarded": ("hold_discarded", {"run_id": "20240502T021300-5f3a9c1e",
                                              "received_at": "2024-05-02T02:13:00+00:00"}),
        "weekly_digest": ("weekly_digest", _digest()),
        "run_failed": ("run_failed", {"run_id": "20240502T021300-5f3a9c1e", "file": "nightly.zip",
                                      "received_at": "2024-05-02T02:13:00+00:00"}),
        "run_superseded": ("run_superseded", {"run_id": "20240502T021300-5f3a9c1e", "file": "nightly.zip",
                                              "received_at": "2024-05-02T02:13:00+00:00",
                                              "newer": "20240502T031300-0a1b2c3d"}),
    }
    for page, (kind, ctx) in notices.items():
        pages[page] = render_notice(kind, tenant, name, ctx).html
    return pages


def _digest() -> dict:
    runs = [{"run_id": f"2024050{d}T021300-00000{d}", "status": s, "outcome": "",
             "received": f"2024-05-0{d} 02:13 UTC", "errors": e, "alerts": a}
            for d, s, e, a in ((7, "applied", 3, 12), (6, "applied", 3, 11), (5, "held", 2, 9),
                               (4, "applied", 4, 12), (3, "rejected", 1, 0), (2, "applied", 0, 2))]
    return {"days": 7, "since": "2024-05-01 02:00 UTC", "runs": runs, "runs_total": len(runs),
            "status_counts": {"applied": 4, "held": 1, "rejected": 1},
            "holds": [r for r in runs if r["status"] == "held"],
            "top_errors": [{"code": "missing_value", "title": "A required value is blank",
                            "fix": "Fill in the value for this record in your SIS.", "runs": 5, "rows": 14},
                           {"code": "unknown_reference", "title": "A row refers to a record that does not exist",
                            "fix": "Include the referenced record in the export, or correct the reference.",
                            "runs": 3, "rows": 6}]}


def screenshot(html_path: Path, png: Path, width: int, dark: bool = False, height: int = 2000) -> None:
    with tempfile.TemporaryDirectory(prefix="rosterdrop-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}"]
        if dark:
            cmd.append("--force-dark-mode")  # makes prefers-color-scheme: dark match for the page
        cmd.append(html_path.resolve().as_uri())
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path("/tmp/rosterdrop-previews")
    height = int(argv[2]) if len(argv) > 2 else 2000  # the window height: a taller one shows a whole report
    out.mkdir(parents=True, exist_ok=True)
    have_chromium = Path(CHROMIUM).exists() or shutil.which("chromium") is not None
    for name, html in previews().items():
        html_path = out / f"{name}.html"
        html_path.write_text(html, encoding="utf-8")
        print(f"{html_path}  ({len(html.encode()):,} bytes)")
        if not have_chromium:
            continue
        for width in WIDTHS:
            png = out / f"{name}-{width}.png"
            screenshot(html_path, png, width, height=height)
            print(f"  {png}")
        png = out / f"{name}-600-dark.png"
        screenshot(html_path, png, 600, dark=True, height=height)
        print(f"  {png}")
    if not have_chromium:
        print("chromium not found: HTML only (install with `apt-get install -y chromium`)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
