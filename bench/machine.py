"""The machine line every bench script prints above its figures (CPU, cores, kernel, load, Python, libraries).

The scripts run as `python bench/<script>.py`, so this folder is on sys.path and `from machine import
machine_line` works from each of them.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import version


def machine_line(libs: tuple[str, ...], extra: str = "") -> str:
    """Two lines: the machine (with the load average: these VMs are shared), then Python and `libs`."""
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ""
    try:
        with open("/proc/loadavg") as f:
            load = ", load average " + f.read().split()[0]
    except OSError:
        pass
    names = ", ".join(f"{n} {version(n)}" for n in libs)
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}{load}\n"
            f"python {platform.python_version()}, {names}{extra}")
