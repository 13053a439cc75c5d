"""Shared helpers of the benchmarks: wall-clock timing of subprocesses, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PYZ = REPO / "dist" / "machina.pyz"


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TZ="UTC", NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


@dataclass
class Result:
    times: list[float]
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_cmd(argv: Sequence[str], env: dict[str, str], runs: int, *, warmup: int = 1,
             cwd: Path | None = None) -> Result:
    """Run argv warmup + runs times; return the wall-clock times of the timed runs.

    The first (warm-up) run also fills the page cache and the pyc caches; its output is
    kept for checks. A failing command is not repeated.
    """
    times: list[float] = []
    first: subprocess.CompletedProcess[bytes] | None = None
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        p = subprocess.run(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           capture_output=True, check=False)
        dt = time.perf_counter() - t0
        if first is None:
            first = p
        if p.returncode != 0:
            return Result([dt], p.returncode, p.stdout, p.stderr)
        if i >= warmup:
            times.append(dt)
    assert first is not None
    return Result(times, 0, first.stdout, first.stderr)


def fmt_s(r: Result | None) -> str:
    if r is None:
        return "-"
    if not r.ok:
        return f"exit {r.rc}"
    return f"{r.median:.3f} s (min {min(r.times):.3f})"


def fail_note(label: str, r: Result) -> str:
    tail = r.stderr.decode(errors="replace").strip().splitlines()[-3:]
    return f"  {label}: exit {r.rc}: " + " | ".join(tail)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def python_info() -> str:
    v = sys.version_info
    return f"{sys.executable} ({v.major}.{v.minor}.{v.micro})"
