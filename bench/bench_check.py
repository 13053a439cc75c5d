#!/usr/bin/env python3
"""Benchmark: `machina check` of a host with many machines (issue 10: "in seconds").

Not a test: it prints figures. It writes the host of bench_generate.py (the seed README's
tags and more; 5,000 machines by default) and times, as subprocesses (wall clock, median
of --runs runs after one warm-up):

    machina --config-dir DIR check --offline --json     (builds every machine, collisions)
    machina --config-dir DIR check --json               (+ bridges, pools, files)
    machina --config-dir DIR generate --preview <all>   (the baseline: builds and renders)

and prints what check found. CPU time (user + system of the child) is printed beside the
wall clock: on a shared, busy machine it is the steadier figure. Derived MACs have 24
random bits, so a host of 5,000 machines (~7,500 NICs) usually holds a MAC collision or
two: the check should say so.

    bench/bench_check.py [--machines 5000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _timing import SRC, base_env, print_table, python_info
from bench_generate import write_config


def timed(argv: list[str], runs: int) -> tuple[list[float], list[float],
                                               subprocess.CompletedProcess[bytes]]:
    """Wall-clock and CPU (user + system) seconds of each timed run, and the first run."""
    env = base_env(PYTHONPATH=str(SRC))
    first = None
    times, cpu = [], []
    for i in range(runs + 1):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL,
                           check=False)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        first = first or p
    assert first is not None
    return times, cpu, first


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--machines", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keep", type=Path, metavar="DIR")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="machina-bench-check-") as tmp:
        cfg = args.keep or Path(tmp)
        names = write_config(cfg, args.machines)
        machina = [sys.executable, "-m", "machina", "--config-dir", str(cfg)]
        print(f"config: {cfg} ({len(names)} machines); python: {python_info()}; "
              f"median of {args.runs} runs after one warm-up")
        ops = [("check --offline --json", ["check", "--offline", "--json"]),
               ("check --json (host facts too)", ["check", "--json"]),
               (f"generate --preview <{len(names)}> (baseline)",
                ["generate", "--preview", *names])]
        rows, outputs = [], {}
        for label, op in ops:
            times, cpu, proc = timed([*machina, *op], args.runs)
            outputs[label] = proc
            median, cpu_median = statistics.median(times), statistics.median(cpu)
            rows.append([label, f"{median:.3f} s", f"{min(times):.3f} s",
                         f"{cpu_median:.3f} s", f"{cpu_median / len(names) * 1000:.2f}",
                         str(proc.returncode)])
        print()
        print_table(["command", "wall (median)", "wall (min)", "CPU (median)",
                     "CPU ms/machine", "exit"], rows)
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs: wall-clock figures grow "
              "with it, CPU time much less")
        doc = json.loads(outputs["check --offline --json"].stdout)
        kinds = Counter(p["kind"] for p in doc["problems"])
        print(f"\ncheck --offline: {doc['machines']} machines, {len(doc['problems'])} problems "
              f"({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items())) or 'none'})")
        for problem in doc["problems"][:5]:
            print(f"  {problem['kind']}: {problem['message'][:150]}")
        base = outputs[ops[2][0]]
        return 0 if base.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
